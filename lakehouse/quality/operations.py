"""What `lakehouse quality ...` does, one function per sub-command; each returns the exit code
(0 ok, 1 a failed error check, 2 a bad argument)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from lakehouse import io
from lakehouse.config import Config
from lakehouse.quality import report, suites
from lakehouse.quality.gate import raise_alert
from lakehouse.quality.profile import profile_table, reports_dir
from lakehouse.quality.runner import run_quality
from lakehouse.tables import QUALITY_METRICS_TABLE, QUALITY_RESULTS_TABLE


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `lakehouse quality run` and jobs/data_quality.py."""
    parser.add_argument("--layer", choices=list(suites.LAYERS), help="only this layer")
    parser.add_argument("--table", help="only this table, e.g. silver.plans")
    parser.add_argument(
        "--alert", action="store_true", help="on failure, also notify the configured channels"
    )


def run(
    spark: SparkSession,
    config: Config,
    layer: str | None,
    table: str | None,
    alert: bool,
) -> int:
    try:
        chosen = suites.select(config, layer, table)
    except ValueError as exc:
        print(f"lakehouse: {exc}", file=sys.stderr)
        return 2
    outcome = run_quality(
        spark, config, chosen, progress=lambda line: print(line, file=sys.stderr, flush=True)
    )
    print(report.render_run(outcome))
    if not outcome.ok and alert:
        _, deliveries = raise_alert(config, outcome)
        print("alert: " + ", ".join(f"{name} {state}" for name, state in deliveries.items()))
    return 0 if outcome.ok else 1


def show_report(spark: SparkSession, config: Config, runs: int, html: bool = False) -> int:
    if not io.table_exists(spark, config, QUALITY_RESULTS_TABLE):
        print("no quality runs yet: run `lakehouse quality run`", file=sys.stderr)
        return 1
    results = io.read_table(spark, config, QUALITY_RESULTS_TABLE)
    latest = report.latest_per_table(results).orderBy("layer", "table_name", "check_name").collect()
    print("latest result of each check:")
    print(
        report.format_table(
            ("table", "check", "severity", "status", "value", "run_at"),
            [
                (
                    r.table_name,
                    r.check_name,
                    r.severity,
                    r.status,
                    "" if r.value is None else f"{r.value:,.4g}",
                    f"{r.run_at:%Y-%m-%d %H:%M:%S}",
                )
                for r in latest
            ],
        )
    )
    history = report.run_history(results).limit(runs).collect()
    print(f"\nlast {len(history)} run(s):")
    print(
        report.format_table(
            ("run", "run_at", "tables", "checks", "errors", "warnings"),
            [
                (
                    h.run_id,
                    f"{h.run_at:%Y-%m-%d %H:%M:%S}",
                    str(h.tables),
                    str(h.checks),
                    str(h.errors),
                    str(h.warnings),
                )
                for h in history
            ],
        )
    )
    if html:
        page = write_history_page(spark, config, results)
        print(f"\nhistory page: {page}")
    failing = [r for r in latest if r.status == "failed" and r.severity == "error"]
    return 1 if failing else 0


def write_history_page(spark: SparkSession, config: Config, results: DataFrame) -> Path:
    """`<reports_dir>/history/<UTC time>.html`: each table's status per run, row counts over
    time and what fails now."""
    now = datetime.now(UTC)
    statuses = [
        (s.run_at, s.table_name, s.errors, s.warnings)
        for s in report.table_status(results).collect()
    ]
    sizes = []
    if io.table_exists(spark, config, QUALITY_METRICS_TABLE):
        metrics = io.read_table(spark, config, QUALITY_METRICS_TABLE)
        sizes = [
            (m.run_at, m.table_name, m.value) for m in report.row_count_history(metrics).collect()
        ]
    failing = [
        (r.table_name, r.check_name, r.severity, r.message or "")
        for r in report.latest_per_table(results)
        .where("status = 'failed'")
        .orderBy("table_name", "check_name")
        .collect()
    ]
    target = reports_dir(config) / "history" / f"{now:%Y%m%dT%H%M%SZ}.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(report.render_history_html(statuses, sizes, failing, now), encoding="utf-8")
    return target


def profile(spark: SparkSession, config: Config, table: str) -> int:
    try:
        path = profile_table(spark, config, table, datetime.now(UTC))
    except ValueError as exc:
        print(f"lakehouse: {exc}", file=sys.stderr)
        return 2
    print(f"profile of {table}: {path}")
    return 0
