"""Unit tests for the gold transforms (lakehouse.gold.costs, services, anomaly) and the
incremental MERGE helper.

Small inline DataFrames with declared schemas, compared as whole frames against hand-computed
expectations: nulls, empty input, deleted plans, repeated services, missing months, unseen plan
types. Only the local SparkSession is needed (the MERGE test writes a Delta table in tmp_path).
"""

from __future__ import annotations

import math
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from delta.tables import DeltaTable
from frames import assert_frames_close, assert_frames_equal
from pyspark.ml.fpm import FPGrowth
from pyspark.ml.linalg import Vectors
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from lakehouse.gold import anomaly, costs, services
from lakehouse.gold.refresh import Refresh, RefreshCosts, Watermark, replace_rows, semi_join
from lakehouse.plans.generator import anomaly_labels, iter_plans
from lakehouse.tables import (
    GOLD_COST_TRENDS,
    GOLD_PLAN_ANOMALIES,
    GOLD_PLAN_COSTS,
    GOLD_SERVICE_LINK_COUNTS,
    GOLD_SERVICE_PAIR_COUNTS,
    GOLD_SERVICE_PAIRS,
    GOLD_SERVICE_PATTERNS,
    SILVER_PLAN_SERVICES,
    SILVER_PLANS,
    SILVER_SERVICES,
)

TS = datetime(2026, 1, 1, 12, 0, 0)
CREATED = date(2024, 3, 15)


def _frame(spark: SparkSession, rows: list[tuple], schema: StructType) -> DataFrame:
    return spark.createDataFrame(rows, schema)


def _plan(
    plan_id: str,
    deductible: float | None = 1000.0,
    copay: float | None = 20.0,
    *,
    deleted: bool = False,
    version: int = 1,
    org: str | None = "acme",
    plan_type: str | None = "PPO",
    created: date | None = CREATED,
) -> tuple:
    """A silver.plans row (tombstones carry no costs)."""
    if deleted:
        return (plan_id, version, True, "d", None, TS, None, None, None, None, None, None, None,
                0, 1, TS)  # fmt: skip
    return (plan_id, version, False, "c", f"e-{plan_id}", TS, org, plan_type, created,
            deductible, copay, 0, "{}", 0, 1, TS)  # fmt: skip


def _link(
    plan_id: str,
    ps_id: str,
    service_id: str | None,
    copay: float | None,
    deductible: float | None = 0.0,
    name: str | None = None,
) -> tuple:
    """A silver.plan_services row."""
    return (plan_id, ps_id, service_id, name or f"name of {service_id}", "svc.example",
            deductible, copay, 1, TS)  # fmt: skip


# --- cost analysis


def test_plan_costs_one_row_per_live_plan_with_service_sums(spark: SparkSession) -> None:
    plans = _frame(
        spark,
        [
            _plan("p1", 1000.0, 20.0),
            _plan("p2", 500.0, 0.0),
            _plan("p3", deleted=True, version=4),
            _plan("p4", 250.0, None),
            _plan("p5", 100.0, 10.0, org=None, created=None),
        ],
        SILVER_PLANS,
    )
    links = _frame(
        spark,
        [
            _link("p1", "ps1", "s-a", 30.0),
            _link("p1", "ps2", "s-b", 100.0, deductible=1000.0),
            _link("p1", "ps3", "s-a", 40.0),  # the same service linked twice
            _link("p3", "ps4", "s-a", 999.0),  # a deleted plan's leftover link
            _link("p4", "ps5", "s-c", None, deductible=None),
            _link("p4", "ps6", "s-d", 10.0),
            _link("p9", "ps7", "s-a", 5.0),  # a plan silver does not hold
        ],
        SILVER_PLAN_SERVICES,
    )
    march = date(2024, 3, 1)
    expected = _frame(
        spark,
        [
            (
                "p1",
                1,
                "acme",
                "PPO",
                CREATED,
                march,
                1000.0,
                20.0,
                3,
                2,
                1000.0,
                170.0,
                100.0,
                1190.0,
                TS,
            ),
            ("p2", 1, "acme", "PPO", CREATED, march, 500.0, 0.0, 0, 0, 0.0, 0.0, None, 500.0, TS),
            ("p4", 1, "acme", "PPO", CREATED, march, 250.0, None, 2, 2, 0.0, 10.0, 10.0, None, TS),
            ("p5", 1, None, "PPO", None, None, 100.0, 10.0, 0, 0, 0.0, 0.0, None, 110.0, TS),
        ],  # fmt: skip
        GOLD_PLAN_COSTS,
    )
    assert_frames_equal(costs.to_plan_costs(plans, links), expected)


