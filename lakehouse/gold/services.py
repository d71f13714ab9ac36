"""Service patterns: which services plans link, what they cost, and which go together.

Pairs and links are counted exactly (FP-Growth restricted to itemsets of two gives the same pair
counts; the tests check that) so that both can be maintained incrementally: a changed plan
subtracts the pairs and links of its old service set and adds those of its new one. The service
statistics are then derived from the link counts, a small table, whole.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from lakehouse.tables import (
    GOLD_SERVICE_LINK_COUNTS,
    GOLD_SERVICE_PAIR_COUNTS,
    GOLD_SERVICE_PAIRS,
    GOLD_SERVICE_PATTERNS,
)

_DECIMALS = 4
_AMOUNT = GOLD_SERVICE_LINK_COUNTS["deductible_sum"].dataType
_LINK_COUNT_COLUMNS = GOLD_SERVICE_LINK_COUNTS.fieldNames()


def live_links(plans: DataFrame, plan_services: DataFrame) -> DataFrame:
    """silver.plans + silver.plan_services -> the plan_services rows of live plans that name a
    service (rows of deleted plans or without a service_id are left out)."""
    live = plans.where(~F.col("is_deleted")).select("plan_id")
    return plan_services.where(F.col("service_id").isNotNull()).join(live, "plan_id", "left_semi")


def live_plan_count(plans: DataFrame) -> DataFrame:
    """silver.plans -> one row, one column `live_plans`."""
    return plans.where(~F.col("is_deleted")).agg(F.count("*").alias("live_plans"))


def to_link_counts(links: DataFrame) -> DataFrame:
    """`live_links` rows -> gold.service_link_counts: per (service_id, copay, service_name) the
    links, the exact (decimal) sum and the count of their deductibles, and plans_counted.

    plans_counted counts each (plan, service) once, on the row of the plan's first link of the
    service by (copay, service_name): the plans using a service are the sum over its rows, and a
    plan's share of every column is a function of its own links alone, so that an increment
    subtracts a changed plan's old links and adds its new ones exactly
    (`apply_link_count_changes`)."""
    first = Window.partitionBy("plan_id", "service_id").orderBy("copay", "service_name")
    return (
        links.withColumn("_first", F.when(F.row_number().over(first) == 1, 1).otherwise(0))
        .groupBy("service_id", "copay", "service_name")
        .agg(
            F.count("*").alias("links"),
            F.coalesce(F.sum(F.col("deductible").cast(_AMOUNT)), F.lit(0).cast(_AMOUNT)).alias(
                "deductible_sum"
            ),
            F.count("deductible").alias("deductible_n"),
            F.sum("_first").cast("long").alias("plans_counted"),
        )
        .select(*_LINK_COUNT_COLUMNS)
    )


def apply_link_count_changes(counts: DataFrame, before: DataFrame, after: DataFrame) -> DataFrame:
    """gold.service_link_counts + `to_link_counts` of the changed plans' links before and after
    the change -> the new counts: `after` added, `before` subtracted, rows left without a link
    dropped."""
    measures = ("links", "deductible_sum", "deductible_n", "plans_counted")
    subtracted = before.select(
        "service_id", "copay", "service_name", *((-F.col(m)).alias(m) for m in measures)
    )
    return (
        counts.unionByName(after)
        .unionByName(subtracted)
        .groupBy("service_id", "copay", "service_name")
        .agg(
            F.sum("links").cast("long").alias("links"),
            F.sum("deductible_sum").cast(_AMOUNT).alias("deductible_sum"),
            F.sum("deductible_n").cast("long").alias("deductible_n"),
            F.sum("plans_counted").cast("long").alias("plans_counted"),
        )
        .where(F.col("links") > 0)
        .select(*_LINK_COUNT_COLUMNS)
    )


def update_link_counts(counts: DataFrame, before: DataFrame, after: DataFrame) -> DataFrame:
    """gold.service_link_counts + `live_links` of the changed plans before and after the change
    -> the new counts."""
    return apply_link_count_changes(counts, to_link_counts(before), to_link_counts(after))


def to_service_patterns(links: DataFrame, services: DataFrame, live_plans: DataFrame) -> DataFrame:
    """`live_links` rows + silver.services + `live_plan_count` -> gold.service_patterns (through
    `to_link_counts`: what a rebuild computes)."""
    return patterns_from_link_counts(to_link_counts(links), services, live_plans)


def patterns_from_link_counts(
    counts: DataFrame, services: DataFrame, live_plans: DataFrame
) -> DataFrame:
    """gold.service_link_counts + silver.services + `live_plan_count` -> gold.service_patterns:
    per service its plans, links, share of live plans and copay / deductible statistics. The
    name comes from silver.services (the latest seen), else from the links.

    Copays are few distinct amounts, so the counts hold a few rows per service, and exact
    percentiles over them (`percentile`'s frequency argument) equal percentiles over the links.
    Sums of amounts are taken in decimal: exact, so a refresh and a rebuild agree to the bit."""
    priced = F.when(F.col("copay").isNotNull(), F.col("links"))
    copay_sum = F.sum(F.col("copay").cast(_AMOUNT) * F.col("links")).cast("double")
    deductible_n = F.sum("deductible_n")
    stats = counts.groupBy("service_id").agg(
        F.sum("plans_counted").cast("long").alias("plans_using"),
        F.sum("links").cast("long").alias("links"),
        F.round(copay_sum / F.sum(priced), _DECIMALS).alias("copay_mean"),
        F.round(F.expr("percentile(copay, 0.5, links)"), _DECIMALS).alias("copay_median"),
        F.round(F.expr("percentile(copay, 0.9, links)"), _DECIMALS).alias("copay_p90"),
        F.round(
            F.when(deductible_n > 0, F.sum("deductible_sum").cast("double") / deductible_n),
            _DECIMALS,
        ).alias("deductible_mean"),
        F.max("service_name").alias("_link_name"),
    )
    names = services.select("service_id", F.col("service_name").alias("_name"))
    return (
        stats.join(names, "service_id", "left")
        .crossJoin(live_plans)
        .select(
            "*",
            F.coalesce("_name", "_link_name").alias("service_name"),
            F.round(F.col("plans_using") / F.col("live_plans"), _DECIMALS).alias("share_of_plans"),
        )
        .select(*GOLD_SERVICE_PATTERNS.fieldNames())
    )


def plan_pairs(links: DataFrame) -> DataFrame:
    """`live_links` rows -> one row per plan and unordered pair of distinct services it links:
    plan_id, service_a, service_b with service_a < service_b (a repeated service counts once)."""
    items = links.select("plan_id", "service_id").distinct()
    a = items.alias("a")
    b = items.alias("b")
    return a.join(
        b,
        (F.col("a.plan_id") == F.col("b.plan_id"))
        & (F.col("a.service_id") < F.col("b.service_id")),
    ).select(
        F.col("a.plan_id").alias("plan_id"),
        F.col("a.service_id").alias("service_a"),
        F.col("b.service_id").alias("service_b"),
    )


def to_pair_counts(pairs: DataFrame) -> DataFrame:
    """`plan_pairs` rows -> gold.service_pair_counts: plans per pair."""
    return (
        pairs.groupBy("service_a", "service_b")
        .agg(F.count("*").alias("plans_with_pair"))
        .select(*GOLD_SERVICE_PAIR_COUNTS.fieldNames())
    )


def pair_count_changes(old_pairs: DataFrame, new_pairs: DataFrame) -> DataFrame:
    """`plan_pairs` of the changed plans before and after the change -> service_a, service_b,
    delta (new count minus old count), for the pairs whose count moves."""
    signed = old_pairs.withColumn("_sign", F.lit(-1)).unionByName(
        new_pairs.withColumn("_sign", F.lit(1))
    )
    return (
        signed.groupBy("service_a", "service_b")
        .agg(F.sum("_sign").cast("long").alias("delta"))
        .where(F.col("delta") != 0)
    )


def apply_pair_count_changes(pair_counts: DataFrame, changes: DataFrame) -> DataFrame:
    """gold.service_pair_counts + `pair_count_changes` -> the new counts (pairs no plan has any
    more are dropped)."""
    merged = pair_counts.join(changes, ["service_a", "service_b"], "full_outer")
    count = F.coalesce(F.col("plans_with_pair"), F.lit(0)) + F.coalesce(F.col("delta"), F.lit(0))
    return (
        merged.select("service_a", "service_b", count.cast("long").alias("plans_with_pair"))
        .where(F.col("plans_with_pair") > 0)
        .select(*GOLD_SERVICE_PAIR_COUNTS.fieldNames())
    )


def update_pair_counts(counts: DataFrame, before: DataFrame, after: DataFrame) -> DataFrame:
    """gold.service_pair_counts + `live_links` of the changed plans before and after the change
    -> the new counts."""
    return apply_pair_count_changes(
        counts, pair_count_changes(plan_pairs(before), plan_pairs(after))
    )


def to_service_pairs(
    pair_counts: DataFrame, patterns: DataFrame, live_plans: DataFrame, min_support: float
) -> DataFrame:
    """gold.service_pair_counts + gold.service_patterns + `live_plan_count` -> gold.service_pairs:
    the pairs with support >= min_support and their confidence both ways and lift."""
    a = patterns.select(
        F.col("service_id").alias("service_a"),
        F.col("service_name").alias("service_a_name"),
        F.col("plans_using").alias("_plans_a"),
    )
    b = patterns.select(
        F.col("service_id").alias("service_b"),
        F.col("service_name").alias("service_b_name"),
        F.col("plans_using").alias("_plans_b"),
    )
    n = F.col("live_plans")
    pairs = F.col("plans_with_pair")
    return (
        pair_counts.join(a, "service_a")
        .join(b, "service_b")
        .crossJoin(live_plans)
        .where(pairs >= F.lit(min_support) * n)
        .select(
            "*",
            F.round(pairs / n, _DECIMALS).alias("support"),
            F.round(pairs / F.col("_plans_a"), _DECIMALS).alias("confidence_a_to_b"),
            F.round(pairs / F.col("_plans_b"), _DECIMALS).alias("confidence_b_to_a"),
            F.round(pairs * n / (F.col("_plans_a") * F.col("_plans_b")), _DECIMALS).alias("lift"),
        )
        .select(*GOLD_SERVICE_PAIRS.fieldNames())
    )
