"""Readable summaries of quality runs: the console table of one run, the run history, and the
history page (status of every table per run and row counts over time, as charts)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from lakehouse.quality.charts import pyplot, to_svg
from lakehouse.quality.runner import CheckResult, QualityRun

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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


def render_run(run: QualityRun) -> str:
    """The console report of a run: one line per check, then the summary."""
    return f"{format_results(run.results)}\n\n{summary_line(run.results)} (run {run.run_id})"


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
    return (
        results.groupBy("run_id", "run_at")
        .agg(
            F.countDistinct("table_name").alias("tables"),
            F.count(F.lit(1)).alias("checks"),
            *failure_counts(),
        )
        .orderBy(F.col("run_at").desc(), F.col("run_id").desc())
    )


def failure_counts() -> list[Column]:
    """errors and warnings: failed checks of each severity."""
    failed = F.col("status") == "failed"
    return [
        F.sum((failed & (F.col("severity") == severity)).cast("int")).alias(f"{severity}s")
        for severity in ("error", "warning")
    ]


def latest_per_table(results: DataFrame) -> DataFrame:
    """quality.results -> the rows of each table's most recent run (runs may cover only some
    tables: `--layer`, `--table`)."""
    newest = Window.partitionBy("table_name")
    return (
        results.withColumn("_newest", F.max("run_at").over(newest))
        .where(F.col("run_at") == F.col("_newest"))
        .drop("_newest")
    )


def table_status(results: DataFrame) -> DataFrame:
    """quality.results -> one row per (run, table): run_id, run_at, table_name, errors and
    warnings (failed checks of each severity)."""
    return results.groupBy("run_id", "run_at", "table_name").agg(*failure_counts())


def row_count_history(metrics: DataFrame) -> DataFrame:
    """quality.metrics -> run_at, table_name, value: each table's row count per run (Deequ's
    Size metric of the whole dataset)."""
    return metrics.where("metric = 'Size' AND entity = 'Dataset'").select(
        "run_at", "table_name", "value"
    )


def render_history_html(
    statuses: Sequence[tuple[datetime, str, int, int]],
    row_counts: Sequence[tuple[datetime, str, float]],
    failing: Sequence[tuple[str, str, str, str]],
    generated_at: datetime,
) -> str:
    """The history page. `statuses`: (run_at, table, errors, warnings) per table per run;
    `row_counts`: (run_at, table, rows) from Deequ's Size metric; `failing`: (table, check,
    severity, message) of each table's latest run."""
    runs = sorted({at for at, *_ in statuses})
    tables = sorted({table for _, table, *_ in statuses})
    figures = [
        ("status", "Status of every table per run", to_svg(status_figure(statuses))),
    ]
    if row_counts:
        figures.append(
            ("row-counts", "Rows per table per run", to_svg(row_counts_figure(row_counts)))
        )
    body = "\n".join(
        f'<figure class="chart" data-chart="{key}"><figcaption>{html.escape(title)}</figcaption>'
        f"{svg}</figure>"
        for key, title, svg in figures
    )
    rows = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
        for row in failing
    )
    failures = (
        "<table><thead><tr><th>table</th><th>check</th><th>severity</th><th>message</th></tr>"
        f"</thead><tbody>{rows}</tbody></table>"
        if failing
        else "<p>Every check passed in each table's latest run.</p>"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Data quality history</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; }}
figure.chart {{ margin: 1em 0; }}
figcaption {{ font-weight: bold; margin-bottom: .5em; }}
</style></head><body>
<h1>Data quality history</h1>
<p>{len(runs)} run(s) of {len(tables)} table(s), generated {generated_at:%Y-%m-%d %H:%M:%S} UTC.</p>
<h2>Failing now</h2>
{failures}
{body}
</body></html>
"""


def status_figure(statuses: Sequence[tuple[datetime, str, int, int]]) -> Figure:
    """The status grid as a matplotlib Figure: one row per table, one column per run, green
    passed, orange warnings only, red errors, blank when the table was not in that run.
    `statuses`: (run_at, table, errors, warnings) per table per run."""
    from matplotlib.colors import ListedColormap

    plt = pyplot()
    runs = sorted({at for at, *_ in statuses})
    tables = sorted({table for _, table, *_ in statuses})
    # 0 passed, 1 warnings only, 2 errors; NaN: the table was not in that run
    grid = [[math.nan] * len(runs) for _ in tables]
    for at, table, errors, warnings in statuses:
        grid[tables.index(table)][runs.index(at)] = 2 if errors else (1 if warnings else 0)
    figure, axes = plt.subplots(
        figsize=(max(5.0, 0.5 * len(runs) + 3), max(2.0, 0.35 * len(tables) + 1))
    )
    colours = ListedColormap(["#55a868", "#dd8452", "#c44e52"])
    axes.pcolormesh(grid, cmap=colours, vmin=0, vmax=2, edgecolors="white", linewidth=1)
    axes.set_yticks([i + 0.5 for i in range(len(tables))], tables)
    axes.set_xticks(
        [i + 0.5 for i in range(len(runs))], [f"{at:%m-%d %H:%M}" for at in runs], rotation=60
    )
    axes.invert_yaxis()
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.colors]
    axes.legend(handles, ["passed", "warnings", "errors"], loc="upper left", bbox_to_anchor=(1, 1))
    return figure


def row_counts_figure(row_counts: Sequence[tuple[datetime, str, float]]) -> Figure:
    """Rows per table per run (log scale) as a matplotlib Figure. `row_counts`: (run_at, table,
    rows) from Deequ's Size metric."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(9, 4))
    for table in sorted({table for _, table, _ in row_counts}):
        points = sorted((at, rows) for at, name, rows in row_counts if name == table)
        axes.plot([at for at, _ in points], [rows for _, rows in points], marker="o", label=table)
    axes.set_yscale("log")
    axes.set_ylabel("rows (log)")
    axes.legend(loc="upper left", bbox_to_anchor=(1, 1), fontsize="small")
    figure.autofmt_xdate()
    return figure


def _short(text: str) -> str:
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 1] + "…"