def test_plan_costs_of_empty_silver_is_empty(spark: SparkSession) -> None:
    empty = costs.to_plan_costs(
        _frame(spark, [], SILVER_PLANS), _frame(spark, [], SILVER_PLAN_SERVICES)
    )
    assert_frames_equal(empty, _frame(spark, [], GOLD_PLAN_COSTS))


def _cost(
    plan_id: str, plan_type: str | None, org: str | None, month: date | None,
    deductible: float, copay: float, total: float,
) -> tuple:  # fmt: skip
    """A gold.plan_costs row with only what cost_trends reads filled in."""
    return (plan_id, 1, org, plan_type, month, month, deductible, copay, 0, 0, 0.0, 0.0, None,
            total, TS)  # fmt: skip


def _trend(*values: object) -> tuple:
    return tuple(values)


def test_cost_trends_statistics_and_month_over_month(spark: SparkSession) -> None:
    jan, feb, mar, apr = (date(2024, m, 1) for m in (1, 2, 3, 4))
    plan_costs = _frame(
        spark,
        [
            _cost("a1", "PPO", "acme", jan, 100.0, 10.0, 200.0),
            _cost("a2", "PPO", "acme", jan, 200.0, 10.0, 300.0),
            _cost("a3", "PPO", "acme", jan, 300.0, 10.0, 400.0),
            _cost("a4", "PPO", "acme", jan, 400.0, 10.0, 500.0),
            _cost("a5", "PPO", "acme", feb, 500.0, 0.0, 700.0),
            _cost("a6", "PPO", "acme", apr, 600.0, 0.0, 600.0),  # March is empty: no MoM
            _cost("a7", "PPO", "acme", None, 50.0, 0.0, 60.0),  # no creation date
            _cost("h1", "HMO", None, feb, 0.0, 0.0, 0.0),
            _cost("h2", "HMO", None, mar, 100.0, 0.0, 100.0),  # previous means are 0: no MoM
        ],
        GOLD_PLAN_COSTS,
    )
    expected = _frame(
        spark,
        [
            # exact percentiles, linear interpolation: p90 of 100..400 = 300 + 0.7 * 100
            _trend(
                "PPO",
                "acme",
                jan,
                4,
                250.0,
                250.0,
                370.0,
                10.0,
                10.0,
                10.0,
                350.0,
                350.0,
                470.0,
                None,
                None,
                None,
            ),
            _trend(
                "PPO",
                "acme",
                feb,
                1,
                500.0,
                500.0,
                500.0,
                0.0,
                0.0,
                0.0,
                700.0,
                700.0,
                700.0,
                4,
                100.0,
                100.0,
            ),
            _trend(
                "PPO",
                "acme",
                apr,
                1,
                600.0,
                600.0,
                600.0,
                0.0,
                0.0,
                0.0,
                600.0,
                600.0,
                600.0,
                None,
                None,
                None,
            ),
            _trend(
                "PPO",
                "acme",
                None,
                1,
                50.0,
                50.0,
                50.0,
                0.0,
                0.0,
                0.0,
                60.0,
                60.0,
                60.0,
                None,
                None,
                None,
            ),
            _trend(
                "HMO", None, feb, 1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, None, None, None
            ),
            _trend(
                "HMO",
                None,
                mar,
                1,
                100.0,
                100.0,
                100.0,
                0.0,
                0.0,
                0.0,
                100.0,
                100.0,
                100.0,
                1,
                None,
                None,
            ),
        ],  # fmt: skip
        GOLD_COST_TRENDS,
    )
    assert_frames_equal(costs.to_cost_trends(plan_costs), expected)


def test_cost_trends_of_no_plans_is_empty(spark: SparkSession) -> None:
    empty = costs.to_cost_trends(_frame(spark, [], GOLD_PLAN_COSTS))
    assert_frames_equal(empty, _frame(spark, [], GOLD_COST_TRENDS))


def test_trend_scope_rewrites_the_next_month_and_reads_the_one_before(
    spark: SparkSession,
) -> None:
    keys = "plan_type string, org string, creation_month date"
    groups = spark.createDataFrame([("PPO", None, date(2024, 1, 1))], keys)
    rewrite, read = costs.trend_scope(groups)
    jan, feb, dec = date(2024, 1, 1), date(2024, 2, 1), date(2023, 12, 1)
    assert_frames_equal(
        rewrite, spark.createDataFrame([("PPO", None, jan), ("PPO", None, feb)], keys)
    )
    assert_frames_equal(
        read,
        spark.createDataFrame([("PPO", None, jan), ("PPO", None, feb), ("PPO", None, dec)], keys),
    )


