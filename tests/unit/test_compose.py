"""docker-compose.yml: pinned images, real healthchecks, no secrets, ports matching conf/prod.yaml.

No Docker engine is needed: the file is parsed with PyYAML. Each check is a small function that
returns a list of problems (empty = fine); the real file must give [] and crafted bad compose
dicts must give the expected problems, which proves the checks can fail.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from lakehouse.config import Config, load_config

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"

EXPECTED_SERVICES = frozenset(
    {
        "kafka",
        "mongo",
        "postgres",
        "elasticsearch",
        "spark-master",
        "spark-worker",
        "prefect-server",
        "prefect-worker",
        "mlflow",
        "superset",
        "jupyter",
        "indexer",
        "api",
    }
)
# Run the project's code with conf/prod.yaml and share the warehouse volume.
PIPELINE_SERVICES = frozenset({"spark-master", "spark-worker", "jupyter", "prefect-worker"})
# Keep data across container re-creation: each needs at least one named volume.
STATEFUL_SERVICES = frozenset(
    {"kafka", "mongo", "postgres", "elasticsearch", "prefect-server", "mlflow", "superset"}
)

SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN", re.IGNORECASE)
# `${VAR:?message}`: compose refuses to start when VAR is unset or empty; no default value.
REQUIRED_VARIABLE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:\?[^}]*\}")
# An exact version (1.2, 1.2.3, v3.17.2, 3.5.7-scala2.12-...) or a dated build (2024-10-14).
EXACT_TAG = re.compile(r"^v?\d+\.\d+|^\d{4}-\d{2}-\d{2}$")
LOOPBACK = "127.0.0.1"
VARIABLE = re.compile(r"\$\{[^}]*\}")
# scheme://USERINFO@host: `${...}` references in the user info may contain spaces and colons.
URL_USERINFO = re.compile(r"://((?:\$\{[^}]*\}|[^/@\s$])*)@")


# ---------------------------------------------------------------------------------------------
# Reading compose structures (short and long syntax)
# ---------------------------------------------------------------------------------------------


def services_of(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose.get("services") or {}


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    """`environment:` as a mapping, whether written as a mapping or as a list of KEY=VALUE."""
    env = service.get("environment") or {}
    if isinstance(env, dict):
        return {str(k): "" if v is None else str(v) for k, v in env.items()}
    pairs = (str(item).partition("=") for item in env)
    return {key: value for key, _, value in pairs}


def volume_mounts(service: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(kind, source, target) per mount; kind is `bind`, `volume` or `anonymous`."""
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            kind = entry.get("type", "volume")
            source = str(entry.get("source") or "")
            if kind == "volume" and not source:
                kind = "anonymous"
            yield kind, source, str(entry.get("target", ""))
            continue
        parts = str(entry).split(":")
        if len(parts) == 1:
            yield "anonymous", "", parts[0]
            continue
        source, target = parts[0], parts[1]
        is_path = source.startswith((".", "/", "~"))
        yield ("bind" if is_path else "volume"), source, target


def port_mappings(service: dict[str, Any]) -> Iterator[tuple[str | None, str | None, str]]:
    """(host_ip, published, container_port) per `ports:` entry; None where not given."""
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            published = entry.get("published")
            yield (
                entry.get("host_ip"),
                None if published is None else str(published),
                str(entry.get("target", "")),
            )
            continue
        spec = str(entry).split("/")[0]  # drop /tcp, /udp
        parts = spec.rsplit(":", 2)
        if len(parts) == 3:
            yield parts[0], parts[1], parts[2]
        elif len(parts) == 2:
            yield None, parts[0], parts[1]
        else:
            yield None, None, parts[0]


def container_ports(service: dict[str, Any]) -> set[int]:
    """Ports the service listens on inside the network: `ports` container sides + `expose`."""
    found = {target for _, _, target in port_mappings(service)}
    found.update(str(p).split("/")[0] for p in service.get("expose") or [])
    return {int(p) for p in found if p.isdigit()}


def host_and_port(address: str, default_port: int) -> tuple[str, int]:
    """'host:port' or a URL -> (host, port)."""
    parsed = urlsplit(address if "://" in address else f"//{address}")
    return parsed.hostname or "", parsed.port or default_port


