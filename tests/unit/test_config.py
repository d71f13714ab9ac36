"""Unit tests for lakehouse.config: file layering, env overrides, validation, path resolution.

Every test passes `conf_dir=` and `environ=` explicitly, so the real process environment
(LAKEHOUSE_ENV, LAKEHOUSE_WAREHOUSE, ...) never leaks in.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from lakehouse.config import (
    ENV_OVERRIDES,
    PROJECT_ROOT,
    Config,
    ConfigError,
    ElasticsearchConfig,
    IngestConfig,
    KafkaConfig,
    MongoConfig,
    PostgresConfig,
    SparkConfig,
    StackConfig,
    is_uri,
    join_uri,
    load_config,
    postgres_password,
)

# ---------------------------------------------------------------------------------------------
# helpers


def write_conf(folder: Path, **files: str) -> Path:
    """Write `<name>.yaml` files (dedented) into `folder` and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(textwrap.dedent(text))
    return folder


def load(folder: Path, env: str = "dev", environ: dict[str, str] | None = None) -> Config:
    return load_config(env, conf_dir=folder, environ=environ or {})


def with_dotted(obj: Any, dotted: str, value: Any) -> Any:
    """`dataclasses.replace` along a dotted path: with_dotted(cfg, "spark.master", "x")."""
    head, _, rest = dotted.partition(".")
    if not rest:
        return replace(obj, **{head: value})
    return replace(obj, **{head: with_dotted(getattr(obj, head), rest, value)})


def root(*parts: str) -> str:
    return str(PROJECT_ROOT.joinpath(*parts))


# The dataclass defaults after relative paths are resolved against the project root.
DEFAULTS = Config(
    environment="dev",
    warehouse=root("state", "warehouse"),
    state_dir=root("state"),
    spark=SparkConfig(jars_dir=root("build", "jars", "spark")),
)

# What conf/base.yaml says, spelled out literally (not taken from the dataclass defaults).
REPO_BASE = Config(
    environment="local",
    warehouse=root("state", "warehouse"),
    checkpoints="",
    state_dir=root("state"),
    spark=SparkConfig(
        master="local[*]",
        app_name="lakehouse",
        driver_memory="2g",
        shuffle_partitions=8,
        listing_parallelism=8,
        ui_enabled=True,
        log_level="WARN",
        jars_dir=root("build", "jars", "spark"),
        extra_conf={},
    ),
    kafka=KafkaConfig(bootstrap="127.0.0.1:9092", topic="plans.cdc"),
    mongo=MongoConfig(uri="mongodb://127.0.0.1:27017/", database="healthcare", collection="plans"),
    postgres=PostgresConfig(dsn="postgresql://lakehouse@127.0.0.1:5432/lakehouse"),
    elasticsearch=ElasticsearchConfig(url="http://127.0.0.1:9200", index="plans"),
    stack=StackConfig(
        kafka_controller_port=9093,
        kafka_heap="512m",
        elasticsearch_heap="1g",
        elasticsearch_transport_port=9300,
        ferretdb_database="ferretdb",
        postgres_fsync=True,
        startup_timeout_s=180,
    ),
)

REPO_EXPECTED = {
    "local": replace(REPO_BASE, spark=replace(REPO_BASE.spark, log_level="ERROR")),
    "test": replace(
        REPO_BASE,
        environment="test",
        warehouse=root("state", "test-warehouse"),
        spark=replace(
            REPO_BASE.spark,
            app_name="lakehouse-tests",
            driver_memory="2g",
            shuffle_partitions=2,
            ui_enabled=False,
            log_level="ERROR",
            extra_conf={
                "spark.sql.streaming.minBatchesToRetain": "5",
                "spark.ui.retainedJobs": "2000",
                "spark.ui.retainedStages": "4000",
            },
        ),
        kafka=replace(REPO_BASE.kafka, delivery_timeout_s=10.0),
        ingest=replace(REPO_BASE.ingest, derived_trigger_interval_s=2.0),
        stack=replace(REPO_BASE.stack, postgres_fsync=False),
        # the tests compare the refresh path with the rebuild, so neither may pick the other
        gold=replace(REPO_BASE.gold, choose_by_cost=False),
    ),
    "prod": replace(
        REPO_BASE,
        environment="prod",
        warehouse="/data/warehouse",
        spark=replace(
            REPO_BASE.spark,
            master="spark://spark-master:7077",
            driver_memory="4g",
            shuffle_partitions=64,
            listing_parallelism=64,
            ui_enabled=True,
        ),
        kafka=replace(REPO_BASE.kafka, bootstrap="kafka:9092"),
        mongo=replace(REPO_BASE.mongo, uri="mongodb://mongo:27017/"),
        postgres=PostgresConfig(dsn="postgresql://lakehouse@postgres:5432/lakehouse"),
        elasticsearch=replace(REPO_BASE.elasticsearch, url="http://elasticsearch:9200"),
    ),
}