def test_semi_join_matches_null_keys(spark: SparkSession) -> None:
    rows = spark.createDataFrame([("PPO", None, 1), ("PPO", "acme", 2), ("HMO", None, 3)],
                                 "plan_type string, org string, n int")  # fmt: skip
    keys = spark.createDataFrame([("PPO", None)], "plan_type string, org string")
    expected = spark.createDataFrame([("PPO", None, 1)], "plan_type string, org string, n int")
    assert_frames_equal(semi_join(rows, keys, ["plan_type", "org"]), expected)


# --- service patterns


def _service_inputs(spark: SparkSession) -> tuple[DataFrame, DataFrame, DataFrame]:
    plans = _frame(
        spark,
        [_plan("p1"), _plan("p2"), _plan("p3", deleted=True, version=2), _plan("p4")],
        SILVER_PLANS,
    )
    links = _frame(
        spark,
        [
            _link("p1", "ps1", "s-a", 10.0),
            _link("p1", "ps2", "s-b", 30.0, deductible=100.0, name="Beta"),
            _link("p1", "ps3", "s-a", 20.0),
            _link("p2", "ps4", "s-a", 40.0),
            _link("p2", "ps5", None, 5.0),  # no service id: not a service
            _link("p3", "ps6", "s-b", 999.0),  # a deleted plan
        ],
        SILVER_PLAN_SERVICES,
    )
    names = _frame(spark, [("s-a", "Alpha (latest)", "svc.example", TS, TS)], SILVER_SERVICES)
    return services.live_links(plans, links), names, services.live_plan_count(plans)


def test_service_patterns_over_live_plans(spark: SparkSession) -> None:
    links, names, live = _service_inputs(spark)
    expected = _frame(
        spark,
        [
            # copay p90 of 10, 20, 40 = 20 + 0.8 * 20
            ("s-a", "Alpha (latest)", 2, 3, 0.6667, 23.3333, 20.0, 36.0, 0.0),
            ("s-b", "Beta", 1, 1, 0.3333, 30.0, 30.0, 30.0, 100.0),
        ],
        GOLD_SERVICE_PATTERNS,
    )
    assert_frames_equal(services.to_service_patterns(links, names, live), expected)


def test_service_patterns_count_repeated_and_missing_copays_like_single_links(
    spark: SparkSession,
) -> None:
    """Statistics come from links counted per (service, copay): repeated amounts weigh as
    often as they occur, a link without a copay counts as a link but not in the copay
    statistics, a link without a deductible not in its mean, and a plan linking a service
    twice uses it once."""
    plans = _frame(spark, [_plan("p1"), _plan("p2"), _plan("p3")], SILVER_PLANS)
    links = _frame(
        spark,
        [
            _link("p1", "ps1", "s-a", 10.0, deductible=50.0),
            _link("p1", "ps2", "s-a", 10.0, deductible=None),  # the same service again
            _link("p2", "ps3", "s-a", 10.0, deductible=150.0),
            _link("p2", "ps4", "s-a", 40.0, deductible=None),
            _link("p3", "ps5", "s-a", None, deductible=100.0),  # no copay
            _link("p3", "ps6", "s-c", None, deductible=None),  # nothing priced at all
        ],
        SILVER_PLAN_SERVICES,
    )
    names = _frame(spark, [], SILVER_SERVICES)
    live = services.live_plan_count(plans)
    expected = _frame(
        spark,
        [
            # copays 10, 10, 10, 40: mean 17.5, median 10, p90 = 10 + 0.7 * 30 = 31;
            # deductibles 50, 150, 100: mean 100
            ("s-a", "name of s-a", 3, 5, 1.0, 17.5, 10.0, 31.0, 100.0),
            ("s-c", "name of s-c", 1, 1, 0.3333, None, None, None, None),
        ],
        GOLD_SERVICE_PATTERNS,
    )
    result = services.to_service_patterns(services.live_links(plans, links), names, live)
    assert_frames_equal(result, expected)


