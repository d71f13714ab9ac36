"""The two streaming queries of `lakehouse ingest` and the loop that runs them.

    Kafka --(plans query: foreachBatch)--> bronze/plan_events (raw, exactly once)
                                           quarantine/plan_events
                                           silver/plans (version-guarded MERGE)
                                           silver/plan_events (every valid event, typed)
    silver/plan_events --(derived query: foreachBatch)--> silver/plan_history, services,
                                                          plan_services

The hot path is one query from Kafka: silver.plans is fresh after one batch, and the derived
tables follow in their own query without holding it back. Appends carry Delta transaction
identifiers (the query id from its checkpoint + the batch id), MERGEs are version-guarded, so a
batch replayed after a crash changes nothing twice. (The search index is kept by its own
consumer of the topic: lakehouse.ingest.indexer.)
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field

from pyspark.errors import StreamingQueryException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from lakehouse import clients, io
from lakehouse.config import Config, join_uri
from lakehouse.ingest import contract
from lakehouse.ingest.apply import (
    StepTimer,
    apply_derived,
    apply_plan_events,
    ensure_silver_tables,
    merge_plans,
)
from lakehouse.tables import (
    BRONZE_EVENTS,
    DERIVED_CHECKPOINT,
    LEGACY_BRONZE_CHECKPOINT,
    LEGACY_SILVER_CHECKPOINT,
    PLAN_EVENTS,
    PLANS_CHECKPOINT,
    QUARANTINE,
    SILVER_PLAN_EVENTS,
    checkpoint,
)

log = logging.getLogger(__name__)

PLANS_QUERY = "ingest_plans"
DERIVED_QUERY = "silver_derived"


class IngestError(RuntimeError):
    """A streaming query failed; the message says which and why. Nothing committed is lost:
    a restart resumes from the checkpoints."""


@dataclass(frozen=True)
class PlansBatch:
    """What one batch of the hot path did (reported as progress)."""

    batch_id: int
    records: int
    events: int
    quarantined: int
    plans_changed: int
    seconds: float
    # Source commit (ts_ms) to the silver.plans commit, over the batch's valid events.
    max_freshness_s: float | None
    # Seconds per step (bronze, contract, quarantine, plans, events): where a slow batch goes.
    steps: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class DerivedBatch:
    """What one batch of the derived query did."""

    batch_id: int
    events: int
    plans_touched: int
    seconds: float
    steps: dict[str, float] = field(default_factory=dict)


Reporter = Callable[[PlansBatch | DerivedBatch], None]


def to_bronze_rows(kafka_records: DataFrame) -> DataFrame:
    """Kafka source rows (key, value, topic, partition, offset, timestamp, ...) -> bronze rows:
    key, value (raw bytes), topic, partition, offset, kafka_ts, ingested_at."""
    return kafka_records.select(
        "key",
        "value",
        "topic",
        "partition",
        "offset",
        F.col("timestamp").alias("kafka_ts"),
        F.current_timestamp().alias("ingested_at"),
    )


def _query_app_id(spark: SparkSession, config: Config, name: str, cache: dict[str, str]) -> str:
    """The query id saved in its checkpoint: stable across restarts, new with a new checkpoint
    (whose batch ids restart at 0 and must not be mistaken for replays)."""
    if name not in cache:
        metadata = join_uri(checkpoint(config, name), "metadata")
        cache[name] = f"{name}-{spark.read.json(metadata).first()['id']}"
    return cache[name]


def to_plan_event_rows(events: DataFrame, applied_at: Column) -> DataFrame:
    """Typed plan events (`contract.to_plan_events`) -> the silver.plan_events layout, stamped
    `applied_at` (a timestamp column: the clock is the caller's)."""
    return events.select(
        *(F.col(n) for n in SILVER_PLAN_EVENTS.fieldNames() if n != "applied_at"),
        applied_at.cast("timestamp").alias("applied_at"),
    )


class PlansBatchWriter:
    """The foreachBatch body of the hot path (runs on the driver, once per micro-batch)."""

    def __init__(self, config: Config, report: Reporter) -> None:
        self.config = config
        self.report = report
        self._app_ids: dict[str, str] = {}

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        spark = batch.sparkSession
        timer = StepTimer()
        app_id = _query_app_id(spark, self.config, PLANS_CHECKPOINT, self._app_ids)
        # Read from Kafka once: bronze and the contract check both use the rows.
        bronze = to_bronze_rows(batch).persist()
        try:
            with timer("bronze"):
                io.append_once(bronze, self.config, BRONZE_EVENTS, app_id, batch_id)
            checked = contract.check_contract(bronze).persist()
            try:
                with timer("contract"):
                    # One pass for the counts and the oldest valid event (F.count skips nulls).
                    records, quarantined, oldest_ms = checked.agg(
                        F.count("*"),
                        F.count("reason"),
                        F.min(F.when(F.col("reason").isNull(), F.col("event.ts_ms"))),
                    ).first()
                if quarantined:
                    with timer("quarantine"):
                        quarantine = contract.to_quarantine(checked)
                        io.append_once(quarantine, self.config, QUARANTINE, app_id, batch_id)
                valid = records - quarantined
                changed = 0
                if valid:
                    with ExitStack() as held:
                        with timer("typed"):
                            typed = contract.to_plan_events(checked)
                            events = held.enter_context(io.computed_once(typed))
                        with timer("plans"):
                            changed = merge_plans(events, self.config)
                        with timer("events"):
                            rows = to_plan_event_rows(events, F.current_timestamp())
                            io.append_once(rows, self.config, PLAN_EVENTS, app_id, batch_id)
            finally:
                checked.unpersist()
        finally:
            bronze.unpersist()
        log.info("plans batch %d steps: %s", batch_id, timer)
        self.report(
            PlansBatch(
                batch_id=batch_id,
                records=records,
                events=valid,
                quarantined=quarantined,
                plans_changed=changed,
                seconds=time.monotonic() - started,
                max_freshness_s=None if oldest_ms is None else time.time() - oldest_ms / 1000,
                steps=dict(timer.seconds),
            )
        )


class DerivedBatchWriter:
    """The foreachBatch body of the derived query: silver.plan_events -> history, services,
    plan_services (every step idempotent, so a replay converges)."""

    def __init__(self, config: Config, report: Reporter) -> None:
        self.config = config
        self.report = report

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        timer = StepTimer()
        events = batch.persist()
        try:
            with timer("count"):
                count = events.count()
            touched = apply_derived(events, self.config, timer) if count else 0
        finally:
            events.unpersist()
        log.info("derived batch %d steps: %s", batch_id, timer)
        self.report(
            DerivedBatch(batch_id, count, touched, time.monotonic() - started, dict(timer.seconds))
        )


def starting_offsets(spark: SparkSession, config: Config) -> str:
    """Where a hot-path query with a new checkpoint starts: just after the last record bronze
    holds of each partition (nothing is appended twice when a checkpoint was lost, or when the
    two-query layout before it is replaced), else `ingest.starting_offsets`."""
    if not io.table_exists(spark, config, BRONZE_EVENTS):
        return config.ingest.starting_offsets
    from lakehouse.ingest.lag import bronze_next_offsets, kafka_end_offsets

    held = bronze_next_offsets(spark, config)
    if not held:
        return config.ingest.starting_offsets

    # Partitions bronze never saw start at their beginning (-2).
    partitions = {p: held.get(p, -2) for p in kafka_end_offsets(config)}
    return json.dumps({config.kafka.topic: {str(p): o for p, o in sorted(partitions.items())}})


def start_plans(
    spark: SparkSession, config: Config, once: bool, report: Reporter
) -> StreamingQuery:
    io.ensure_table(spark, config, BRONZE_EVENTS)
    io.ensure_table(spark, config, QUARANTINE)
    ensure_silver_tables(spark, config)
    # The broker does not auto-create topics; an ingest started before any producer waits on an
    # empty topic instead of failing.
    clients.ensure_topic(config, config.kafka.topic)
    location = checkpoint(config, PLANS_CHECKPOINT)
    # Spark reads startingOffsets only for a checkpoint without offsets; a checkpoint resumes
    # from its own, so bronze is scanned for them only then.
    resumes = io.folder_has_entries(spark, join_uri(location, "offsets"))
    start = config.ingest.starting_offsets if resumes else starting_offsets(spark, config)
    records = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", config.kafka.bootstrap)
        .option("subscribe", config.kafka.topic)
        .option("startingOffsets", start)
        .option("maxOffsetsPerTrigger", config.ingest.max_offsets_per_trigger)
        # Offsets that vanished (retention, a recreated topic) stop the query loudly.
        .option("failOnDataLoss", "true")
        .load()
    )
    writer = (
        records.writeStream.queryName(PLANS_QUERY)
        .option("checkpointLocation", location)
        .foreachBatch(PlansBatchWriter(config, report))
    )
    return _with_trigger(writer, config, once).start()