# ---------------------------------------------------------------------------------------------
# the real repository conf


@pytest.mark.parametrize("environment", ["local", "test", "prod"])
def test_repo_conf_loads_for_each_environment(environment: str) -> None:
    config = load_config(environment, environ={})
    assert config == REPO_EXPECTED[environment]


@pytest.mark.parametrize(
    ("environment", "checkpoint_root"),
    [
        ("local", root("state", "warehouse", "_checkpoints")),
        ("test", root("state", "test-warehouse", "_checkpoints")),
        ("prod", "/data/warehouse/_checkpoints"),
    ],
)
def test_repo_conf_checkpoint_root(environment: str, checkpoint_root: str) -> None:
    assert load_config(environment, environ={}).checkpoint_root == checkpoint_root


def test_repo_conf_known_environments_listed_when_unknown() -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_config("nope", environ={})
    message = str(excinfo.value)
    assert "'nope'" in message
    assert "known environments: local, prod, test" in message


# ---------------------------------------------------------------------------------------------
# layering: base + environment file


def test_empty_files_give_the_dataclass_defaults(tmp_path: Path) -> None:
    folder = write_conf(tmp_path, base="# nothing\n", dev="")
    assert load(folder) == DEFAULTS


def test_base_file_is_optional(tmp_path: Path) -> None:
    folder = write_conf(tmp_path, dev="kafka:\n  topic: only.env\n")
    assert load(folder) == with_dotted(DEFAULTS, "kafka.topic", "only.env")


def test_env_file_deep_merges_over_base(tmp_path: Path) -> None:
    folder = write_conf(
        tmp_path,
        base="""\
            warehouse: /lake/base
            spark:
              master: local[4]
              app_name: base-app
              shuffle_partitions: 16
              extra_conf:
                spark.a: one
                spark.b: two
            kafka:
              bootstrap: base-kafka:9092
              topic: base.topic
            stack:
              kafka_heap: 256m
              postgres_fsync: true
            """,
        dev="""\
            spark:
              master: local[2]
              extra_conf:
                spark.b: three
            kafka:
              topic: dev.topic
            stack:
              postgres_fsync: false
            """,
    )
    expected = replace(
        DEFAULTS,
        warehouse="/lake/base",
        spark=replace(
            DEFAULTS.spark,
            master="local[2]",  # env overrides
            app_name="base-app",  # untouched base key kept
            shuffle_partitions=16,
            extra_conf={"spark.a": "one", "spark.b": "three"},  # merged one level deeper too
        ),
        kafka=KafkaConfig(bootstrap="base-kafka:9092", topic="dev.topic"),
        stack=replace(DEFAULTS.stack, kafka_heap="256m", postgres_fsync=False),
    )
    assert load(folder) == expected


def test_environment_and_conf_dir_selected_from_environ(tmp_path: Path) -> None:
    folder = write_conf(tmp_path, base="", staging="kafka:\n  topic: staging.topic\n")
    config = load_config(environ={"LAKEHOUSE_ENV": "staging", "LAKEHOUSE_CONF_DIR": str(folder)})
    expected = replace(
        DEFAULTS, environment="staging", kafka=replace(DEFAULTS.kafka, topic="staging.topic")
    )
    assert config == expected


def test_explicit_environment_beats_lakehouse_env(tmp_path: Path) -> None:
    folder = write_conf(tmp_path, base="", dev="", prod="")
    config = load_config("dev", conf_dir=folder, environ={"LAKEHOUSE_ENV": "prod"})
    assert config == DEFAULTS


# ---------------------------------------------------------------------------------------------
# environment variable overrides

