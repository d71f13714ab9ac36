"""Pure transforms from typed plan events to the silver tables' rows.

Plan events are the output of `contract.to_plan_events` (or of a Mongo snapshot): plan_id,
version, op, event_id, event_ts, org, plan_type, creation_date, deductible, copay,
service_count, doc, plan, kafka_partition, kafka_offset.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from lakehouse.tables import PLAN_DOCUMENT, SILVER_PLANS


def latest_per_plan(events: DataFrame) -> DataFrame:
    """Plan events -> the highest version of each plan_id, same columns.

    Duplicates of one version are the same change delivered twice; the first delivered (lowest
    Kafka position) is kept so the choice is deterministic.
    """
    order = Window.partitionBy("plan_id").orderBy(
        F.col("version").desc(),
        F.col("kafka_partition").asc_nulls_last(),
        F.col("kafka_offset").asc_nulls_last(),
    )
    return events.withColumn("_rank", F.row_number().over(order)).where("_rank = 1").drop("_rank")


def to_plan_rows(events: DataFrame) -> DataFrame:
    """Plan events (one per plan, see `latest_per_plan`) -> rows in the silver.plans layout:
    a delete becomes a tombstone (is_deleted, its version, doc null)."""
    return events.select(
        *(
            F.col(name)
            for name in SILVER_PLANS.fieldNames()
            if name not in ("is_deleted", "updated_at")
        ),
        (F.col("op") == "d").alias("is_deleted"),
        F.current_timestamp().alias("updated_at"),
    ).select(*SILVER_PLANS.fieldNames())


def to_history_rows(events: DataFrame) -> DataFrame:
    """Plan events -> one silver.plan_history row per (plan_id, version), valid_to still open.

    valid_to and is_current depend on the plan's other versions: see `history_validity`.
    """
    order = Window.partitionBy("plan_id", "version").orderBy(
        F.col("kafka_partition").asc_nulls_last(), F.col("kafka_offset").asc_nulls_last()
    )
    first = events.withColumn("_rank", F.row_number().over(order)).where("_rank = 1")
    return first.select(
        "plan_id",
        "version",
        "op",
        "event_id",
        (F.col("op") == "d").alias("is_deleted"),
        F.col("event_ts").alias("valid_from"),
        F.lit(None).cast("timestamp").alias("valid_to"),
        F.lit(True).alias("is_current"),
        "doc",
        F.current_timestamp().alias("recorded_at"),
    )


def history_validity(history: DataFrame) -> DataFrame:
    """History rows (plan_id, version, valid_from, ...) -> plan_id, version, valid_to,
    is_current: a version is valid until the next known version of the same plan starts, so a
    version that arrives late closes its predecessor and is closed by its successor."""
    following = F.lead("valid_from").over(Window.partitionBy("plan_id").orderBy("version"))
    return history.select(
        "plan_id",
        "version",
        following.alias("valid_to"),
        following.isNull().alias("is_current"),
    )


def history_changes(existing: DataFrame, incoming: DataFrame) -> DataFrame:
    """Current plan_history rows of some plans + `to_history_rows` of a batch -> every version
    of those plans in the plan_history layout, valid_to and is_current recomputed. A version
    already recorded keeps its row (a replay or duplicate changes nothing but validity)."""
    keys = ["plan_id", "version"]
    new = incoming.join(existing.select(*keys), keys, "left_anti")
    versions = existing.unionByName(new)
    validity = history_validity(versions)
    return versions.drop("valid_to", "is_current").join(validity, keys).select(*existing.columns)


def linked_services(plans: DataFrame) -> DataFrame:
    """silver.plans rows -> one row per plan service of every live plan: plan_id, plan_version,
    event_ts, planservice_id, service_id, service_name, org, deductible, copay."""
    parsed = plans.where(~F.col("is_deleted")).select(
        "plan_id",
        F.col("version").alias("plan_version"),
        "event_ts",
        F.explode(F.from_json("doc", PLAN_DOCUMENT)["linkedPlanServices"]).alias("ps"),
    )
    return parsed.select(
        "plan_id",
        "plan_version",
        "event_ts",
        F.col("ps.objectId").alias("planservice_id"),
        F.col("ps.linkedService.objectId").alias("service_id"),
        F.col("ps.linkedService.name").alias("service_name"),
        F.col("ps.linkedService._org").alias("org"),
        F.col("ps.planserviceCostShares.deductible").alias("deductible"),
        F.col("ps.planserviceCostShares.copay").alias("copay"),
    )


def to_plan_service_rows(linked: DataFrame) -> DataFrame:
    """`linked_services` rows -> the silver.plan_services layout."""
    return linked.select(
        "plan_id",
        "planservice_id",
        "service_id",
        "service_name",
        "org",
        "deductible",
        "copay",
        "plan_version",
        F.current_timestamp().alias("updated_at"),
    )


def plan_service_changes(existing: DataFrame, wanted: DataFrame) -> DataFrame:
    """Current silver.plan_services rows of some plans + the rows those plans should have now
    -> the rows to merge: every wanted row with `_delete` false, and every existing row that is
    no longer wanted (the service was unlinked, or the plan deleted) with `_delete` true."""
    keys = ["plan_id", "planservice_id"]
    gone = existing.join(wanted.select(*keys), keys, "left_anti")
    return wanted.withColumn("_delete", F.lit(False)).unionByName(
        gone.withColumn("_delete", F.lit(True))
    )


def to_service_rows(linked: DataFrame) -> DataFrame:
    """`linked_services` rows -> one silver.services row per service_id, named as in the most
    recent plan version that links it: service_id, service_name, org, seen_at, updated_at."""
    order = Window.partitionBy("service_id").orderBy(
        F.col("event_ts").desc(), F.col("plan_id"), F.col("planservice_id")
    )
    latest = linked.withColumn("_rank", F.row_number().over(order)).where("_rank = 1")
    return latest.select(
        "service_id",
        "service_name",
        "org",
        F.col("event_ts").alias("seen_at"),
        F.current_timestamp().alias("updated_at"),
    )
