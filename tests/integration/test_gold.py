"""Gold jobs end to end: `simulate` writes plans through the real store and broker, `ingest
--once` builds silver, the jobs build gold; the figures must match an independent computation
from the source documents, an incremental run must equal a full rebuild, a repeated run must
commit nothing, and the anomaly model must be tracked and served through the MLflow registry.

The main test also holds the Spark budgets of one silver micro-batch and of each gold job, full
and incremental (the nightly flow's is in test_nightly_flow.py). Job and task counts are
deterministic for a given input and configuration, so these bounds do not flake the way timings
would. Each is the count measured when the bound was set plus about 25% headroom: a change that
adds Spark work fails here and has to say why in the bound it moves, with the new measured
figure (docs/testing.md, "Spark budgets"). No stage of this lake needs more than
`MAX_STAGE_TASKS` tasks: a setting sized for a cluster (the 10,000-task file listing of VACUUM,
200 shuffle partitions) fails the widest-stage bound at once.
"""

from __future__ import annotations

import dataclasses
import io as text_io
import random
import statistics
import subprocess
from collections import Counter
from contextlib import redirect_stdout
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
from support import drop_database, env_for, isolated_lakehouse

from lakehouse import io, spark_cost
from lakehouse.config import PROJECT_ROOT, Config
from lakehouse.gold import detection, jobs, refresh
from lakehouse.ingest.operations import ingest
from lakehouse.ingest.stream import (
    DERIVED_QUERY,
    PLANS_QUERY,
    DerivedBatch,
    PlansBatch,
    await_query,
    start_derived,
    start_plans,
)
from lakehouse.plans.generator import generate_plan, random_change
from lakehouse.plans.simulate import simulate
from lakehouse.plans.store import PlanStore
from lakehouse.quality import suites as quality_suites
from lakehouse.quality.runner import run_quality
from lakehouse.spark_cost import Budget, SparkCost
from lakehouse.tables import (
    COST_TRENDS,
    GOLD_STATE_TABLES,
    GOLD_TABLES,
    PLAN_ANOMALIES,
    PLAN_COSTS,
    SERVICE_PAIR_COUNTS,
    SERVICE_PATTERNS,
    SNAPSHOTS,
)

pytestmark = pytest.mark.usefixtures("local_stack")

SEED = 61
PLANS = 120

# The widest stage any step may run: the lake's tables are one or two files each, shuffles have
# 2 partitions here and file listings 8 tasks.
MAX_STAGE_TASKS = 8
# Measured (jobs, tasks) when the bound was set, in the comment; the bound is about 1.25x.
BUDGETS = {
    # The hot path's bound is the product's (at most 25 Spark jobs per batch), not 1.25x.
    "plans batch": Budget(25, 100, MAX_STAGE_TASKS),
    "derived batch": Budget(54, 186, MAX_STAGE_TASKS),
    "cost_analysis full": Budget(44, 70, MAX_STAGE_TASKS),  # 35, 56
    "service_patterns full": Budget(71, 116, MAX_STAGE_TASKS),  # 57, 93
    "anomaly_detection train+score": Budget(129, 219, MAX_STAGE_TASKS),  # 103, 175
    "cost_analysis incremental": Budget(99, 190, MAX_STAGE_TASKS),  # 79, 152
    "service_patterns incremental": Budget(91, 171, MAX_STAGE_TASKS),  # 73, 137
    "anomaly_detection score": Budget(69, 93, MAX_STAGE_TASKS),  # 55, 74
}


def _gold_lake(config: Config, tmp_path: Path, name: str) -> Config:
    lake = isolated_lakehouse(config, str(tmp_path / "warehouse"), name)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return dataclasses.replace(lake, gold=dataclasses.replace(lake.gold, mlflow_tracking_uri=uri))


# --- the independent computation: plain Python over the documents the store holds


def _date(text: str) -> date:
    month, day, year = (int(part) for part in text.split("-"))
    return date(year, month, day)


def _expected_plan_costs(docs: list[dict[str, Any]]) -> list[tuple]:
    rows = []
    for doc in docs:
        items = doc["linkedPlanServices"]
        copays = [float(i["planserviceCostShares"]["copay"]) for i in items]
        deductibles = [float(i["planserviceCostShares"]["deductible"]) for i in items]
        deductible = float(doc["planCostShares"]["deductible"])
        copay = float(doc["planCostShares"]["copay"])
        rows.append(
            (doc["objectId"], doc["_org"], doc["planType"], _date(doc["creationDate"]),
             deductible, copay, len(items), len({i["linkedService"]["objectId"] for i in items}),
             sum(deductibles), sum(copays), max(copays) if copays else None,
             deductible + copay + sum(copays))
        )  # fmt: skip
    return sorted(rows)