# A plausible raw value for every override and the value the config must then hold.
PLAUSIBLE: dict[str, tuple[str, Any]] = {
    "LAKEHOUSE_WAREHOUSE": ("s3a://lake-bucket/healthcare", "s3a://lake-bucket/healthcare"),
    "LAKEHOUSE_CHECKPOINTS": ("/srv/lakehouse/checkpoints", "/srv/lakehouse/checkpoints"),
    "LAKEHOUSE_STATE_DIR": ("/srv/lakehouse/state", "/srv/lakehouse/state"),
    "LAKEHOUSE_SPARK_MASTER": ("spark://spark-master:7077", "spark://spark-master:7077"),
    "LAKEHOUSE_SPARK_DRIVER_MEMORY": ("6g", "6g"),
    "LAKEHOUSE_SPARK_UI": ("false", False),
    "LAKEHOUSE_SPARK_JVM_OPTIONS": ("-XX:TieredStopAtLevel=1", "-XX:TieredStopAtLevel=1"),
    "LAKEHOUSE_KAFKA_BOOTSTRAP": ("kafka-1:9092,kafka-2:9092", "kafka-1:9092,kafka-2:9092"),
    "LAKEHOUSE_KAFKA_TOPIC": ("plans.cdc.v2", "plans.cdc.v2"),
    # Credentials are allowed in the environment (just not in committed conf files).
    "LAKEHOUSE_MONGO_URI": (
        "mongodb://reader:pw@mongo.internal:27017/?authSource=admin",
        "mongodb://reader:pw@mongo.internal:27017/?authSource=admin",
    ),
    "LAKEHOUSE_MONGO_DATABASE": ("healthcare_staging", "healthcare_staging"),
    "LAKEHOUSE_POSTGRES_DSN": (
        "postgresql://etl@pg.internal:5432/warehouse",
        "postgresql://etl@pg.internal:5432/warehouse",
    ),
    "LAKEHOUSE_ES_URL": ("https://es.internal:9243", "https://es.internal:9243"),
    "LAKEHOUSE_ES_INDEX": ("plans-v2", "plans-v2"),
    "LAKEHOUSE_INGEST_MAX_OFFSETS": ("500", 500),
    "LAKEHOUSE_INGEST_TRIGGER_S": ("0.5", 0.5),
    "LAKEHOUSE_INGEST_SILVER_MAX_BYTES": ("1048576", 1048576),
    "LAKEHOUSE_INDEXER_MAX_BATCH": ("500", 500),
    "LAKEHOUSE_MLFLOW_TRACKING_URI": ("http://mlflow.internal:5000", "http://mlflow.internal:5000"),
    # A webhook URL may carry a token: the environment is where it belongs.
    "LAKEHOUSE_ALERT_WEBHOOK_URL": (
        "https://hooks.example.internal/T0/B1/token",
        "https://hooks.example.internal/T0/B1/token",
    ),
    "LAKEHOUSE_ALERT_PREFECT_BLOCK": ("slack-webhook/data-alerts", "slack-webhook/data-alerts"),
    "LAKEHOUSE_MIRROR_SCHEMA": ("gold_staging", "gold_staging"),
    "LAKEHOUSE_SUPERSET_ADMIN_USER": ("analyst_admin", "analyst_admin"),
    "LAKEHOUSE_API_PORT": ("18070", 18070),
    "LAKEHOUSE_API_PUBLIC_KEY_FILE": ("/etc/lakehouse/idp.pem", "/etc/lakehouse/idp.pem"),
    "LAKEHOUSE_API_JWKS_URL": ("https://idp.internal/jwks.json", "https://idp.internal/jwks.json"),
    "LAKEHOUSE_API_ISSUER": (
        "https://idp.internal/realms/plans",
        "https://idp.internal/realms/plans",
    ),
    "LAKEHOUSE_API_AUDIENCE": ("plan-api", "plan-api"),
    "LAKEHOUSE_API_HOST": ("0.0.0.0", "0.0.0.0"),
}

# Every overridable key also set in the files, so the test proves env beats both layers.
OVERRIDE_BASE = """\
    warehouse: /lake/from-base
    checkpoints: /lake/checkpoints-from-base
    state_dir: /lake/state-from-base
    spark:
      master: local[1]
      driver_memory: 1g
      ui_enabled: true
    kafka:
      bootstrap: base-kafka:9092
    mongo:
      uri: mongodb://base-mongo:27017/
      database: base_db
    postgres:
      dsn: postgresql://base@base-pg:5432/base
    elasticsearch:
      url: http://base-es:9200
    ingest:
      max_offsets_per_trigger: 100
      silver_max_bytes_per_trigger: 100
      trigger_interval_s: 5
    gold:
      mlflow_tracking_uri: sqlite:////lake/mlflow.db
    """
OVERRIDE_DEV = """\
    kafka:
      topic: dev.topic
    elasticsearch:
      index: dev-index
    """


@pytest.fixture
def override_conf(tmp_path: Path) -> Path:
    return write_conf(tmp_path, base=OVERRIDE_BASE, dev=OVERRIDE_DEV)