def start_derived(
    spark: SparkSession, config: Config, once: bool, report: Reporter
) -> StreamingQuery:
    ensure_silver_tables(spark, config)
    writer = (
        spark.readStream.format("delta")
        # Bounded batches: a derived query that fell behind catches up in steps its heap holds.
        .option("maxBytesPerTrigger", str(config.ingest.silver_max_bytes_per_trigger))
        .load(PLAN_EVENTS.path(config))
        .writeStream.queryName(DERIVED_QUERY)
        .option("checkpointLocation", checkpoint(config, DERIVED_CHECKPOINT))
        .foreachBatch(DerivedBatchWriter(config, report))
    )
    return _with_trigger(writer, config, once, config.ingest.derived_trigger_interval_s).start()


def drain_legacy_silver(spark: SparkSession, config: Config) -> bool:
    """A warehouse ingested by the two-query layout before this one (Kafka -> bronze, bronze ->
    silver): apply what bronze holds beyond the old silver checkpoint, once, then retire both
    old checkpoints. The hot path then starts where bronze ends (`starting_offsets`)."""
    old = checkpoint(config, LEGACY_SILVER_CHECKPOINT)
    if not io.path_exists(spark, join_uri(old, "metadata")):
        return False
    log.warning("draining the previous ingest layout's silver query (%s) once", old)
    app_ids: dict[str, str] = {}

    def apply(batch: DataFrame, batch_id: int) -> None:
        checked = contract.check_contract(batch).persist()
        try:
            app_id = _query_app_id(batch.sparkSession, config, LEGACY_SILVER_CHECKPOINT, app_ids)
            io.append_once(contract.to_quarantine(checked), config, QUARANTINE, app_id, batch_id)
            with io.computed_once(contract.to_plan_events(checked)) as events:
                apply_plan_events(events, config)
        finally:
            checked.unpersist()

    query = (
        spark.readStream.format("delta")
        .option("maxBytesPerTrigger", str(config.ingest.silver_max_bytes_per_trigger))
        .load(BRONZE_EVENTS.path(config))
        .writeStream.queryName("legacy_silver_drain")
        .option("checkpointLocation", old)
        .foreachBatch(apply)
        .trigger(availableNow=True)
        .start()
    )
    await_query(query, "legacy_silver_drain")
    for name in (LEGACY_SILVER_CHECKPOINT, LEGACY_BRONZE_CHECKPOINT):
        io.rename_path(spark, checkpoint(config, name), checkpoint(config, f"{name}.retired"))
    return True


