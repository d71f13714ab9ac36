"""Readable summaries of quality runs: the console table of one run, and the run history."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from lakehouse.quality.runner import CheckResult

_MESSAGE_CHARS = 70


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; the last column is left ragged."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    lines = []
    for cells in (header, ["-" * w for w in widths], *rows):
        padded = [str(c).ljust(w) for c, w in zip(cells[:-1], widths[:-1], strict=True)]
        lines.append("  ".join([*padded, str(cells[-1])]))
    return "\n".join(lines)


def format_results(results: Sequence[CheckResult]) -> str:
    """One line per check: table, check, severity, status (FAIL for a blocking failure), value
    and message."""
    rows = [
        (
            r.table,
            r.check,
            r.severity,
            ("FAIL" if r.blocking else "warn") if not r.passed else "ok",
            "" if r.value is None else f"{r.value:,.4g}",
            _short(r.message),
        )
        for r in results
    ]
    return format_table(("table", "check", "severity", "status", "value", "message"), rows)


def summary_line(results: Sequence[CheckResult]) -> str:
    blocking = sum(r.blocking for r in results)
    warnings = sum((not r.passed) and r.severity == "warning" for r in results)
    passed = sum(r.passed for r in results)
    tables = len({r.table for r in results})
    verdict = "FAILED" if blocking else "passed"
    return (
        f"quality {verdict}: {tables} tables, {len(results)} checks, {passed} passed, "
        f"{blocking} error(s), {warnings} warning(s)"
    )


def run_history(results: DataFrame) -> DataFrame:
    """quality.results -> one row per run, newest first: run_id, run_at, tables, checks,
    errors (failed error checks), warnings (failed warning checks)."""
    failed = F.col("status") == "failed"
    return (
        results.groupBy("run_id", "run_at")
        .agg(
            F.countDistinct("table_name").alias("tables"),
            F.count(F.lit(1)).alias("checks"),
            F.sum((failed & (F.col("severity") == "error")).cast("int")).alias("errors"),
            F.sum((failed & (F.col("severity") == "warning")).cast("int")).alias("warnings"),
        )
        .orderBy(F.col("run_at").desc(), F.col("run_id").desc())
    )


def latest_per_table(results: DataFrame) -> DataFrame:
    """quality.results -> the rows of each table's most recent run (runs may cover only some
    tables: `--layer`, `--table`)."""
    newest = Window.partitionBy("table_name")
    return (
        results.withColumn("_newest", F.max("run_at").over(newest))
        .where(F.col("run_at") == F.col("_newest"))
        .drop("_newest")
    )


def _short(text: str) -> str:
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 1] + "…"