def test_refresh_costs_choose_the_cheaper_path_from_measured_runs() -> None:
    unmeasured = RefreshCosts()
    assert unmeasured.choose(100) == (
        True,
        "refreshed: no measured refresh and rebuild to compare yet",
    )
    one = RefreshCosts(full_s=4.0, refreshes=((20, 3.0),))
    assert one.estimate(1000) == 3.0  # a single refresh is taken as fixed cost
    assert one.choose(1000) == (True, "refreshed: estimate 3.0s <= rebuild 4.0s")
    # two refreshes: 1.0 s more per 1,000 keys, extrapolated (never below the cheaper one)
    two = RefreshCosts(full_s=4.0, refreshes=((1000, 3.0), (2000, 4.0)))
    assert two.estimate(3000) == pytest.approx(5.0)
    assert two.estimate(10) == 3.0
    assert two.choose(3000) == (False, "rebuilt: refresh estimate 5.0s > rebuild 4.0s")


def test_refresh_costs_take_in_each_run_and_survive_a_round_trip() -> None:
    costs = RefreshCosts()
    for mode, keys, seconds in [
        ("full", None, 9.0),
        ("incremental", 10, 2.0),
        ("up-to-date", 0, 0.1),  # did nothing: measures nothing
        ("incremental", 30, 3.0),
        ("incremental", 50, 4.0),
    ]:
        costs = costs.after(Refresh("gold.t", mode, keys, seconds))
    assert costs == RefreshCosts(full_s=9.0, refreshes=((30, 3.0), (50, 4.0)))
    assert RefreshCosts.from_json(costs.to_json()) == costs
    assert RefreshCosts.from_json("") == RefreshCosts()
    assert RefreshCosts.from_json('{"full_s": "x"}') == RefreshCosts()


def test_link_counts_count_each_plan_once_per_service_on_its_first_link(
    spark: SparkSession,
) -> None:
    """Rows per (service, copay, name); a plan linking a service twice counts once, on the row
    of its lowest (copay, name), nulls first; deductible sums are exact decimals."""
    plans = _frame(spark, [_plan("p1"), _plan("p2")], SILVER_PLANS)
    links = _frame(
        spark,
        [
            _link("p1", "ps1", "s-a", 30.0, deductible=0.1),
            _link("p1", "ps2", "s-a", 10.0, deductible=0.2),  # p1's first s-a link
            _link("p2", "ps3", "s-a", 30.0, deductible=None),
            _link("p2", "ps4", "s-a", None, deductible=5.0, name="A"),  # p2's first: null copay
            _link("p2", "ps5", "s-a", None, deductible=None, name="A"),
        ],
        SILVER_PLAN_SERVICES,
    )
    expected = _frame(
        spark,
        [
            ("s-a", 10.0, "name of s-a", 1, Decimal("0.2"), 1, 1),
            ("s-a", 30.0, "name of s-a", 2, Decimal("0.1"), 1, 0),
            ("s-a", None, "A", 2, Decimal("5"), 1, 1),
        ],
        GOLD_SERVICE_LINK_COUNTS,
    )
    result = services.to_link_counts(services.live_links(plans, links))
    assert_frames_equal(result, expected)


def test_link_counts_changed_by_contribution_equal_the_counts_of_the_new_links(
    spark: SparkSession,
) -> None:
    """A changed plan's old links subtracted and new ones added give what counting every link
    anew gives: services dropped to no link disappear, new ones appear, a deleted plan takes
    its links away, the sums stay exact."""
    before_rows = [
        _link("p1", "ps1", "s-a", 10.0, deductible=0.1),
        _link("p1", "ps2", "s-b", 20.0, deductible=0.7),
        _link("p2", "ps3", "s-a", 10.0, deductible=0.2),
        _link("p3", "ps4", "s-c", None, deductible=None),
    ]
    after_rows = [
        _link("p1", "ps1", "s-a", 10.0, deductible=0.1),
        _link("p1", "ps5", "s-d", 15.0, deductible=0.3),  # s-b dropped, s-d added
        _link("p2", "ps3", "s-a", 10.0, deductible=0.2),
        # p3 deleted: s-c has no link left
        _link("p4", "ps6", "s-a", 12.5, deductible=None),  # a new plan
    ]

    def links(rows: list[tuple], plan_ids: list[str], deleted: tuple[str, ...] = ()) -> DataFrame:
        plans = [_plan(p, deleted=p in deleted, version=2) for p in plan_ids]
        return services.live_links(
            _frame(spark, plans, SILVER_PLANS), _frame(spark, rows, SILVER_PLAN_SERVICES)
        )

    every_before = links(before_rows, ["p1", "p2", "p3"])
    every_after = links(after_rows, ["p1", "p2", "p3", "p4"], deleted=("p3",))
    changed = ["p1", "p3", "p4"]
    changed_before = every_before.where(F.col("plan_id").isin(changed))
    changed_after = every_after.where(F.col("plan_id").isin(changed))
    result = services.update_link_counts(
        services.to_link_counts(every_before), changed_before, changed_after
    )
    expected = _frame(
        spark,
        [
            ("s-a", 10.0, "name of s-a", 2, Decimal("0.3"), 2, 2),
            ("s-a", 12.5, "name of s-a", 1, Decimal("0"), 0, 1),
            ("s-d", 15.0, "name of s-d", 1, Decimal("0.3"), 1, 1),
        ],
        GOLD_SERVICE_LINK_COUNTS,
    )
    assert_frames_equal(result, expected)
    assert_frames_equal(services.to_link_counts(every_after), expected)
    # Nothing changed: the counts stay as they are.
    unchanged = services.apply_link_count_changes(
        expected, services.to_link_counts(changed_after), services.to_link_counts(changed_after)
    )
    assert_frames_equal(unchanged, expected)