def _expected_trends(docs: list[dict[str, Any]]) -> list[tuple]:
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for doc in docs:
        created = _date(doc["creationDate"])
        key = (doc["planType"], doc["_org"], date(created.year, created.month, 1))
        groups.setdefault(key, []).append(doc)
    rows = []
    for key, members in groups.items():
        totals = [
            float(d["planCostShares"]["deductible"]) + float(d["planCostShares"]["copay"])
            + sum(float(i["planserviceCostShares"]["copay"]) for i in d["linkedPlanServices"])
            for d in members
        ]  # fmt: skip
        deductibles = [float(d["planCostShares"]["deductible"]) for d in members]
        rows.append((*key, len(members), _round(statistics.fmean(totals)),
                     _round(statistics.median(deductibles))))  # fmt: skip
    return sorted(rows)


def _round(value: float) -> float:
    """Spark's round(): half up, not Python's half to even."""
    return float(Decimal(repr(value)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))


def _service_sets(docs: list[dict[str, Any]]) -> dict[str, set[str]]:
    return {
        d["objectId"]: {i["linkedService"]["objectId"] for i in d["linkedPlanServices"]}
        for d in docs
    }


def _assert_gold_matches_documents(spark, lake: Config, store: PlanStore) -> None:
    docs = list(store.iter_live())
    plan_costs = io.read_table(spark, lake, PLAN_COSTS)
    actual = sorted(
        tuple(r) for r in plan_costs.drop("plan_version", "creation_month", "event_ts").collect()
    )
    assert actual == _expected_plan_costs(docs)
    versions = {r["plan_id"]: r["plan_version"] for r in plan_costs.collect()}
    assert versions == {d["objectId"]: store.version(d["objectId"]) for d in docs}

    trends = io.read_table(spark, lake, COST_TRENDS).select(
        "plan_type", "org", "creation_month", "plan_count", "total_cost_mean", "deductible_median"
    )
    assert sorted(tuple(r) for r in trends.collect()) == _expected_trends(docs)

    sets = _service_sets(docs)
    using = Counter(s for services in sets.values() for s in services)
    patterns = io.read_table(spark, lake, SERVICE_PATTERNS).collect()
    assert {r["service_id"]: r["plans_using"] for r in patterns} == dict(using)
    pairs = Counter(p for services in sets.values() for p in combinations(sorted(services), 2))
    counted = io.read_table(spark, lake, SERVICE_PAIR_COUNTS).collect()
    assert {(r["service_a"], r["service_b"]): r["plans_with_pair"] for r in counted} == dict(pairs)


def _gold_content(spark, lake: Config) -> dict[str, list[tuple]]:
    return {
        t.name: sorted(
            (tuple(r) for r in io.read_table(spark, lake, t).drop("scored_at").collect()), key=repr
        )
        for t in (*GOLD_TABLES, *GOLD_STATE_TABLES)
    }


def _gold_versions(spark, lake: Config) -> dict[str, int]:
    return {
        t.name: refresh.current_version(spark, lake, t) for t in (*GOLD_TABLES, *GOLD_STATE_TABLES)
    }


def _change_some_plans(store: PlanStore, rng: random.Random) -> None:
    """A small nightly increment: re-pricings and service changes, deletes and a new plan."""
    live = sorted(d["objectId"] for d in store.iter_live())
    chosen = rng.sample(live, 12)
    for plan_id in chosen[:9]:
        current = store.get(plan_id)
        assert current is not None
        change = random_change(rng, current, weights=(0.6, 0.4, 0.0))
        if change.kind == "replace":
            assert change.document is not None
            store.replace(plan_id, change.document)
        else:
            assert change.patch is not None
            store.patch(plan_id, change.patch)
    for plan_id in chosen[9:]:
        store.delete(plan_id)
    store.create(generate_plan(SEED, PLANS + 5).doc)
    store.flush()


