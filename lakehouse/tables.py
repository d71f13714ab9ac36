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

# The change-event value (docs/change-events.md); `after` stays raw JSON text until validated.
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


@dataclass(frozen=True)
class Table:
    """A Delta table: its path below the warehouse and its declared schema."""

    name: str
    relative_path: str
    schema: StructType
    partition_by: tuple[str, ...] = ()

    def path(self, config: Config) -> str:
        return join_uri(config.warehouse, self.relative_path)


BRONZE_EVENTS = Table("bronze.plan_events", "bronze/plan_events", BRONZE_PLAN_EVENTS)
QUARANTINE = Table("quarantine.plan_events", "quarantine/plan_events", QUARANTINE_PLAN_EVENTS)
PLANS = Table("silver.plans", "silver/plans", SILVER_PLANS)
PLAN_SERVICES = Table("silver.plan_services", "silver/plan_services", SILVER_PLAN_SERVICES)
SERVICES = Table("silver.services", "silver/services", SILVER_SERVICES)
PLAN_HISTORY = Table("silver.plan_history", "silver/plan_history", SILVER_PLAN_HISTORY)
SNAPSHOTS = Table("bronze.plan_snapshots", "bronze/plan_snapshots", BRONZE_PLAN_SNAPSHOTS)
RECONCILIATION = Table("reports.reconciliation", "reports/reconciliation", RECONCILIATION_REPORT)

SILVER_TABLES = (PLANS, PLAN_SERVICES, SERVICES, PLAN_HISTORY)

# Checkpoints, relative to `config.checkpoint_root`: one per streaming query, never shared.
BRONZE_CHECKPOINT = "bronze_plan_events"
SILVER_CHECKPOINT = "silver_plans"


def checkpoint(config: Config, name: str) -> str:
    return join_uri(config.checkpoint_root, name)
