"""Profiling a table into a self-contained HTML report: Deequ column profiles (completeness,
approximate distinct counts, value histograms, KLL distributions of numbers) drawn as charts.

`profile_columns` runs Deequ (the JVM edge); `render_html` is pure: it turns the summaries into a
page with inline SVG charts (no scripts, no external files), so the report opens anywhere.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    DateType,
    MapType,
    StructType,
    TimestampType,
)

from lakehouse import io
from lakehouse.config import Config
from lakehouse.quality.charts import pyplot, to_svg
from lakehouse.tables import TABLES_BY_NAME

# Deequ keeps exact value histograms for columns with at most this many distinct values.
_HISTOGRAM_TOP = 15
_KLL_BUCKETS = 20


@dataclass(frozen=True)
class ColumnSummary:
    name: str
    data_type: str
    completeness: float
    distinct: int
    # (value, count), most frequent first; Deequ keeps these for low-cardinality columns
    histogram: list[tuple[str, int]] = field(default_factory=list)
    # (low, high, count) KLL sketch buckets of a numeric column
    buckets: list[tuple[float, float, int]] = field(default_factory=list)
    mean: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    std_dev: float | None = None


@dataclass(frozen=True)
class TableProfile:
    table: str
    version: int
    rows: int
    columns: list[ColumnSummary]
    # Columns left out: binary and nested values have no meaningful profile.
    skipped: list[str]
    generated_at: datetime


def profile_table(spark: SparkSession, config: Config, table_name: str, now: datetime) -> Path:
    """Profile the table's latest version and write the report; returns the report's path
    (`<reports_dir>/profiles/<table>/<UTC time>.html`, one file per run)."""
    if table_name not in TABLES_BY_NAME:
        raise ValueError(f"unknown table {table_name!r}; tables: {', '.join(TABLES_BY_NAME)}")
    table = TABLES_BY_NAME[table_name]
    if not io.table_exists(spark, config, table):
        raise ValueError(f"{table_name} does not exist yet at {table.path(config)}")
    version = io.latest_version(spark, config, table)
    frame = io.read_version(spark, config, table, version)
    rows, columns, skipped = profile_columns(spark, frame)
    profile = TableProfile(table_name, version, rows, columns, skipped, now)
    target = reports_dir(config) / "profiles" / table_name / f"{now:%Y%m%dT%H%M%SZ}.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_html(profile), encoding="utf-8")
    return target


def reports_dir(config: Config) -> Path:
    return Path(config.quality.reports_dir or config.state_path / "reports" / "quality")


def profile_columns(
    spark: SparkSession, frame: DataFrame
) -> tuple[int, list[ColumnSummary], list[str]]:
    """Deequ's column profiles of every flat column of `frame`, with KLL sketches of numbers."""
    from pydeequ.profiles import ColumnProfilerRunner, KLLParameters, NumericColumnProfile

    nested = (BinaryType, ArrayType, MapType, StructType)
    skipped = [f.name for f in frame.schema.fields if isinstance(f.dataType, nested)]
    # Deequ's profiler has no date or time type: it profiles them as text (value histograms)
    flat = frame.select(
        *[
            F.col(f.name).cast("string")
            if isinstance(f.dataType, DateType | TimestampType)
            else F.col(f.name)
            for f in frame.schema.fields
            if f.name not in skipped
        ]
    )
    with _quiet_codegen(spark):
        result = (
            ColumnProfilerRunner(spark)
            .onData(flat)
            .withKLLProfiling()
            .setKLLParameters(KLLParameters(spark, 2048, 0.64, _KLL_BUCKETS))
            .run()
        )
    rows = int(result.numRecords)
    summaries = []
    for name in flat.columns:
        column = result.profiles[name]
        histogram = sorted(
            ((str(v.value), int(v.count)) for v in (column.histogram or [])),
            key=lambda item: -item[1],
        )[:_HISTOGRAM_TOP]
        numeric = isinstance(column, NumericColumnProfile)
        buckets = (
            [(b.lowValue, b.highValue, int(b.count)) for b in column.kll.buckets]
            if numeric and column.kll is not None
            else []
        )
        summaries.append(
            ColumnSummary(
                name=name,
                data_type=str(column.dataType),
                completeness=float(column.completeness),
                distinct=int(column.approximateNumDistinctValues),
                histogram=histogram,
                buckets=buckets,
                mean=column.mean if numeric else None,
                minimum=column.minimum if numeric else None,
                maximum=column.maximum if numeric else None,
                std_dev=column.stdDev if numeric else None,
            )
        )
    return rows, summaries, skipped