def _with_trigger(writer, config: Config, once: bool, interval_s: float | None = None):
    if once:
        return writer.trigger(availableNow=True)
    seconds = config.ingest.trigger_interval_s if interval_s is None else interval_s
    return writer.trigger(processingTime=f"{seconds} seconds")


def _raise_if_failed(query: StreamingQuery, name: str) -> None:
    error = query.exception()
    if error is not None:
        raise IngestError(f"{name} query failed: {_short(error)}")


_EXCEPTION_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception)): (.+)$")


def _short(error: object) -> str:
    """The line of a (Java-wrapped Python) stack trace that says what went wrong: our own
    exception if there is one, else the innermost Python one, else the first line."""
    text = str(error)
    matches = [m for m in map(_EXCEPTION_LINE.match, text.splitlines()) if m]
    ours = [m for m in matches if m.group(1).startswith("lakehouse.")]
    python = [m for m in matches if not m.group(1).startswith(("org.", "java.", "py4j.", "scala."))]
    for found in (ours, python, matches):
        if found:
            return f"{found[-1].group(1).rsplit('.', 1)[-1]}: {found[-1].group(2)}"[:500]
    return text.strip().splitlines()[0][:500] if text.strip() else repr(error)


def run_once(spark: SparkSession, config: Config, report: Reporter) -> None:
    """Ingest everything available now (the hot path, then the derived tables) and return."""
    drain_legacy_silver(spark, config)
    await_query(start_plans(spark, config, once=True, report=report), PLANS_QUERY)
    await_query(start_derived(spark, config, once=True, report=report), DERIVED_QUERY)


