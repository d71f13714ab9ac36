"""The Prefect nightly flow in Prefect's test harness, on a small simulated dataset against the
real services: a forced task failure alerts a real HTTP endpoint; then a full run snapshots,
reconciles, refreshes gold, trains and scores, passes the gate, mirrors to PostgreSQL, compacts
and vacuums the tables and leaves a summary; the deployment's schedule is the 2 AM cron."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from support import WebhookReceiver, drop_database, env_for, isolated_lakehouse

from lakehouse import clients, io, maintenance
from lakehouse.config import PROJECT_ROOT, Config
from lakehouse.ingest.operations import ingest
from lakehouse.plans.simulate import simulate
from lakehouse.plans.store import PlanStore
from lakehouse.tables import BRONZE_EVENTS, PLAN_COSTS, PLAN_HISTORY, PLANS

pytestmark = pytest.mark.usefixtures("local_stack")


def _load_flows() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nightly_flow", PROJECT_ROOT / "flows/nightly.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # Prefect finds a deployed flow by its module
    spec.loader.exec_module(module)
    return module


def test_schedule_is_2am_cron_in_the_configured_zone(config: Config) -> None:
    flows = _load_flows()
    berlin = dataclasses.replace(
        config, nightly=dataclasses.replace(config.nightly, timezone="Europe/Berlin")
    )
    deployment = flows.nightly.to_deployment(name="nightly", schedules=[flows.schedule(berlin)])
    (scheduled,) = deployment.schedules
    assert (scheduled.schedule.cron, scheduled.schedule.timezone) == ("0 2 * * *", "Europe/Berlin")


@pytest.mark.timeout(900)  # two whole nightly runs
def test_nightly_flow_alerts_on_failure_then_runs_end_to_end(
    spark, config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.testing.utilities import prefect_test_harness

    flows = _load_flows()
    lake = isolated_lakehouse(config, str(tmp_path / "warehouse"), "nightly")
    schema = f"gold_nightly_{tmp_path.name[-8:].replace('-', '_').lower()}"
    try:
        with PlanStore.open(lake, batch_size=50) as store:
            simulate(store, plans=60, changes=40, seed=5)
        assert ingest(spark, lake, once=True) == 0

        with WebhookReceiver() as receiver, prefect_test_harness():
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

            done = flows.nightly(env="test", retrain=True, return_state=True)
            assert done.is_completed(), done.message
            summary = done.result()
        assert len(receiver.received) == 1  # the good run alerted nobody

        live = io.read_table(spark, lake, PLAN_COSTS).count()
        assert f"| gold.plan_costs | {live:,} |" in summary
        assert "0 error(s)" in summary and "gold published to PostgreSQL." in summary
        assert "(model retrained tonight)" in summary
        # table maintenance compacted what the ingest and gold wrote: one file per small table
        assert "Table maintenance: 16 tables," in summary, summary
        for table in (BRONZE_EVENTS, PLANS, PLAN_HISTORY, PLAN_COSTS):
            assert maintenance.layout(spark, lake, table).files == 1, table.name
            operations = io.delta_table(spark, lake, table).history().select("operation")
            assert {"OPTIMIZE", "VACUUM END"} <= {row[0] for row in operations.collect()}
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
