"""The medallion under failure: a SIGKILLed ingest process, an Elasticsearch outage, and the
Mongo snapshot / reconciliation path."""

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
from support import TcpProxy, drop_database, env_for, isolated_lakehouse, produce

from lakehouse import clients, io
from lakehouse.config import PROJECT_ROOT, Config
from lakehouse.ingest import search, snapshot
from lakehouse.ingest.operations import ingest
from lakehouse.ingest.stream import run_continuous
from lakehouse.plans.scenario import FinalState, disorder, event_history
from lakehouse.plans.simulate import simulate
from lakehouse.plans.store import PlanStore
from lakehouse.tables import PLANS, RECONCILIATION, SILVER_CHECKPOINT, SNAPSHOTS, checkpoint

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
    silver_checkpoint = Path(checkpoint(lake, SILVER_CHECKPOINT))

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
        # Wait until a silver batch has committed and the next one is in flight, then kill it
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


def test_elasticsearch_outage_is_retried_and_caught_up(
    spark, config: Config, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lake = isolated_lakehouse(config, str(tmp_path / "warehouse"), "esdown")
    es_port = int(lake.elasticsearch.url.rsplit(":", 1)[1])
    proxy = TcpProxy(es_port)
    lake = dataclasses.replace(
        lake,
        elasticsearch=dataclasses.replace(lake.elasticsearch, url=f"http://127.0.0.1:{proxy.port}"),
        ingest=dataclasses.replace(
            lake.ingest, trigger_interval_s=0.5, es_retry_timeout_s=3, restart_backoff_s=1
        ),
    )
    events, final = event_history(31, plans=20, changes=80)
    produce(lake, [(e.key(), e.value()) for e in events])
    proxy.up()
    search.ensure_index(lake)  # the index exists; then Elasticsearch "goes down"
    proxy.down()

    stop = threading.Event()
    failures: list[BaseException] = []

    def run() -> None:
        try:
            run_continuous(spark, lake, lambda batch: None, stop)
        except BaseException as exc:  # reported to the test thread below
            failures.append(exc)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    try:
        # Silver keeps advancing while the index cannot be written...
        _wait_for(lambda: _silver_versions(spark, lake) == _versions(final), 240, failures)
        # ...until its batch gives up on the index, fails, and is scheduled for a restart.
        _wait_for(lambda: _restarts(caplog), 240, failures)
        proxy.up()
        # ...and the index catches up once Elasticsearch is back.
        _wait_for(lambda: _indexed_versions(lake) == _live_versions(final), 240, failures)
    finally:
        stop.set()
        runner.join(timeout=120)
        proxy.down()
    assert not failures
    assert all("SearchSyncError" in m for m in _restarts(caplog) if m.startswith("silver"))
    direct = dataclasses.replace(lake, elasticsearch=config.elasticsearch)
    assert_lakehouse_matches(
        spark,
        dataclasses.replace(
            direct,
            elasticsearch=dataclasses.replace(config.elasticsearch, index=lake.elasticsearch.index),
        ),
        final,
    )


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


def _restarts(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "restarting from its" in r.getMessage()]


def _versions(final: dict[str, FinalState]) -> dict[str, tuple[int, bool]]:
    return {k: (s.version, s.document is None) for k, s in final.items()}


def _live_versions(final: dict[str, FinalState]) -> dict[str, int]:
    return {k: s.version for k, s in final.items() if s.document is not None}


def _silver_versions(spark, lake: Config) -> dict[str, tuple[int, bool]]:
    if not io.table_exists(spark, lake, PLANS):
        return {}
    rows = io.read_table(spark, lake, PLANS).collect()
    return {r["plan_id"]: (r["version"], r["is_deleted"]) for r in rows}


def _indexed_versions(lake: Config) -> dict[str, int]:
    es = clients.es_client(lake)
    try:
        es.indices.refresh(index=lake.elasticsearch.index)
        hits = es.search(index=lake.elasticsearch.index, body={"size": 10_000})["hits"]["hits"]
        return {h["_id"]: h["_source"]["version"] for h in hits}
    except Exception:  # the index is written through the proxy; read errors mean "not yet"
        return {}
    finally:
        es.close()


def _wait_for(condition, timeout_s: float, failures: list[BaseException]) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert not failures, f"ingest failed: {failures[0]!r}"
        assert time.monotonic() < deadline, f"condition not met in {timeout_s}s"
        time.sleep(1)