def config_endpoints(config: Config) -> list[tuple[str, str]]:
    """(setting, address) of every service the pipeline connects to."""
    endpoints = [("kafka.bootstrap", a.strip()) for a in config.kafka.bootstrap.split(",")]
    endpoints += [
        ("mongo.uri", config.mongo.uri),
        ("postgres.dsn", config.postgres.dsn),
        ("elasticsearch.url", config.elasticsearch.url),
        ("spark.master", config.spark.master),
    ]
    return endpoints


def userinfo_password(userinfo: str) -> str | None:
    """The password of a URL's `user:password` part; `${...}` references may contain colons."""
    references = VARIABLE.findall(userinfo)
    masked = VARIABLE.sub("\0", userinfo)
    user, colon, password = masked.partition(":")
    if not colon:
        return None
    rest = iter(references[user.count("\0") :])
    return re.sub("\0", lambda _: next(rest), password)


DEFAULT_PORTS = {"mongodb": 27017, "postgresql": 5432, "http": 80, "https": 443, "spark": 7077}


# ---------------------------------------------------------------------------------------------
# The checks: each returns a list of problems, worded for the person fixing the file
# ---------------------------------------------------------------------------------------------


def check_service_names(compose: dict[str, Any], expected: frozenset[str]) -> list[str]:
    names = set(services_of(compose))
    problems = [f"missing service {name!r}" for name in sorted(expected - names)]
    problems += [f"unexpected service {name!r}" for name in sorted(names - expected)]
    return problems


def check_images(compose: dict[str, Any], root: Path) -> list[str]:
    """Every service runs an image pinned to an exact tag (or builds from an existing context)."""
    problems = []
    for name, service in services_of(compose).items():
        image = service.get("image")
        build = service.get("build")
        if not image and not build:
            problems.append(f"{name}: neither `image` nor `build`")
            continue
        if build:
            context = build if isinstance(build, str) else build.get("context", ".")
            if not (root / context).is_dir():
                problems.append(f"{name}: build context {context!r} does not exist")
        if not image:
            continue
        reference = str(image)
        if "@sha256:" in reference:
            continue  # pinned by digest
        last = reference.rsplit("/", 1)[-1]
        if ":" not in last:
            problems.append(f"{name}: image {reference!r} has no tag (pin an exact version)")
            continue
        tag = last.rsplit(":", 1)[1]
        if "latest" in tag:
            problems.append(f"{name}: image {reference!r} uses a floating `latest` tag")
        elif not EXACT_TAG.search(tag):
            problems.append(f"{name}: image {reference!r}: tag {tag!r} is not an exact version")
    return problems


def check_healthchecks(compose: dict[str, Any]) -> list[str]:
    problems = []
    for name, service in services_of(compose).items():
        check = service.get("healthcheck")
        if not check:
            problems.append(f"{name}: no healthcheck")
            continue
        if check.get("disable"):
            problems.append(f"{name}: healthcheck is disabled")
            continue
        test = check.get("test")
        probe = [str(part).strip() for part in ([test] if isinstance(test, str) else test or [])]
        if probe[:1] == ["NONE"]:
            probe = []
        elif probe[:1] in (["CMD"], ["CMD-SHELL"]):
            probe = probe[1:]
        if not any(probe):
            problems.append(f"{name}: healthcheck has no probe command (`test` is {test!r})")
    return problems


def check_host_paths(compose: dict[str, Any], root: Path) -> list[str]:
    """Bind mounts, env_files, build contexts and config/secret files exist in the repository."""
    problems = []
    for name, service in services_of(compose).items():
        for kind, source, _ in volume_mounts(service):
            relative = source.startswith(("./", "../"))
            if kind == "bind" and relative and not (root / source).exists():
                problems.append(f"{name}: bind-mounted path {source!r} does not exist")
        env_files = service.get("env_file") or []
        for entry in [env_files] if isinstance(env_files, str | dict) else env_files:
            path = entry.get("path") if isinstance(entry, dict) else entry
            required = entry.get("required", True) if isinstance(entry, dict) else True
            if required and not (root / str(path)).is_file():
                problems.append(f"{name}: env_file {path!r} does not exist")
        build = service.get("build")
        if build:
            context = build if isinstance(build, str) else build.get("context", ".")
            if not (root / context).is_dir():
                problems.append(f"{name}: build context {context!r} does not exist")
    for section in ("configs", "secrets"):
        for key, spec in (compose.get(section) or {}).items():
            path = (spec or {}).get("file")
            if path and not (root / path).is_file():
                problems.append(f"{section}.{key}: file {path!r} does not exist")
    return problems