@contextmanager
def _quiet_codegen(spark: SparkSession) -> Iterator[None]:
    """The profiler's aggregations trip Spark's expression code generator, which logs a stack
    trace and then interprets them instead (correct, just slower). Keep those traces out of the
    console while the profiler runs."""
    log4j = spark._jvm.org.apache.logging.log4j  # type: ignore[union-attr]
    loggers = (
        "org.apache.spark.sql.catalyst.expressions.codegen.CodeGenerator",
        "org.apache.spark.sql.catalyst.expressions.MutableProjection",
        "org.apache.spark.sql.catalyst.expressions.codegen.CodeGeneratorWithInterpretedFallback",
        "org.apache.spark.sql.execution.WholeStageCodegenExec",
    )
    manager = log4j.LogManager
    previous = {name: manager.getLogger(name).getLevel() for name in loggers}
    for name in loggers:
        log4j.core.config.Configurator.setLevel(name, log4j.Level.OFF)
    try:
        yield
    finally:
        for name, level in previous.items():
            log4j.core.config.Configurator.setLevel(name, level)


def render_html(profile: TableProfile) -> str:
    """The report page: a stats table, an overview chart of completeness and distinct counts,
    and a distribution chart per non-constant column: its value histogram when it has few
    distinct values, else its KLL buckets."""
    charts = [("overview", "Completeness and distinct values", _overview_svg(profile.columns))]
    for column in profile.columns:
        if column.distinct <= 1:
            continue  # a constant has no distribution worth a chart; the table shows it
        if column.histogram and (not column.buckets or column.distinct <= _HISTOGRAM_TOP):
            title = f"{column.name}: most frequent values"
            charts.append((column.name, title, _histogram_svg(column)))
        elif column.buckets:
            title = f"{column.name}: distribution (KLL sketch, {len(column.buckets)} buckets)"
            charts.append((column.name, title, _buckets_svg(column)))
    rows = "\n".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(cell)}</td>"
            for cell in (
                c.name,
                c.data_type,
                f"{c.completeness:.2%}",
                f"{c.distinct:,}",
                _fmt(c.minimum),
                _fmt(c.mean),
                _fmt(c.maximum),
                _fmt(c.std_dev),
            )
        )
        + "</tr>"
        for c in profile.columns
    )
    figures = "\n".join(
        f'<figure class="chart" data-column="{html.escape(key)}">'
        f"<figcaption>{html.escape(title)}</figcaption>{svg}</figure>"
        for key, title, svg in charts
    )
    skipped = (
        f"<p>Not profiled (binary or nested): {html.escape(', '.join(profile.skipped))}</p>"
        if profile.skipped
        else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Profile of {html.escape(profile.table)} v{profile.version}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
figure.chart {{ display: inline-block; margin: 1em; vertical-align: top; }}
figcaption {{ font-weight: bold; margin-bottom: .5em; }}
</style></head><body>
<h1>{html.escape(profile.table)}</h1>
<p>Delta version {profile.version}, {profile.rows:,} rows, profiled
{profile.generated_at:%Y-%m-%d %H:%M:%S} UTC with Deequ's column profiler.</p>
<table><thead><tr><th>column</th><th>type</th><th>completeness</th><th>distinct (approx.)</th>
<th>min</th><th>mean</th><th>max</th><th>std dev</th></tr></thead>
<tbody>
{rows}
</tbody></table>
{skipped}
{figures}
</body></html>
"""


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:,.4g}"


def _overview_svg(columns: list[ColumnSummary]) -> str:
    plt = pyplot()
    names = [c.name for c in columns]
    height = max(2.5, 0.3 * len(columns) + 1)
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, height), sharey=True)
    left.barh(names, [c.completeness for c in columns], color="#4c72b0")
    left.set_xlim(0, 1)
    left.set_xlabel("completeness")
    left.invert_yaxis()
    right.barh(names, [max(c.distinct, 1) for c in columns], color="#55a868")
    right.set_xscale("log")
    right.set_xlabel("distinct values (approx., log)")
    return to_svg(figure)


def _histogram_svg(column: ColumnSummary) -> str:
    plt = pyplot()
    labels = [value[:24] for value, _ in column.histogram]
    figure, axes = plt.subplots(figsize=(5, max(2.0, 0.3 * len(labels) + 0.8)))
    axes.barh(labels, [count for _, count in column.histogram], color="#8172b2")
    axes.invert_yaxis()
    axes.set_xlabel("rows")
    return to_svg(figure)


def _buckets_svg(column: ColumnSummary) -> str:
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(5, 2.6))
    lows = [low for low, _, _ in column.buckets]
    widths = [max(high - low, 1e-9) for low, high, _ in column.buckets]
    axes.bar(lows, [count for _, _, count in column.buckets], width=widths, align="edge")
    axes.set_xlabel(column.name)
    axes.set_ylabel("rows")
    return to_svg(figure)
