"""The nightly batch, orchestrated by Prefect; the work itself is in `lakehouse/`.

    snapshot Mongo + reconcile -> refresh gold -> score anomalies (retrain on the configured
    weekday) -> quality gate -> PostgreSQL mirror -> table maintenance (compaction; Z-order on
    the configured weekday; vacuum) -> markdown summary artifact

Run once now:       .venv/bin/python flows/nightly.py [--env ENV]
Serve the schedule: .venv/bin/python flows/nightly.py --serve  (nightly.cron in nightly.timezone;
                    `lakehouse stack up --apps` runs this against the local Prefect server)
Run the deployment: .venv/bin/python flows/nightly.py --trigger  (now, through the server, and
                    wait for it; the run shows in the Prefect UI)

A failed task is retried; a flow that fails sends an alert through the configured notifiers
(`quality.alerts`). A publish held back by the quality gate fails the flow without a second
alert: the gate has already sent one with the failing checks.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from lakehouse.config import Config, load_config


class PublishHeldBack(RuntimeError):
    """The quality gate kept gold from being published (its alert is already out)."""


class StepFailed(RuntimeError):
    """A pipeline step failed (a gold job's missing input, silver differing from the snapshot);
    the message says why."""


def _spark(config: Config):  # type: ignore[no-untyped-def]
    from lakehouse.spark import build_spark

    return build_spark(config, app_name="lakehouse-nightly")  # the flow's one session


def _gold_job(spark, config: Config, name: str, options) -> list[str]:  # type: ignore[no-untyped-def]
    """Run one gold job, logging each table's result; a GoldError fails the task with it."""
    from lakehouse.gold import jobs, refresh

    logger = get_run_logger()
    lines: list[str] = []

    def report(line: str) -> None:
        logger.info("%s: %s", name, line)
        lines.append(line)

    try:
        jobs.JOBS[name](spark, config, options, report)
    except refresh.GoldError as exc:
        raise StepFailed(f"{name}: {exc}") from exc
    return lines


@task(retries=2, retry_delay_seconds=30, timeout_seconds=1800)
def snapshot_and_reconcile(env: str | None) -> str:
    from lakehouse.ingest import snapshot as snapshots

    config = load_config(env)
    spark = _spark(config)
    logger = get_run_logger()
    logger.info(snapshots.take_snapshot(spark, config).render(config))
    result = snapshots.run_reconciliation(spark, config)
    logger.info(result.summary())
    if result.total:
        raise StepFailed(f"reconcile: silver differs from the snapshot:\n{result.summary()}")
    return result.summary()


@task(retries=1, retry_delay_seconds=30, timeout_seconds=3600)
def refresh_gold(env: str | None) -> list[str]:
    from lakehouse.gold import jobs

    config = load_config(env)
    spark = _spark(config)
    return [
        line
        for name in ("cost_analysis", "service_patterns")
        for line in _gold_job(spark, config, name, jobs.JobOptions())
    ]


@task(retries=1, retry_delay_seconds=30, timeout_seconds=3600)
def score_anomalies(env: str | None, retrain: bool) -> list[str]:
    from lakehouse.gold import jobs

    config = load_config(env)
    spark = _spark(config)
    modes = ("train", "score") if retrain else ("score",)
    return _gold_job(spark, config, "anomaly_detection", jobs.JobOptions(modes=modes))


@task(timeout_seconds=3600)
def quality_gate_and_mirror(env: str | None) -> dict[str, object]:
    """Quality suites, then the mirror unless an error check failed (no retries: a failed
    check does not heal by running again)."""
    from lakehouse.quality.gate import publish_if_clean
    from lakehouse.serving.mirror import publish_all

    config = load_config(env)
    spark = _spark(config)
    logger = get_run_logger()
    mirrored: list[str] = []

    def publish() -> None:
        mirrored.extend(p.render() for p in publish_all(spark, config, logger.info))

    outcome = publish_if_clean(spark, config, publish, progress=logger.info)
    return {
        "published": outcome.published,
        "checks": len(outcome.run.results),
        "errors": len(outcome.run.blocking),
        "warnings": len(outcome.run.warnings),
        "run_id": outcome.run.run_id,
        "failing": [f"{r.table} {r.check}: {r.message}" for r in outcome.run.blocking],
        "mirrored": mirrored,
    }


@task(retries=2, retry_delay_seconds=60, timeout_seconds=3600)
def maintain_tables(env: str | None) -> dict[str, object]:
    """Compact, Z-order (on `maintenance.zorder_weekday`) and vacuum every table; after the
    mirror, so that publishing never waits for it. A retry follows a conflict with the ingest.
    A VACUUM held back (a lagging stream still needs the files) is alerted, not failed."""
    from prefect.runtime import flow_run

    from lakehouse import maintenance
    from lakehouse.quality.alerts import Alert, FailedCheck, configured_notifiers, dispatch

    config = load_config(env)
    spark = _spark(config)
    logger = get_run_logger()
    tables = maintenance.select_tables([])
    done = maintenance.maintain(
        spark, config, tables, maintenance.zorder_today(config), progress=logger.info
    )
    held = [m for m in done if m.vacuum_held]
    if held:
        alert = Alert(
            title=f"nightly maintenance: VACUUM held back on {len(held)} table(s)",
            run_id=str(flow_run.name),
            run_at=datetime.now(UTC).isoformat(),
            failed=[
                FailedCheck(m.table, "vacuum", "warning", None, m.vacuum_held or "") for m in held
            ],
        )
        dispatch(alert, configured_notifiers(config.quality.alerts), config.quality.alerts.attempts)
    return {
        "tables": len(done),
        "files_removed": sum(m.files_removed for m in done),
        # a VACUUM that could delete nothing is skipped (maintenance.vacuum_could_delete)
        "vacuumed": sum(m.vacuumed for m in done),
        "files_deleted": sum(m.vacuumed_files or 0 for m in done),
        "vacuum_held": [f"{m.table}: {m.vacuum_held}" for m in held],
    }


@task
def summarise(
    env: str | None, quality: dict[str, object], retrained: bool, maintained: dict[str, object]
) -> str:
    """A markdown table of the gold tables' row counts plus quality and anomaly figures."""
    from pyspark.sql import functions as F

    from lakehouse import io as lake_io
    from lakehouse.tables import GOLD_TABLES, PLAN_ANOMALIES

    config = load_config(env)
    spark = _spark(config)
    rows = [
        (t.name, lake_io.read_table(spark, config, t).count())
        for t in GOLD_TABLES
        if lake_io.table_exists(spark, config, t)
    ]
    anomalies = (
        lake_io.read_table(spark, config, PLAN_ANOMALIES)
        .groupBy("flagged_by")
        .agg(F.count(F.lit(1)).alias("plans"))
        .where("flagged_by IS NOT NULL")
        .orderBy("flagged_by")
        .collect()
    )
    lines = [
        "| gold table | rows |",
        "|---|---:|",
        *[f"| {name} | {count:,} |" for name, count in rows],
        "",
        f"Quality run `{quality['run_id']}`: {quality['checks']} checks, "
        f"{quality['errors']} error(s), {quality['warnings']} warning(s); "
        + ("gold published to PostgreSQL." if quality["published"] else "publish held back."),
        "",
        "Anomalies flagged: "
        + (", ".join(f"{a.flagged_by} {a.plans}" for a in anomalies) or "none")
        + (" (model retrained tonight)" if retrained else ""),
        "",
        f"Table maintenance: {maintained['tables']} tables, {maintained['vacuumed']} vacuumed "
        f"({maintained['files_deleted']:,} files deleted), "
        f"{maintained['files_removed']:,} files compacted away.",
        *(f"VACUUM held back: {line}" for line in maintained["vacuum_held"]),  # type: ignore[attr-defined]
    ]
    markdown = "\n".join(lines)
    create_markdown_artifact(markdown, key="nightly-summary", description="Nightly batch summary")
    return markdown


def alert_on_failure(flow, flow_run, state) -> None:  # type: ignore[no-untyped-def]
    """Flow failure hook: tell the configured channels, unless the gate already did."""
    from lakehouse.quality.alerts import Alert, FailedCheck, configured_notifiers, dispatch

    try:
        state.result()
    except PublishHeldBack:
        return
    except Exception as exc:  # the failure being reported
        text = str(exc) or type(exc).__name__
        headline, detail = f"{type(exc).__name__}: {text.splitlines()[0]}", text[-1500:]
    else:
        headline = detail = state.message or "failed"
    config = load_config(flow_run.parameters.get("env"))
    alert = Alert(
        title=f"nightly flow failed: {headline}",
        run_id=str(flow_run.name),
        run_at=datetime.now(UTC).isoformat(),
        failed=[FailedCheck("nightly", str(flow.name), "error", None, detail)],
    )
    dispatch(alert, configured_notifiers(config.quality.alerts), config.quality.alerts.attempts)


@flow(name="nightly", on_failure=[alert_on_failure])
def nightly(env: str | None = None, retrain: bool | None = None) -> str:
    """`retrain`: None retrains on `nightly.retrain_weekday`, or when no model serves yet (a
    fresh installation); True / False force it."""
    from lakehouse.gold.detection import serving_version

    config = load_config(env)
    if retrain is None:
        today = datetime.now(ZoneInfo(config.nightly.timezone))
        retrain = (
            today.weekday() == config.nightly.retrain_weekday or serving_version(config) is None
        )
    snapshot_and_reconcile(env)
    refresh_gold(env)
    score_anomalies(env, retrain)
    quality = quality_gate_and_mirror(env)
    maintained = maintain_tables(env)
    summary = summarise(env, quality, retrain, maintained)
    if not quality["published"]:
        raise PublishHeldBack("; ".join(quality["failing"]))  # type: ignore[arg-type]
    return summary


def schedule(config: Config):  # type: ignore[no-untyped-def]
    """The deployment's schedule: `nightly.cron` (02:00) in `nightly.timezone`."""
    from prefect.schedules import Cron

    return Cron(config.nightly.cron, timezone=config.nightly.timezone)


def trigger(config: Config, timeout_s: float) -> int:
    """Start a run of the served deployment and follow its state until it ends."""
    import os
    import time

    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api = os.environ.get("PREFECT_API_URL") or f"http://127.0.0.1:{config.apps.prefect_port}/api"
    with temporary_settings(updates={PREFECT_API_URL: api}):
        run = run_deployment("nightly/nightly", timeout=0)  # 0: return once scheduled
        ui = api.removesuffix("/api")
        print(f"nightly: flow run {run.name} ({ui}/runs/flow-run/{run.id})", flush=True)
        started, last = time.monotonic(), None
        with get_client(sync_client=True) as client:
            while True:
                state = client.read_flow_run(run.id).state
                name = state.name if state else "Unknown"
                if name != last:
                    print(f"nightly: {name} after {time.monotonic() - started:.0f}s", flush=True)
                    last = name
                if state is not None and state.is_final():
                    return 0 if state.is_completed() else 1
                if time.monotonic() - started > timeout_s:
                    print(f"nightly: still {name} after {timeout_s:.0f}s; giving up waiting")
                    return 1
                time.sleep(3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flows/nightly.py", description=__doc__.splitlines()[0])
    parser.add_argument("--env", help="configuration environment (default $LAKEHOUSE_ENV or local)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--serve", action="store_true", help="serve the deployment on its schedule until stopped"
    )
    mode.add_argument(
        "--trigger",
        action="store_true",
        help="run the served deployment now through the Prefect server and wait for it",
    )
    parser.add_argument(
        "--timeout-s", type=float, default=3600, help="with --trigger: how long to wait"
    )
    args = parser.parse_args(argv)
    config = load_config(args.env)
    if args.serve:
        nightly.serve(name="nightly", schedules=[schedule(config)], parameters={"env": args.env})
        return 0
    if args.trigger:
        return trigger(config, args.timeout_s)
    state = nightly(env=args.env, return_state=True)
    return 0 if state.is_completed() else 1


if __name__ == "__main__":
    sys.exit(main())