def test_required_overrides_exist() -> None:
    required = {
        "LAKEHOUSE_WAREHOUSE": "warehouse",
        "LAKEHOUSE_KAFKA_BOOTSTRAP": "kafka.bootstrap",
        "LAKEHOUSE_KAFKA_TOPIC": "kafka.topic",
        "LAKEHOUSE_MONGO_URI": "mongo.uri",
        "LAKEHOUSE_POSTGRES_DSN": "postgres.dsn",
        "LAKEHOUSE_ES_URL": "elasticsearch.url",
        "LAKEHOUSE_MONGO_DATABASE": "mongo.database",
    }
    assert {var: ENV_OVERRIDES.get(var) for var in required} == required


def test_defaults_of_overridable_topic_and_database(tmp_path: Path) -> None:
    config = load(write_conf(tmp_path, base="", dev=""))
    assert (config.kafka.topic, config.mongo.database) == ("plans.cdc", "healthcare")
    assert (KafkaConfig().topic, MongoConfig().database) == ("plans.cdc", "healthcare")


def test_every_override_has_a_plausible_value_here() -> None:
    assert sorted(PLAUSIBLE) == sorted(ENV_OVERRIDES)


@pytest.mark.parametrize(
    ("var", "dotted"), sorted(ENV_OVERRIDES.items()), ids=sorted(ENV_OVERRIDES)
)
def test_env_override_sets_dotted_key(override_conf: Path, var: str, dotted: str) -> None:
    raw, parsed = PLAUSIBLE[var]
    baseline = load(override_conf)
    expected = with_dotted(baseline, dotted, parsed)
    assert expected != baseline, "the plausible value must differ from the files' value"
    assert load(override_conf, environ={var: raw}) == expected


def test_all_overrides_together(override_conf: Path) -> None:
    environ = {var: raw for var, (raw, _) in PLAUSIBLE.items()}
    expected = load(override_conf)
    for var, dotted in ENV_OVERRIDES.items():
        expected = with_dotted(expected, dotted, PLAUSIBLE[var][1])
    assert load(override_conf, environ=environ) == expected


def test_empty_env_value_is_ignored(override_conf: Path) -> None:
    environ = dict.fromkeys(ENV_OVERRIDES, "")
    assert load(override_conf, environ=environ) == load(override_conf)


def test_relative_env_path_resolved_against_project_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # must not matter: paths are from the project root, not the cwd
    folder = write_conf(tmp_path / "conf", base="", dev="")
    config = load(folder, environ={"LAKEHOUSE_WAREHOUSE": "state/elsewhere"})
    assert config == replace(DEFAULTS, warehouse=root("state", "elsewhere"))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("false", False),
        ("1", True),
        ("0", False),
        ("yes", True),
        ("no", False),
        ("TRUE", True),
        (" No ", False),
        ("on", True),
        ("off", False),
    ],
)
def test_spark_ui_override_parses_booleans(override_conf: Path, raw: str, expected: bool) -> None:
    baseline = load(override_conf)
    config = load(override_conf, environ={"LAKEHOUSE_SPARK_UI": raw})
    assert config == with_dotted(baseline, "spark.ui_enabled", expected)


