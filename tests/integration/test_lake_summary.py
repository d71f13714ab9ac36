"""`lakehouse summary` over the demo lake: every table with its row count and version, the
latest quality run, the anomaly counts and the search index, each as its source says."""

from __future__ import annotations

import re

import pytest
from pyspark.sql import functions as F

from lakehouse import io
from lakehouse.config import Config
from lakehouse.summary import SUMMARISED, summarise
from lakehouse.tables import PLAN_ANOMALIES, PLANS, QUALITY_RESULTS_TABLE

# the demo lakehouse is built once, on the worker that runs every test using it (tests/conftest.py)
pytestmark = pytest.mark.xdist_group("serving")


def test_summary_shows_what_the_tables_hold(spark, demo_lake: Config) -> None:
    text = summarise(spark, demo_lake)
    for table in SUMMARISED:
        count = io.read_table(spark, demo_lake, table).count()
        version = io.latest_version(spark, demo_lake, table)
        assert re.search(rf"^{re.escape(table.name)} +{count:,} +v{version}$", text, re.M), (
            table.name,
            text,
        )
    results = io.read_table(spark, demo_lake, QUALITY_RESULTS_TABLE)
    (run_id,) = [r["run_id"] for r in results.select("run_id").distinct().collect()]
    checks = results.count()
    assert f"Quality: passed - run {run_id} at " in text
    assert f": 12 tables, {checks} checks, 0 error(s), " in text

    anomalies = io.read_table(spark, demo_lake, PLAN_ANOMALIES)
    flagged = anomalies.where(F.col("is_anomaly")).count()
    assert f"Anomalies: {flagged} of {anomalies.count():,} scored plans flagged (" in text

    live = io.read_table(spark, demo_lake, PLANS).where(~F.col("is_deleted")).count()
    alias = demo_lake.elasticsearch.index
    assert text.endswith(
        f"Search: {alias} -> {alias}-v1, {live:,} documents; "
        "indexer lag: 0 Kafka records not in the search index"
    ), text