def test_service_patterns_from_no_links_are_empty(spark: SparkSession) -> None:
    empty = _frame(spark, [], GOLD_SERVICE_LINK_COUNTS)
    live = spark.createDataFrame([(0,)], "live_plans long")
    names = _frame(spark, [], SILVER_SERVICES)
    assert_frames_equal(
        services.patterns_from_link_counts(empty, names, live),
        _frame(spark, [], GOLD_SERVICE_PATTERNS),
    )


def test_service_pairs_support_confidence_lift(spark: SparkSession) -> None:
    links, names, live = _service_inputs(spark)
    patterns = services.to_service_patterns(links, names, live)
    counts = services.to_pair_counts(services.plan_pairs(links))
    assert_frames_equal(counts, _frame(spark, [("s-a", "s-b", 1)], GOLD_SERVICE_PAIR_COUNTS))
    expected = _frame(
        spark,
        [("s-a", "s-b", "Alpha (latest)", "Beta", 1, 0.3333, 0.5, 1.0, 1.5)],
        GOLD_SERVICE_PAIRS,
    )
    assert_frames_equal(services.to_service_pairs(counts, patterns, live, 0.3), expected)
    assert_frames_equal(
        services.to_service_pairs(counts, patterns, live, 0.5),
        _frame(spark, [], GOLD_SERVICE_PAIRS),
    )


def test_pair_counts_equal_fp_growth_itemsets_of_two(spark: SparkSession) -> None:
    """The exact pair counts are what MLlib's FP-Growth finds for itemsets of size 2."""
    rows = [
        (g.doc["objectId"], ps["linkedService"]["objectId"])
        for g in iter_plans(seed=5, count=300)
        for ps in g.doc["linkedPlanServices"]
    ]
    links = spark.createDataFrame(rows, "plan_id string, service_id string")
    ours = services.to_pair_counts(services.plan_pairs(links)).where("plans_with_pair >= 3")
    baskets = links.groupBy("plan_id").agg(
        F.array_distinct(F.collect_list("service_id")).alias("items")
    )
    itemsets = FPGrowth(itemsCol="items", minSupport=3 / 300 - 1e-9).fit(baskets).freqItemsets
    pairs = itemsets.where(F.size("items") == 2).select(
        F.array_min("items").alias("service_a"),
        F.array_max("items").alias("service_b"),
        F.col("freq").alias("plans_with_pair"),
    )
    assert ours.count() > 50  # the sample has enough frequent pairs to mean something
    assert_frames_equal(ours, pairs)


def test_pair_count_changes_subtract_old_pairs_and_add_new(spark: SparkSession) -> None:
    def links(rows: list[tuple[str, str]]) -> DataFrame:
        return spark.createDataFrame(rows, "plan_id string, service_id string")

    old = services.plan_pairs(
        links([("p1", "a"), ("p1", "b"), ("p1", "c"), ("p2", "a"), ("p2", "b")])
    )
    new = services.plan_pairs(links([("p1", "a"), ("p1", "b"), ("p1", "d")]))  # p2 deleted
    expected = spark.createDataFrame(
        [("a", "b", -1), ("a", "c", -1), ("b", "c", -1), ("a", "d", 1), ("b", "d", 1)],
        "service_a string, service_b string, delta long",
    )
    assert_frames_equal(services.pair_count_changes(old, new), expected)
    assert services.pair_count_changes(new, new).count() == 0