@pytest.mark.parametrize("raw", ["maybe", "2", "enabled", "t"])
def test_spark_ui_override_rejects_non_booleans(override_conf: Path, raw: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load(override_conf, environ={"LAKEHOUSE_SPARK_UI": raw})
    message = str(excinfo.value)
    assert "LAKEHOUSE_SPARK_UI" in message
    assert repr(raw) in message
    assert "spark.ui_enabled" in message


def test_env_override_into_scalar_section_is_a_config_error(tmp_path: Path) -> None:
    folder = write_conf(tmp_path, base="", dev="kafka: oops\n")
    with pytest.raises(ConfigError, match="kafka"):
        load(folder, environ={"LAKEHOUSE_KAFKA_TOPIC": "t"})


# ---------------------------------------------------------------------------------------------
# unknown keys and wrong types


@pytest.mark.parametrize("file", ["base", "dev"])
@pytest.mark.parametrize(
    ("text", "dotted"),
    [
        ("colour: blue\n", "colour"),
        ("spark:\n  mastr: local[2]\n", "spark.mastr"),
        ("stack:\n  kafka_heapp: 1g\n", "stack.kafka_heapp"),
        ("elasticsearch:\n  urls: [http://x:9200]\n", "elasticsearch.urls"),
    ],
)
def test_unknown_key_names_dotted_key_and_file(
    tmp_path: Path, file: str, text: str, dotted: str
) -> None:
    files = {"base": "", "dev": ""} | {file: text}
    folder = write_conf(tmp_path, **files)
    with pytest.raises(ConfigError) as excinfo:
        load(folder)
    message = str(excinfo.value)
    assert f"unknown key {dotted!r}" in message
    assert f"{file}.yaml" in message


@pytest.mark.parametrize(
    ("text", "dotted"),
    [
        ('spark:\n  shuffle_partitions: "eight"\n', "spark.shuffle_partitions must be an integer"),
        ("spark:\n  shuffle_partitions: true\n", "spark.shuffle_partitions must be an integer"),
        ("stack:\n  startup_timeout_s: 1.5\n", "stack.startup_timeout_s must be an integer"),
        ('spark:\n  ui_enabled: "yes"\n', "spark.ui_enabled must be true or false"),
        ("stack:\n  postgres_fsync: 0\n", "stack.postgres_fsync must be true or false"),
        ("kafka:\n  topic: [a, b]\n", "kafka.topic must be a string"),
        ("warehouse: 5\n", "warehouse must be a string"),
        ("mongo:\n  database: {name: x}\n", "mongo.database must be a string"),
        ("spark: 5\n", "spark must be a mapping"),
        ("kafka: just-a-string\n", "kafka must be a mapping"),
        ("stack: [1, 2]\n", "stack must be a mapping"),
        ("spark:\n  extra_conf: [a, b]\n", "spark.extra_conf must be a mapping"),
    ],
)
def test_wrong_type_names_the_key(tmp_path: Path, text: str, dotted: str) -> None:
    folder = write_conf(tmp_path, base="", dev=text)
    with pytest.raises(ConfigError) as excinfo:
        load(folder)
    message = str(excinfo.value)
    assert dotted in message
    assert "dev.yaml" in message


@pytest.mark.parametrize("text", ["postgres: oops\n", "mongo: [1, 2]\n"])
def test_scalar_secret_section_is_a_config_error(tmp_path: Path, text: str) -> None:
    folder = write_conf(tmp_path, base="", dev=text)
    with pytest.raises(ConfigError, match="must be a mapping"):
        load(folder)


# ---------------------------------------------------------------------------------------------
# missing / unreadable files


def test_missing_environment_file_lists_known_environments(tmp_path: Path) -> None:
    folder = write_conf(tmp_path, base="", dev="", prod="")
    with pytest.raises(ConfigError) as excinfo:
        load(folder, env="staging")
    message = str(excinfo.value)
    assert "'staging'" in message
    assert str(folder / "staging.yaml") in message
    assert "known environments: dev, prod;" in message
    assert "LAKEHOUSE_ENV" in message


def test_missing_environment_in_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"known environments: none"):
        load(tmp_path / "does-not-exist")


@pytest.mark.parametrize("file", ["base", "dev"])
def test_invalid_yaml_names_the_file(tmp_path: Path, file: str) -> None:
    folder = write_conf(tmp_path, **({"base": "", "dev": ""} | {file: "spark: [unclosed\n"}))
    with pytest.raises(ConfigError) as excinfo:
        load(folder)
    assert f"{folder / (file + '.yaml')} is not valid YAML" in str(excinfo.value)


@pytest.mark.parametrize(
    ("text", "type_name"), [("- a\n- b\n", "list"), ("just a string\n", "str"), ("42\n", "int")]
)
def test_non_mapping_top_level_names_the_file(tmp_path: Path, text: str, type_name: str) -> None:
    folder = write_conf(tmp_path, base="", dev=text)
    with pytest.raises(ConfigError) as excinfo:
        load(folder)
    assert str(excinfo.value) == (
        f"{folder / 'dev.yaml'} must hold a mapping at the top level, got {type_name}"
    )


# ---------------------------------------------------------------------------------------------
# secrets


@pytest.mark.parametrize("file", ["base", "dev"])
@pytest.mark.parametrize(
    ("text", "key", "hint"),
    [
        (
            "postgres:\n  dsn: postgresql://lakehouse:s3cret@db:5432/lakehouse\n",
            "postgres.dsn",
            "LAKEHOUSE_POSTGRES_PASSWORD",
        ),
        (
            "mongo:\n  uri: mongodb://admin:s3cret@mongo:27017/\n",
            "mongo.uri",
            "LAKEHOUSE_MONGO_URI",
        ),
        (
            "mongo:\n  uri: mongodb+srv://admin:s3cret@cluster0.example.net/\n",
            "mongo.uri",
            "LAKEHOUSE_MONGO_URI",
        ),
    ],
)
def test_password_in_conf_file_is_refused(
    tmp_path: Path, file: str, text: str, key: str, hint: str
) -> None:
    folder = write_conf(tmp_path, **({"base": "", "dev": ""} | {file: text}))
    with pytest.raises(ConfigError) as excinfo:
        load(folder)
    message = str(excinfo.value)
    assert f"{key} must not contain a password" in message
    assert hint in message
    assert f"{file}.yaml" in message
    assert "s3cret" not in message  # the error must not echo the secret


