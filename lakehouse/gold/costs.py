"""Cost analysis: silver plans and plan services -> gold.plan_costs and gold.cost_trends.

Pure DataFrame -> DataFrame functions; reading, time travel and MERGEs live in gold/refresh.py.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse.tables import GOLD_COST_TRENDS, GOLD_PLAN_COSTS

TREND_KEYS = ("plan_type", "org", "creation_month")

# Rounding keeps statistics equal whatever order Spark adds the rows in (full and incremental
# runs aggregate the same rows in different partitions) and drops interpolation noise.
_DECIMALS = 4


def to_plan_costs(plans: DataFrame, plan_services: DataFrame) -> DataFrame:
    """silver.plans + silver.plan_services -> gold.plan_costs: one row per live plan (tombstones
    dropped) with its plan-level costs, service sums and total_cost (see GOLD_PLAN_COSTS).

    Services are matched by plan_id only: while the stream is between its plans and
    plan_services MERGEs the versions can differ for a moment, and a plan without its services
    would be worse than one with the services of its previous version.
    """
    per_plan = plan_services.groupBy("plan_id").agg(
        F.count("*").cast("int").alias("service_count"),
        F.countDistinct("service_id").cast("int").alias("distinct_service_count"),
        F.sum("deductible").alias("services_deductible"),
        F.sum("copay").alias("services_copay"),
        F.max("copay").alias("max_service_copay"),
    )
    live = plans.where(~F.col("is_deleted")).select(
        "plan_id", "version", "org", "plan_type", "creation_date", "deductible", "copay", "event_ts"
    )
    joined = live.join(per_plan, "plan_id", "left")
    services_copay = F.coalesce(F.col("services_copay"), F.lit(0.0))
    return joined.select(
        "plan_id",
        F.col("version").alias("plan_version"),
        "org",
        "plan_type",
        "creation_date",
        F.trunc("creation_date", "month").alias("creation_month"),
        F.col("deductible").alias("plan_deductible"),
        F.col("copay").alias("plan_copay"),
        F.coalesce(F.col("service_count"), F.lit(0)).alias("service_count"),
        F.coalesce(F.col("distinct_service_count"), F.lit(0)).alias("distinct_service_count"),
        F.coalesce(F.col("services_deductible"), F.lit(0.0)).alias("services_deductible"),
        services_copay.alias("services_copay"),
        "max_service_copay",
        (F.col("deductible") + F.col("copay") + services_copay).alias("total_cost"),
        "event_ts",
    ).select(*GOLD_PLAN_COSTS.fieldNames())


def _stats(column: str, name: str) -> list[Column]:
    return [
        F.round(F.avg(column), _DECIMALS).alias(f"{name}_mean"),
        F.round(F.expr(f"percentile({column}, 0.5)"), _DECIMALS).alias(f"{name}_median"),
        F.round(F.expr(f"percentile({column}, 0.9)"), _DECIMALS).alias(f"{name}_p90"),
    ]


def _pct_change(current: Column, previous: Column) -> Column:
    return F.when(previous != 0, F.round((current - previous) / previous * 100.0, _DECIMALS))


def to_cost_trends(plan_costs: DataFrame) -> DataFrame:
    """gold.plan_costs -> gold.cost_trends: per (plan_type, org, creation_month) the plan count,
    mean / median / p90 (exact percentiles) of deductible, copay and total cost, and the change
    against the same group's previous calendar month.

    Month-over-month needs the previous month's group in the input: an incremental caller passes
    the neighbouring months too (see `trend_scope`)."""
    groups = plan_costs.groupBy(*TREND_KEYS).agg(
        F.count("*").alias("plan_count"),
        *_stats("plan_deductible", "deductible"),
        *_stats("plan_copay", "copay"),
        *_stats("total_cost", "total_cost"),
    )
    previous = groups.select(
        F.col("plan_type").alias("_plan_type"),
        F.col("org").alias("_org"),
        F.add_months("creation_month", 1).alias("_month"),
        F.col("plan_count").alias("prev_month_plan_count"),
        F.col("total_cost_mean").alias("_prev_total_cost_mean"),
        F.col("deductible_median").alias("_prev_deductible_median"),
    )
    same_group_next_month = (
        F.col("plan_type").eqNullSafe(F.col("_plan_type"))
        & F.col("org").eqNullSafe(F.col("_org"))
        & (F.col("creation_month") == F.col("_month"))
    )
    joined = groups.join(previous, same_group_next_month, "left")
    return joined.select(
        *(c for c in GOLD_COST_TRENDS.fieldNames() if not c.endswith("_mom_pct")),
        _pct_change(F.col("total_cost_mean"), F.col("_prev_total_cost_mean")).alias(
            "total_cost_mean_mom_pct"
        ),
        _pct_change(F.col("deductible_median"), F.col("_prev_deductible_median")).alias(
            "deductible_median_mom_pct"
        ),
    ).select(*GOLD_COST_TRENDS.fieldNames())


def trend_groups(changed_plan_costs: DataFrame) -> DataFrame:
    """Rows of gold.plan_costs' change feed (old and new images) -> the distinct trend groups
    (plan_type, org, creation_month) whose statistics they can move."""
    return changed_plan_costs.select(*TREND_KEYS).distinct()


def trend_scope(groups: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Changed trend groups -> (rows to rewrite, plan groups to read).

    A group's change also moves the next month's month-over-month figures, so both are
    rewritten; computing them needs the month before each of those too."""
    rewrite = groups.unionByName(
        groups.withColumn("creation_month", F.add_months("creation_month", 1))
    ).distinct()
    read = rewrite.unionByName(
        groups.withColumn("creation_month", F.add_months("creation_month", -1))
    ).distinct()
    return rewrite, read
