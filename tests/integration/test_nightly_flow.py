"""The Prefect nightly flow in Prefect's test harness, on a small simulated dataset against the
real services: a forced task failure alerts a real HTTP endpoint; then a full run snapshots,
reconciles, refreshes gold, trains and scores, passes the gate, mirrors to PostgreSQL, compacts
and vacuums the tables and leaves a summary. (The deployment's schedule:
tests/unit/test_nightly_schedule.py.)"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from support import WebhookReceiver, drop_database, env_for, isolated_lakehouse, prefect_test_server

from flows import nightly as flows
from lakehouse import clients, io, maintenance, spark_cost
from lakehouse.config import Config
from lakehouse.ingest.operations import ingest
from lakehouse.plans.simulate import simulate
from lakehouse.plans.store import PlanStore
from lakehouse.spark_cost import Budget
from lakehouse.tables import BRONZE_EVENTS, PLAN_COSTS, PLAN_HISTORY, PLANS, SERVICES, Table

pytestmark = pytest.mark.usefixtures("local_stack")

# Measured when set: 577 jobs, 907 tasks (four tables vacuumed); about 1.25x. No stage needs
# more than 8 tasks.
NIGHTLY_BUDGET = Budget(jobs=720, tasks=1140, widest_stage=8)
VACUUMED = (BRONZE_EVENTS, PLANS, PLAN_HISTORY, PLAN_COSTS)


def _plant_orphan(config: Config, table: Table) -> Path:
    """A data file no commit references, last modified 8 days ago (VACUUM keeps 7)."""
    orphan = Path(table.path(config)) / "part-00000-orphan-of-a-failed-write.snappy.parquet"
    orphan.write_bytes(b"PAR1")
    eight_days_ago = time.time() - 8 * 24 * 3600
    os.utime(orphan, (eight_days_ago, eight_days_ago))
    return orphan


def test_nightly_flow_alerts_on_failure_then_runs_end_to_end(
    spark, config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = isolated_lakehouse(config, str(tmp_path / "warehouse"), "nightly")
    schema = f"gold_nightly_{tmp_path.name[-8:].replace('-', '_').lower()}"
    try:
        with PlanStore.open(lake, batch_size=50) as store:
            simulate(store, plans=60, changes=40, seed=5)
        assert ingest(spark, lake, once=True) == 0

        with WebhookReceiver() as receiver, prefect_test_server():
            for var, value in {
                **env_for(lake),
                "LAKEHOUSE_STATE_DIR": str(tmp_path / "state"),
                "LAKEHOUSE_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
                "LAKEHOUSE_ALERT_WEBHOOK_URL": receiver.url,
                "LAKEHOUSE_MIRROR_SCHEMA": schema,
            }.items():
                monkeypatch.setenv(var, value)
            # one attempt per task here: the retries' pauses would only slow the test down
            for name in ("snapshot_and_reconcile", "refresh_gold", "score_anomalies"):
                monkeypatch.setattr(flows, name, getattr(flows, name).with_options(retries=0))

            # forced failure: scoring without ever training finds no model behind the alias
            failed = flows.nightly(env="test", retrain=False, return_state=True)
            assert failed.is_failed()
            (alert,) = receiver.received
            assert alert["title"].startswith("nightly flow failed: StepFailed: anomaly_detection")
            # the step's own output says why
            assert "champion" in alert["failed"][0]["message"], alert

            # A failed write's orphan, older than the retention, in four of the tables: their
            # VACUUM has something to delete; the other tables' files are all younger than
            # the retention, so they need (and get) no VACUUM.
            orphans = [_plant_orphan(lake, table) for table in VACUUMED]
            with spark_cost.measure(spark) as cost:
                done = flows.nightly(env="test", retrain=True, return_state=True)
            assert done.is_completed(), done.message
            summary = done.result()
        assert len(receiver.received) == 1  # the good run alerted nobody
        # Spark's work for the whole run (the flow's tasks share this process's session), held
        # to a budget like the steps in test_spark_budgets.py: a cluster-sized setting (the
        # 10,000-task file listing of 16 VACUUMs ran 160,782 tasks in 400 s) fails here.
        assert NIGHTLY_BUDGET.overruns(cost.result) == [], cost.result.render()

        live = io.read_table(spark, lake, PLAN_COSTS).count()
        assert f"| gold.plan_costs | {live:,} |" in summary
        assert "0 error(s)" in summary and "gold published to PostgreSQL." in summary
        assert "(model retrained tonight)" in summary
        # table maintenance compacted what the ingest and gold wrote: one file per small table
        for table in (BRONZE_EVENTS, PLANS, PLAN_HISTORY, PLAN_COSTS):
            assert maintenance.layout(spark, lake, table).files == 1, table.name
        for table in (*VACUUMED, SERVICES):
            operations = io.delta_table(spark, lake, table).history().select("operation")
            vacuumed = table in VACUUMED
            assert ("VACUUM END" in {row[0] for row in operations.collect()}) is vacuumed, table
        assert not any(orphan.exists() for orphan in orphans), orphans
        # every table the run wrote, gold's state (service_link_counts) included
        assert "Table maintenance: 18 tables, 4 vacuumed" in summary, summary
        conn = clients.pg_connect(lake)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(
                    f"SELECT rows FROM {schema}._mirror_state WHERE table_name = 'gold.plan_costs'"
                )
                assert cur.fetchone() == (live,)
                cur.execute(f"DROP SCHEMA {schema} CASCADE")
        finally:
            conn.close()
    finally:
        drop_database(lake)