def test_urls_without_password_are_fine(tmp_path: Path) -> None:
    folder = write_conf(
        tmp_path,
        base="",
        dev="""\
            postgres:
              dsn: postgresql://lakehouse@db:5432/lakehouse
            mongo:
              uri: mongodb://reader@mongo:27017/
            """,
    )
    expected = replace(
        DEFAULTS,
        postgres=PostgresConfig(dsn="postgresql://lakehouse@db:5432/lakehouse"),
        mongo=replace(DEFAULTS.mongo, uri="mongodb://reader@mongo:27017/"),
    )
    assert load(folder) == expected


def test_postgres_password_comes_from_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEHOUSE_POSTGRES_PASSWORD", "pw")
    assert postgres_password() == "pw"
    monkeypatch.setenv("LAKEHOUSE_POSTGRES_PASSWORD", "")
    assert postgres_password() is None
    monkeypatch.delenv("LAKEHOUSE_POSTGRES_PASSWORD")
    assert postgres_password() is None


# ---------------------------------------------------------------------------------------------
# paths


def test_relative_local_paths_resolved_against_project_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    folder = write_conf(
        tmp_path / "conf",
        base="",
        dev="""\
            warehouse: data/wh
            checkpoints: data/ckpt
            state_dir: var/state
            spark:
              jars_dir: jars
            """,
    )
    expected = replace(
        DEFAULTS,
        warehouse=root("data", "wh"),
        checkpoints=root("data", "ckpt"),
        state_dir=root("var", "state"),
        spark=replace(DEFAULTS.spark, jars_dir=root("jars")),
    )
    config = load(folder)
    assert config == expected
    assert config.checkpoint_root == root("data", "ckpt")
    assert config.state_path == PROJECT_ROOT / "var" / "state"


def test_absolute_paths_unchanged(tmp_path: Path) -> None:
    folder = write_conf(
        tmp_path / "conf",
        base="",
        dev=f"""\
            warehouse: {tmp_path}/wh
            checkpoints: {tmp_path}/ckpt
            state_dir: {tmp_path}/state
            spark:
              jars_dir: {tmp_path}/jars
            """,
    )
    expected = replace(
        DEFAULTS,
        warehouse=f"{tmp_path}/wh",
        checkpoints=f"{tmp_path}/ckpt",
        state_dir=f"{tmp_path}/state",
        spark=replace(DEFAULTS.spark, jars_dir=f"{tmp_path}/jars"),
    )
    assert load(folder) == expected


@pytest.mark.parametrize(
    ("warehouse", "checkpoints", "checkpoint_root"),
    [
        ("s3a://bucket/wh", "", "s3a://bucket/wh/_checkpoints"),
        ("s3a://bucket/wh/", "", "s3a://bucket/wh/_checkpoints"),
        ("file:///x", "", "file:///x/_checkpoints"),
        (
            "abfss://c@acct.dfs.core.windows.net/wh",
            "",
            "abfss://c@acct.dfs.core.windows.net/wh/_checkpoints",
        ),
        ("s3a://bucket/wh", "file:///x", "file:///x"),
        ("s3a://bucket/wh", "gs://other/ckpt", "gs://other/ckpt"),
    ],
)
def test_uris_unchanged_and_checkpoint_root(
    tmp_path: Path, warehouse: str, checkpoints: str, checkpoint_root: str
) -> None:
    folder = write_conf(
        tmp_path,
        base="",
        dev=f'warehouse: "{warehouse}"\ncheckpoints: "{checkpoints}"\n',
    )
    config = load(folder)
    assert config == replace(DEFAULTS, warehouse=warehouse, checkpoints=checkpoints)
    assert config.checkpoint_root == checkpoint_root


def test_checkpoint_root_defaults_under_resolved_warehouse(tmp_path: Path) -> None:
    config = load(write_conf(tmp_path, base="", dev="warehouse: lake\n"))
    assert config.checkpoints == ""  # empty is kept empty, not resolved to the project root
    assert config.checkpoint_root == root("lake", "_checkpoints")


