# Every install step is here, each skipped when already done (stamp files track the inputs).
#   make setup   venv + Python deps, Superset's own venv, Maven jars, FerretDB binary, PostgreSQL
#                server and Chromium
#   make demo    setup, start the local stack and the app servers (MLflow, Prefect + the nightly
#                deployment, Superset, JupyterLab, the supervised streaming ingest, search
#                indexer and plan API), run the smoke pipeline and a small simulation, wait for
#                the indexer (seconds), take one plan through the API (create, patch, search,
#                delete), wait for the streaming ingest to catch up, run
#                the nightly flow once through Prefect (snapshot, reconcile, gold, anomalies,
#                quality gate, PostgreSQL mirror), provision the Superset dashboard, profile
#                gold.plan_costs and print a summary with the servers' URLs (the README's main
#                command)
#   make test    setup, then lint and the whole suite against real services on $(PYTEST_WORKERS)
#                pytest-xdist workers (the run starts the stack if it is not running, and stops
#                what it started); the 25 slowest tests are listed at the end
#   make test-unit  the tests that need no service (`-m "not integration"`): starts nothing
#   make stop    stop everything `make demo` started (same as `make down`)
#   make bench   setup, then every benchmark at its recorded size (the local stack is started
#                if it does not answer) and docs/benchmarks/summary.md; BENCH="gold mirror"
#                picks some (bench/run.py)
#   make bench-quick  the same at tiny sizes, results tagged `quick`: a smoke check of the
#                scripts, never the recorded figures

PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
MVN     := mvn -q -B
JARS    := build/jars
STAMP_PY := $(VENV)/.installed
SUPERSET_VENV := .venv-superset

.PHONY: setup python superset jars ferretdb postgres-server chromium demo up down stop status test \
	test-unit lint clean-state bench bench-quick

# The two virtualenvs, the jars and FerretDB are independent downloads and builds: in parallel
# they take the time of the slowest (the Superset virtualenv). The apt packages share apt's lock.
setup:
	@$(MAKE) --no-print-directory -j4 python superset jars ferretdb
	@$(MAKE) --no-print-directory postgres-server chromium

python: $(STAMP_PY)
$(STAMP_PY): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel setuptools
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@

# Superset in its own virtualenv: its pins clash with the pipeline's (conf/superset/requirements.txt).
superset: $(SUPERSET_VENV)/.installed
$(SUPERSET_VENV)/.installed: conf/superset/requirements.txt
	@test -x $(SUPERSET_VENV)/bin/python || $(PYTHON) -m venv $(SUPERSET_VENV)
	$(SUPERSET_VENV)/bin/pip install --quiet --upgrade pip wheel setuptools
	$(SUPERSET_VENV)/bin/pip install --quiet -r conf/superset/requirements.txt
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
	$(BIN)/lakehouse stack up --apps
	$(BIN)/lakehouse smoke
	$(BIN)/lakehouse simulate --plans 200 --changes 500 --seed 42
	$(BIN)/lakehouse indexer --wait
	$(BIN)/lakehouse api smoke
	$(BIN)/lakehouse ingest --wait
	$(BIN)/python flows/nightly.py --trigger
	$(BIN)/lakehouse superset provision
	$(BIN)/lakehouse quality profile gold.plan_costs
	$(BIN)/lakehouse summary
	@echo "demo done; everything keeps running until \`make stop\`"

stop: down

# Two workers on two cores: most tests wait on a service, a JVM start-up or a subprocess, and a
# single test process kept the machine about half busy (docs/testing.md).
PYTEST_WORKERS ?= 2
PYTEST_PARALLEL := -n $(PYTEST_WORKERS) --dist loadgroup

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	# the outer timeout turns a hang at interpreter exit (a stray non-daemon thread) into a failure
	LAKEHOUSE_ENV=test timeout --signal=TERM --kill-after=60 4200 \
	  $(BIN)/pytest $(PYTEST_PARALLEL) --durations=25

# Spark and the jars, no service: nothing is started. Minutes-long sessions on tiny data: the
# JIT's first tier only (143 s instead of 175-214 s; the integration tier is faster with C2).
test-unit: python jars
	LAKEHOUSE_ENV=test LAKEHOUSE_SPARK_JVM_OPTIONS=-XX:TieredStopAtLevel=1 $(BIN)/pytest $(PYTEST_PARALLEL) -m "not integration" --durations=10

# Benchmark names for `make bench` / `make bench-quick` (empty: all of them).
BENCH ?=

bench: setup
	$(BIN)/python bench/run.py $(BENCH)

bench-quick: setup
	$(BIN)/python bench/run.py --quick $(BENCH)

lint: python
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Deletes all local data (Delta tables, Kafka log, databases, index); stop the stack first.
clean-state: down
	rm -rf state
