"""Bronze records checked against the change-event contract, split into events and quarantine.

One parse, one verdict: the rules live in `lakehouse.plans.events.parse_event` (the same code
producers and tests use), and the typed columns come from that same parse. The check returns the
envelope fields it read and the `after` document re-serialised as canonical JSON; Spark parses
only that text, never the raw record (whose duplicate keys, long numbers or odd escapes Spark's
parser could read differently). A record whose typed columns Spark still reads as null where the
check saw a value is quarantined as `spark-parse-mismatch`, so nothing reaches a MERGE that could
violate a table constraint.
"""

from __future__ import annotations

import json

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from lakehouse.plans.events import BAD_CREATION_DATE, EventContractError, parse_event
from lakehouse.tables import CHANGE_EVENT, PLAN_DOCUMENT

# Reason codes this module adds to parse_event's (docs/change-events.md).
CHECK_FAILED = "check-failed"
SPARK_PARSE_MISMATCH = "spark-parse-mismatch"

_VERDICT = StructType(
    [
        StructField("reason", StringType()),
        StructField("detail", StringType()),
        # the envelope as the check read it; `after` as canonical JSON, null for a delete
        StructField("event", CHANGE_EVENT),
    ]
)
# Enough of a validation message to act on; the raw value is kept in full beside it.
_MAX_DETAIL = 2000

Verdict = tuple[str | None, str | None, tuple[str, str, str, int, int, str | None] | None]


def contract_verdict(key: bytes | None, value: bytes | None) -> Verdict:
    """(reason, detail, None) for a record that breaks the contract; (None, None, the typed
    envelope with `after` as canonical JSON) for a valid one."""
    try:
        event = parse_event(
            None if key is None else bytes(key),
            None if value is None else bytes(value),
        )
    except EventContractError as exc:
        return exc.reason, exc.detail[:_MAX_DETAIL], None
    except Exception as exc:  # a validator bug must quarantine the record, not kill the stream
        return CHECK_FAILED, f"{type(exc).__name__}: {exc}"[:_MAX_DETAIL], None
    after = (
        None
        if event.after is None
        else json.dumps(event.after, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    )
    return None, None, (event.event_id, event.op, event.plan_id, event.version, event.ts_ms, after)


_verdict_udf = F.udf(contract_verdict, _VERDICT)


def _creation_date(plan: Column) -> Column:
    return F.to_date(plan["creationDate"], "MM-dd-yyyy")


def _spark_disagrees(plan: Column, plan_id: Column) -> Column:
    """True where Spark's reading of a live event's document leaves null a value that the
    tables need and the contract check saw (or reads a different id)."""
    services = plan["linkedPlanServices"]
    service_missing = F.exists(
        services,
        lambda ps: ps.isNull()
        | ps["objectId"].isNull()
        | ps["linkedService"]["objectId"].isNull()
        | ps["planserviceCostShares"]["deductible"].isNull()
        | ps["planserviceCostShares"]["copay"].isNull(),
    )
    return (
        plan.isNull()
        | ~plan["objectId"].eqNullSafe(plan_id)
        | plan["_org"].isNull()
        | plan["planType"].isNull()
        | plan["planCostShares"]["deductible"].isNull()
        | plan["planCostShares"]["copay"].isNull()
        | services.isNull()
        | service_missing
    )


def check_contract(bronze: DataFrame) -> DataFrame:
    """Bronze rows (key, value, topic, partition, offset, kafka_ts, ...) plus `reason` and
    `detail` (both null when the record is a valid event), `event` (the envelope as the check
    read it: event_id, op, plan_id, version, ts_ms, after as canonical JSON) and `plan` (Spark's
    parse of `after`).

    Callers use the result twice (events and quarantine), so they should persist it: the
    contract check is a Python UDF and would otherwise run twice.
    """
    checked = bronze.withColumn("_verdict", _verdict_udf(F.col("key"), F.col("value")))
    checked = checked.withColumn("event", F.col("_verdict.event"))
    checked = checked.withColumn("plan", F.from_json(F.col("event.after"), PLAN_DOCUMENT))
    verdict = F.col("_verdict")
    live = verdict["reason"].isNull() & (F.col("event.op") != "d")
    reason, detail = spark_reading_verdict(
        verdict["reason"], verdict["detail"], live, F.col("plan"), F.col("event.plan_id")
    )
    return checked.select("*", reason.alias("reason"), detail.alias("detail")).drop("_verdict")


def spark_reading_verdict(
    reason: Column, detail: Column, live: Column, plan: Column, plan_id: Column
) -> tuple[Column, Column]:
    """The check's (reason, detail), unless Spark's reading of a `live` document that passed
    it (`plan`, parsed from the checked canonical JSON) cannot be trusted: a creationDate Spark
    cannot read (bad-creation_date, instead of a silent null) or a required value Spark left
    null (spark-parse-mismatch), so nothing reaches a MERGE that could break a constraint."""
    unreadable_date = live & _creation_date(plan).isNull()
    mismatch = live & _spark_disagrees(plan, plan_id)
    return (
        F.when(unreadable_date, F.lit(BAD_CREATION_DATE))
        .when(mismatch, F.lit(SPARK_PARSE_MISMATCH))
        .otherwise(reason),
        F.when(
            unreadable_date,
            F.concat(F.lit("not readable as MM-dd-yyyy: "), plan["creationDate"]),
        )
        .when(
            mismatch,
            F.lit("Spark's JSON reader left a required field of the checked document null"),
        )
        .otherwise(detail),
    )


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
