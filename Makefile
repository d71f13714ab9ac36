# Every install step is here, each skipped when already done (stamp files track the inputs).
#   make setup   venv + Python deps, Maven jars, FerretDB binary, PostgreSQL server and Chromium
#                packages
#   make demo    setup, start the local stack, run the smoke pipeline, a small simulation,
#                ingest it into bronze/silver/Elasticsearch, snapshot and reconcile, build gold,
#                run the quality suites and, if they pass, mirror gold to PostgreSQL, and
#                profile gold.plan_costs (the README's main command)
#   make test    setup, then pytest (the test session starts the stack if it is not running)
#   make down    stop the local stack

PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
MVN     := mvn -q -B
JARS    := build/jars
STAMP_PY := $(VENV)/.installed

.PHONY: setup python jars ferretdb postgres-server chromium demo up down status test lint clean-state

setup: python jars ferretdb postgres-server chromium

python: $(STAMP_PY)
$(STAMP_PY): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel setuptools
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@

jars: $(JARS)/spark/.resolved $(JARS)/kafka/.resolved $(JARS)/elasticsearch/.resolved
$(JARS)/%/.resolved: conf/maven/%.xml
	@rm -rf $(JARS)/$*
	$(MVN) -f $< dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=$(CURDIR)/$(JARS)/$*
	@touch $@
ferretdb: build/bin/ferretdb
build/bin/ferretdb: tools/ferretdb/main.go tools/ferretdb/go.mod tools/ferretdb/go.sum
	cd tools/ferretdb && go build -trimpath -o $(CURDIR)/$@ .

# The Debian package; installed only when no PostgreSQL server binary is present.
postgres-server:
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || command -v postgres >/dev/null || \
	  { echo "installing postgresql-15 with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15; }

# Debian's browser for the headless report tests (Playwright drives it; it downloads nothing).
chromium:
	@command -v chromium >/dev/null || \
	  { echo "installing chromium with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

up: setup
	$(BIN)/lakehouse stack up

down:
	@test -x $(BIN)/lakehouse && $(BIN)/lakehouse stack down || echo "nothing to stop (not set up)"

status:
	$(BIN)/lakehouse stack status

demo: setup
	$(BIN)/lakehouse stack up
	$(BIN)/lakehouse smoke
	$(BIN)/lakehouse simulate --plans 200 --changes 500 --seed 42
	$(BIN)/lakehouse ingest --once
	$(BIN)/lakehouse snapshot
	$(BIN)/lakehouse reconcile
	$(BIN)/lakehouse jobs run all
	$(BIN)/lakehouse publish
	$(BIN)/lakehouse quality profile gold.plan_costs

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	# the outer timeout turns a hang at interpreter exit (a stray non-daemon thread) into a failure
	LAKEHOUSE_ENV=test timeout --signal=TERM --kill-after=60 2400 $(BIN)/pytest

lint: python
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Deletes all local data (Delta tables, Kafka log, databases, index); stop the stack first.
clean-state: down
	rm -rf state
