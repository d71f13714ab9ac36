"""The medallion under failure and change: a SIGKILLed ingest process, the Mongo snapshot /
reconciliation path, and the upgrade of a warehouse written by the earlier two-query layout.
(The index under an Elasticsearch outage: test_indexer.py.)"""

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
from lakehouse.ingest import contract, snapshot
from lakehouse.ingest.apply import apply_plan_events, ensure_silver_tables
from lakehouse.ingest.operations import ingest
from lakehouse.ingest.stream import await_query, to_bronze_rows
from lakehouse.plans.scenario import disorder, event_history
from lakehouse.plans.simulate import simulate
from lakehouse.plans.store import PlanStore
from lakehouse.tables import (
    BRONZE_EVENTS,
    LEGACY_BRONZE_CHECKPOINT,
    LEGACY_SILVER_CHECKPOINT,
    PLAN_EVENTS,
    PLAN_HISTORY,
    PLANS_CHECKPOINT,
    RECONCILIATION,
    SNAPSHOTS,
    checkpoint,
)

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


def test_a_warehouse_of_the_two_query_layout_is_upgraded_without_loss_or_duplicates(
    spark, config: Config, tmp_path: Path
) -> None:
    """Bronze and silver written the way the earlier layout wrote them (a Kafka -> bronze Delta
    sink, then a bronze -> silver stream), with silver behind bronze and bronze behind the
    topic: the first ingest drains the old silver stream, retires both checkpoints and starts
    the hot path where bronze ends."""
    lake = isolated_lakehouse(config, str(tmp_path / "warehouse"), "upgrade")
    events, final = event_history(27, plans=25, changes=90)
    thirds = len(events) // 3
    parts = [events[:thirds], events[thirds : 2 * thirds], events[2 * thirds :]]
    legacy_bronze = checkpoint(lake, LEGACY_BRONZE_CHECKPOINT)
    legacy_silver = checkpoint(lake, LEGACY_SILVER_CHECKPOINT)

    def old_bronze() -> None:
        io.ensure_table(spark, lake, BRONZE_EVENTS)
        records = (
            spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", lake.kafka.bootstrap)
            .option("subscribe", lake.kafka.topic)
            .option("startingOffsets", "earliest")
            .load()
        )
        query = (
            to_bronze_rows(records)
            .writeStream.format("delta")
            .option("checkpointLocation", legacy_bronze)
            .trigger(availableNow=True)
            .start(BRONZE_EVENTS.path(lake))
        )
        await_query(query, "old bronze")

    def old_silver(batch, batch_id: int) -> None:
        events = contract.to_plan_events(contract.check_contract(batch)).persist()
        try:
            apply_plan_events(events, lake)
        finally:
            events.unpersist()

    positions = produce(lake, [(e.key(), e.value()) for e in parts[0]])
    old_bronze()
    ensure_silver_tables(spark, lake)
    query = (
        spark.readStream.format("delta")
        .load(BRONZE_EVENTS.path(lake))
        .writeStream.option("checkpointLocation", legacy_silver)
        .foreachBatch(old_silver)
        .trigger(availableNow=True)
        .start()
    )
    await_query(query, "old silver")
    positions += produce(lake, [(e.key(), e.value()) for e in parts[1]])
    old_bronze()  # bronze holds the second third; the old silver stream has not read it
    positions += produce(lake, [(e.key(), e.value()) for e in parts[2]])  # only on the topic

    assert ingest(spark, lake, once=True) == 0

    assert_bronze_exactly_once(spark, lake, positions)
    assert_lakehouse_matches(spark, lake, final)
    history = io.read_table(spark, lake, PLAN_HISTORY).count()
    assert history == len({(e.plan_id, e.version) for e in events})
    # silver.plan_events holds what the hot path read: the last third only
    assert io.read_table(spark, lake, PLAN_EVENTS).count() == len(parts[2])
    for name in (legacy_bronze, legacy_silver):
        assert not Path(name).exists() and Path(f"{name}.retired").is_dir(), name
    # A second run drains nothing and appends nothing.
    bronze_version = io.latest_version(spark, lake, BRONZE_EVENTS)
    assert ingest(spark, lake, once=True) == 0
    assert io.latest_version(spark, lake, BRONZE_EVENTS) == bronze_version