def await_query(query: StreamingQuery, name: str) -> None:
    """Wait for a query started with the available-now trigger to end; IngestError if it
    failed."""
    try:
        query.awaitTermination()
    except StreamingQueryException as exc:
        raise IngestError(f"{name} query failed: {_short(exc)}") from exc
    _raise_if_failed(query, name)


def run_continuous(
    spark: SparkSession, config: Config, report: Reporter, stop: threading.Event
) -> None:
    """Run both queries until `stop` is set. A query that fails (or cannot start, e.g. while a
    service is down) is restarted from its checkpoint after `ingest.restart_backoff_s`; after
    `ingest.max_restarts` failures in a row without progress, IngestError."""
    drain_legacy_silver(spark, config)
    starters = {
        PLANS_QUERY: lambda: start_plans(spark, config, once=False, report=report),
        DERIVED_QUERY: lambda: start_derived(spark, config, once=False, report=report),
    }
    queries: dict[str, StreamingQuery | None] = dict.fromkeys(starters)
    failures = dict.fromkeys(starters, 0)
    retry_at = dict.fromkeys(starters, 0.0)
    try:
        while not stop.is_set():
            for name, start in starters.items():
                query = queries[name]
                if query is not None and query.isActive:
                    if query.lastProgress and query.lastProgress.get("numInputRows", 0) > 0:
                        failures[name] = 0
                    continue
                if query is None and time.monotonic() < retry_at[name]:
                    continue
                if query is not None:  # it stopped: note why, restart after the backoff
                    _note_failure(name, _stop_reason(query), failures, config)
                    queries[name] = None
                    retry_at[name] = time.monotonic() + config.ingest.restart_backoff_s
                    continue
                try:
                    queries[name] = start()
                except Exception as exc:  # e.g. a service down at (re)start: retry later
                    _note_failure(name, _short(exc), failures, config)
                    retry_at[name] = time.monotonic() + config.ingest.restart_backoff_s
            stop.wait(0.5)
    finally:
        for query in queries.values():
            if query is not None and query.isActive:
                query.stop()


def _stop_reason(query: StreamingQuery) -> str:
    error = query.exception()
    return _short(error) if error is not None else "stopped"


def _note_failure(name: str, reason: str, failures: dict[str, int], config: Config) -> None:
    failures[name] += 1
    if failures[name] > config.ingest.max_restarts:
        raise IngestError(f"{name} query failed {failures[name]} times in a row; last: {reason}")
    log.warning(
        "%s query failed (%s); restarting from its checkpoint in %.0fs (failure %d of at most %d)",
        name,
        reason,
        config.ingest.restart_backoff_s,
        failures[name],
        config.ingest.max_restarts,
    )
