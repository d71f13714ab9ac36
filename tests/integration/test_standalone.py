"""The scale-out path on one machine: the same jobs, with spark-submit, against a Spark
standalone master with two workers (lakehouse/stack/cluster.py), all real processes on 127.0.0.1.

The streaming ingest must end at the source history (silver, services, the index, quarantine)
and the gold job must write what a local-mode run writes from the same silver, row for row;
the master, the workers and the executors' own logs must show that both workers' executors ran
the tasks, with the connector jars and the lakehouse package shipped to them.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lake_checks import assert_bronze_exactly_once, assert_lakehouse_matches
from support import env_for, isolated_lakehouse, produce

from lakehouse import io, stack
from lakehouse.config import PROJECT_ROOT, Config
from lakehouse.gold import jobs
from lakehouse.plans.scenario import disorder, event_history, malformed_records
from lakehouse.spark import connector_jars
from lakehouse.stack.cluster import SparkWorkerService, master_state, private_cluster
from lakehouse.tables import COST_TRENDS, PLAN_COSTS, QUARANTINE, SILVER_TABLES

pytestmark = pytest.mark.usefixtures("local_stack")

SEED = 71
INGEST_APP, GOLD_APP = "lakehouse-stream-ingest", "lakehouse-cost-analysis"


@pytest.fixture
def cluster(config: Config, tmp_path: Path) -> Iterator[Config]:
    """A private cluster (own state folder and free ports): a master and two 1-core workers."""
    cfg = private_cluster(config, tmp_path / "state")
    try:
        rows = stack.up_cluster(cfg, report=lambda _: None)
        assert [(r.name, r.health) for r in rows] == [
            ("spark-master", "healthy"),
            ("spark-worker-1", "healthy"),
            ("spark-worker-2", "healthy"),
        ]
        yield cfg
    finally:
        stack.down(cfg, report=lambda _: None, cluster_only=True)
        leftovers = subprocess.run(["pgrep", "-f", cfg.state_dir], capture_output=True, text=True)
        assert leftovers.stdout.split() == [], "cluster processes survived down"


def _submit(lake: Config, cluster: Config, *job: str) -> str:
    env = env_for(lake) | {"LAKEHOUSE_SPARK_MASTER": cluster.cluster.master_url}
    done = subprocess.run(
        [str(PROJECT_ROOT / "jobs" / "submit.sh"), *job],
        env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def _finished_apps(cluster: Config, count: int) -> dict[str, dict]:
    """The master's completed applications by name, once `count` of them are there and every
    worker has finished their executors (a submit returns a moment before the master knows)."""
    deadline = time.monotonic() + 60
    while True:
        apps = master_state(cluster)["completedapps"]
        workers = [_worker_state(cluster, n) for n in (1, 2)]
        if len(apps) == count and not any(w["executors"] for w in workers):
            return {app["name"]: app for app in apps}
        assert time.monotonic() < deadline, f"apps {apps}, workers {workers}"
        time.sleep(1)


def _worker_state(cluster: Config, number: int) -> dict:
    return _get_json(f"http://127.0.0.1:{SparkWorkerService(cluster, number).port}/json/")


def _gold(spark, lake: Config) -> dict[str, list[tuple]]:
    return {
        t.name: sorted((tuple(r) for r in io.read_table(spark, lake, t).collect()), key=repr)
        for t in (PLAN_COSTS, COST_TRENDS)
    }


def test_ingest_and_gold_run_on_both_workers_and_match(
    spark, config: Config, cluster: Config, tmp_path: Path
) -> None:
    lake = isolated_lakehouse(config, str(tmp_path / "warehouse"), "standalone")
    events, final = event_history(SEED, plans=30, changes=60)
    bad = malformed_records(SEED, next(e for e in events if e.op == "u"))[:4]
    delivered = [(e.key(), e.value()) for e in disorder(events, SEED)]
    positions = produce(lake, delivered + [(r.key, r.value) for r in bad])

    ingested = _submit(lake, cluster, "jobs/stream_ingest.py", "--once")
    assert "ingest: silver holds" in ingested
    gold = _submit(lake, cluster, "jobs/cost_analysis.py")
    assert "gold.plan_costs: full" in gold and "gold.cost_trends: full" in gold

    # The ingest (Kafka source, the contract's Python UDF, Delta MERGEs, es-hadoop writes, all
    # on the executors) ends exactly at the source history.
    assert_bronze_exactly_once(spark, lake, positions)
    assert_lakehouse_matches(spark, lake, final)
    quarantined = io.read_table(spark, lake, QUARANTINE).select("reason").collect()
    assert sorted(r["reason"] for r in quarantined) == sorted(r.expected_reason for r in bad)

    # Gold equals a local-mode run of the same job over a copy of the same silver.
    local = dataclasses.replace(lake, warehouse=str(tmp_path / "local-warehouse"))
    for table in SILVER_TABLES:
        shutil.copytree(table.path(lake), table.path(local))
    assert jobs.run(spark, local, "cost_analysis", jobs.JobOptions()) == 0
    on_cluster = _gold(spark, lake)
    assert on_cluster == _gold(spark, local)
    assert len(on_cluster[PLAN_COSTS.name]) == sum(s.document is not None for s in final.values())

    # Both applications ran on the cluster, with an executor on each worker that ran tasks and
    # received every connector jar and the lakehouse package.
    apps = _finished_apps(cluster, count=2)
    assert {(name, app["state"], app["cores"]) for name, app in apps.items()} == {
        (INGEST_APP, "FINISHED", 2),
        (GOLD_APP, "FINISHED", 2),
    }
    shipped = {Path(jar).name for jar in connector_jars(cluster.spark.jars_dir)} | {"lakehouse.zip"}
    for number in (1, 2):
        worker = SparkWorkerService(cluster, number)
        executors = {
            e["appid"]: e["id"] for e in _worker_state(cluster, number)["finishedexecutors"]
        }
        assert set(executors) == {app["id"] for app in apps.values()}, worker.name
        for app_id, executor_id in executors.items():
            folder = worker.work_dir / app_id / str(executor_id)
            assert shipped <= {p.name for p in folder.iterdir()}, folder
            log = (folder / "stderr").read_text(errors="replace")
            assert "Finished task" in log, f"{worker.name} ran no task of {app_id}"
