"""`lakehouse summary`: what the lakehouse holds right now, for the end of `make demo` and for an
operator's first look: every table with its row count and Delta version, the latest quality
run, the anomaly counts, the search index and its indexer's lag."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse import io
from lakehouse.config import Config
from lakehouse.ingest import search
from lakehouse.ingest.indexer import measure_lag as measure_indexer_lag
from lakehouse.quality.report import format_table, run_history
from lakehouse.tables import (
    BRONZE_EVENTS,
    GOLD_TABLES,
    PLAN_ANOMALIES,
    QUALITY_RESULTS_TABLE,
    QUARANTINE,
    SILVER_TABLES,
    SNAPSHOTS,
)

SUMMARISED = (BRONZE_EVENTS, QUARANTINE, SNAPSHOTS, *SILVER_TABLES, *GOLD_TABLES)


def anomaly_counts(plan_anomalies: DataFrame) -> DataFrame:
    """gold.plan_anomalies -> flagged_by, plans: flagged plans per detector verdict
    (rule, model, rule+model), most first; unflagged plans are left out."""
    return (
        plan_anomalies.where(F.col("is_anomaly"))
        .groupBy("flagged_by")
        .agg(F.count(F.lit(1)).alias("plans"))
        .orderBy(F.col("plans").desc(), "flagged_by")
    )


def summarise(spark: SparkSession, config: Config) -> str:
    rows = []
    for table in SUMMARISED:
        if io.table_exists(spark, config, table):
            count = io.read_table(spark, config, table).count()
            version = io.latest_version(spark, config, table)
            rows.append((table.name, f"{count:,}", f"v{version}"))
        else:
            rows.append((table.name, "-", "not created yet"))
    sections = ["Tables", format_table(("table", "rows", "version"), rows)]

    if io.table_exists(spark, config, QUALITY_RESULTS_TABLE):
        latest = run_history(io.read_table(spark, config, QUALITY_RESULTS_TABLE)).first()
    else:
        latest = None
    if latest is None:
        sections += ["", "Quality: no run yet (`lakehouse quality run`)"]
    else:
        verdict = "FAILED" if latest["errors"] else "passed"
        sections += [
            "",
            f"Quality: {verdict} - run {latest['run_id']} at {latest['run_at']:%Y-%m-%d %H:%M}: "
            f"{latest['tables']} tables, {latest['checks']} checks, {latest['errors']} error(s), "
            f"{latest['warnings']} warning(s)",
        ]

    if io.table_exists(spark, config, PLAN_ANOMALIES):
        anomalies = io.read_table(spark, config, PLAN_ANOMALIES)
        scored = anomalies.count()
        counts = anomaly_counts(anomalies).collect()
        flagged = sum(r["plans"] for r in counts)
        detail = ", ".join(f"{r['flagged_by']} {r['plans']}" for r in counts) or "none"
        sections += ["", f"Anomalies: {flagged} of {scored:,} scored plans flagged ({detail})"]
    else:
        sections += ["", "Anomalies: not scored yet (`lakehouse jobs run anomaly_detection`)"]
    return "\n".join([*sections, "", search_line(config)])


def search_line(config: Config) -> str:
    try:
        state = search.index_state(config)
        lag = measure_indexer_lag(config).render()
    except Exception as exc:  # a summary reports an unreachable service, it does not fail on it
        return f"Search: not reachable ({type(exc).__name__}); is `lakehouse stack up` running?"
    if state is None:
        return f"Search: no index {config.elasticsearch.index} yet (`lakehouse indexer`)"
    return (
        f"Search: {state.alias} -> {', '.join(state.indexes)}, {state.documents:,} documents; "
        f"{lag}"
    )
