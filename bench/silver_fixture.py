"""Silver at scale without the operational path: generated plans written straight to silver.

Loading 100k plans through FerretDB, Kafka and the stream takes the better part of an hour on
two cores; gold benchmarks need silver, not the path to it. Documents come from the same
generator `lakehouse simulate` uses and go through the same silver apply (`apply_plan_events`,
version-guarded MERGEs, plan_services and services), only without Kafka and Elasticsearch.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse import io
from lakehouse.config import Config
from lakehouse.ingest import silver
from lakehouse.ingest.apply import ApplyResult, StepTimer, apply_plan_events, ensure_silver_tables
from lakehouse.ingest.contract import with_plan_columns
from lakehouse.plans.generator import generate_plan, iter_plans, plan_id_for, random_change
from lakehouse.tables import PLAN_DOCUMENT, PLAN_HISTORY, PLAN_SERVICES, PLANS, SERVICES

_EVENT_SCHEMA = "plan_id string, version long, op string, ts_ms long, doc string"


def _events(spark: SparkSession, folder: str, rows: Iterable[dict]) -> DataFrame:
    """Rows -> plan events (contract.to_plan_events layout), through a JSON-lines file."""
    path = Path(folder) / "events.jsonl"
    with path.open("w") as out:
        for row in rows:
            out.write(json.dumps(row) + "\n")
    raw = spark.read.schema(_EVENT_SCHEMA).json(str(path))
    return with_plan_columns(
        raw.select(
            "plan_id",
            "version",
            "op",
            F.lit(None).cast("string").alias("event_id"),
            F.timestamp_millis("ts_ms").alias("event_ts"),
            F.from_json("doc", PLAN_DOCUMENT).alias("plan"),
            F.lit(None).cast("int").alias("kafka_partition"),
            F.lit(None).cast("long").alias("kafka_offset"),
        )
    )


def _apply(
    spark: SparkSession, config: Config, rows: Iterable[dict], timer: StepTimer | None = None
) -> ApplyResult:
    with tempfile.TemporaryDirectory(prefix="silver-fixture-") as folder:
        events = _events(spark, folder, rows).persist()
        try:
            return apply_plan_events(events, config, timer=timer)
        finally:
            events.unpersist()


def load_plans(
    spark: SparkSession,
    config: Config,
    seed: int,
    plans: int,
    version: Callable[[int], int] | None = None,
) -> int:
    """Plans 0..plans-1 of `seed` into empty silver tables (created if missing), each at
    `version(index)` (default: 1, as created).

    A bulk append of what the silver apply would write for these creates (plans, plan_services,
    services; not plan_history, which gold does not read): MERGEs into empty tables would only
    add time. Versions above 1 stand for plans changed since (the index benchmark checks the
    versions Elasticsearch keeps, which all-equal versions would not test). Returns the number
    of plans written."""
    ensure_silver_tables(spark, config)
    if io.read_table(spark, config, PLANS).limit(1).count():
        raise ValueError(f"silver.plans at {config.warehouse} is not empty: bulk load refused")
    now = int(time.time() * 1000)
    versions = (version(i) if version else 1 for i in range(plans))
    rows = (
        {"plan_id": g.doc["objectId"], "version": v, "op": "c" if v == 1 else "u", "ts_ms": now,
         "doc": json.dumps(g.doc)}
        for g, v in zip(iter_plans(seed, plans), versions, strict=True)
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="silver-fixture-") as folder:
        plan_rows = silver.to_plan_rows(_events(spark, folder, rows))
        io.append(plan_rows, config, PLANS)
        current = io.read_table(spark, config, PLANS)
        linked = silver.linked_services(current)
        io.append(silver.to_plan_service_rows(linked), config, PLAN_SERVICES)
        io.append(silver.to_service_rows(linked), config, SERVICES)
    return plans


def load_history(spark: SparkSession, config: Config) -> int:
    """One plan_history row per silver.plans row (its only known version, still current), as
    the silver apply would have recorded the creates `load_plans` bulk-loads. Returns the rows."""
    plans = io.read_table(spark, config, PLANS)
    rows = plans.select(
        "plan_id",
        "version",
        "op",
        "event_id",
        "is_deleted",
        F.col("event_ts").alias("valid_from"),
        F.lit(None).cast("timestamp").alias("valid_to"),
        F.lit(True).alias("is_current"),
        "doc",
        F.current_timestamp().alias("recorded_at"),
    )
    io.append(rows, config, PLAN_HISTORY)
    return io.read_table(spark, config, PLAN_HISTORY).count()


def change_plans(
    spark: SparkSession,
    config: Config,
    seed: int,
    plans: int,
    fraction: float,
    version: int,
    timer: StepTimer | None = None,
    concentrated: bool = False,
) -> ApplyResult:
    """Change `fraction` of the plans (9 in 10 replaced with a re-priced document that adds or
    drops services, 1 in 10 deleted) as events of `version`, which must be above every earlier
    version. Documents are derived from each plan's generated form. The plans are chosen at
    random (uniform), or `concentrated`: one contiguous range of generated plans, which were
    loaded together and so sit in few files (one organisation's plans edited in one night)."""
    rng = random.Random(f"{seed}:changes:{version}")
    count = max(1, round(plans * fraction))
    if concentrated:
        start = rng.randrange(plans - count + 1)
        chosen = list(range(start, start + count))
    else:
        chosen = rng.sample(range(plans), count)
    now = int(time.time() * 1000)

    def rows() -> Iterable[dict]:
        for index in chosen:
            plan_id = plan_id_for(seed, index)
            if rng.random() < 0.1:
                yield {"plan_id": plan_id, "version": version, "op": "d", "ts_ms": now, "doc": None}
                continue
            current = generate_plan(seed, index).doc
            change = random_change(rng, current, weights=(0.0, 1.0, 0.0))
            doc = json.dumps(change.document)
            yield {"plan_id": plan_id, "version": version, "op": "u", "ts_ms": now, "doc": doc}

    return _apply(spark, config, rows(), timer)
