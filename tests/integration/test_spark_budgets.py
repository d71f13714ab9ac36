"""Spark budgets: how many jobs and tasks one silver micro-batch and each gold job may run on a
tiny lake (the nightly flow's budget is checked in test_nightly_flow.py).

Job and task counts are deterministic for a given input and configuration, so these bounds do
not flake the way timings would. They are the counts measured when the bound was set plus about
25% headroom: a change that adds Spark work fails here and has to say why in the bound it moves
(with the new measured figure). No stage of this lake needs more than `MAX_STAGE_TASKS` tasks: a
setting sized for a cluster (the 10,000-task file listing of VACUUM, 200 shuffle partitions)
fails the widest-stage bound at once.
"""

from __future__ import annotations

import dataclasses
import io as text_io
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from support import isolated_lakehouse, produce

from lakehouse import spark_cost
from lakehouse.config import Config
from lakehouse.gold import jobs
from lakehouse.ingest.stream import (
    BRONZE_QUERY,
    SILVER_QUERY,
    BronzeBatch,
    SilverBatch,
    await_query,
    start_bronze,
    start_silver,
)
from lakehouse.plans.scenario import event_history
from lakehouse.spark_cost import Budget

pytestmark = [pytest.mark.usefixtures("local_stack"), pytest.mark.xdist_group("budgets")]

# The widest stage any step may run: the lake's tables are one or two files each, shuffles have
# 2 partitions here and file listings 8 tasks.
MAX_STAGE_TASKS = 8

# Measured (jobs, tasks) when the bound was set, in the comment; the bound is about 1.25x.
BUDGETS = {
    "silver batch": Budget(55, 195, MAX_STAGE_TASKS),  # 44, 154
    "cost_analysis full": Budget(44, 70, MAX_STAGE_TASKS),  # 35, 56
    "service_patterns full": Budget(74, 120, MAX_STAGE_TASKS),  # 59, 96
    "anomaly_detection train+score": Budget(115, 190, MAX_STAGE_TASKS),  # 92, 151
    "cost_analysis incremental": Budget(103, 196, MAX_STAGE_TASKS),  # 82, 157
    "service_patterns incremental": Budget(95, 178, MAX_STAGE_TASKS),  # 76, 142
    "anomaly_detection score": Budget(73, 99, MAX_STAGE_TASKS),  # 58, 79
}


def _gold(spark, lake: Config, name: str, options: jobs.JobOptions) -> spark_cost.SparkCost:
    with spark_cost.measure(spark) as cost, redirect_stdout(text_io.StringIO()):
        assert jobs.run(spark, lake, name, options) == 0
    return cost.result


def _silver_batches(spark, lake: Config) -> tuple[spark_cost.SparkCost, list[SilverBatch]]:
    """Bronze first (not measured), then the silver query alone, measured."""
    reports: list[BronzeBatch | SilverBatch] = []
    await_query(start_bronze(spark, lake, once=True), BRONZE_QUERY)
    with spark_cost.measure(spark) as cost:
        await_query(start_silver(spark, lake, once=True, report=reports.append), SILVER_QUERY)
    return cost.result, [r for r in reports if isinstance(r, SilverBatch)]


@pytest.fixture(scope="module")
def costs(spark, config: Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A 40-plan lake built by ingest and the gold jobs, then one increment of changes: the
    cost of each measured step by name."""
    root: Path = tmp_path_factory.mktemp("budgets")
    lake = isolated_lakehouse(config, str(root / "warehouse"), "budgets")
    lake = dataclasses.replace(
        lake, gold=dataclasses.replace(lake.gold, mlflow_tracking_uri=f"sqlite:///{root}/ml.db")
    )
    events, _ = event_history(41, plans=40, changes=80)
    records = [(e.key(), e.value()) for e in events]
    first, second = records[:60], records[60:]
    measured: dict[str, spark_cost.SparkCost] = {}

    produce(lake, first)
    _silver_batches(spark, lake)  # creates the tables: not the steady state, not measured
    measured["cost_analysis full"] = _gold(spark, lake, "cost_analysis", jobs.JobOptions())
    measured["service_patterns full"] = _gold(spark, lake, "service_patterns", jobs.JobOptions())
    measured["anomaly_detection train+score"] = _gold(
        spark, lake, "anomaly_detection", jobs.JobOptions(modes=("train", "score"))
    )

    produce(lake, second)
    silver, batches = _silver_batches(spark, lake)
    assert [b.records for b in batches] == [len(second)], "one micro-batch of the increment"
    measured["silver batch"] = silver
    for name, options in (
        ("cost_analysis", jobs.JobOptions()),
        ("service_patterns", jobs.JobOptions()),
        ("anomaly_detection", jobs.JobOptions(modes=("score",))),
    ):
        mode = "score" if name == "anomaly_detection" else "incremental"
        measured[f"{name} {mode}"] = _gold(spark, lake, name, options)
    yield measured


@pytest.mark.parametrize("step", list(BUDGETS))
def test_step_stays_within_its_spark_budget(costs: dict, step: str) -> None:
    cost: spark_cost.SparkCost = costs[step]
    assert BUDGETS[step].overruns(cost) == [], f"{step}: {cost.render()}"
