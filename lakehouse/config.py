"""Configuration: `conf/base.yaml` merged with `conf/<env>.yaml`, then environment overrides.

Every key is declared in the dataclasses below; an unknown key or a value of the wrong type is a
`ConfigError` that names the key and the file it came from. Secrets never live in these files:
they are read from the environment by the code that needs them (see `postgres_password`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONF_DIR = PROJECT_ROOT / "conf"

ENV_SELECTOR = "LAKEHOUSE_ENV"
CONF_DIR_VAR = "LAKEHOUSE_CONF_DIR"
POSTGRES_PASSWORD_VAR = "LAKEHOUSE_POSTGRES_PASSWORD"

# Environment variable -> dotted config key. Values are parsed to the key's declared type.
ENV_OVERRIDES: dict[str, str] = {
    "LAKEHOUSE_WAREHOUSE": "warehouse",
    "LAKEHOUSE_CHECKPOINTS": "checkpoints",
    "LAKEHOUSE_STATE_DIR": "state_dir",
    "LAKEHOUSE_SPARK_MASTER": "spark.master",
    "LAKEHOUSE_SPARK_DRIVER_MEMORY": "spark.driver_memory",
    "LAKEHOUSE_SPARK_UI": "spark.ui_enabled",
    "LAKEHOUSE_SPARK_JVM_OPTIONS": "spark.jvm_options",
    "LAKEHOUSE_KAFKA_BOOTSTRAP": "kafka.bootstrap",
    "LAKEHOUSE_KAFKA_TOPIC": "kafka.topic",
    "LAKEHOUSE_MONGO_URI": "mongo.uri",
    "LAKEHOUSE_MONGO_DATABASE": "mongo.database",
    "LAKEHOUSE_POSTGRES_DSN": "postgres.dsn",
    "LAKEHOUSE_ES_URL": "elasticsearch.url",
    "LAKEHOUSE_ES_INDEX": "elasticsearch.index",
    "LAKEHOUSE_INGEST_MAX_OFFSETS": "ingest.max_offsets_per_trigger",
    "LAKEHOUSE_INGEST_TRIGGER_S": "ingest.trigger_interval_s",
    "LAKEHOUSE_INGEST_SILVER_MAX_BYTES": "ingest.silver_max_bytes_per_trigger",
    "LAKEHOUSE_INDEXER_MAX_BATCH": "indexer.max_batch_records",
    "LAKEHOUSE_MLFLOW_TRACKING_URI": "gold.mlflow_tracking_uri",
    "LAKEHOUSE_ALERT_WEBHOOK_URL": "quality.alerts.webhook_url",
    "LAKEHOUSE_ALERT_PREFECT_BLOCK": "quality.alerts.prefect_block",
    "LAKEHOUSE_MIRROR_SCHEMA": "serving.schema",
    "LAKEHOUSE_SUPERSET_ADMIN_USER": "apps.superset_admin_user",
    "LAKEHOUSE_API_PORT": "api.port",
    "LAKEHOUSE_API_PUBLIC_KEY_FILE": "api.public_key_file",
    "LAKEHOUSE_API_JWKS_URL": "api.jwks_url",
    "LAKEHOUSE_API_ISSUER": "api.issuer",
    "LAKEHOUSE_API_AUDIENCE": "api.audience",
    "LAKEHOUSE_API_HOST": "api.host",
}


class ConfigError(ValueError):
    """A configuration problem, worded so the user knows which key or file to fix."""


@dataclass(frozen=True)
class SparkConfig:
    master: str = "local[*]"
    app_name: str = "lakehouse"
    driver_memory: str = "2g"
    shuffle_partitions: int = 8
    # Tasks of Spark's parallel file listing (VACUUM, partition discovery). Spark's 10,000
    # assumes a cluster listing millions of files: on 2 cores a VACUUM of a 100-row table ran
    # 10,000 tasks in 29.5 s, against 2.4 s with 8 (docs/benchmarks/README.md, Spark settings).
    listing_parallelism: int = 8
    ui_enabled: bool = True
    log_level: str = "WARN"
    # Options for the driver's and executors' JVMs. `make test-unit` runs the JIT's first tier
    # only: its sessions are minutes long on tiny data, where C2 compiles more than it repays
    # (docs/testing.md, "Spark settings for tests").
    jvm_options: str = ""
    # Folder holding the jars resolved by `make jars` (relative paths are from the project root).
    jars_dir: str = "build/jars/spark"
    # Any further Spark settings, passed through verbatim (e.g. S3A credentials providers).
    extra_conf: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap: str = "127.0.0.1:9092"
    topic: str = "plans.cdc"
    # How long the plan store waits for the broker to acknowledge a change event before the
    # write fails with PublishError (the event stays in the outbox for `plans drain`).
    delivery_timeout_s: float = 25.0


@dataclass(frozen=True)
class MongoConfig:
    uri: str = "mongodb://127.0.0.1:27017/"
    database: str = "healthcare"
    collection: str = "plans"


@dataclass(frozen=True)
class PostgresConfig:
    # No password here: it comes from LAKEHOUSE_POSTGRES_PASSWORD when the server needs one.
    dsn: str = "postgresql://lakehouse@127.0.0.1:5432/lakehouse"


@dataclass(frozen=True)
class ElasticsearchConfig:
    url: str = "http://127.0.0.1:9200"
    index: str = "plans"


@dataclass(frozen=True)
class IngestConfig:
    """The streaming medallion (`lakehouse ingest`)."""

    # Upper bound of Kafka records per bronze micro-batch: keeps batches (and a replay) small.
    max_offsets_per_trigger: int = 20000
    # Upper bound of bronze Parquet bytes per silver micro-batch (Delta's soft maxBytesPerTrigger;
    # ~400 bytes per event). Without it a silver batch takes every bronze version written while
    # the previous one ran, and an ingest that fell behind cached them all at once: at 10,000
    # events/s offered the driver ran out of heap (docs/benchmarks/README.md, ingest).
    silver_max_bytes_per_trigger: int = 16 * 1024 * 1024
    # Micro-batch interval of the continuous mode (`--once` drains everything, then exits).
    trigger_interval_s: float = 2.0
    # ... of the derived query (history, services, plan_services). Its cost per batch is mostly
    # fixed (about 38 Spark jobs): run often, it takes the cores the hot path needs.
    derived_trigger_interval_s: float = 30.0
    # Where a new hot-path query starts when bronze holds nothing of the topic yet: "earliest"
    # keeps every event the topic still holds (otherwise it starts where bronze ends).
    starting_offsets: str = "earliest"
    # Continuous mode: pause before restarting a failed query, and how many restarts in a row.
    restart_backoff_s: float = 10.0
    max_restarts: int = 30


@dataclass(frozen=True)
class IndexerConfig:
    """The real-time search indexer (`lakehouse indexer`; supervised by `stack up --apps`)."""

    # The Kafka consumer group its committed offsets are kept under (`ingest --lag` reads it).
    group_id: str = "lakehouse-indexer"
    # Where documents the index refuses go; empty means `<kafka.topic>.dead-letters`.
    dead_letter_topic: str = ""
    # Records per poll, and so per bulk request: large enough to amortise a request when it
    # catches up, small enough that one bulk stays well under a second.
    max_batch_records: int = 2000
    # How long one batch keeps retrying an unreachable Elasticsearch before the indexer exits
    # 1 (and its supervisor restarts it from the committed offsets).
    retry_timeout_s: float = 120.0


@dataclass(frozen=True)
class GoldConfig:
    """Gold tables and the plan anomaly detectors (`lakehouse jobs run ...`)."""

    # A service pair reaches gold.service_pairs when at least this share of live plans has both.
    pair_min_support: float = 0.01
    # The statistical baseline flags a plan when a cost's robust z-score within its plan type
    # exceeds this (3.5 is Iglewicz and Hoaglin's cut-off for modified z-scores).
    rule_z_threshold: float = 3.5
    # The model flags this share of the training plans (its score threshold is that quantile).
    contamination: float = 0.02
    kmeans_k: int = 8
    # CBLOF: clusters holding less than this share of plans are outliers, not normal groups.
    small_cluster_share: float = 0.05
    seed: int = 7
    # Rate `lakehouse simulate` drew anomalies with: the labels the model is evaluated on.
    label_anomaly_rate: float = 0.02
    # A refresh with more changed plans than this rebuilds instead (cheaper by then).
    max_incremental_plans: int = 50000
    # Each table refreshes or rebuilds, whichever its own last runs say is cheaper (false:
    # always refresh when it can, as the tests do so that the incremental path is exercised).
    choose_by_cost: bool = True
    # Empty: a SQLite registry and artifact folder under <state_dir>/mlflow.
    mlflow_tracking_uri: str = ""
    mlflow_experiment: str = "plan-anomalies"
    model_name: str = "plan_anomaly_detector"
    model_alias: str = "champion"


@dataclass(frozen=True)
class AlertConfig:
    """Where a failed quality gate is reported, besides the log (always)."""

    # An HTTP endpoint that receives the alert as JSON (POST). Webhook URLs often carry a token:
    # set it with LAKEHOUSE_ALERT_WEBHOOK_URL rather than in a committed file.
    webhook_url: str = ""
    # A Prefect notification block, "<block-type-slug>/<block-name>" (e.g. slack-webhook/data).
    prefect_block: str = ""
    timeout_s: float = 10.0
    # Delivery attempts per notifier before it gives up (and says so in the log).
    attempts: int = 3


# datetime.weekday() order: WEEKDAYS[now.weekday()] is today's name.
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True)
class QualityConfig:
    """Data quality suites, their history, freshness SLAs and alerts (`lakehouse quality ...`)."""

    # HTML profiling reports; empty means <state_dir>/reports/quality.
    reports_dir: str = ""
    # Offending rows attached to an alert per failed check.
    sample_rows: int = 5
    # Metric anomalies against the previous run (Deequ's relative rate of change): a current-
    # state table losing more than this share of its rows, a mean cost moving more than this
    # share either way.
    row_count_max_drop: float = 0.5
    mean_max_change: float = 0.5
    # Freshness SLAs: the newest event in silver, and the newest source data each gold table
    # reflects, may be at most this old. 26 h = a nightly batch plus slack.
    silver_max_age_minutes: float = 1560.0
    gold_max_age_minutes: float = 1560.0
    # error: a breach blocks publishing; warning: only reported.
    freshness_severity: str = "error"
    # Row-level rules (completeness, uniqueness, ranges, references) check only the rows changed
    # since the table's last clean check, read from its change feed; the aggregate, anomaly and
    # freshness rules still see the whole table. Every table is checked in full on
    # `full_pass_weekday` (UTC), and whenever its history allows no narrower pass. Off: at 1M
    # plan_costs rows the full pass is still faster here, Deequ's fixed cost per verification
    # outweighing the scan it saves (docs/benchmarks/README.md, quality).
    changed_rows_only: bool = False
    full_pass_weekday: str = "sunday"
    alerts: AlertConfig = field(default_factory=AlertConfig)


@dataclass(frozen=True)
class ServingConfig:
    """The PostgreSQL mirror of gold (`lakehouse publish`)."""

    # The schema of the warehouse database that holds the mirror.
    schema: str = "gold"
    # The read-only role dashboards connect as (password: LAKEHOUSE_BI_PASSWORD, never a file).
    bi_role: str = "lakehouse_bi"
    # A PostgreSQL that cannot be reached is retried this often, the pause doubling from this.
    attempts: int = 5
    backoff_s: float = 1.0


@dataclass(frozen=True)
class NightlyConfig:
    """The Prefect nightly flow (flows/nightly.py)."""

    cron: str = "0 2 * * *"
    timezone: str = "UTC"
    # The anomaly model is retrained on this weekday (0 Monday .. 6 Sunday), scored every night.
    retrain_weekday: int = 6


@dataclass(frozen=True)
class MaintenanceConfig:
    """Nightly table maintenance (lakehouse.maintenance): compaction every night, Z-ordering and
    vacuuming as configured here."""

    # OPTIMIZE ZORDER BY (a full rewrite of each clustered table) on this weekday (0 Monday ..
    # 6 Sunday); plain compaction the other nights.
    zorder_weekday: int = 6
    # VACUUM keeps the files of versions this recent: time travel, a lagging stream and gold's
    # change-feed reads need them. Delta refuses less than 168 (7 days) unless told otherwise.
    vacuum_retain_hours: int = 168


@dataclass(frozen=True)
class StackConfig:
    """The local process stack (`lakehouse stack ...`); service ports come from the URLs above."""

    kafka_controller_port: int = 9093
    kafka_heap: str = "512m"
    elasticsearch_heap: str = "1g"
    elasticsearch_transport_port: int = 9300
    ferretdb_database: str = "ferretdb"
    # Off only for throwaway test clusters: faster, and a crash may lose the data.
    postgres_fsync: bool = True
    startup_timeout_s: int = 180


@dataclass(frozen=True)
class ClusterConfig:
    """A local Spark standalone cluster (`lakehouse stack up --cluster`): a master and workers as
    plain processes on 127.0.0.1, the scale-out path proven on one machine (docs/scale-out.md).
    Jobs use it when `spark.master` is `spark://127.0.0.1:<master_port>`."""

    master_port: int = 7077
    master_web_port: int = 8080
    workers: int = 2
    worker_cores: int = 1
    worker_memory: str = "2g"
    # Worker N's web UI listens on worker_web_port + N - 1.
    worker_web_port: int = 8081
    # Heap of the master and worker daemons themselves; executors get spark.executor.memory.
    daemon_memory: str = "512m"

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.master_port}"


@dataclass(frozen=True)
class AppsConfig:
    """The user-facing servers `lakehouse stack up --apps` starts next to the data services.

    Secrets are never here: Superset's admin password and secret key and Jupyter's token come
    from LAKEHOUSE_SUPERSET_ADMIN_PASSWORD, LAKEHOUSE_SUPERSET_SECRET_KEY and
    LAKEHOUSE_JUPYTER_TOKEN (generated once into <state_dir>/secrets when unset locally).
    """

    mlflow_port: int = 5000
    prefect_port: int = 4200
    superset_port: int = 8088
    jupyter_port: int = 8888
    superset_admin_user: str = "admin"
    # Superset's own metadata database, in the stack's PostgreSQL.
    superset_database: str = "superset"
    # The supervised streaming ingest: restarts after a crash, the pause doubling up to this.
    ingest_max_backoff_s: float = 60.0


@dataclass(frozen=True)
class ApiConfig:
    """The plan API (`lakehouse api serve`, docs/api.md): HTTP over the plan store.

    Tokens are RS256 JWTs. The server verifies them with `public_key_file` (a PEM), else the
    keys at `jwks_url` (an identity provider's JWKS), else the public half of the key pair
    generated into <state_dir>/secrets, which `lakehouse api token` signs with.
    """

    port: int = 8070
    # Loopback everywhere but in a container, whose port is published on the host's loopback.
    host: str = "127.0.0.1"
    public_key_file: str = ""
    jwks_url: str = ""
    # A token must name this issuer and audience (the local key pair's tokens do).
    issuer: str = "lakehouse-local"
    audience: str = "lakehouse-plan-api"
    # Lifetime of a token `lakehouse api token` mints.
    token_ttl_s: int = 3600
    # Page sizes of GET /v1/plan and /v1/search: without `limit`, and the most one may ask.
    default_page_size: int = 50
    max_page_size: int = 500
    # Plan stores (a Mongo client each, one shared Kafka producer) serving requests at once;
    # more requests wait for one. 2 cores: a few are enough to overlap the network waits.
    store_pool_size: int = 4


@dataclass(frozen=True)
class Config:
    environment: str = "local"
    # Root of every Delta table: a local folder or an object-store URI (s3a://, abfss://, gs://).
    warehouse: str = "state/warehouse"
    # Streaming checkpoints; empty means `<warehouse>/_checkpoints`.
    checkpoints: str = ""
    # Data and logs of the local stack's services.
    state_dir: str = "state"
    spark: SparkConfig = field(default_factory=SparkConfig)
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    mongo: MongoConfig = field(default_factory=MongoConfig)
    postgres: PostgresConfig = field(default_factory=PostgresConfig)
    elasticsearch: ElasticsearchConfig = field(default_factory=ElasticsearchConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    indexer: IndexerConfig = field(default_factory=IndexerConfig)
    gold: GoldConfig = field(default_factory=GoldConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    nightly: NightlyConfig = field(default_factory=NightlyConfig)
    maintenance: MaintenanceConfig = field(default_factory=MaintenanceConfig)
    stack: StackConfig = field(default_factory=StackConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    apps: AppsConfig = field(default_factory=AppsConfig)
    api: ApiConfig = field(default_factory=ApiConfig)

    @property
    def checkpoint_root(self) -> str:
        return self.checkpoints or join_uri(self.warehouse, "_checkpoints")

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir)


def join_uri(root: str, *parts: str) -> str:
    """Join path parts onto a local folder or an object-store URI without touching the scheme."""
    return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts)])


def is_uri(location: str) -> bool:
    return "://" in location or location.startswith("file:")


def postgres_password() -> str | None:
    """The PostgreSQL password, from the environment only (None: the server trusts loopback)."""
    return os.environ.get(POSTGRES_PASSWORD_VAR) or None


def load_config(
    environment: str | None = None,
    conf_dir: Path | str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Load `base.yaml` + `<environment>.yaml` from the conf folder, then apply env overrides.

    The environment defaults to $LAKEHOUSE_ENV, else `local`; the folder to $LAKEHOUSE_CONF_DIR,
    else the project's `conf/`.
    """
    env = os.environ if environ is None else environ
    environment = environment or env.get(ENV_SELECTOR) or "local"
    folder = Path(conf_dir or env.get(CONF_DIR_VAR) or DEFAULT_CONF_DIR)

    base_file = folder / "base.yaml"
    env_file = folder / f"{environment}.yaml"
    if environment == "base" or not env_file.is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml") if p.stem != "base")
        raise ConfigError(
            f"no configuration for environment {environment!r}: {env_file} does not exist "
            f"(known environments: {', '.join(known) or 'none'}; set {ENV_SELECTOR})"
        )

    merged: dict[str, Any] = {}
    for source in (base_file, env_file):
        if source.is_file():
            layer = _read_yaml(source)
            _check_keys(layer, Config, prefix="", source=str(source))
            _check_no_secrets(layer, source=str(source))
            merged = _deep_merge(merged, layer)
    merged["environment"] = environment

    for var, dotted in ENV_OVERRIDES.items():
        if var in env and env[var] != "":
            _set_dotted(merged, dotted, _parse_env_value(var, dotted, env[var]))

    source = f"{base_file.name} + {env_file.name}"
    config = _build(Config, merged, prefix="", source=source)
    _check_spark(config.spark, source)
    _check_ingest(config.ingest, source)
    _check_indexer(config.indexer, source)
    _check_gold(config.gold, source)
    _check_quality(config.quality, source)
    _check_serving(config.serving, source)
    _check_nightly(config.nightly, source)
    _check_kafka(config.kafka, source)
    _check_maintenance(config.maintenance, source)
    _check_apps(config.apps, source)
    _check_cluster(config.cluster, source)
    _check_api(config, source)
    return _resolve_local_paths(config)


def _check_spark(spark: SparkConfig, source: str) -> None:
    for name in ("shuffle_partitions", "listing_parallelism"):
        if getattr(spark, name) < 1:
            raise ConfigError(f"{source}: spark.{name} must be >= 1")


def _check_ingest(ingest: IngestConfig, source: str) -> None:
    """Values a type check lets through but a streaming query would choke on later."""
    for name in ("max_offsets_per_trigger", "silver_max_bytes_per_trigger"):
        if getattr(ingest, name) < 1:
            raise ConfigError(f"{source}: ingest.{name} must be >= 1")
    for name in ("trigger_interval_s", "derived_trigger_interval_s", "restart_backoff_s"):
        if getattr(ingest, name) < 0:
            raise ConfigError(f"{source}: ingest.{name} must be >= 0 seconds")
    if ingest.max_restarts < 0:
        raise ConfigError(f"{source}: ingest.max_restarts must be >= 0")
    if ingest.starting_offsets not in ("earliest", "latest"):
        raise ConfigError(
            f"{source}: ingest.starting_offsets must be earliest or latest, "
            f"got {ingest.starting_offsets!r}"
        )


def _check_indexer(indexer: IndexerConfig, source: str) -> None:
    if indexer.max_batch_records < 1:
        raise ConfigError(f"{source}: indexer.max_batch_records must be >= 1")
    if indexer.retry_timeout_s < 0:
        raise ConfigError(f"{source}: indexer.retry_timeout_s must be >= 0 seconds")
    if not indexer.group_id:
        raise ConfigError(f"{source}: indexer.group_id must not be empty")


def _check_gold(gold: GoldConfig, source: str) -> None:
    for name in ("pair_min_support", "small_cluster_share", "label_anomaly_rate"):
        if not 0.0 <= getattr(gold, name) <= 1.0:
            raise ConfigError(f"{source}: gold.{name} must be a share between 0 and 1")
    if not 0.0 < gold.contamination < 0.5:
        raise ConfigError(f"{source}: gold.contamination must be > 0 and < 0.5")
    if gold.rule_z_threshold <= 0:
        raise ConfigError(f"{source}: gold.rule_z_threshold must be > 0")
    if gold.max_incremental_plans < 1:
        raise ConfigError(f"{source}: gold.max_incremental_plans must be >= 1")
    if gold.kmeans_k < 2:
        raise ConfigError(f"{source}: gold.kmeans_k must be >= 2")
    if not gold.model_name or not gold.model_alias:
        raise ConfigError(f"{source}: gold.model_name and gold.model_alias must not be empty")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level, got {type(data).__name__}")
    return data


def _deep_merge(base: dict[str, Any], layer: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in layer.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(
                f"cannot apply the override for {dotted}: {part} must be a mapping, got {node!r}"
            )
    node[leaf] = value


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _check_keys(data: Mapping[str, Any], cls: type, prefix: str, source: str) -> None:
    types_by_name = _field_types(cls)
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in types_by_name:
            allowed = ", ".join(sorted(types_by_name))
            raise ConfigError(f"{source}: unknown key {dotted!r} (allowed here: {allowed})")
        expected = types_by_name[key]
        if dataclasses.is_dataclass(expected) and isinstance(value, Mapping):
            _check_keys(value, expected, prefix=f"{dotted}.", source=source)


def _parse_env_value(var: str, dotted: str, raw: str) -> Any:
    expected = _type_at(dotted)
    if expected is bool:
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{var}={raw!r}: {dotted} must be a boolean (true/false)")
    if expected is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{var}={raw!r}: {dotted} must be an integer") from None
    if expected is float:
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{var}={raw!r}: {dotted} must be a number") from None
    return raw


def _type_at(dotted: str) -> Any:
    cls: Any = Config
    for part in dotted.split("."):
        cls = _field_types(cls)[part]
    return cls


def _check_quality(quality: QualityConfig, source: str) -> None:
    if quality.sample_rows < 0:
        raise ConfigError(f"{source}: quality.sample_rows must be >= 0")
    for name in ("row_count_max_drop", "mean_max_change"):
        if not 0.0 < getattr(quality, name) < 1.0:
            raise ConfigError(f"{source}: quality.{name} must be a share between 0 and 1")
    for name in ("silver_max_age_minutes", "gold_max_age_minutes"):
        if getattr(quality, name) <= 0:
            raise ConfigError(f"{source}: quality.{name} must be > 0 minutes")
    if quality.freshness_severity not in ("error", "warning"):
        raise ConfigError(
            f"{source}: quality.freshness_severity must be error or warning, "
            f"got {quality.freshness_severity!r}"
        )
    if quality.full_pass_weekday not in WEEKDAYS:
        raise ConfigError(
            f"{source}: quality.full_pass_weekday must be one of {', '.join(WEEKDAYS)}, "
            f"got {quality.full_pass_weekday!r}"
        )
    alerts = quality.alerts
    if alerts.webhook_url and urlsplit(alerts.webhook_url).scheme not in ("http", "https"):
        raise ConfigError(f"{source}: quality.alerts.webhook_url must be an http(s) URL")
    if alerts.prefect_block and alerts.prefect_block.count("/") != 1:
        raise ConfigError(
            f"{source}: quality.alerts.prefect_block must be <block-type-slug>/<block-name>"
        )
    if alerts.timeout_s <= 0 or alerts.attempts < 1:
        raise ConfigError(f"{source}: quality.alerts.timeout_s must be > 0 and attempts >= 1")


def _check_serving(serving: ServingConfig, source: str) -> None:
    for name in ("schema", "bi_role"):
        value = getattr(serving, name)
        if not value.isidentifier() or value != value.lower():
            raise ConfigError(
                f"{source}: serving.{name} must be a lower-case identifier, got {value!r}"
            )
    if serving.attempts < 1 or serving.backoff_s < 0:
        raise ConfigError(f"{source}: serving.attempts must be >= 1 and backoff_s >= 0")


def _check_nightly(nightly: NightlyConfig, source: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if len(nightly.cron.split()) != 5:
        raise ConfigError(f"{source}: nightly.cron must have 5 fields, got {nightly.cron!r}")
    try:
        ZoneInfo(nightly.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{source}: nightly.timezone {nightly.timezone!r} is not an IANA time zone"
        ) from None
    if not 0 <= nightly.retrain_weekday <= 6:
        raise ConfigError(f"{source}: nightly.retrain_weekday must be 0 (Monday) .. 6 (Sunday)")


def _check_kafka(kafka: KafkaConfig, source: str) -> None:
    if kafka.delivery_timeout_s < 2:
        raise ConfigError(
            f"{source}: kafka.delivery_timeout_s must be >= 2 seconds (one request's timeout "
            "is half of it)"
        )


def _check_maintenance(maintenance: MaintenanceConfig, source: str) -> None:
    if not 0 <= maintenance.zorder_weekday <= 6:
        raise ConfigError(f"{source}: maintenance.zorder_weekday must be 0 (Monday) .. 6 (Sunday)")
    if maintenance.vacuum_retain_hours < 168:
        raise ConfigError(
            f"{source}: maintenance.vacuum_retain_hours must be >= 168 (7 days): a shorter "
            "retention deletes files that time travel, a lagging stream or gold's change-feed "
            "reads may still need"
        )


def _check_api(config: Config, source: str) -> None:
    api = config.api
    if not 1 <= api.port <= 65535:
        raise ConfigError(f"{source}: api.port must be a TCP port (1..65535)")
    apps = config.apps
    if api.port in (apps.mlflow_port, apps.prefect_port, apps.superset_port, apps.jupyter_port):
        raise ConfigError(f"{source}: api.port {api.port} is also one of apps.*_port")
    for name in ("token_ttl_s", "default_page_size", "max_page_size", "store_pool_size"):
        if getattr(api, name) < 1:
            raise ConfigError(f"{source}: api.{name} must be >= 1")
    if api.default_page_size > api.max_page_size:
        raise ConfigError(f"{source}: api.default_page_size must be <= api.max_page_size")
    for name in ("issuer", "audience"):
        if not getattr(api, name).strip():
            raise ConfigError(f"{source}: api.{name} must not be empty")
    try:
        ipaddress.ip_address(api.host)
    except ValueError:
        raise ConfigError(
            f"{source}: api.host must be an IP address to bind (127.0.0.1), got {api.host!r}"
        ) from None


def _check_apps(apps: AppsConfig, source: str) -> None:
    for name in ("mlflow_port", "prefect_port", "superset_port", "jupyter_port"):
        if not 1 <= getattr(apps, name) <= 65535:
            raise ConfigError(f"{source}: apps.{name} must be a TCP port (1..65535)")
    ports = [apps.mlflow_port, apps.prefect_port, apps.superset_port, apps.jupyter_port]
    if len(set(ports)) != len(ports):
        raise ConfigError(f"{source}: apps.*_port must be four different ports, got {ports}")
    if not apps.superset_admin_user.strip():
        raise ConfigError(f"{source}: apps.superset_admin_user must not be empty")
    if apps.ingest_max_backoff_s <= 0:
        raise ConfigError(f"{source}: apps.ingest_max_backoff_s must be > 0 seconds")


def _check_cluster(cluster: ClusterConfig, source: str) -> None:
    if cluster.workers < 1 or cluster.worker_cores < 1:
        raise ConfigError(f"{source}: cluster.workers and cluster.worker_cores must be >= 1")
    last_worker_port = cluster.worker_web_port + cluster.workers - 1
    ports = [cluster.master_port, cluster.master_web_port, cluster.worker_web_port]
    if not all(1 <= port <= 65535 for port in [*ports, last_worker_port]):
        raise ConfigError(f"{source}: cluster.*_port must be TCP ports (1..65535)")
    worker_ports = range(cluster.worker_web_port, last_worker_port + 1)
    if cluster.master_port in worker_ports or cluster.master_web_port in worker_ports:
        raise ConfigError(
            f"{source}: the workers' web UIs (cluster.worker_web_port {cluster.worker_web_port} "
            f".. {last_worker_port}) overlap cluster.master_port or cluster.master_web_port"
        )
    if cluster.master_port == cluster.master_web_port:
        raise ConfigError(f"{source}: cluster.master_port and master_web_port must differ")


def _build(cls: type, data: Mapping[str, Any], prefix: str, source: str) -> Any:
    kwargs: dict[str, Any] = {}
    for name, expected in _field_types(cls).items():
        if name not in data:
            continue
        dotted = f"{prefix}{name}"
        value = data[name]
        if dataclasses.is_dataclass(expected):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: {dotted} must be a mapping, got {value!r}")
            kwargs[name] = _build(expected, value, prefix=f"{dotted}.", source=source)
        else:
            kwargs[name] = _checked(value, expected, dotted, source)
    return cls(**kwargs)


def _checked(value: Any, expected: Any, dotted: str, source: str) -> Any:
    origin = typing.get_origin(expected)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{source}: {dotted} must be a mapping, got {value!r}")
        # Spark settings are strings on the wire; accept YAML numbers/booleans and stringify.
        return {str(k): _scalar_to_str(v, f"{dotted}.{k}", source) for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"internal: union type for {dotted} is not supported")
    # bool is a subclass of int: reject `shuffle_partitions: true` explicitly.
    if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{source}: {dotted} must be an integer, got {value!r}")
    if expected is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{source}: {dotted} must be a number, got {value!r}")
        return float(value)
    if expected is bool and not isinstance(value, bool):
        raise ConfigError(f"{source}: {dotted} must be true or false, got {value!r}")
    if expected is str and not isinstance(value, str):
        raise ConfigError(f"{source}: {dotted} must be a string, got {value!r}")
    return value


def _scalar_to_str(value: Any, dotted: str, source: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise ConfigError(f"{source}: {dotted} must be a scalar, got {value!r}")


def _check_no_secrets(layer: Mapping[str, Any], source: str) -> None:
    """Conf files are committed: a URL with a password in one is refused."""
    for section, key, fix in (
        ("postgres", "dsn", f"set {POSTGRES_PASSWORD_VAR} instead"),
        ("mongo", "uri", "pass the whole URI in LAKEHOUSE_MONGO_URI instead"),
    ):
        block = layer.get(section)
        if not isinstance(block, Mapping):
            continue  # not a mapping: _build reports it with the key name
        value = block.get(key)
        if isinstance(value, str) and urlsplit(value).password:
            raise ConfigError(f"{source}: {section}.{key} must not contain a password; {fix}")


def _resolve_local_paths(config: Config) -> Config:
    """Make relative local paths absolute from the project root; leave URIs untouched."""

    def resolve(location: str) -> str:
        if not location or is_uri(location) or Path(location).is_absolute():
            return location
        return str(PROJECT_ROOT / location)

    return dataclasses.replace(
        config,
        warehouse=resolve(config.warehouse),
        checkpoints=resolve(config.checkpoints),
        state_dir=resolve(config.state_dir),
        quality=dataclasses.replace(
            config.quality, reports_dir=resolve(config.quality.reports_dir)
        ),
        spark=dataclasses.replace(config.spark, jars_dir=resolve(config.spark.jars_dir)),
        api=dataclasses.replace(config.api, public_key_file=resolve(config.api.public_key_file)),
    )
