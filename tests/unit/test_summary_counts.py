"""The demo summary's anomaly counts: flagged plans per detector verdict."""

from __future__ import annotations

from datetime import datetime

from frames import assert_frames_equal
from pyspark.sql import SparkSession

from lakehouse.summary import anomaly_counts
from lakehouse.tables import GOLD_PLAN_ANOMALIES

SCORED = datetime(2026, 11, 1, 2, 0)


def _scored(plan_id: str, flagged_by: str | None) -> tuple:
    rule, model = flagged_by in ("rule", "rule+model"), flagged_by in ("model", "rule+model")
    return (plan_id, 1, "HMO", "org", 1.0, "log_total_cost", rule, 1.0, model,
            flagged_by is not None, flagged_by, "detector", "1", SCORED)  # fmt: skip


def test_counts_flagged_plans_per_verdict_most_first(spark: SparkSession) -> None:
    anomalies = spark.createDataFrame(
        [
            _scored("p1", "rule"),
            _scored("p2", "model"),
            _scored("p3", "model"),
            _scored("p4", "rule+model"),
            _scored("p5", None),
            _scored("p6", None),
        ],
        GOLD_PLAN_ANOMALIES,
    )
    expected = spark.createDataFrame(
        [("model", 2), ("rule", 1), ("rule+model", 1)], "flagged_by string, plans long"
    )
    assert_frames_equal(anomaly_counts(anomalies), expected)
    assert [r["flagged_by"] for r in anomaly_counts(anomalies).collect()] == [
        "model", "rule", "rule+model"
    ]  # fmt: skip


def test_no_flagged_plan_gives_no_rows(spark: SparkSession) -> None:
    anomalies = spark.createDataFrame([_scored("p1", None)], GOLD_PLAN_ANOMALIES)
    assert anomaly_counts(anomalies).collect() == []
    empty = spark.createDataFrame([], GOLD_PLAN_ANOMALIES)
    assert anomaly_counts(empty).collect() == []
