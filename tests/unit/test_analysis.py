"""Unit tests for the notebooks' library (lakehouse.analysis): every transform on tiny inline
gold frames, compared as whole frames against hand-computed results (nulls, ties, empty
groups), the row order the notebooks show, and the figures and where they are saved."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest
from frames import assert_frames_equal
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from lakehouse import analysis
from lakehouse.config import Config
from lakehouse.plans.generator import anomaly_labels
from lakehouse.tables import (
    GOLD_COST_TRENDS,
    GOLD_PLAN_ANOMALIES,
    GOLD_PLAN_COSTS,
    GOLD_SERVICE_PAIRS,
    GOLD_SERVICE_PATTERNS,
    PLAN_COSTS,
    QUALITY_METRICS,
    QUALITY_RESULTS,
)

TS = datetime(2026, 1, 1, 12, 0, 0)
MONTH = date(2024, 3, 1)


def _frame(spark: SparkSession, rows: list[tuple], schema: StructType | str) -> DataFrame:
    return spark.createDataFrame(rows, schema)


def _ordered(frame: DataFrame, column: str) -> list[object]:
    return [row[column] for row in frame.collect()]


# --- cost trends


def _cost(
    plan_id: str,
    plan_type: str | None,
    deductible: float | None,
    copay: float | None,
    services_copay: float,
    distinct_services: int = 1,
    version: int = 1,
) -> tuple:
    """A gold.plan_costs row; total_cost as the gold job computes it."""
    total = None if deductible is None or copay is None else deductible + copay + services_copay
    return (plan_id, version, "acme", plan_type, MONTH, MONTH, deductible, copay,
            distinct_services, distinct_services, 0.0, services_copay, None, total,
            TS)  # fmt: skip


def test_plan_type_summary_means_percentiles_and_shares(spark: SparkSession) -> None:
    plan_costs = _frame(
        spark,
        [
            _cost("p1", "PPO", 1000.0, 20.0, 170.0),  # total 1190
            _cost("p2", "PPO", 500.0, 0.0, 0.0),  # total 500
            _cost("h1", "HMO", 0.0, 0.0, 100.0),
            _cost("n1", None, 250.0, None, 10.0),  # no plan copay: no total
        ],
        GOLD_PLAN_COSTS,
    )
    summary = analysis.plan_type_summary(plan_costs)
    expected = _frame(
        spark,
        [
            # p90 of 500 and 1190, linear interpolation: 500 + 0.9 * 690
            ("PPO", 2, 0.5, 750.0, 10.0, 85.0, 845.0, 845.0, 1121.0),
            ("HMO", 1, 0.25, 0.0, 0.0, 100.0, 100.0, 100.0, 100.0),
            (None, 1, 0.25, 250.0, None, 10.0, None, None, None),
        ],
        "plan_type string, plans long, share_of_plans double, deductible_mean double, "
        "plan_copay_mean double, services_copay_mean double, total_cost_mean double, "
        "total_cost_median double, total_cost_p90 double",
    )
    assert_frames_equal(summary, expected)
    assert _ordered(summary, "plan_type") == ["PPO", "HMO", None]  # most plans first

    totals = analysis.plan_totals(plan_costs)
    assert_frames_equal(
        totals,
        _frame(
            spark,
            [("PPO", 1190.0), ("PPO", 500.0), ("HMO", 100.0)],
            "plan_type string, total_cost double",
        ),
    )


def _trend(
    plan_type: str | None,
    month: date | None,
    plans: int,
    deductible: float | None,
    copay: float | None,
    total: float | None,
) -> tuple:
    """A gold.cost_trends row with the means filled in (medians and MoM are not rolled up)."""
    return (plan_type, "acme", month, plans, deductible, None, None, copay, None, None, total,
            None, None, None, None, None)  # fmt: skip


def test_yearly_cost_trend_weights_group_means_by_plan_count(spark: SparkSession) -> None:
    cost_trends = _frame(
        spark,
        [
            _trend("PPO", date(2024, 1, 1), 3, 100.0, 10.0, 300.0),
            _trend("PPO", date(2024, 6, 1), 1, 500.0, 20.0, 700.0),
            # every plan without a total: left out of the year's total mean, not counted as 0
            _trend("HMO", date(2024, 2, 1), 2, 0.0, 0.0, None),
            _trend("HMO", date(2025, 1, 1), 1, 200.0, 0.0, 250.0),
            _trend("PPO", None, 1, 50.0, 5.0, 60.0),  # plans without a creation date
        ],
        GOLD_COST_TRENDS,
    )
    by_type = analysis.yearly_cost_trend(cost_trends)
    assert_frames_equal(
        by_type,
        _frame(
            spark,
            [
                (2024, "HMO", 2, 0.0, 0.0, None),
                (2024, "PPO", 4, 200.0, 12.5, 400.0),
                (2025, "HMO", 1, 200.0, 0.0, 250.0),
                (None, "PPO", 1, 50.0, 5.0, 60.0),
            ],
            "year int, plan_type string, plans long, deductible_mean double, "
            "copay_mean double, total_cost_mean double",
        ),
    )
    assert _ordered(by_type, "year") == [2024, 2024, 2025, None]

    overall = analysis.yearly_cost_trend(cost_trends, keys=())
    assert_frames_equal(
        overall,
        _frame(
            spark,
            [
                # 800 / 6 and 50 / 6, to the cent; the total mean only over priced groups
                (2024, 6, 133.33, 8.33, 400.0),
                (2025, 1, 200.0, 0.0, 250.0),
                (None, 1, 50.0, 5.0, 60.0),
            ],
            "year int, plans long, deductible_mean double, copay_mean double, "
            "total_cost_mean double",
        ),
    )


# --- service patterns


def _pattern(service_id: str, name: str | None, plans: int, share: float) -> tuple:
    return (service_id, name, plans, plans + 1, share, 12.345, 10.004, 30.0, 99.999)


def test_top_services_most_used_first_ties_by_name(spark: SparkSession) -> None:
    patterns = _frame(
        spark,
        [
            _pattern("s1", "X-ray", 5, 0.5),
            _pattern("s2", "Lab", 7, 0.7),
            _pattern("s3", "Dental", 5, 0.5),
            _pattern("s4", None, 1, 0.1),
        ],
        GOLD_SERVICE_PATTERNS,
    )
    top = analysis.top_services(patterns, n=3)
    assert_frames_equal(
        top,
        _frame(
            spark,
            [
                ("Lab", "s2", 7, 0.7, 8, 10.0, 30.0, 100.0),
                ("Dental", "s3", 5, 0.5, 6, 10.0, 30.0, 100.0),
                ("X-ray", "s1", 5, 0.5, 6, 10.0, 30.0, 100.0),
            ],
            "service_name string, service_id string, plans_using long, share_of_plans double, "
            "links long, copay_median double, copay_p90 double, deductible_mean double",
        ),
    )
    assert _ordered(top, "service_id") == ["s2", "s3", "s1"]


def _pair(a: str, b: str, plans: int, support: float, lift: float) -> tuple:
    return (a, b, f"name {a}", f"name {b}", plans, support, 0.5, 0.25, lift)


def test_top_pairs_by_lift_above_a_plan_floor(spark: SparkSession) -> None:
    pairs = _frame(
        spark,
        [
            _pair("s1", "s2", 1, 0.01, 9.0),  # the highest lift, but one plan only
            _pair("s1", "s3", 4, 0.04, 2.123456),
            _pair("s2", "s3", 6, 0.06, 2.123456),  # same lift, more plans: first
            _pair("s3", "s4", 2, 0.02, 0.5),
        ],
        GOLD_SERVICE_PAIRS,
    )
    top = analysis.top_pairs(pairs, n=2, min_plans=2)
    assert_frames_equal(
        top,
        _frame(
            spark,
            [
                ("name s2", "name s3", 6, 0.06, 0.5, 0.25, 2.1235, "s2", "s3"),
                ("name s1", "name s3", 4, 0.04, 0.5, 0.25, 2.1235, "s1", "s3"),
            ],
            "service_a_name string, service_b_name string, plans_with_pair long, "
            "support double, confidence_a_to_b double, confidence_b_to_a double, lift double, "
            "service_a string, service_b string",
        ),
    )
    assert _ordered(top, "service_a") == ["s2", "s1"]
    assert analysis.pair_measures(pairs).count() == 4


def test_services_per_plan_distribution(spark: SparkSession) -> None:
    plan_costs = _frame(
        spark,
        [
            _cost("p1", "PPO", 1.0, 1.0, 0.0, distinct_services=3),
            _cost("p2", "PPO", 1.0, 1.0, 0.0, distinct_services=1),
            _cost("p3", "HMO", 1.0, 1.0, 0.0, distinct_services=3),
            _cost("p4", "HMO", 1.0, 1.0, 0.0, distinct_services=0),
        ],
        GOLD_PLAN_COSTS,
    )
    distribution = analysis.services_per_plan(plan_costs)
    assert_frames_equal(
        distribution,
        _frame(
            spark,
            [(0, 1, 0.25), (1, 1, 0.25), (3, 2, 0.5)],
            "services int, plans long, share double",
        ),
    )
    assert _ordered(distribution, "services") == [0, 1, 3]


# --- anomalies


def _scored(
    plan_id: str,
    plan_type: str | None,
    rule: float | None,
    model: float | None,
    flagged_by: str | None,
    version: int = 1,
) -> tuple:
    rule_flagged = flagged_by in ("rule", "rule+model")
    model_flagged = flagged_by in ("model", "rule+model")
    return (plan_id, version, plan_type, "acme", rule, "log_total_cost", rule_flagged, model,
            model_flagged, flagged_by is not None, flagged_by, "detector", "1", TS)  # fmt: skip


def test_anomaly_summary_counts_each_detector_per_plan_type(spark: SparkSession) -> None:
    scored = _frame(
        spark,
        [
            _scored("p1", "PPO", 5.0, 3.0, "rule+model"),
            _scored("p2", "PPO", 4.0, 0.5, "rule"),
            _scored("p3", "PPO", 0.1, 0.2, None),
            _scored("p4", "PPO", 0.3, 0.4, None),
            _scored("h1", "HMO", 0.2, 1.5, "model"),
            _scored("n1", None, None, None, None),
        ],
        GOLD_PLAN_ANOMALIES,
    )
    summary = analysis.anomaly_summary(scored)
    assert_frames_equal(
        summary,
        _frame(
            spark,
            [
                ("HMO", 1, 0, 1, 0, 1, 1.0),
                ("PPO", 4, 1, 0, 1, 2, 0.5),
                (None, 1, 0, 0, 0, 0, 0.0),
            ],
            "plan_type string, plans long, rule_only long, model_only long, both long, "
            "flagged long, flagged_share double",
        ),
    )
    assert _ordered(summary, "plan_type") == ["HMO", "PPO", None]
    assert analysis.anomaly_scores(scored).count() == 6


def test_top_anomalies_flagged_only_with_costs_of_the_scored_version(
    spark: SparkSession,
) -> None:
    scored = _frame(
        spark,
        [
            _scored("p1", "PPO", 5.123, 3.456, "rule+model"),
            _scored("p2", "PPO", 4.0, 0.5, "rule"),
            _scored("p3", "PPO", 0.1, 0.2, None),
            _scored("h1", "HMO", 0.2, 1.5, "model", version=1),
        ],
        GOLD_PLAN_ANOMALIES,
    )
    plan_costs = _frame(
        spark,
        [
            _cost("p1", "PPO", 1000.0, 20.0, 170.0),
            _cost("p2", "PPO", 500.0, 0.0, 0.0),
            _cost("p3", "PPO", 1.0, 1.0, 0.0),
            _cost("h1", "HMO", 0.0, 0.0, 0.0, version=2),  # changed since it was scored
        ],
        GOLD_PLAN_COSTS,
    )
    top = analysis.top_anomalies(scored, plan_costs, n=3)
    schema = (
        "plan_id string, plan_type string, org string, flagged_by string, rule_score double, "
        "rule_feature string, model_score double, plan_deductible double, plan_copay double, "
        "services_copay double, total_cost double"
    )
    assert_frames_equal(
        top,
        _frame(
            spark,
            [
                (
                    "p1",
                    "PPO",
                    "acme",
                    "rule+model",
                    5.12,
                    "log_total_cost",
                    3.46,
                    1000.0,
                    20.0,
                    170.0,
                    1190.0,
                ),
                ("h1", "HMO", "acme", "model", 0.2, "log_total_cost", 1.5, None, None, None, None),
                ("p2", "PPO", "acme", "rule", 4.0, "log_total_cost", 0.5, 500.0, 0.0, 0.0, 500.0),
            ],  # fmt: skip
            schema,
        ),
    )
    assert _ordered(top, "plan_id") == ["p1", "h1", "p2"]


def test_label_agreement_counts_flags_per_injected_kind(spark: SparkSession) -> None:
    labelled = list(anomaly_labels(seed=7, count=10_000))
    anomalous = [(plan_id, kind) for plan_id, kind in labelled if kind][:2]
    normal = [plan_id for plan_id, kind in labelled if kind is None][:3]
    (a1, kind1), (a2, kind2) = anomalous
    scored = _frame(
        spark,
        [
            _scored(a1, "PPO", 9.0, 4.0, "rule+model"),
            _scored(a2, "PPO", 1.0, 0.5, None),  # missed by both
            _scored(normal[0], "PPO", 0.1, 1.2, "model"),  # a false alarm
            _scored(normal[1], "PPO", 0.1, 0.2, None),
            _scored(normal[2], "HMO", 0.1, 0.2, None),
            _scored("manual-plan-1", "HMO", 9.0, 9.0, "rule+model"),  # no label: left out
        ],
        GOLD_PLAN_ANOMALIES,
    )
    expected_rows = [("none", 3, 0, 1, 1)]
    if kind1 == kind2:
        expected_rows.append((kind1, 2, 1, 1, 1))
    else:
        expected_rows += [(kind1, 1, 1, 1, 1), (kind2, 1, 0, 0, 0)]
    agreement = analysis.label_agreement(scored, anomaly_rate=0.02)
    assert_frames_equal(
        agreement,
        _frame(
            spark,
            expected_rows,
            "anomaly string, plans long, rule_flagged long, model_flagged long, flagged long",
        ),
    )


# --- quality


def _result(run: str, minute: int, layer: str, table: str, check: str, severity: str,
            status: str, value: float | None = 1.0) -> tuple:  # fmt: skip
    at = datetime(2026, 11, 26, 2, minute, tzinfo=UTC)
    return (run, at, layer, table, 3, "v1", check, "condition", severity, status, value, "m")


def test_quality_overview_and_failing_checks_use_each_tables_latest_run(
    spark: SparkSession,
) -> None:
    results = _frame(
        spark,
        [
            _result("r1", 0, "gold", "gold.a", "unique", "error", "failed", 0.5),
            _result("r1", 0, "gold", "gold.a", "mean", "warning", "failed"),
            _result("r1", 0, "silver", "silver.b", "unique", "error", "passed"),
            _result("r1", 0, "silver", "silver.b", "fresh", "warning", "failed", 90.0),
            _result("r1", 0, "silver", "silver.b", "complete", "error", "failed", 0.9),
            # a later run of gold.a alone: its earlier failures are history
            _result("r2", 5, "gold", "gold.a", "unique", "error", "passed"),
            _result("r2", 5, "gold", "gold.a", "mean", "warning", "passed"),
        ],
        QUALITY_RESULTS,
    )
    overview = analysis.quality_overview(results)
    assert_frames_equal(
        overview,
        _frame(
            spark,
            [
                ("gold", "gold.a", datetime(2026, 11, 26, 2, 5, tzinfo=UTC), 2, 2, 0, 0),
                ("silver", "silver.b", datetime(2026, 11, 26, 2, 0, tzinfo=UTC), 3, 1, 1, 1),
            ],
            "layer string, table_name string, run_at timestamp, checks long, passed long, "
            "errors long, warnings long",
        ),
    )
    failing = analysis.failing_checks(results)
    assert_frames_equal(
        failing,
        _frame(
            spark,
            [
                ("silver.b", "complete", "error", 0.9, "m"),
                ("silver.b", "fresh", "warning", 90.0, "m"),
            ],
            "table_name string, check_name string, severity string, value double, "
            "message string",
        ),
    )
    assert _ordered(failing, "severity") == ["error", "warning"]

    statuses = sorted(analysis.quality_statuses(results))
    assert [(table, errors, warnings) for _, table, errors, warnings in statuses] == [
        ("gold.a", 1, 1),
        ("silver.b", 1, 1),
        ("gold.a", 0, 0),
    ]


def test_quality_row_counts_come_from_deequs_dataset_size(spark: SparkSession) -> None:
    at = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
    metrics = _frame(
        spark,
        [
            ("r1", at, "gold.a", 3, "Dataset", "*", "Size", 120.0),
            ("r1", at, "gold.a", 3, "Column", "plan_id", "Completeness", 1.0),
        ],
        QUALITY_METRICS,
    )
    ((_, table, rows),) = analysis.quality_row_counts(metrics)
    assert (table, rows) == ("gold.a", 120.0)


# --- figures and the workspace


def test_output_folder_comes_from_the_environment(config: Config, tmp_path: Path) -> None:
    assert analysis.output_dir(config, {}) == config.state_path / "reports" / "notebooks"
    chosen = {analysis.OUTPUT_VAR: str(tmp_path / "figures")}
    assert analysis.output_dir(config, chosen) == tmp_path / "figures"


def test_each_figure_draws_its_data_and_saves_as_a_displayable_png(
    spark: SparkSession, config: Config, tmp_path: Path
) -> None:
    workspace = analysis.Workspace(dataclasses.replace(config), spark, tmp_path / "nb")
    yearly = pd.DataFrame(
        {
            "year": [2023, 2024, 2024],
            "plan_type": ["PPO", "PPO", None],
            "plans": [2, 3, 1],
            "total_cost_mean": [1000.0, 1200.0, None],
        }
    )
    trend = analysis.cost_trend_figure(yearly)
    counts, costs = trend.axes
    assert len(counts.patches) == 4  # a bar per (plan type, year), zero-height ones included
    assert [text.get_text() for text in counts.get_legend().get_texts()] == ["(none)", "PPO"]
    assert len(costs.lines) == 2

    summary = pd.DataFrame(
        {
            "plan_type": ["PPO", "HMO"],
            "deductible_mean": [500.0, 0.0],
            "plan_copay_mean": [20.0, float("nan")],
            "services_copay_mean": [100.0, 50.0],
        }
    )
    components = analysis.cost_components_figure(summary)
    assert len(components.axes[0].patches) == 6

    scores = pd.DataFrame(
        {
            "plan_id": ["a", "b", "c"],
            "rule_score": [0.0, 5.0, 1.0],
            "model_score": [0.2, 3.0, None],
            "flagged_by": [None, "rule+model", None],
        }
    )
    cloud = analysis.anomaly_scores_figure(scores, rule_threshold=3.5)
    legend = [text.get_text() for text in cloud.axes[0].get_legend().get_texts()]
    assert legend == ["not flagged (2)", "rule+model (1)"]

    saved = workspace.save(trend, "cost_trend")
    assert saved.path == tmp_path / "nb" / "cost_trend.png"
    png = saved._repr_png_()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5_000
    for figure in (components, cloud):
        workspace.save(figure, "other")


def test_workspace_follows_the_environment_and_names_missing_tables(
    spark: SparkSession, tmp_path: Path
) -> None:
    environ = {
        "LAKEHOUSE_ENV": "test",
        "LAKEHOUSE_WAREHOUSE": str(tmp_path / "elsewhere"),
        analysis.OUTPUT_VAR: str(tmp_path / "figures"),
    }
    # the running test session is reused (getOrCreate), so it must not be stopped here
    workspace = analysis.open_workspace("probe", environ)
    assert workspace.spark is spark
    assert (workspace.config.environment, workspace.config.warehouse) == (
        "test",
        str(tmp_path / "elsewhere"),
    )
    assert workspace.output == tmp_path / "figures" / "probe"
    with pytest.raises(FileNotFoundError, match=r"gold\.plan_costs does not exist .*make demo"):
        workspace.read(PLAN_COSTS)