def test_apply_pair_count_changes_adds_inserts_and_drops_zeros(spark: SparkSession) -> None:
    counts = _frame(spark, [("a", "b", 3), ("a", "c", 1), ("b", "c", 2)], GOLD_SERVICE_PAIR_COUNTS)
    changes = spark.createDataFrame(
        [("a", "b", -1), ("a", "c", -1), ("a", "d", 2)],
        "service_a string, service_b string, delta long",
    )
    expected = _frame(
        spark, [("a", "b", 2), ("b", "c", 2), ("a", "d", 2)], GOLD_SERVICE_PAIR_COUNTS
    )
    assert_frames_equal(services.apply_pair_count_changes(counts, changes), expected)


# --- anomaly detection

FEATURE_SCHEMA = "plan_id string, plan_version long, plan_type string, org string, " + ", ".join(
    f"{name} double" for name in anomaly.MODEL_FEATURES
)


def _features(spark: SparkSession, rows: list[tuple[str, str, dict[str, float]]]) -> DataFrame:
    return spark.createDataFrame(
        [
            (plan_id, 1, plan_type, "acme", *(values.get(f, 0.0) for f in anomaly.MODEL_FEATURES))
            for plan_id, plan_type, values in rows
        ],
        FEATURE_SCHEMA,
    )


