"""What the analyst notebooks (`notebooks/`) show: gold read through Spark, summarised, plotted.

The notebooks hold no logic of their own: every query, aggregation and chart is a function here,
so the tests check the numbers a notebook displays against the same functions, and a notebook
cell is only a call and its display. Three kinds of functions:

- `open_workspace`: the configuration (LAKEHOUSE_ENV and the LAKEHOUSE_* overrides), a
  SparkSession from `lakehouse.spark.build_spark`, and where figures are saved
  (LAKEHOUSE_NOTEBOOK_OUTPUT, else `<state_dir>/reports/notebooks`).
- Transforms: gold DataFrame(s) -> a small DataFrame in a fixed row order, ready for `toPandas`.
- Figures: small pandas frames -> a matplotlib Figure (Agg backend, as the quality pages use),
  saved as PNG by `Workspace.save`, which also displays it in a notebook.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse import io
from lakehouse.config import Config, load_config
from lakehouse.gold import anomaly
from lakehouse.quality import report
from lakehouse.quality.charts import pyplot
from lakehouse.quality.suites import FLAGGED_BY
from lakehouse.spark import build_spark, stop_spark
from lakehouse.tables import Table

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

OUTPUT_VAR = "LAKEHOUSE_NOTEBOOK_OUTPUT"
# Dollars and detector scores are shown to 2 decimals, shares and pair measures to 4: enough to
# read, and the same whatever order Spark adds the rows in.
_CENTS = 2
_DECIMALS = 4
# A model score above this flags a plan (scores are distances over the model's threshold).
MODEL_THRESHOLD = 1.0
_DPI = 100


# ------------------------------------------------------------------------------------ workspace


@dataclass(frozen=True)
class SavedFigure:
    """A figure saved as PNG; a notebook displays it as that image (IPython calls _repr_png_)."""

    path: Path

    def _repr_png_(self) -> bytes:
        return self.path.read_bytes()

    def __repr__(self) -> str:
        return f"<figure {self.path}>"


@dataclass
class Workspace:
    """What a notebook works with: the configuration, a SparkSession and its figure folder."""

    config: Config
    spark: SparkSession
    output: Path

    def read(self, table: Table) -> DataFrame:
        """The Delta table at its latest version; a missing table says how to build it."""
        if not io.table_exists(self.spark, self.config, table):
            raise FileNotFoundError(
                f"{table.name} does not exist under {self.config.warehouse} "
                f"(LAKEHOUSE_ENV={self.config.environment}): build the demo data with "
                "`make demo`, or gold with `lakehouse jobs run all` and quality results with "
                "`lakehouse quality run`"
            )
        return io.read_table(self.spark, self.config, table)

    def save(self, figure: Figure, name: str) -> SavedFigure:
        """Write `figure` to `<output>/<name>.png` and close it (pyplot would keep every figure
        a notebook draws alive until the kernel ends)."""
        self.output.mkdir(parents=True, exist_ok=True)
        path = self.output / f"{name}.png"
        figure.tight_layout()
        figure.savefig(path, format="png", dpi=_DPI)
        pyplot().close(figure)
        return SavedFigure(path)

    def stop(self) -> None:
        """Stop the SparkSession (and with it the notebook's JVM)."""
        stop_spark(self.spark)


def output_dir(config: Config, environ: Mapping[str, str] | None = None) -> Path:
    """Where notebooks save their figures: $LAKEHOUSE_NOTEBOOK_OUTPUT, else
    `<state_dir>/reports/notebooks` (beside the quality reports)."""
    env = os.environ if environ is None else environ
    chosen = env.get(OUTPUT_VAR)
    return Path(chosen) if chosen else config.state_path / "reports" / "notebooks"


def open_workspace(name: str, environ: Mapping[str, str] | None = None) -> Workspace:
    """The workspace of notebook `name`: configuration from the environment (LAKEHOUSE_ENV and
    the LAKEHOUSE_* overrides, as every lakehouse command), a SparkSession named after the
    notebook, and `<output_dir>/<name>/` for its figures."""
    env = os.environ if environ is None else environ
    config = load_config(environ=env)
    # Long plans would log a warning into a cell that they were shortened for display (the
    # console progress bars are off for every session: lakehouse.spark.spark_conf).
    quiet = {**config.spark.extra_conf, "spark.sql.debug.maxToStringFields": "200"}
    spark_config = dataclasses.replace(
        config, spark=dataclasses.replace(config.spark, extra_conf=quiet)
    )
    spark = build_spark(spark_config, app_name=f"lakehouse-notebook-{name}")
    return Workspace(config, spark, output_dir(config, env) / name)


# --------------------------------------------------------------------------------- cost trends


def _cents(column: Column) -> Column:
    return F.round(column, _CENTS)


def plan_type_summary(plan_costs: DataFrame) -> DataFrame:
    """gold.plan_costs -> one row per plan type (null type included), most plans first: plans,
    their share of live plans, the mean of each cost component (plan deductible, plan copay,
    service copays: they add up to the mean total cost when no plan lacks a plan-level cost),
    and median and p90 total cost."""
    per_type = plan_costs.groupBy("plan_type").agg(
        F.count("*").alias("plans"),
        _cents(F.avg("plan_deductible")).alias("deductible_mean"),
        _cents(F.avg("plan_copay")).alias("plan_copay_mean"),
        _cents(F.avg("services_copay")).alias("services_copay_mean"),
        _cents(F.avg("total_cost")).alias("total_cost_mean"),
        _cents(F.expr("percentile(total_cost, 0.5)")).alias("total_cost_median"),
        _cents(F.expr("percentile(total_cost, 0.9)")).alias("total_cost_p90"),
    )
    # A one-row join, not an unpartitioned window: that would pull every row into one task.
    total = plan_costs.agg(F.count("*").alias("_all"))
    return (
        per_type.crossJoin(total)
        .select(
            "plan_type",
            "plans",
            F.round(F.col("plans") / F.col("_all"), _DECIMALS).alias("share_of_plans"),
            "deductible_mean",
            "plan_copay_mean",
            "services_copay_mean",
            "total_cost_mean",
            "total_cost_median",
            "total_cost_p90",
        )
        .orderBy(F.col("plans").desc(), F.col("plan_type").asc_nulls_last())
    )


def plan_totals(plan_costs: DataFrame) -> DataFrame:
    """gold.plan_costs -> plan_type, total_cost of every live plan that has a total: the
    distribution behind `total_cost_figure`."""
    return plan_costs.where(F.col("total_cost").isNotNull()).select("plan_type", "total_cost")


def yearly_cost_trend(cost_trends: DataFrame, keys: Sequence[str] = ("plan_type",)) -> DataFrame:
    """gold.cost_trends -> per creation year (and `keys`, a subset of plan_type and org): plans
    created and their mean deductible, copay and total cost, in year order.

    A year's mean is the groups' means weighted by their plan counts: exact when every plan
    has its plan-level costs (as generated plans do). Medians cannot be combined that way, so
    they are not rolled up; groups with a null mean are left out of that mean."""

    def weighted(column: str) -> Column:
        known = F.col(column).isNotNull()
        total = F.sum(F.when(known, F.col("plan_count") * F.col(column)))
        return _cents(total / F.sum(F.when(known, F.col("plan_count"))))

    return (
        cost_trends.withColumn("year", F.year("creation_month"))
        .groupBy("year", *keys)
        .agg(
            F.sum("plan_count").alias("plans"),
            weighted("deductible_mean").alias("deductible_mean"),
            weighted("copay_mean").alias("copay_mean"),
            weighted("total_cost_mean").alias("total_cost_mean"),
        )
        .orderBy(F.col("year").asc_nulls_last(), *(F.col(k).asc_nulls_last() for k in keys))
    )


def _label(value: object) -> str:
    """A category as shown on an axis: null keys are a group of their own (see docs/gold.md)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "(none)"
    return str(value)


def cost_trend_figure(yearly: pd.DataFrame) -> Figure:
    """`yearly_cost_trend` by plan type -> plans created per year (stacked by plan type) above
    the mean total cost per year of each plan type (log scale)."""
    plt = pyplot()
    figure, (counts, costs) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    frame = yearly.dropna(subset=["year"]).assign(plan_type=yearly["plan_type"].map(_label))
    years = sorted(int(y) for y in frame["year"].unique())
    bottom = [0.0] * len(years)
    for plan_type, rows in frame.groupby("plan_type", sort=True):
        plans = dict(zip(rows["year"].astype(int), rows["plans"], strict=True))
        heights = [float(plans.get(year, 0)) for year in years]
        counts.bar(years, heights, bottom=bottom, label=plan_type)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        priced = rows.dropna(subset=["total_cost_mean"])
        costs.plot(priced["year"], priced["total_cost_mean"], marker="o", label=plan_type)
    counts.set_ylabel("plans created")
    counts.set_title("Live plans by creation year and plan type")
    counts.legend(loc="upper left", bbox_to_anchor=(1, 1), fontsize="small")
    costs.set_yscale("log")
    costs.set_ylabel("mean total cost ($, log)")
    costs.set_xlabel("creation year")
    costs.set_title("Mean total cost per plan by creation year")
    return figure


def total_cost_figure(totals: pd.DataFrame) -> Figure:
    """`plan_totals` -> a box plot of total cost per plan type (log scale; whiskers at 1.5 IQR,
    dots beyond: the expensive plans the anomaly notebook looks at)."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(9, 4.5))
    frame = totals.assign(plan_type=totals["plan_type"].map(_label))
    groups = sorted(frame["plan_type"].unique())
    # log scale: a $0 total (possible for a zero-cost plan) is drawn at $1
    values = [frame.loc[frame["plan_type"] == g, "total_cost"].clip(lower=1.0) for g in groups]
    axes.boxplot(values, tick_labels=groups)
    axes.set_yscale("log")
    axes.set_ylabel("total cost per plan ($, log)")
    axes.set_title("Total cost per plan by plan type")
    return figure


def cost_components_figure(summary: pd.DataFrame) -> Figure:
    """`plan_type_summary` -> stacked bars of the mean deductible, plan copay and service
    copays per plan type: what a plan type's total cost is made of."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(9, 4.5))
    labels = [_label(t) for t in summary["plan_type"]]
    bottom = [0.0] * len(labels)
    for column, name in (
        ("deductible_mean", "deductible"),
        ("plan_copay_mean", "plan copay"),
        ("services_copay_mean", "service copays"),
    ):
        heights = [0.0 if math.isnan(v) else float(v) for v in summary[column].astype(float)]
        axes.bar(labels, heights, bottom=bottom, label=name)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    axes.set_ylabel("mean per plan ($)")
    axes.set_title("What a plan's total cost is made of, by plan type")
    axes.legend(loc="upper left", bbox_to_anchor=(1, 1))
    return figure


# ----------------------------------------------------------------------------- service patterns


def top_services(service_patterns: DataFrame, n: int = 15) -> DataFrame:
    """gold.service_patterns -> the `n` services linked by the most live plans (ties by name,
    then id): plans using them, share of live plans, links, copay median and p90, mean
    deductible."""
    return (
        service_patterns.select(
            "service_name",
            "service_id",
            "plans_using",
            "share_of_plans",
            "links",
            _cents(F.col("copay_median")).alias("copay_median"),
            _cents(F.col("copay_p90")).alias("copay_p90"),
            _cents(F.col("deductible_mean")).alias("deductible_mean"),
        )
        .orderBy(
            F.col("plans_using").desc(),
            F.col("service_name").asc_nulls_last(),
            F.col("service_id"),
        )
        .limit(n)
    )


def top_pairs(service_pairs: DataFrame, n: int = 15, min_plans: int = 1) -> DataFrame:
    """gold.service_pairs -> the `n` pairs with the highest lift among those linked together by
    at least `min_plans` plans (ties: more plans first, then ids)."""
    return (
        service_pairs.where(F.col("plans_with_pair") >= min_plans)
        .select(
            "service_a_name",
            "service_b_name",
            "plans_with_pair",
            F.round("support", _DECIMALS).alias("support"),
            F.round("confidence_a_to_b", _DECIMALS).alias("confidence_a_to_b"),
            F.round("confidence_b_to_a", _DECIMALS).alias("confidence_b_to_a"),
            F.round("lift", _DECIMALS).alias("lift"),
            "service_a",
            "service_b",
        )
        .orderBy(F.col("lift").desc(), F.col("plans_with_pair").desc(), "service_a", "service_b")
        .limit(n)
    )


def pair_measures(service_pairs: DataFrame) -> DataFrame:
    """gold.service_pairs -> support, lift and plans_with_pair of every frequent pair: the
    cloud behind `service_pairs_figure`."""
    return service_pairs.select("support", "lift", "plans_with_pair")


def services_per_plan(plan_costs: DataFrame) -> DataFrame:
    """gold.plan_costs -> per number of distinct services on a plan: plans and their share of
    live plans, fewest services first."""
    counts = plan_costs.groupBy(F.col("distinct_service_count").alias("services")).agg(
        F.count("*").alias("plans")
    )
    total = plan_costs.agg(F.count("*").alias("_all"))
    return (
        counts.crossJoin(total)
        .select(
            "services", "plans", F.round(F.col("plans") / F.col("_all"), _DECIMALS).alias("share")
        )
        .orderBy("services")
    )


def top_services_figure(top: pd.DataFrame) -> Figure:
    """`top_services` -> horizontal bars of each service's share of plans, beside its median
    copay with a whisker up to its p90."""
    plt = pyplot()
    rows = top.iloc[::-1]  # the most used service on top
    names = [_label(n) for n in rows["service_name"]]
    figure, (share, copay) = plt.subplots(
        1, 2, figsize=(11, 0.35 * len(names) + 1.5), sharey=True, width_ratios=(3, 2)
    )
    share.barh(names, rows["share_of_plans"] * 100.0)
    share.set_xlabel("share of live plans (%)")
    share.set_title("Most used services")
    median = rows["copay_median"].astype(float)
    upper = (rows["copay_p90"].astype(float) - median).clip(lower=0.0)
    copay.errorbar(median, names, xerr=[[0.0] * len(names), upper], fmt="o", capsize=3)
    copay.set_xlabel("copay ($): median, whisker to p90")
    copay.set_title("What they cost")
    return figure


def _short(text: str, limit: int = 38) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def top_pairs_figure(top: pd.DataFrame) -> Figure:
    """`top_pairs` -> the pairs' lift as named bars, the highest on top."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(10, 0.3 * len(top) + 1.5))
    rows = top.iloc[::-1]
    names = [
        f"{_short(_label(a))} + {_short(_label(b))}"
        for a, b in zip(rows["service_a_name"], rows["service_b_name"], strict=True)
    ]
    axes.barh(range(len(names)), rows["lift"], tick_label=names)
    axes.tick_params(axis="y", labelsize="small")
    axes.axvline(1.0, color="grey", linewidth=0.8, linestyle="--")
    axes.set_xlabel("lift (1 = together as often as by chance)")
    axes.set_title("Services that go together beyond chance")
    return figure


def service_pairs_figure(measures: pd.DataFrame) -> Figure:
    """`pair_measures` -> support against lift of every frequent pair (dot size: plans with
    the pair), both on log scales."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(9, 4.5))
    sizes = 10.0 + 40.0 * measures["plans_with_pair"] / max(1, measures["plans_with_pair"].max())
    axes.scatter(measures["support"] * 100.0, measures["lift"], s=sizes, alpha=0.4)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    axes.set_xlabel("support: plans with both (% of live plans, log)")
    axes.set_ylabel("lift (log)")
    axes.set_title(f"Every frequent service pair ({len(measures)})")
    return figure


def services_per_plan_figure(distribution: pd.DataFrame) -> Figure:
    """`services_per_plan` -> bars of plans per number of distinct services."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(8, 3.5))
    axes.bar(distribution["services"].astype(int), distribution["plans"])
    axes.set_xlabel("distinct services on the plan")
    axes.set_ylabel("live plans")
    axes.set_title("How many services a plan links")
    return figure


# -------------------------------------------------------------------------------- anomalies


def anomaly_summary(plan_anomalies: DataFrame) -> DataFrame:
    """gold.plan_anomalies -> per plan type: plans scored, flagged by the rule only, by the
    model only, by both, flagged in all and that as a share."""

    def flagged_by(value: str) -> Column:
        return F.sum(F.when(F.col("flagged_by") == value, 1).otherwise(0)).cast("long")

    return (
        plan_anomalies.groupBy("plan_type")
        .agg(
            F.count("*").alias("plans"),
            flagged_by("rule").alias("rule_only"),
            flagged_by("model").alias("model_only"),
            flagged_by("rule+model").alias("both"),
            F.sum(F.col("is_anomaly").cast("long")).alias("flagged"),
        )
        .withColumn("flagged_share", F.round(F.col("flagged") / F.col("plans"), _DECIMALS))
        .orderBy(F.col("plan_type").asc_nulls_last())
    )


def top_anomalies(plan_anomalies: DataFrame, plan_costs: DataFrame, n: int = 10) -> DataFrame:
    """Flagged plans of gold.plan_anomalies with their costs from gold.plan_costs (same plan
    version; costs are null if plan_costs has moved on since scoring), highest model score
    first."""
    costs = plan_costs.select(
        "plan_id", "plan_version", "plan_deductible", "plan_copay", "services_copay", "total_cost"
    )
    return (
        plan_anomalies.where(F.col("is_anomaly"))
        .join(costs, ["plan_id", "plan_version"], "left")
        .select(
            "plan_id",
            "plan_type",
            "org",
            "flagged_by",
            F.round("rule_score", _CENTS).alias("rule_score"),
            "rule_feature",
            F.round("model_score", _CENTS).alias("model_score"),
            "plan_deductible",
            "plan_copay",
            "services_copay",
            "total_cost",
        )
        .orderBy(
            F.col("model_score").desc_nulls_last(),
            F.col("rule_score").desc_nulls_last(),
            "plan_id",
        )
        .limit(n)
    )


def anomaly_scores(plan_anomalies: DataFrame) -> DataFrame:
    """gold.plan_anomalies -> both detectors' scores and the verdict of every scored plan: the
    cloud behind `anomaly_scores_figure`."""
    return plan_anomalies.select("plan_id", "rule_score", "model_score", "flagged_by")


def label_agreement(plan_anomalies: DataFrame, anomaly_rate: float) -> DataFrame:
    """gold.plan_anomalies + the generator's labels (demo and test data only: plans the
    generator did not make have none and are left out) -> per injected anomaly kind ("none" for
    normal plans): plans, flagged by the rule, by the model, by either."""
    labels = anomaly.generator_labels(plan_anomalies.select("plan_id"), anomaly_rate)

    def count(flag: str) -> Column:
        return F.sum(F.col(flag).cast("long")).alias(flag)

    return (
        plan_anomalies.join(labels, "plan_id")
        .groupBy("anomaly")
        .agg(
            F.count("*").alias("plans"),
            count("rule_flagged"),
            count("model_flagged"),
            count("is_anomaly"),
        )
        .withColumnRenamed("is_anomaly", "flagged")
        .orderBy("anomaly")
    )


def anomaly_scores_figure(scores: pd.DataFrame, rule_threshold: float) -> Figure:
    """`anomaly_scores` -> each plan's rule score against its model score, coloured by which
    detector flagged it, with both thresholds drawn. Plans missing a score are not drawn."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(8, 5.5))
    verdict = scores["flagged_by"].where(scores["flagged_by"].notna(), "not flagged")
    for name in ("not flagged", *FLAGGED_BY):
        rows = scores[verdict == name]
        if rows.empty:
            continue
        axes.scatter(
            rows["rule_score"].astype(float),
            rows["model_score"].astype(float),
            s=14 if name == "not flagged" else 40,
            alpha=0.5 if name == "not flagged" else 0.9,
            label=f"{name} ({len(rows)})",
        )
    axes.axvline(rule_threshold, color="grey", linestyle="--", linewidth=0.8)
    axes.axhline(MODEL_THRESHOLD, color="grey", linestyle=":", linewidth=0.8)
    _symlog(axes.xaxis, "x")
    _symlog(axes.yaxis, "y")
    axes.set_xlabel(f"rule: largest robust z-score (flags above {rule_threshold:g}, dashed)")
    axes.set_ylabel(f"model: CBLOF distance / threshold (flags above {MODEL_THRESHOLD:g}, dotted)")
    axes.set_title("Both detectors' scores per plan")
    axes.legend(loc="best", fontsize="small")
    return figure


_SYMLOG_TICKS = (-100.0, -10.0, -5.0, -2.0, -1.0, 0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 100.0, 1000.0)


def _symlog(axis: Any, which: str) -> None:
    """A symmetric log scale (linear within ±1) with plain-number ticks: z-scores go below 0
    (costs under the type's median) and an unbounded one is 1000, while what matters sits
    around the thresholds."""
    from matplotlib.ticker import FixedLocator, FuncFormatter

    axes = axis.axes
    getattr(axes, f"set_{which}scale")("symlog", linthresh=1.0)
    low, high = getattr(axes, f"get_{which}lim")()
    axis.set_major_locator(FixedLocator([v for v in _SYMLOG_TICKS if low <= v <= high]))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_locator(FixedLocator([]))


def anomalies_by_plan_type_figure(summary: pd.DataFrame) -> Figure:
    """`anomaly_summary` -> stacked bars of flagged plans per plan type by detector."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(9, 4))
    labels = [_label(t) for t in summary["plan_type"]]
    bottom = [0] * len(labels)
    for column, name in (("rule_only", "rule"), ("model_only", "model"), ("both", "rule+model")):
        heights = [int(v) for v in summary[column]]
        axes.bar(labels, heights, bottom=bottom, label=name)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    axes.set_ylabel("flagged plans")
    axes.set_title("Flagged plans by plan type and detector")
    axes.legend()
    return figure


# ---------------------------------------------------------------------------------- quality


def quality_overview(results: DataFrame) -> DataFrame:
    """quality.results -> one row per table at its latest run, by layer and name: when it ran,
    checks, passed, and failed checks of each severity (errors block the publish)."""
    return (
        report.latest_per_table(results)
        .groupBy("layer", "table_name", "run_at")
        .agg(
            F.count(F.lit(1)).alias("checks"),
            F.sum((F.col("status") == "passed").cast("long")).alias("passed"),
            *report.failure_counts(),
        )
        .orderBy("layer", "table_name")
    )


def failing_checks(results: DataFrame) -> DataFrame:
    """quality.results -> the checks that failed in each table's latest run, errors first."""
    return (
        report.latest_per_table(results)
        .where(F.col("status") == "failed")
        .select("table_name", "check_name", "severity", "value", "message")
        .orderBy(F.when(F.col("severity") == "error", 0).otherwise(1), "table_name", "check_name")
    )


def quality_statuses(results: DataFrame) -> list[tuple[datetime, str, int, int]]:
    """quality.results -> (run_at, table, errors, warnings) per table per run, as
    `report.status_figure` draws them."""
    return [
        (s.run_at, s.table_name, int(s.errors), int(s.warnings))
        for s in report.table_status(results).collect()
    ]


def quality_row_counts(metrics: DataFrame) -> list[tuple[datetime, str, float]]:
    """quality.metrics -> (run_at, table, rows) per table per run, as
    `report.row_counts_figure` draws them."""
    return [(m.run_at, m.table_name, m.value) for m in report.row_count_history(metrics).collect()]


def quality_status_figure(statuses: Sequence[tuple[datetime, str, int, int]]) -> Figure:
    """Each table's status per run (the history page's grid)."""
    return report.status_figure(statuses)


def quality_row_counts_figure(row_counts: Sequence[tuple[datetime, str, float]]) -> Figure:
    """Rows per table per run (the history page's chart)."""
    return report.row_counts_figure(row_counts)
