"""The medallion under failure: a SIGKILLed ingest process, and the Mongo snapshot /
reconciliation path. (The index under an Elasticsearch outage: test_indexer.py.)"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from lake_checks import assert_bronze_exactly_once, assert_lakehouse_matches
from pyspark.sql import functions as F
from support import drop_database, env_for, isolated_lakehouse, produce

from lakehouse import clients, io
from lakehouse.config import PROJECT_ROOT, Config
from lakehouse.ingest import snapshot
from lakehouse.ingest.operations import ingest
from lakehouse.plans.scenario import disorder, event_history
from lakehouse.plans.simulate import simulate
from lakehouse.plans.store import PlanStore
from lakehouse.tables import PLANS_CHECKPOINT, RECONCILIATION, SNAPSHOTS, checkpoint

pytestmark = pytest.mark.usefixtures("local_stack")

LAKEHOUSE = str(Path(sys.executable).with_name("lakehouse"))


def _batch_files(folder: Path) -> set[int]:
    return {int(p.name) for p in folder.glob("[0-9]*")} if folder.is_dir() else set()


def test_sigkill_mid_batch_then_restart_loses_and_duplicates_nothing(
    spark, config: Config, tmp_path: Path
) -> None:
    lake = isolated_lakehouse(config, str(tmp_path / "warehouse"), "kill")
    events, final = event_history(21, plans=30, changes=200)
    positions = produce(lake, [(e.key(), e.value()) for e in disorder(events, 21)])
    silver_checkpoint = Path(checkpoint(lake, PLANS_CHECKPOINT))

    env = env_for(lake) | {"LAKEHOUSE_INGEST_MAX_OFFSETS": "40", "LAKEHOUSE_INGEST_TRIGGER_S": "0"}
    # Its own process group, so SIGKILL takes the Spark JVM down with it, as a crash would.
    process = subprocess.Popen(
        [LAKEHOUSE, "ingest"], env=env, start_new_session=True, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout), daemon=True)
    reader.start()
    try:
        # Wait until a hot-path batch has committed and the next one is in flight, then kill it
        # a random moment into that batch (each one takes several seconds here).
        deadline = time.monotonic() + 240
        while True:
            started = _batch_files(silver_checkpoint / "offsets")
            committed = _batch_files(silver_checkpoint / "commits")
            if committed and started - committed:
                break
            assert process.poll() is None, "ingest exited early:\n" + "".join(output)
            assert time.monotonic() < deadline, "no second silver batch:\n" + "".join(output)
            time.sleep(0.05)
        time.sleep(random.Random(21).uniform(0.5, 4.0))
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    started, committed = (_batch_files(silver_checkpoint / d) for d in ("offsets", "commits"))
    assert started - committed, f"the kill did not land inside a batch: {started} {committed}"

    # Restart with the other entrypoint: spark-submit of the job, draining what is left. The
    # interrupted batch is replayed with the offsets its log recorded; the rest needs no small
    # batches to prove anything, so it drains in one.
    restarted = subprocess.run(
        [str(PROJECT_ROOT / "jobs" / "submit.sh"), "jobs/stream_ingest.py", "--once"],
        env=env | {"LAKEHOUSE_INGEST_MAX_OFFSETS": "20000"}, cwd=PROJECT_ROOT,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert restarted.returncode == 0, restarted.stdout[-3000:] + restarted.stderr[-3000:]
    assert "ingest: silver holds" in restarted.stdout

    assert_bronze_exactly_once(spark, lake, positions)
    assert_lakehouse_matches(spark, lake, final)


def test_reconcile_after_simulate_then_out_of_band_change(
    spark, config: Config, tmp_path: Path
) -> None:
    lake = isolated_lakehouse(config, str(tmp_path / "warehouse"), "recon")
    try:
        with PlanStore.open(lake, batch_size=50) as store:
            simulate(store, plans=15, changes=45, seed=41)
        assert ingest(spark, lake, once=True) == 0
        assert snapshot.take_snapshot(spark, lake).plans >= 15
        clean = snapshot.run_reconciliation(spark, lake)
        assert (clean.total, clean.differences) == (0, {})

        # An edit behind the store's back: no version bump, no event.
        client = clients.mongo_client(lake)
        try:
            plans = client[lake.mongo.database][lake.mongo.collection]
            victim = plans.find_one({"_lakehouse.deleted": {"$ne": True}}, sort=[("_id", 1)])
            new_type = "HMO" if victim["planType"] != "HMO" else "PPO"
            plans.update_one({"_id": victim["_id"]}, {"$set": {"planType": new_type}})
        finally:
            client.close()
        # The operator's path: spark-submit of the snapshot job with --reconcile.
        job = subprocess.run(
            [str(PROJECT_ROOT / "jobs" / "submit.sh"), "jobs/mongo_snapshot.py", "--reconcile"],
            env=env_for(lake), cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert job.returncode == 3, job.stdout[-3000:] + job.stderr[-3000:]
        assert "1 differences (content-mismatch 1)" in job.stdout
        report = io.read_table(spark, lake, RECONCILIATION)
        newest = report.agg(F.max_by("run_id", "checked_at")).first()[0]
        rows = [(r["plan_id"], r["kind"], r["source_version"] == r["silver_version"])
                for r in report.where(F.col("run_id") == newest).collect()]  # fmt: skip
        assert rows == [(victim["_id"], "content-mismatch", True)]

        # A second lakehouse bootstrapped from that snapshot agrees with the store exactly.
        fresh = dataclasses.replace(lake, warehouse=str(tmp_path / "bootstrapped"))
        io.ensure_table(spark, fresh, SNAPSHOTS)
        io.append(snapshot.latest_snapshot(spark, lake), fresh, SNAPSHOTS)
        snapshot.bootstrap_silver(spark, fresh)
        assert snapshot.run_reconciliation(spark, fresh).differences == {}
    finally:
        drop_database(lake)