def check_named_volumes(compose: dict[str, Any]) -> list[str]:
    declared = set(compose.get("volumes") or {})
    used: dict[str, list[str]] = {}
    for name, service in services_of(compose).items():
        for kind, source, _ in volume_mounts(service):
            if kind == "volume":
                used.setdefault(source, []).append(name)
    problems = [
        f"named volume {volume!r} (used by {', '.join(users)}) is not declared under `volumes:`"
        for volume, users in sorted(used.items())
        if volume not in declared
    ]
    problems += [
        f"volume {volume!r} is declared but no service uses it"
        for volume in sorted(declared - set(used))
    ]
    return problems


def check_stateful_volumes(compose: dict[str, Any], stateful: frozenset[str]) -> list[str]:
    services = services_of(compose)
    return [
        f"{name}: stateful service without a named volume (its data would not survive)"
        for name in sorted(stateful & set(services))
        if not any(kind == "volume" for kind, _, _ in volume_mounts(services[name]))
    ]


def check_secrets(compose: dict[str, Any]) -> list[str]:
    """Secret-looking variables are `${VAR:?message}` references; URLs carry no literal password."""
    problems = []
    for name, service in services_of(compose).items():
        for key, value in environment_of(service).items():
            if SECRET_KEY.search(key) and not REQUIRED_VARIABLE.fullmatch(value):
                problems.append(
                    f"{name}: {key} must be a required reference like ${{VAR:?message}} "
                    f"(no literal, no default), got {value!r}"
                )
            for match in URL_USERINFO.finditer(value):
                password = userinfo_password(match.group(1))
                if password is not None and not REQUIRED_VARIABLE.fullmatch(password):
                    problems.append(
                        f"{name}: {key} has a URL whose password is not a ${{VAR:?message}} "
                        "reference"
                    )
    return problems


# `KEY: value` (YAML) or `KEY=value` (list form, flags) where the value is not a `$` reference.
LITERAL_SECRET = re.compile(r"(?i)\w*(password|secret|token)\w*(:\s+|=)(?![\"']?\$)\S+")


def find_literal_secrets(text: str) -> list[str]:
    """Anywhere in the file (commands, configs, ...), not only under `environment:`."""
    return [
        f"line {number}: {line.strip()}"
        for number, line in enumerate(text.splitlines(), start=1)
        if not line.lstrip().startswith("#") and LITERAL_SECRET.search(line)
    ]


def check_loopback_ports(compose: dict[str, Any]) -> list[str]:
    problems = []
    for name, service in services_of(compose).items():
        for host_ip, published, target in port_mappings(service):
            if host_ip != LOOPBACK:
                shown = ":".join(p for p in (host_ip, published, target) if p)
                problems.append(
                    f"{name}: port {shown!r} is published on every interface; "
                    f'bind it to {LOOPBACK} (e.g. "{LOOPBACK}:{published or target}:{target}")'
                )
    return problems


def check_ports_match_config(compose: dict[str, Any], config: Config) -> list[str]:
    """Each service address in the config names a compose service listening on that port."""
    services = services_of(compose)
    problems = []
    for setting, address in config_endpoints(config):
        scheme = urlsplit(address).scheme if "://" in address else ""
        host, port = host_and_port(address, DEFAULT_PORTS.get(scheme, 0))
        if host not in services:
            problems.append(f"{setting} = {address!r}: no compose service named {host!r}")
        elif port not in container_ports(services[host]):
            problems.append(
                f"{setting} = {address!r}: service {host!r} does not expose port {port} "
                f"(it has {sorted(container_ports(services[host]))})"
            )
    return problems