def test_checkpoint_root_property_on_plain_dataclass() -> None:
    assert Config(warehouse="/w").checkpoint_root == "/w/_checkpoints"
    assert Config(warehouse="/w", checkpoints="/c").checkpoint_root == "/c"


@pytest.mark.parametrize(
    ("base", "parts", "expected"),
    [
        ("s3a://b/wh", ("bronze/x",), "s3a://b/wh/bronze/x"),
        ("s3a://b/wh/", ("/bronze/", "x/"), "s3a://b/wh/bronze/x"),
        ("/data/wh", ("silver", "plans"), "/data/wh/silver/plans"),
        ("file:///x", ("y",), "file:///x/y"),
        (
            "abfss://c@a.dfs.core.windows.net/wh",
            ("gold",),
            "abfss://c@a.dfs.core.windows.net/wh/gold",
        ),
    ],
)
def test_join_uri_keeps_scheme(base: str, parts: tuple[str, ...], expected: str) -> None:
    assert join_uri(base, *parts) == expected


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("s3a://bucket/wh", True),
        ("file:///x", True),
        ("file:/x", True),
        ("/data/wh", False),
        ("state/warehouse", False),
    ],
)
def test_is_uri(location: str, expected: bool) -> None:
    assert is_uri(location) is expected


# ---------------------------------------------------------------------------------------------
# spark.extra_conf


def test_extra_conf_scalars_are_stringified(tmp_path: Path) -> None:
    folder = write_conf(
        tmp_path,
        base="",
        dev="""\
            spark:
              extra_conf:
                spark.sql.adaptive.enabled: true
                spark.speculation: false
                spark.sql.streaming.minBatchesToRetain: 5
                spark.memory.fraction: 0.5
                spark.hadoop.fs.s3a.aws.credentials.provider: com.example.Provider
            """,
    )
    expected = with_dotted(
        DEFAULTS,
        "spark.extra_conf",
        {
            "spark.sql.adaptive.enabled": "true",
            "spark.speculation": "false",
            "spark.sql.streaming.minBatchesToRetain": "5",
            "spark.memory.fraction": "0.5",
            "spark.hadoop.fs.s3a.aws.credentials.provider": "com.example.Provider",
        },
    )
    assert load(folder) == expected


@pytest.mark.parametrize(
    "value", ["{nested: 1}", "[a, b]", "null"], ids=["mapping", "list", "null"]
)
def test_extra_conf_non_scalar_value_is_an_error(tmp_path: Path, value: str) -> None:
    folder = write_conf(tmp_path, base="", dev=f"spark:\n  extra_conf:\n    spark.foo: {value}\n")
    with pytest.raises(ConfigError) as excinfo:
        load(folder)
    message = str(excinfo.value)
    assert "spark.extra_conf.spark.foo must be a scalar" in message
    assert "dev.yaml" in message


@pytest.mark.parametrize(
    ("yaml_text", "fix"),
    [
        ("ingest:\n  max_offsets_per_trigger: 0\n", "ingest.max_offsets_per_trigger must be >= 1"),
        ("spark:\n  listing_parallelism: 0\n", "spark.listing_parallelism must be >= 1"),
        ("spark:\n  shuffle_partitions: 0\n", "spark.shuffle_partitions must be >= 1"),
        (
            "ingest:\n  silver_max_bytes_per_trigger: 0\n",
            "ingest.silver_max_bytes_per_trigger must be >= 1",
        ),
        ("ingest:\n  trigger_interval_s: -1\n", "ingest.trigger_interval_s must be >= 0"),
        ("ingest:\n  trigger_interval_s: soon\n", "ingest.trigger_interval_s must be a number"),
        ("ingest:\n  starting_offsets: newest\n", "must be earliest or latest"),
        ("ingest:\n  max_restarts: -2\n", "ingest.max_restarts must be >= 0"),
    ],
)
def test_bad_ingest_settings_name_the_key(tmp_path: Path, yaml_text: str, fix: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(fix)):
        load(write_conf(tmp_path, base="", dev=yaml_text))


@pytest.mark.parametrize(
    ("yaml_text", "fix"),
    [
        ("gold:\n  pair_min_support: 1.5\n", "gold.pair_min_support must be a share"),
        ("gold:\n  contamination: 0\n", "gold.contamination must be > 0 and < 0.5"),
        ("gold:\n  contamination: 0.7\n", "gold.contamination must be > 0 and < 0.5"),
        ("gold:\n  kmeans_k: 1\n", "gold.kmeans_k must be >= 2"),
        ("gold:\n  rule_z_threshold: -1\n", "gold.rule_z_threshold must be > 0"),
        ("gold:\n  model_alias: ''\n", "must not be empty"),
        ("gold:\n  kmeans_k: eight\n", "gold.kmeans_k must be an integer"),
    ],
)
def test_bad_gold_settings_name_the_key(tmp_path: Path, yaml_text: str, fix: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(fix)):
        load(write_conf(tmp_path, base="", dev=yaml_text))


