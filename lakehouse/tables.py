"""Every Delta table of the lakehouse: its location under the warehouse and its schema.

Declared once here; jobs and transforms import these names and never infer a schema.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from lakehouse.config import Config, join_uri


def _struct(*fields: tuple[str, object, bool]) -> StructType:
    return StructType([StructField(name, dtype, nullable) for name, dtype, nullable in fields])  # type: ignore[arg-type]


# The plan document (lakehouse/schemas/plan.schema.json) as Spark reads it from JSON.
COST_SHARE = _struct(
    ("deductible", DoubleType(), True),
    ("copay", DoubleType(), True),
    ("_org", StringType(), True),
    ("objectId", StringType(), True),
    ("objectType", StringType(), True),
)
SERVICE = _struct(
    ("_org", StringType(), True),
    ("objectId", StringType(), True),
    ("objectType", StringType(), True),
    ("name", StringType(), True),
)
PLAN_SERVICE = _struct(
    ("_org", StringType(), True),
    ("objectId", StringType(), True),
    ("objectType", StringType(), True),
    ("linkedService", SERVICE, True),
    ("planserviceCostShares", COST_SHARE, True),
)
PLAN_DOCUMENT = _struct(
    ("objectId", StringType(), True),
    ("objectType", StringType(), True),
    ("_org", StringType(), True),
    ("planType", StringType(), True),
    ("creationDate", StringType(), True),
    ("planCostShares", COST_SHARE, True),
    ("linkedPlanServices", ArrayType(PLAN_SERVICE), True),
)

# The change-event envelope as the contract check reads it (docs/change-events.md); `after` is
# the document as canonical JSON text, parsed by Spark against PLAN_DOCUMENT.
CHANGE_EVENT = _struct(
    ("event_id", StringType(), True),
    ("op", StringType(), True),
    ("plan_id", StringType(), True),
    ("version", LongType(), True),
    ("ts_ms", LongType(), True),
    ("after", StringType(), True),
)

BRONZE_PLAN_EVENTS = _struct(
    ("key", BinaryType(), True),
    ("value", BinaryType(), True),
    ("topic", StringType(), False),
    ("partition", IntegerType(), False),
    ("offset", LongType(), False),
    ("kafka_ts", TimestampType(), True),
    ("ingested_at", TimestampType(), False),
)

QUARANTINE_PLAN_EVENTS = _struct(
    ("reason", StringType(), False),
    ("detail", StringType(), True),
    ("key", BinaryType(), True),
    ("value", BinaryType(), True),
    # The value decoded as UTF-8 (undecodable bytes replaced) so people can read it.
    ("value_text", StringType(), True),
    ("topic", StringType(), False),
    ("partition", IntegerType(), False),
    ("offset", LongType(), False),
    ("kafka_ts", TimestampType(), True),
    ("quarantined_at", TimestampType(), False),
)

# Documents a sink refused for their content (not for being unreachable): the plan stays in
# silver, the sink keeps its previous state of the plan until a later version is accepted.
SINK_REFUSALS = _struct(
    ("sink", StringType(), False),  # "elasticsearch"
    ("operation", StringType(), False),  # index or delete
    ("plan_id", StringType(), False),
    ("version", LongType(), False),
    ("status", IntegerType(), True),  # the sink's status code for this document
    ("error", StringType(), False),
    ("document", StringType(), True),  # what was sent, as JSON; null for a delete
    # where the plan's version came from in the change stream (null for a snapshot row)
    ("kafka_partition", IntegerType(), True),
    ("kafka_offset", LongType(), True),
    ("refused_at", TimestampType(), False),
)

SILVER_PLANS = _struct(
    ("plan_id", StringType(), False),
    ("version", LongType(), False),
    ("is_deleted", BooleanType(), False),
    # c, u, d from the change stream; r when the row came from a Mongo snapshot.
    ("op", StringType(), False),
    ("event_id", StringType(), True),
    ("event_ts", TimestampType(), False),
    ("org", StringType(), True),
    ("plan_type", StringType(), True),
    ("creation_date", DateType(), True),
    ("deductible", DoubleType(), True),
    ("copay", DoubleType(), True),
    ("service_count", IntegerType(), True),
    ("doc", StringType(), True),
    ("kafka_partition", IntegerType(), True),
    ("kafka_offset", LongType(), True),
    ("updated_at", TimestampType(), False),
)

# Every valid change event, typed (`contract.to_plan_events` without the parsed struct): what
# the streaming ingest's hot path appends next to its silver.plans MERGE, and what the derived
# silver tables (history, services, plan_services) are built from, off that path.
SILVER_PLAN_EVENTS = StructType(
    [f for f in SILVER_PLANS.fields if f.name not in ("is_deleted", "updated_at")]
    + [StructField("applied_at", TimestampType(), False)]
)

SILVER_PLAN_SERVICES = _struct(
    ("plan_id", StringType(), False),
    ("planservice_id", StringType(), False),
    ("service_id", StringType(), True),
    ("service_name", StringType(), True),
    ("org", StringType(), True),
    ("deductible", DoubleType(), True),
    ("copay", DoubleType(), True),
    ("plan_version", LongType(), False),
    ("updated_at", TimestampType(), False),
)

SILVER_SERVICES = _struct(
    ("service_id", StringType(), False),
    ("service_name", StringType(), True),
    ("org", StringType(), True),
    # Event time of the plan version the name was taken from: a later name wins.
    ("seen_at", TimestampType(), False),
    ("updated_at", TimestampType(), False),
)

SILVER_PLAN_HISTORY = _struct(
    ("plan_id", StringType(), False),
    ("version", LongType(), False),
    ("op", StringType(), False),
    ("event_id", StringType(), True),
    ("is_deleted", BooleanType(), False),
    ("valid_from", TimestampType(), False),
    # Null while this version is the plan's latest.
    ("valid_to", TimestampType(), True),
    ("is_current", BooleanType(), False),
    ("doc", StringType(), True),
    ("recorded_at", TimestampType(), False),
)

BRONZE_PLAN_SNAPSHOTS = _struct(
    ("snapshot_id", StringType(), False),
    ("snapshot_ts", TimestampType(), False),
    ("plan_id", StringType(), False),
    ("version", LongType(), True),
    ("is_deleted", BooleanType(), False),
    # The store still holds an event it has not published (see docs/change-events.md).
    ("has_pending_event", BooleanType(), False),
    ("updated_ms", LongType(), True),
    ("doc", StringType(), True),
)

# Stored documents a snapshot could not accept (lakehouse.ingest.snapshot.check_stored).
QUARANTINE_PLAN_SNAPSHOTS = _struct(
    ("snapshot_id", StringType(), False),
    ("snapshot_ts", TimestampType(), False),
    ("plan_id", StringType(), True),
    ("reason", StringType(), False),
    ("detail", StringType(), True),
    # the document's top-level fields as the connector read them (text), as one JSON object
    ("stored", StringType(), False),
)

RECONCILIATION_REPORT = _struct(
    ("run_id", StringType(), False),
    ("checked_at", TimestampType(), False),
    ("snapshot_id", StringType(), False),
    ("plan_id", StringType(), False),
    # missing | extra | version-mismatch | content-mismatch
    ("kind", StringType(), False),
    ("source_version", LongType(), True),
    ("silver_version", LongType(), True),
    ("detail", StringType(), True),
)

# ------------------------------------------------------------------------------------------ gold
# Costs are in dollars. No gold column holds a wall-clock time except where a row records when
# something ran (scored_at, finished_at): a full rebuild and an incremental run give equal rows.

# One row per live plan.
GOLD_PLAN_COSTS = _struct(
    ("plan_id", StringType(), False),
    ("plan_version", LongType(), False),
    ("org", StringType(), True),
    ("plan_type", StringType(), True),
    ("creation_date", DateType(), True),
    # First day of the creation month.
    ("creation_month", DateType(), True),
    ("plan_deductible", DoubleType(), True),
    ("plan_copay", DoubleType(), True),
    # Planservice links, and distinct services among them (fewer when a service repeats).
    ("service_count", IntegerType(), False),
    ("distinct_service_count", IntegerType(), False),
    # Sums over the plan's services (0 without services), and the dearest service copay.
    ("services_deductible", DoubleType(), False),
    ("services_copay", DoubleType(), False),
    ("max_service_copay", DoubleType(), True),
    # plan_deductible + plan_copay + services_copay; service deductibles are left out because
    # most of them repeat the plan deductible. Null when a plan-level cost is missing.
    ("total_cost", DoubleType(), True),
    ("event_ts", TimestampType(), False),
)

# One row per (plan_type, org, creation_month) holding at least one live plan; key parts may be
# null. *_mom_pct: change against the same group's previous calendar month, in percent (null
# when that month has no plans or a zero mean).
GOLD_COST_TRENDS = _struct(
    ("plan_type", StringType(), True),
    ("org", StringType(), True),
    ("creation_month", DateType(), True),
    ("plan_count", LongType(), False),
    ("deductible_mean", DoubleType(), True),
    ("deductible_median", DoubleType(), True),
    ("deductible_p90", DoubleType(), True),
    ("copay_mean", DoubleType(), True),
    ("copay_median", DoubleType(), True),
    ("copay_p90", DoubleType(), True),
    ("total_cost_mean", DoubleType(), True),
    ("total_cost_median", DoubleType(), True),
    ("total_cost_p90", DoubleType(), True),
    ("prev_month_plan_count", LongType(), True),
    ("total_cost_mean_mom_pct", DoubleType(), True),
    ("deductible_median_mom_pct", DoubleType(), True),
)

# One row per service linked by at least one live plan. Cost statistics are over its planservice
# links (a plan linking a service twice counts twice there, once in plans_using).
GOLD_SERVICE_PATTERNS = _struct(
    ("service_id", StringType(), False),
    ("service_name", StringType(), True),
    ("plans_using", LongType(), False),
    ("links", LongType(), False),
    # plans_using / live plans
    ("share_of_plans", DoubleType(), False),
    ("copay_mean", DoubleType(), True),
    ("copay_median", DoubleType(), True),
    ("copay_p90", DoubleType(), True),
    ("deductible_mean", DoubleType(), True),
)

# What gold.service_patterns is derived from, maintained by contribution: one row per service,
# copay and link name among live plans' links. plans_counted counts each (plan, service) on one
# row only (lakehouse/gold/services.py: to_link_counts), so it sums to the plans using a service.
GOLD_SERVICE_LINK_COUNTS = _struct(
    ("service_id", StringType(), False),
    ("copay", DoubleType(), True),
    ("service_name", StringType(), True),
    ("links", LongType(), False),
    # Decimal: a sum an increment subtracts from must be exact (doubles drift).
    ("deductible_sum", DecimalType(38, 6), False),
    ("deductible_n", LongType(), False),
    ("plans_counted", LongType(), False),
)

# One row per unordered service pair (service_a < service_b) linked together by any live plan:
# the exact co-occurrence counts gold.service_pairs is computed from, maintained incrementally.
GOLD_SERVICE_PAIR_COUNTS = _struct(
    ("service_a", StringType(), False),
    ("service_b", StringType(), False),
    ("plans_with_pair", LongType(), False),
)

# The frequent pairs: support >= gold.pair_min_support. Association-rule measures as FP-Growth
# defines them: support = P(a and b), confidence_a_to_b = P(b | a), lift = P(a, b) / P(a)P(b).
GOLD_SERVICE_PAIRS = _struct(
    ("service_a", StringType(), False),
    ("service_b", StringType(), False),
    ("service_a_name", StringType(), True),
    ("service_b_name", StringType(), True),
    ("plans_with_pair", LongType(), False),
    ("support", DoubleType(), False),
    ("confidence_a_to_b", DoubleType(), False),
    ("confidence_b_to_a", DoubleType(), False),
    ("lift", DoubleType(), False),
)

# One row per scored live plan: both detectors' verdicts.
GOLD_PLAN_ANOMALIES = _struct(
    ("plan_id", StringType(), False),
    ("plan_version", LongType(), False),
    ("plan_type", StringType(), True),
    ("org", StringType(), True),
    # Baseline: the largest robust z-score among the plan's costs, and which cost it was.
    ("rule_score", DoubleType(), True),
    ("rule_feature", StringType(), True),
    ("rule_flagged", BooleanType(), False),
    # Model: distance to the nearest large KMeans cluster (CBLOF) over its threshold (>1 flags).
    ("model_score", DoubleType(), True),
    ("model_flagged", BooleanType(), False),
    ("is_anomaly", BooleanType(), False),
    # rule | model | rule+model, null when neither flags the plan.
    ("flagged_by", StringType(), True),
    ("model_name", StringType(), False),
    ("model_version", StringType(), False),
    ("scored_at", TimestampType(), False),
)


# --------------------------------------------------------------------------------------- quality
# One row per check per run (lakehouse/quality): what was checked, on which table version, with
# which suite version, and how it came out. status: passed | failed; value: the metric the check
# compared (a share for most checks, the row count or mean for anomalies, minutes for freshness).
QUALITY_RESULTS = _struct(
    ("run_id", StringType(), False),
    ("run_at", TimestampType(), False),
    ("layer", StringType(), False),
    ("table_name", StringType(), False),
    ("table_version", LongType(), True),
    ("suite_version", StringType(), False),
    ("check_name", StringType(), False),
    ("check_kind", StringType(), False),
    ("severity", StringType(), False),
    ("status", StringType(), False),
    ("value", DoubleType(), True),
    ("message", StringType(), True),
)

# Every metric Deequ computed in a run (one row per entity/instance/name), for trends.
QUALITY_METRICS = _struct(
    ("run_id", StringType(), False),
    ("run_at", TimestampType(), False),
    ("table_name", StringType(), False),
    ("table_version", LongType(), True),
    ("entity", StringType(), False),
    ("instance", StringType(), False),
    ("metric", StringType(), False),
    ("value", DoubleType(), True),
)


@dataclass(frozen=True)
class Table:
    """A Delta table: its path below the warehouse and its declared schema."""

    name: str
    relative_path: str
    schema: StructType
    partition_by: tuple[str, ...] = ()
    # Table properties beyond Change Data Feed (always on), set when the table is created.
    properties: tuple[tuple[str, str], ...] = ()
    # Columns point lookups filter on: the weekly OPTIMIZE ZORDER BY (lakehouse.maintenance)
    # clusters the rows by them, so a lookup reads few files.
    zorder_by: tuple[str, ...] = ()

    def path(self, config: Config) -> str:
        return join_uri(config.warehouse, self.relative_path)


BRONZE_EVENTS = Table("bronze.plan_events", "bronze/plan_events", BRONZE_PLAN_EVENTS)
QUARANTINE = Table("quarantine.plan_events", "quarantine/plan_events", QUARANTINE_PLAN_EVENTS)
SNAPSHOT_QUARANTINE = Table(
    "quarantine.plan_snapshots", "quarantine/plan_snapshots", QUARANTINE_PLAN_SNAPSHOTS
)
REFUSED_DOCUMENTS = Table("quarantine.sink_refusals", "quarantine/sink_refusals", SINK_REFUSALS)
PLANS = Table("silver.plans", "silver/plans", SILVER_PLANS)
PLAN_SERVICES = Table("silver.plan_services", "silver/plan_services", SILVER_PLAN_SERVICES)
SERVICES = Table("silver.services", "silver/services", SILVER_SERVICES)
PLAN_HISTORY = Table(
    "silver.plan_history", "silver/plan_history", SILVER_PLAN_HISTORY, zorder_by=("plan_id",)
)
SNAPSHOTS = Table("bronze.plan_snapshots", "bronze/plan_snapshots", BRONZE_PLAN_SNAPSHOTS)
RECONCILIATION = Table("reports.reconciliation", "reports/reconciliation", RECONCILIATION_REPORT)

PLAN_EVENTS = Table("silver.plan_events", "silver/plan_events", SILVER_PLAN_EVENTS)

SILVER_TABLES = (PLANS, PLAN_SERVICES, SERVICES, PLAN_HISTORY)
# Written by the streaming ingest besides SILVER_TABLES: its own event log.
INGEST_TABLES = (BRONZE_EVENTS, QUARANTINE, PLAN_EVENTS, *SILVER_TABLES)

# Gold tables are refreshed by MERGEs that touch a few rows spread over every file: deletion
# vectors mark the old rows instead of rewriting each file they sit in.
_MERGED = (("delta.enableDeletionVectors", "true"),)
PLAN_COSTS = Table("gold.plan_costs", "gold/plan_costs", GOLD_PLAN_COSTS, properties=_MERGED)
COST_TRENDS = Table("gold.cost_trends", "gold/cost_trends", GOLD_COST_TRENDS, properties=_MERGED)
SERVICE_PATTERNS = Table(
    "gold.service_patterns", "gold/service_patterns", GOLD_SERVICE_PATTERNS, properties=_MERGED
)
SERVICE_PAIR_COUNTS = Table(
    "gold.service_pair_counts",
    "gold/service_pair_counts",
    GOLD_SERVICE_PAIR_COUNTS,
    properties=_MERGED,
)
SERVICE_PAIRS = Table("gold.service_pairs", "gold/service_pairs", GOLD_SERVICE_PAIRS)
SERVICE_LINK_COUNTS = Table(
    "gold.service_link_counts", "gold/service_link_counts", GOLD_SERVICE_LINK_COUNTS
)
PLAN_ANOMALIES = Table(
    "gold.plan_anomalies", "gold/plan_anomalies", GOLD_PLAN_ANOMALIES, properties=_MERGED
)

GOLD_TABLES = (
    PLAN_COSTS,
    COST_TRENDS,
    SERVICE_PATTERNS,
    SERVICE_PAIR_COUNTS,
    SERVICE_PAIRS,
    PLAN_ANOMALIES,
)
# Gold's own state: kept for refreshes, neither served nor mirrored.
GOLD_STATE_TABLES = (SERVICE_LINK_COUNTS,)

QUALITY_RESULTS_TABLE = Table("quality.results", "quality/results", QUALITY_RESULTS)
QUALITY_METRICS_TABLE = Table("quality.metrics", "quality/metrics", QUALITY_METRICS)

# Every table a quality suite can name, by its name.
TABLES_BY_NAME: dict[str, Table] = {
    t.name: t
    for t in (
        BRONZE_EVENTS,
        QUARANTINE,
        REFUSED_DOCUMENTS,
        SNAPSHOT_QUARANTINE,
        SNAPSHOTS,
        PLAN_EVENTS,
        *SILVER_TABLES,
        *GOLD_TABLES,
        RECONCILIATION,
    )
}

# Every table `lakehouse maintain` compacts and vacuums, in the order it does so.
MAINTAINED_TABLES = (
    BRONZE_EVENTS,
    SNAPSHOTS,
    QUARANTINE,
    REFUSED_DOCUMENTS,
    SNAPSHOT_QUARANTINE,
    PLAN_EVENTS,
    *SILVER_TABLES,
    *GOLD_TABLES,
    *GOLD_STATE_TABLES,
    RECONCILIATION,
    QUALITY_RESULTS_TABLE,
    QUALITY_METRICS_TABLE,
)

# Checkpoints, relative to `config.checkpoint_root`: one per streaming query, never shared.
# The hot path (Kafka -> bronze, quarantine, silver.plans, silver.plan_events) and the derived
# silver tables (silver.plan_events -> history, services, plan_services).
PLANS_CHECKPOINT = "ingest_plans"
DERIVED_CHECKPOINT = "silver_derived"
# The two queries before them (Kafka -> bronze, bronze -> silver): an ingest finding these
# drains the old silver query once and starts the hot path where bronze ends.
LEGACY_BRONZE_CHECKPOINT = "bronze_plan_events"
LEGACY_SILVER_CHECKPOINT = "silver_plans"


def checkpoint(config: Config, name: str) -> str:
    return join_uri(config.checkpoint_root, name)