def test_anomaly_features_from_plan_costs(spark: SparkSession) -> None:
    plan_costs = _frame(
        spark,
        [
            (
                "p1",
                2,
                "acme",
                "PPO",
                CREATED,
                CREATED,
                900.0,
                1000.0,
                3,
                2,
                0.0,
                100.0,
                60.0,
                2000.0,
                TS,
            ),
            ("p2", 1, "acme", "HMO", CREATED, CREATED, None, None, 0, 0, 0.0, 0.0, None, None, TS),
        ],  # fmt: skip
        GOLD_PLAN_COSTS,
    )
    expected = spark.createDataFrame(
        [
            # log(1 + dollars / 100); the copay is 100 above the deductible
            (
                "p1",
                2,
                "PPO",
                "acme",
                math.log(10),
                math.log(11),
                math.log(2),
                math.log(1.6),
                math.log(21),
                math.log(2),
                1.0,
            ),
            ("p2", 1, "HMO", "acme", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
        ],  # fmt: skip
        FEATURE_SCHEMA,
    )
    assert_frames_close(anomaly.anomaly_features(plan_costs), expected)


def test_robust_stats_median_mad_and_mean_ad_per_plan_type(spark: SparkSession) -> None:
    deductibles = [1.0, 2.0, 3.0, 4.0, 100.0]
    features = _features(
        spark, [(f"p{i}", "PPO", {"log_plan_deductible": d}) for i, d in enumerate(deductibles)]
    )
    flat = [(f, 0.0, 0.0, 0.0) for f in anomaly.COST_FEATURES if f != "log_plan_deductible"]
    per_type = [("log_plan_deductible", 3.0, 1.0, 20.2), *flat]
    expected = spark.createDataFrame(
        [(t, *row) for t in ("PPO", anomaly.ALL_PLAN_TYPES) for row in per_type],
        "plan_type string, feature string, median double, mad double, mean_ad double",
    )
    assert_frames_equal(anomaly.robust_stats(features), expected)


def test_robust_scores_one_sided_with_fallbacks(spark: SparkSession) -> None:
    others = [f for f in anomaly.COST_FEATURES if f != "log_plan_deductible"]
    stats = spark.createDataFrame(
        [
            ("PPO", "log_plan_deductible", 3.0, 1.0, 20.2),
            ("*", "log_plan_deductible", 2.0, 0.0, 2.0),  # MAD 0: mean absolute deviation
            *((t, f, 0.0, 0.0, 0.0) for t in ("PPO", "*") for f in others),  # no spread at all
        ],
        "plan_type string, feature string, median double, mad double, mean_ad double",
    )
    features = _features(
        spark,
        [
            ("high", "PPO", {"log_plan_deductible": 100.0}),
            ("low", "PPO", {"log_plan_deductible": 1.0}),  # below the median: not an outlier
            ("unseen", "EPO", {"log_plan_deductible": 7.0}),  # plan type scored with "*"
            ("flat", "PPO", {"log_plan_deductible": 3.0, "log_plan_copay": 0.5}),
        ],
    )
    expected = spark.createDataFrame(
        [
            ("high", 65.4256, "log_plan_deductible", True),  # 97 / 1.4826
            ("low", 0.0, "log_total_cost", False),  # ties at 0: the greatest feature name
            ("unseen", 1.9947, "log_plan_deductible", False),  # 5 / (2 * 1.253314)
            ("flat", 1000.0, "log_plan_copay", True),  # differs from a constant
        ],
        "plan_id string, rule_score double, rule_feature string, rule_flagged boolean",
    )
    assert_frames_equal(anomaly.robust_scores(features, stats, 3.5), expected)


def _vectors(spark: SparkSession, rows: list[tuple[str, list[float]]]) -> DataFrame:
    return spark.createDataFrame(
        [(plan_id, Vectors.dense(values)) for plan_id, values in rows], ["plan_id", "features"]
    )


def test_model_scores_distance_to_the_nearest_large_centre(spark: SparkSession) -> None:
    points = _vectors(spark, [("near-second", [10.0, 1.0]), ("between", [3.0, 4.0])])
    detector = anomaly.Detector([[0.0, 0.0], [10.0, 0.0]], 2.0, 3.5, [])
    expected = spark.createDataFrame(
        [("near-second", 0.5, False), ("between", 2.5, True)],
        "plan_id string, model_score double, model_flagged boolean",
    )
    assert_frames_equal(anomaly.model_scores(points, detector), expected)
    with pytest.raises(ValueError, match="at least one cluster centre"):
        anomaly.cblof_distance(points, [])


def test_large_clusters_keep_at_least_the_biggest(spark: SparkSession) -> None:
    clustered = spark.createDataFrame([(0,)] * 10 + [(1,)] + [(2,)] * 5, "cluster int")
    assert anomaly.large_clusters(clustered, 0.3) == [0, 2]
    assert anomaly.large_clusters(clustered, 0.9) == [0]


def test_kmeans_pipeline_scores_an_outlier_above_its_threshold(spark: SparkSession) -> None:
    """End to end on a toy population: a far-away plan scores above 1, ordinary ones below."""
    normal = [
        (f"n{i}", "PPO", {"log_plan_deductible": 3.0 + (i % 5) * 0.1, "log_plan_copay": 1.0})
        for i in range(40)
    ]
    features = _features(spark, [*normal, ("odd", "PPO", {"log_plan_deductible": 9.0})])
    model = anomaly.kmeans_pipeline(k=2, seed=1).fit(features)
    clustered = model.transform(features)
    large = anomaly.large_clusters(clustered, 0.2)
    centers = [[float(x) for x in model.stages[-1].clusterCenters()[i]] for i in large]
    scores = anomaly.model_scores(clustered, anomaly.Detector(centers, 3.0, 3.5, []))
    flagged = [row["plan_id"] for row in scores.where("model_flagged").collect()]
    assert flagged == ["odd"]


def test_plan_anomalies_name_the_detector_that_flagged(spark: SparkSession) -> None:
    features = _features(spark, [(p, "PPO", {}) for p in ("both", "rule", "model", "none")])
    rule = spark.createDataFrame(
        [("both", 9.0, "log_total_cost", True), ("rule", 5.0, "log_plan_copay", True),
         ("model", 1.0, "log_plan_copay", False), ("none", 0.5, "log_total_cost", False)],
        "plan_id string, rule_score double, rule_feature string, rule_flagged boolean",
    )  # fmt: skip
    model = spark.createDataFrame(
        [("both", 3.0, True), ("rule", 0.2, False), ("model", 1.5, True)],  # "none" unscored
        "plan_id string, model_score double, model_flagged boolean",
    )
    rows = anomaly.to_plan_anomalies(features, rule, model, "m", "7", F.lit(TS))
    expected = _frame(
        spark,
        [
            (
                "both",
                1,
                "PPO",
                "acme",
                9.0,
                "log_total_cost",
                True,
                3.0,
                True,
                True,
                "rule+model",
                "m",
                "7",
                TS,
            ),
            (
                "rule",
                1,
                "PPO",
                "acme",
                5.0,
                "log_plan_copay",
                True,
                0.2,
                False,
                True,
                "rule",
                "m",
                "7",
                TS,
            ),
            (
                "model",
                1,
                "PPO",
                "acme",
                1.0,
                "log_plan_copay",
                False,
                1.5,
                True,
                True,
                "model",
                "m",
                "7",
                TS,
            ),
            (
                "none",
                1,
                "PPO",
                "acme",
                0.5,
                "log_total_cost",
                False,
                None,
                False,
                False,
                None,
                "m",
                "7",
                TS,
            ),
        ],  # fmt: skip
        GOLD_PLAN_ANOMALIES,
    )
    assert_frames_equal(rows, expected)


def test_generator_labels_cover_generated_plans_only(spark: SparkSession) -> None:
    truth = list(anomaly_labels(42, 120))
    ids = spark.createDataFrame([(p,) for p, _ in truth] + [("imported-plan-1",)], "plan_id string")
    expected = spark.createDataFrame(
        [(p, kind or "none") for p, kind in truth], "plan_id string, anomaly string"
    )
    assert any(kind for _, kind in truth)  # the sample holds anomalies
    assert_frames_equal(anomaly.generator_labels(ids, 0.02), expected)


def test_confusion_and_recall_by_kind(spark: SparkSession) -> None:
    flags = spark.createDataFrame(
        [("p1", True), ("p2", True), ("p3", False), ("p4", False), ("p5", True)],
        "plan_id string, model_flagged boolean",
    )
    labels = spark.createDataFrame(
        [("p1", "extreme_cost"), ("p2", "none"), ("p3", "zero_cost_everything"), ("p4", "none")],
        "plan_id string, anomaly string",
    )  # p5 has no label: left out
    assert_frames_equal(
        anomaly.confusion(flags, labels, "model_flagged"),
        spark.createDataFrame([(1, 1, 1, 1)], "tp long, fp long, fn long, tn long"),
    )
    assert_frames_equal(
        anomaly.recall_by_kind(flags, labels, "model_flagged"),
        spark.createDataFrame(
            [("extreme_cost", 1, 1, 1.0), ("zero_cost_everything", 1, 0, 0.0)],
            "anomaly string, plans long, flagged long, recall double",
        ),
    )
    assert anomaly.precision_recall_f1(1, 1, 1) == {"precision": 0.5, "recall": 0.5, "f1": 0.5}
    assert anomaly.precision_recall_f1(0, 0, 0) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_detector_round_trips_through_json() -> None:
    detector = anomaly.Detector([[1.0, 2.0]], 3.5, 3.5, [{"plan_type": "*", "feature": "f",
                                "median": 1.0, "mad": 0.5, "mean_ad": 0.6}])  # fmt: skip
    assert anomaly.Detector.from_json(detector.to_json()) == detector


# --- incremental maintenance


def test_watermark_round_trip_and_foreign_metadata() -> None:
    mark = Watermark({"silver.plans": 12, "silver.plan_services": 9}, model_version="3")
    assert Watermark.from_json(mark.to_json()) == mark
    assert Watermark.from_json('{"someone": "else"}') is None
    assert Watermark.from_json("not json") is None
    assert Watermark.from_json(None) is None


def test_replace_rows_inserts_updates_deletes_and_leaves_equal_rows(
    spark: SparkSession, tmp_path: Path
) -> None:
    schema = "k1 string, k2 string, v int"
    path = str(tmp_path / "table")
    spark.createDataFrame(
        [("a", None, 1), ("b", "x", 2), ("c", "x", 3), ("e", "z", 5)], schema
    ).write.format("delta").option("delta.enableChangeDataFeed", "true").save(path)
    target = DeltaTable.forPath(spark, path)
    fresh = spark.createDataFrame([("a", None, 1), ("b", "x", 20), ("d", "y", 4)], schema)
    scope = spark.createDataFrame(
        [("a", None), ("b", "x"), ("c", "x"), ("d", "y")], "k1 string, k2 string"
    )  # "e" is out of scope: kept though fresh has no row for it
    replace_rows(target, fresh, scope, ["k1", "k2"], ["k1", "k2", "v"])
    assert_frames_equal(
        spark.read.format("delta").load(path),
        spark.createDataFrame(
            [("a", None, 1), ("b", "x", 20), ("d", "y", 4), ("e", "z", 5)], schema
        ),
    )
    feed = (
        spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", 1)
        .load(path).select("_change_type", "k1", "v")
    )  # fmt: skip
    expected = spark.createDataFrame(
        [
            ("update_preimage", "b", 2),
            ("update_postimage", "b", 20),
            ("delete", "c", 3),
            ("insert", "d", 4),
        ],
        "_change_type string, k1 string, v int",
    )  # fmt: skip  -- "a" is equal: no change recorded
    assert_frames_equal(feed, expected)