def _assert_quality_is_clean(spark, lake: Config) -> None:
    """Every suite passes on what the real pipeline wrote: no error and no warning (the second
    call also compares row counts and means with the first through Deequ's repository)."""
    # no Mongo snapshot is taken in this test
    chosen = [s for s in quality_suites.suites(lake) if s.table is not SNAPSHOTS]
    run = run_quality(spark, lake, chosen)
    failed = [(r.table, r.check, r.message) for r in run.results if not r.passed]
    assert failed == []
    assert len({r.table for r in run.results}) == 11


def _refresh_gold(spark, lake: Config, full: bool = False) -> dict[str, SparkCost]:
    """What the nightly flow runs on a night without retraining: every gold job, anomalies
    scored with the champion (training is tested on its own below). The cost of each job."""
    costs = {}
    for name in ("cost_analysis", "service_patterns", "anomaly_detection"):
        mode = "score" if name == "anomaly_detection" else "full" if full else "incremental"
        costs[f"{name} {mode}"] = _measured_job(spark, lake, name, jobs.JobOptions(full=full))
    return costs


def _build_gold(spark, lake: Config) -> dict[str, SparkCost]:
    """`jobs run all` on a new lake, one job at a time: the cost of each."""
    costs = {}
    for name, options in jobs.ALL:
        step = f"{name} {'+'.join(options.modes) if name == 'anomaly_detection' else 'full'}"
        costs[step] = _measured_job(spark, lake, name, jobs.JobOptions(modes=options.modes))
    return costs


def _measured_job(spark, lake: Config, name: str, options: jobs.JobOptions) -> SparkCost:
    with spark_cost.measure(spark) as cost, redirect_stdout(text_io.StringIO()):
        assert jobs.run(spark, lake, name, options) == 0
    return cost.result


def _ingest_measuring_silver(spark, lake: Config) -> dict[str, SparkCost]:
    """What `ingest --once` runs, each query measured alone: the hot path (Kafka -> bronze,
    quarantine, silver.plans, silver.plan_events), then the derived tables; one micro-batch
    each."""
    reports: list[PlansBatch | DerivedBatch] = []
    with spark_cost.measure(spark) as hot:
        await_query(start_plans(spark, lake, once=True, report=reports.append), PLANS_QUERY)
    with spark_cost.measure(spark) as derived:
        await_query(start_derived(spark, lake, once=True, report=reports.append), DERIVED_QUERY)
    assert [type(r) for r in reports if r.events] == [PlansBatch, DerivedBatch], reports
    return {"plans batch": hot.result, "derived batch": derived.result}


def test_gold_matches_the_documents_and_incremental_equals_full(
    spark, config: Config, tmp_path: Path
) -> None:
    lake = _gold_lake(config, tmp_path, "gold")
    try:
        with PlanStore.open(lake, batch_size=50) as store:
            simulate(store, plans=PLANS, changes=80, seed=SEED)
            assert ingest(spark, lake, once=True) == 0
            costs = _build_gold(spark, lake)
            _assert_gold_matches_documents(spark, lake, store)

            _assert_quality_is_clean(spark, lake)

            _change_some_plans(store, random.Random(SEED))
            costs |= _ingest_measuring_silver(spark, lake)
            costs |= _refresh_gold(spark, lake)
            _assert_gold_matches_documents(spark, lake, store)
            _assert_quality_is_clean(spark, lake)
        for table in GOLD_TABLES[:-1]:  # anomalies: scored, not derived from silver directly
            assert refresh.read_watermark(spark, lake, table) is not None, table.name
        incremental = _gold_content(spark, lake)
        versions = _gold_versions(spark, lake)

        # The same increment again: every table is up to date and nothing is committed.
        _refresh_gold(spark, lake)
        assert _gold_versions(spark, lake) == versions

        # A full rebuild gives the same rows.
        _refresh_gold(spark, lake, full=True)
        assert _gold_content(spark, lake) == incremental

        # Each step within its Spark budget (after the checks: a wrong result matters first).
        overruns = {
            step: f"{', '.join(BUDGETS[step].overruns(cost))}: {cost.render()}"
            for step, cost in costs.items()
            if BUDGETS[step].overruns(cost)
        }
        assert sorted(costs) == sorted(BUDGETS)
        assert overruns == {}
    finally:
        drop_database(lake)


