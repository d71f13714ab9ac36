"""Bronze records checked against the change-event contract, split into events and quarantine.

The rules live in one place, `lakehouse.plans.events.parse_event` (the same code producers and
tests use); Spark only extracts the columns of records that passed.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from lakehouse.plans.events import EventContractError, parse_event
from lakehouse.tables import CHANGE_EVENT, PLAN_DOCUMENT

_VIOLATION = StructType([StructField("reason", StringType()), StructField("detail", StringType())])
# Enough of a validation message to act on; the raw value is kept in full beside it.
_MAX_DETAIL = 2000


def _contract_violation(key: bytes | None, value: bytes | None) -> tuple[str, str] | None:
    try:
        parse_event(
            None if key is None else bytes(key),
            None if value is None else bytes(value),
        )
    except EventContractError as exc:
        return exc.reason, exc.detail[:_MAX_DETAIL]
    except Exception as exc:  # a validator bug must quarantine the record, not kill the stream
        return "check-failed", f"{type(exc).__name__}: {exc}"[:_MAX_DETAIL]
    return None


_contract_violation_udf = F.udf(_contract_violation, _VIOLATION)


def _creation_date(plan: Column) -> Column:
    return F.to_date(plan["creationDate"], "MM-dd-yyyy")


def check_contract(bronze: DataFrame) -> DataFrame:
    """Bronze rows (key, value, topic, partition, offset, kafka_ts, ...) plus `reason` and
    `detail` (both null when the record is a valid event), `event` (the parsed envelope) and
    `plan` (the parsed `after` document).

    Callers use the result twice (events and quarantine), so they should persist it: the
    contract check is a Python UDF and would otherwise run twice.
    """
    violation = _contract_violation_udf(F.col("key"), F.col("value"))
    event = F.from_json(F.col("value").cast("string"), CHANGE_EVENT)
    checked = bronze.withColumn("_violation", violation).withColumn("event", event)
    checked = checked.withColumn("plan", F.from_json(F.col("event.after"), PLAN_DOCUMENT))
    # parse_event already rejects impossible dates; this guards the Spark parse of the same
    # text, so a date Spark cannot read is quarantined instead of becoming a silent null.
    unreadable_date = (
        F.col("_violation").isNull()
        & (F.col("event.op") != "d")
        & _creation_date(F.col("plan")).isNull()
    )
    return checked.select(
        "*",
        F.when(unreadable_date, F.lit("bad-creation_date"))
        .otherwise(F.col("_violation.reason"))
        .alias("reason"),
        F.when(
            unreadable_date,
            F.concat(F.lit("not readable as MM-dd-yyyy: "), F.col("plan.creationDate")),
        )
        .otherwise(F.col("_violation.detail"))
        .alias("detail"),
    ).drop("_violation")


def to_quarantine(checked: DataFrame) -> DataFrame:
    """Rows of `check_contract` that broke the contract, in the quarantine table's layout:
    reason, detail, key, value, value_text, topic, partition, offset, kafka_ts, quarantined_at."""
    return checked.where(F.col("reason").isNotNull()).select(
        "reason",
        "detail",
        "key",
        "value",
        F.decode(F.col("value"), "UTF-8").alias("value_text"),
        "topic",
        "partition",
        "offset",
        "kafka_ts",
        F.current_timestamp().alias("quarantined_at"),
    )


def to_plan_events(checked: DataFrame) -> DataFrame:
    """Valid rows of `check_contract` as typed plan events, one per record (see
    `with_plan_columns` for the columns), keeping their kafka_partition and kafka_offset."""
    live = F.col("event.op") != "d"
    events = checked.where(F.col("reason").isNull()).select(
        F.col("event.plan_id").alias("plan_id"),
        F.col("event.version").alias("version"),
        F.col("event.op").alias("op"),
        F.col("event.event_id").alias("event_id"),
        F.timestamp_millis(F.col("event.ts_ms")).alias("event_ts"),
        F.when(live, F.col("plan")).alias("plan"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
    )
    return with_plan_columns(events)


def with_plan_columns(events: DataFrame) -> DataFrame:
    """Events (plan_id, version, op, event_id, event_ts, plan: struct or null for a delete,
    kafka_partition, kafka_offset) -> the same plus org, plan_type, creation_date, deductible,
    copay, service_count and doc (canonical JSON of `plan`; null for a delete)."""
    plan = F.col("plan")
    return events.select(
        "plan_id",
        "version",
        "op",
        "event_id",
        "event_ts",
        plan["_org"].alias("org"),
        plan["planType"].alias("plan_type"),
        _creation_date(plan).alias("creation_date"),
        plan["planCostShares"]["deductible"].alias("deductible"),
        plan["planCostShares"]["copay"].alias("copay"),
        F.when(plan.isNotNull(), F.size(plan["linkedPlanServices"]))
        .cast("int")
        .alias("service_count"),
        F.to_json(plan).alias("doc"),
        "plan",
        "kafka_partition",
        "kafka_offset",
    )