def check_depends_on(compose: dict[str, Any]) -> list[str]:
    """Dependencies name real services and wait for them to be healthy, not just started."""
    services = services_of(compose)
    problems = []
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        conditions = (
            dict.fromkeys(depends, None)
            if isinstance(depends, list)
            else {dep: (spec or {}).get("condition") for dep, spec in depends.items()}
        )
        for dep, condition in conditions.items():
            if dep not in services:
                problems.append(f"{name}: depends_on unknown service {dep!r}")
            elif condition != "service_healthy":
                problems.append(
                    f"{name}: depends_on {dep!r} does not wait for health "
                    "(use `condition: service_healthy`)"
                )
    return problems


def check_pipeline_services(
    compose: dict[str, Any], config: Config, pipeline: frozenset[str]
) -> list[str]:
    """Pipeline containers run conf/prod.yaml and share one named volume at the warehouse path."""
    services = services_of(compose)
    problems = []
    warehouse_volumes: dict[str, str] = {}
    for name in sorted(pipeline & set(services)):
        service = services[name]
        env = environment_of(service).get("LAKEHOUSE_ENV")
        if env != config.environment:
            problems.append(f"{name}: LAKEHOUSE_ENV is {env!r}, expected {config.environment!r}")
        mounts = [
            (kind, source)
            for kind, source, target in volume_mounts(service)
            if target == config.warehouse
        ]
        if not mounts or mounts[0][0] != "volume":
            problems.append(f"{name}: no named volume mounted at {config.warehouse}")
        else:
            warehouse_volumes[name] = mounts[0][1]
    if len(set(warehouse_volumes.values())) > 1:
        problems.append(f"pipeline services mount different warehouse volumes: {warehouse_volumes}")
    return problems


# ---------------------------------------------------------------------------------------------
# The real file
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    assert COMPOSE_FILE.is_file(), f"{COMPOSE_FILE} is missing"
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict), "docker-compose.yml must hold a mapping"
    return data


@pytest.fixture(scope="module")
def prod_config() -> Config:
    # File values only: an override exported in the shell must not change what is checked.
    return load_config("prod", environ={})


REAL_FILE_CHECKS: dict[str, Callable[[dict[str, Any], Config], list[str]]] = {
    "services": lambda c, _: check_service_names(c, EXPECTED_SERVICES),
    "images": lambda c, _: check_images(c, REPO_ROOT),
    "healthchecks": lambda c, _: check_healthchecks(c),
    "host_paths": lambda c, _: check_host_paths(c, REPO_ROOT),
    "named_volumes": lambda c, _: check_named_volumes(c),
    "stateful_volumes": lambda c, _: check_stateful_volumes(c, STATEFUL_SERVICES),
    "secrets": lambda c, _: check_secrets(c),
    "ports_match_config": check_ports_match_config,
    "loopback_ports": lambda c, _: check_loopback_ports(c),
    "depends_on": lambda c, _: check_depends_on(c),
    "pipeline_services": lambda c, cfg: check_pipeline_services(c, cfg, PIPELINE_SERVICES),
}


@pytest.mark.parametrize("check", sorted(REAL_FILE_CHECKS))
def test_compose_file(check: str, compose: dict[str, Any], prod_config: Config) -> None:
    problems = REAL_FILE_CHECKS[check](compose, prod_config)
    assert problems == [], f"docker-compose.yml, {check}:\n  " + "\n  ".join(problems)


def test_no_literal_secret_anywhere_in_the_file() -> None:
    problems = find_literal_secrets(COMPOSE_FILE.read_text())
    assert problems == [], "literal secrets in docker-compose.yml:\n  " + "\n  ".join(problems)


def test_postgres_role_and_database_match_prod_dsn(
    compose: dict[str, Any], prod_config: Config
) -> None:
    dsn = urlsplit(prod_config.postgres.dsn)
    env = environment_of(services_of(compose)["postgres"])
    assert env.get("POSTGRES_USER") == dsn.username, "POSTGRES_USER differs from postgres.dsn"
    assert env.get("POSTGRES_DB") == dsn.path.lstrip("/"), "POSTGRES_DB differs from postgres.dsn"


