"""Service patterns: which services plans link, what they cost, and which go together.

Pairs are counted exactly (FP-Growth restricted to itemsets of two gives the same counts; the
tests check that) so that they can be maintained incrementally: a changed plan subtracts the
pairs of its old service set and adds those of its new one.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.tables import GOLD_SERVICE_PAIR_COUNTS, GOLD_SERVICE_PAIRS, GOLD_SERVICE_PATTERNS

_DECIMALS = 4


def live_links(plans: DataFrame, plan_services: DataFrame) -> DataFrame:
    """silver.plans + silver.plan_services -> the plan_services rows of live plans that name a
    service (rows of deleted plans or without a service_id are left out)."""
    live = plans.where(~F.col("is_deleted")).select("plan_id")
    return plan_services.where(F.col("service_id").isNotNull()).join(live, "plan_id", "left_semi")


def live_plan_count(plans: DataFrame) -> DataFrame:
    """silver.plans -> one row, one column `live_plans`."""
    return plans.where(~F.col("is_deleted")).agg(F.count("*").alias("live_plans"))


def to_service_patterns(links: DataFrame, services: DataFrame, live_plans: DataFrame) -> DataFrame:
    """`live_links` rows + silver.services + `live_plan_count` -> gold.service_patterns: per
    service its plans, links, share of live plans and copay / deductible statistics. The name
    comes from silver.services (the latest seen), else from the links.

    The links are first counted per (service, copay): copays are few distinct amounts, and exact
    percentiles over those counts (`percentile`'s frequency argument) equal percentiles over the
    links, without shipping every link's copay through the percentile's aggregation buffer."""
    by_copay = links.groupBy("service_id", "copay").agg(
        F.count("*").alias("_links"),
        F.sum("deductible").alias("_deductible_sum"),
        F.count("deductible").alias("_deductible_n"),
        F.max("service_name").alias("_link_name"),
    )
    priced = F.when(F.col("copay").isNotNull(), F.col("_links"))
    stats = by_copay.groupBy("service_id").agg(
        F.sum("_links").alias("links"),
        F.round(F.sum(F.col("copay") * F.col("_links")) / F.sum(priced), _DECIMALS).alias(
            "copay_mean"
        ),
        F.round(F.expr("percentile(copay, 0.5, _links)"), _DECIMALS).alias("copay_median"),
        F.round(F.expr("percentile(copay, 0.9, _links)"), _DECIMALS).alias("copay_p90"),
        F.round(F.sum("_deductible_sum") / F.sum("_deductible_n"), _DECIMALS).alias(
            "deductible_mean"
        ),
        F.max("_link_name").alias("_link_name"),
    )
    plans_using = (
        links.select("service_id", "plan_id")
        .distinct()
        .groupBy("service_id")
        .agg(F.count("*").alias("plans_using"))
    )
    names = services.select("service_id", F.col("service_name").alias("_name"))
    return (
        stats.join(plans_using, "service_id")
        .join(names, "service_id", "left")
        .crossJoin(live_plans)
        .select(
            "*",
            F.coalesce("_name", "_link_name").alias("service_name"),
            F.round(F.col("plans_using") / F.col("live_plans"), _DECIMALS).alias("share_of_plans"),
        )
        .select(*GOLD_SERVICE_PATTERNS.fieldNames())
    )


def with_share(patterns: DataFrame, live_plans: DataFrame) -> DataFrame:
    """gold.service_patterns rows + `live_plan_count` -> the same rows with share_of_plans
    recomputed (every share moves when the number of live plans does)."""
    return (
        patterns.drop("share_of_plans")
        .crossJoin(live_plans)
        .withColumn(
            "share_of_plans", F.round(F.col("plans_using") / F.col("live_plans"), _DECIMALS)
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