def test_anomaly_model_is_tracked_registered_and_served_by_alias(
    spark, config: Config, tmp_path: Path
) -> None:
    lake = _gold_lake(config, tmp_path, "anomaly")
    try:
        with PlanStore.open(lake, batch_size=50) as store:
            simulate(store, plans=PLANS, changes=20, seed=SEED + 1)
        assert ingest(spark, lake, once=True) == 0
        assert jobs.run(spark, lake, "cost_analysis", jobs.JobOptions()) == 0

        # Scoring before any model exists fails with the way out.
        with pytest.raises(refresh.GoldError, match="--mode train"):
            detection.refresh_plan_anomalies(spark, lake)

        first = detection.train(spark, lake)
        assert (first.model_version, first.promoted, first.champion_f1) == ("1", True, None)
        mlflow, client = detection._mlflow(lake)
        run = client.get_run(first.run_id)
        for prefix in ("model", "rule"):
            for metric in ("precision", "recall", "f1"):
                assert (
                    run.data.metrics[f"{prefix}_{metric}"]
                    == first.evaluation.metrics[f"{prefix}_{metric}"]
                )
        live_plans = io.read_table(spark, lake, PLAN_COSTS).count()
        assert run.data.metrics["labelled_plans"] == live_plans == first.plans
        assert run.data.params["kmeans_k"] == str(lake.gold.kmeans_k)
        alias = client.get_model_version_by_alias(lake.gold.model_name, lake.gold.model_alias)
        assert (str(alias.version), alias.run_id) == ("1", first.run_id)

        # The same data and seed cannot beat the champion: registered, not promoted.
        second = detection.train(spark, lake)
        assert (second.model_version, second.promoted) == ("2", False)
        assert second.champion_f1 == first.evaluation.metrics["model_f1"]
        version_two = client.get_model_version(lake.gold.model_name, "2")
        assert version_two.tags["promoted"] == "false"
        alias = client.get_model_version_by_alias(lake.gold.model_name, lake.gold.model_alias)
        assert str(alias.version) == "1"

        scored = detection.refresh_plan_anomalies(spark, lake)
        assert scored.mode == "full"
        anomalies = io.read_table(spark, lake, PLAN_ANOMALIES).collect()
        live = io.read_table(spark, lake, PLAN_COSTS).select("plan_id", "plan_version").collect()
        assert sorted((r["plan_id"], r["plan_version"]) for r in anomalies) == sorted(
            (r["plan_id"], r["plan_version"]) for r in live
        )
        assert {(r["model_name"], r["model_version"]) for r in anomalies} == {
            (lake.gold.model_name, "1")
        }
        flagged = Counter(r["flagged_by"] for r in anomalies if r["is_anomaly"])
        tp_fp = first.evaluation.metrics["model_tp"] + first.evaluation.metrics["model_fp"]
        assert flagged["model"] + flagged["rule+model"] == tp_fp
        assert detection.refresh_plan_anomalies(spark, lake).mode == "up-to-date"
    finally:
        drop_database(lake)


def test_run_all_jobs_script_builds_gold_and_fails_clearly_without_silver(
    spark, config: Config, tmp_path: Path
) -> None:
    """The operator's path: jobs/run_all_jobs.sh with spark-submit, then a broken setup."""
    lake = _gold_lake(config, tmp_path, "runall")
    script = str(PROJECT_ROOT / "jobs" / "run_all_jobs.sh")
    env = {**env_for(lake), "LAKEHOUSE_MLFLOW_TRACKING_URI": lake.gold.mlflow_tracking_uri}
    try:
        missing = subprocess.run(
            [script], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600
        )
        assert missing.returncode == 1, missing.stdout[-2000:] + missing.stderr[-2000:]
        # spark-submit merges the Python driver's stderr into its stdout
        assert "cost_analysis: silver.plans does not exist" in missing.stdout + missing.stderr
        assert "run_all_jobs: gold jobs failed (exit 1)" in missing.stderr

        with PlanStore.open(lake, batch_size=50) as store:
            simulate(store, plans=PLANS, changes=10, seed=SEED + 2)
        assert ingest(spark, lake, once=True) == 0
        done = subprocess.run(
            [script], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "gold.plan_costs: full" in done.stdout
        assert f"registered {lake.gold.model_name} v1 as @champion" in done.stdout
        assert "gold.plan_anomalies: full" in done.stdout
        scored = io.read_table(spark, lake, PLAN_ANOMALIES).select("plan_id", "plan_version")
        live = io.read_table(spark, lake, PLAN_COSTS).select("plan_id", "plan_version")
        assert sorted(scored.collect()) == sorted(live.collect())
    finally:
        drop_database(lake)