def test_postgres_init_script_reads_passwords_from_environment() -> None:
    script = REPO_ROOT / "conf" / "postgres" / "init-databases.sh"
    text = script.read_text()
    for variable in ("MLFLOW_DB_PASSWORD", "SUPERSET_DB_PASSWORD"):
        assert f"${{{variable}:?" in text, f"{script.name} must require {variable} from the env"
    assert not re.search(r"(?i)password\s+'[^':]", text), f"{script.name} has a literal password"


# ---------------------------------------------------------------------------------------------
# The checks fail on bad input
# ---------------------------------------------------------------------------------------------

HEALTHY = {"test": ["CMD", "true"]}


def one_service(**service: Any) -> dict[str, Any]:
    return {"services": {"bad": service}}


def test_bad_service_is_reported_for_latest_tag_and_missing_healthcheck() -> None:
    bad = one_service(image="foo:latest")
    assert check_images(bad, REPO_ROOT) == ["bad: image 'foo:latest' uses a floating `latest` tag"]
    assert check_healthchecks(bad) == ["bad: no healthcheck"]


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("foo", "has no tag"),
        ("registry.local:5000/team/foo", "has no tag"),
        ("foo:3-latest", "floating `latest` tag"),
        ("postgres:15", "is not an exact version"),
        ("prefecthq/prefect:stable", "is not an exact version"),
    ],
)
def test_unpinned_images_are_reported(image: str, expected: str) -> None:
    problems = check_images(one_service(image=image, healthcheck=HEALTHY), REPO_ROOT)
    assert len(problems) == 1 and expected in problems[0], problems


@pytest.mark.parametrize(
    "image",
    ["postgres:15.20", "ghcr.io/mlflow/mlflow:v3.17.2", "registry:5000/x:1.2.3", "q/x:2024-10-14"],
)
def test_pinned_images_pass(image: str) -> None:
    assert check_images(one_service(image=image), REPO_ROOT) == []


def test_build_needs_an_existing_context() -> None:
    assert check_images(one_service(build="./conf"), REPO_ROOT) == []
    assert check_images(one_service(build={"context": "./nope"}), REPO_ROOT) == [
        "bad: build context './nope' does not exist"
    ]
    assert check_images(one_service(), REPO_ROOT) == ["bad: neither `image` nor `build`"]


@pytest.mark.parametrize(
    "healthcheck",
    [{"test": []}, {"test": ["NONE"]}, {"test": ["CMD-SHELL", " "]}, {"disable": True}, {}],
)
def test_empty_or_disabled_healthchecks_are_reported(healthcheck: dict[str, Any]) -> None:
    problems = check_healthchecks(one_service(image="x:1.0", healthcheck=healthcheck))
    assert len(problems) == 1 and problems[0].startswith("bad: "), problems


def test_missing_host_paths_are_reported() -> None:
    bad = one_service(
        volumes=["./does-not-exist:/x:ro", "./conf:/conf:ro", "data:/data"],
        env_file=[".env.missing"],
    )
    bad["configs"] = {"cfg": {"file": "./nope.py"}, "inline": {"content": "x = 1"}}
    assert check_host_paths(bad, REPO_ROOT) == [
        "bad: bind-mounted path './does-not-exist' does not exist",
        "bad: env_file '.env.missing' does not exist",
        "configs.cfg: file './nope.py' does not exist",
    ]


def test_undeclared_and_unused_named_volumes_are_reported() -> None:
    bad = one_service(volumes=["data:/data", {"type": "volume", "source": "logs", "target": "/l"}])
    bad["volumes"] = {"logs": None, "orphan": None}
    assert check_named_volumes(bad) == [
        "named volume 'data' (used by bad) is not declared under `volumes:`",
        "volume 'orphan' is declared but no service uses it",
    ]
    stateless = {"services": {"postgres": {"volumes": ["./conf:/conf"]}}}
    assert check_stateful_volumes(stateless, STATEFUL_SERVICES) == [
        "postgres: stateful service without a named volume (its data would not survive)"
    ]