@pytest.mark.parametrize(
    ("yaml_text", "fix"),
    [
        ("api:\n  port: 0\n", "api.port must be a TCP port"),
        ("api:\n  port: 8888\n", "api.port 8888 is also one of apps.*_port"),
        ("api:\n  host: localhost\n", "api.host must be an IP address to bind"),
        ("api:\n  max_page_size: 0\n", "api.max_page_size must be >= 1"),
        ("api:\n  default_page_size: 600\n", "api.default_page_size must be <= api.max_page_size"),
        ("api:\n  audience: ' '\n", "api.audience must not be empty"),
        ("api:\n  token_ttl_s: soon\n", "api.token_ttl_s must be an integer"),
    ],
)
def test_bad_api_settings_name_the_key(tmp_path: Path, yaml_text: str, fix: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(fix)):
        load(write_conf(tmp_path, base="", dev=yaml_text))


@pytest.mark.parametrize(
    ("yaml_text", "fix"),
    [
        ("quality:\n  sample_rows: -1\n", "quality.sample_rows must be >= 0"),
        ("quality:\n  row_count_max_drop: 1.5\n", "quality.row_count_max_drop must be a share"),
        ("quality:\n  mean_max_change: 0\n", "quality.mean_max_change must be a share"),
        ("quality:\n  gold_max_age_minutes: 0\n", "quality.gold_max_age_minutes must be > 0"),
        ("quality:\n  freshness_severity: fatal\n", "must be error or warning, got 'fatal'"),
        (
            "quality:\n  full_pass_weekday: Sun\n",
            "quality.full_pass_weekday must be one of monday, tuesday",
        ),
        ("quality:\n  alerts:\n    webhook_url: ftp://x\n", "webhook_url must be an http(s) URL"),
        ("quality:\n  alerts:\n    prefect_block: slack\n", "<block-type-slug>/<block-name>"),
        ("quality:\n  alerts:\n    attempts: 0\n", "attempts >= 1"),
        ("quality:\n  alerts:\n    channel: x\n", "unknown key 'quality.alerts.channel'"),
        ("serving:\n  schema: Gold-Mirror\n", "serving.schema must be a lower-case identifier"),
        ("serving:\n  bi_role: 'bi; drop'\n", "serving.bi_role must be a lower-case identifier"),
        ("serving:\n  attempts: 0\n", "serving.attempts must be >= 1"),
    ],
)
def test_bad_quality_settings_name_the_key(tmp_path: Path, yaml_text: str, fix: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(fix)):
        load(write_conf(tmp_path, base="", dev=yaml_text))


@pytest.mark.parametrize(
    ("yaml_text", "fix"),
    [
        ("maintenance:\n  zorder_weekday: 7\n", "maintenance.zorder_weekday must be 0 (Monday)"),
        ("maintenance:\n  vacuum_retain_hours: 24\n", "vacuum_retain_hours must be >= 168"),
        ("maintenance:\n  vacuum_retain_hours: week\n", "must be an integer"),
        ("maintenance:\n  optimize: true\n", "unknown key 'maintenance.optimize'"),
        ("kafka:\n  delivery_timeout_s: 1\n", "kafka.delivery_timeout_s must be >= 2 seconds"),
        ("kafka:\n  delivery_timeout_s: soon\n", "must be a number"),
    ],
)
def test_bad_maintenance_settings_name_the_key(tmp_path: Path, yaml_text: str, fix: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(fix)):
        load(write_conf(tmp_path, base="", dev=yaml_text))


def test_quality_reports_dir_resolves_from_the_project_root(tmp_path: Path) -> None:
    quality = load(write_conf(tmp_path, base="", dev="quality:\n  reports_dir: out/q\n")).quality
    assert quality.reports_dir == str(PROJECT_ROOT / "out/q")


def test_ingest_defaults_are_sane(tmp_path: Path) -> None:
    ingest = load(write_conf(tmp_path, base="", dev="")).ingest
    assert ingest == IngestConfig()
    assert (ingest.max_offsets_per_trigger, ingest.starting_offsets) == (20000, "earliest")