@pytest.mark.parametrize(
    "environment",
    [
        {"POSTGRES_PASSWORD": "hunter2"},
        {"POSTGRES_PASSWORD": "${PG_PASSWORD:-hunter2}"},
        {"POSTGRES_PASSWORD": "${PG_PASSWORD}"},
        {"SUPERSET_SECRET_KEY": "prefix-${KEY:?set KEY}"},
        ["JUPYTER_TOKEN=abc123"],
        {"DATABASE_URL": "postgresql://app:hunter2@db:5432/app"},
        {"MONGO_URI": "mongodb://app:${PW:-x}@mongo:27017/"},
    ],
)
def test_literal_or_defaulted_secrets_are_reported(environment: Any) -> None:
    problems = check_secrets(one_service(environment=environment))
    assert len(problems) == 1 and problems[0].startswith("bad: "), problems


def test_required_secret_references_pass() -> None:
    good = one_service(
        environment={
            "POSTGRES_PASSWORD": "${PG_PASSWORD:?set PG_PASSWORD}",
            "MONGO_URI": "mongodb://${USER:?u}:${PW:?set PW}@mongo:27017/?authSource=admin",
            "PREFECT_API_URL": "http://prefect-server:4200/api",
        }
    )
    assert check_secrets(good) == []


def test_literal_secrets_in_the_text_are_reported() -> None:
    text = "\n".join(
        [
            "  POSTGRES_PASSWORD: hunter2",
            "  - JUPYTER_TOKEN=abc123",
            "    --password=hunter2",
            '  POSTGRES_PASSWORD: "${PG_PASSWORD:?set it}"',
            '    --password "$${ADMIN_PASSWORD}"',
            '  SECRET_KEY = os.environ["SUPERSET_SECRET_KEY"]',
            "  # POSTGRES_PASSWORD: example in a comment",
        ]
    )
    assert [p.split(":")[0] for p in find_literal_secrets(text)] == ["line 1", "line 2", "line 3"]


def test_ports_on_every_interface_are_reported() -> None:
    bad = one_service(
        ports=[
            "9092:9092",
            "8080",
            "0.0.0.0:5432:5432",
            {"target": 80, "published": 8081},
            "127.0.0.1:9200:9200",
            {"target": 443, "published": 8443, "host_ip": "127.0.0.1"},
        ]
    )
    problems = check_loopback_ports(bad)
    assert [p.split("'")[1] for p in problems] == [
        "9092:9092",
        "8080",
        "0.0.0.0:5432:5432",
        "8081:80",
    ]


def test_ports_that_do_not_match_the_config_are_reported(prod_config: Config) -> None:
    bad = {
        "services": {
            "kafka": {"ports": ["127.0.0.1:9093:9093"]},
            "mongo": {"expose": ["27017"]},
            "postgres": {"ports": ["127.0.0.1:5432:5432"]},
            "spark-master": {"ports": ["127.0.0.1:8080:8080"]},
        }
    }
    assert check_ports_match_config(bad, prod_config) == [
        "kafka.bootstrap = 'kafka:9092': service 'kafka' does not expose port 9092 (it has [9093])",
        "elasticsearch.url = 'http://elasticsearch:9200': no compose service named 'elasticsearch'",
        "spark.master = 'spark://spark-master:7077': service 'spark-master' does not expose port "
        "7077 (it has [8080])",
    ]


def test_depends_on_without_health_condition_is_reported() -> None:
    bad = {
        "services": {
            "a": {"depends_on": ["b"]},
            "b": {"depends_on": {"a": {"condition": "service_started"}, "ghost": {}}},
        }
    }
    assert check_depends_on(bad) == [
        "a: depends_on 'b' does not wait for health (use `condition: service_healthy`)",
        "b: depends_on 'a' does not wait for health (use `condition: service_healthy`)",
        "b: depends_on unknown service 'ghost'",
    ]


def test_pipeline_services_without_prod_env_or_warehouse_are_reported(prod_config: Config) -> None:
    bad = {
        "services": {
            "jupyter": {
                "environment": {"LAKEHOUSE_ENV": "local"},
                "volumes": ["wh:/data/warehouse"],
            },
            "spark-worker": {
                "environment": ["LAKEHOUSE_ENV=prod"],
                "volumes": ["./x:/data/warehouse"],
            },
        }
    }
    assert check_pipeline_services(bad, prod_config, PIPELINE_SERVICES) == [
        "jupyter: LAKEHOUSE_ENV is 'local', expected 'prod'",
        "spark-worker: no named volume mounted at /data/warehouse",
    ]
