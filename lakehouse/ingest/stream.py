"""The two streaming queries of `lakehouse ingest` and the loop that runs them.

    Kafka --(bronze query: Delta sink, exactly-once)--> bronze/plan_events
    bronze/plan_events --(silver query: foreachBatch)--> quarantine, silver/*

(The search index is kept by its own consumer of the topic: lakehouse.ingest.indexer.)

The bronze query is the Delta sink's own exactly-once write keyed by its checkpoint. The silver
query appends quarantine rows with Delta transaction identifiers (query id + batch id) and
applies events with version-guarded MERGEs, so a replayed batch changes nothing twice.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from lakehouse import clients, io
from lakehouse.config import Config, join_uri
from lakehouse.ingest import contract
from lakehouse.ingest.apply import StepTimer, apply_plan_events, ensure_silver_tables
from lakehouse.tables import (
    BRONZE_CHECKPOINT,
    BRONZE_EVENTS,
    QUARANTINE,
    SILVER_CHECKPOINT,
    checkpoint,
)

log = logging.getLogger(__name__)

BRONZE_QUERY = "bronze_plan_events"
SILVER_QUERY = "silver_plans"


class IngestError(RuntimeError):
    """A streaming query failed; the message says which and why. Nothing committed is lost:
    a restart resumes from the checkpoints."""


@dataclass(frozen=True)
class SilverBatch:
    """What one silver micro-batch did (reported as progress)."""

    batch_id: int
    records: int
    events: int
    quarantined: int
    plans_changed: int
    seconds: float
    # Source commit (ts_ms) to silver commit, over the batch's events.
    max_freshness_s: float | None
    # Seconds per step (contract, quarantine, count, plans, history, services, ...): where a
    # slow batch goes.
    steps: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class BronzeBatch:
    batch_id: int
    records: int
    kafka_lag: int | None


Reporter = Callable[[BronzeBatch | SilverBatch], None]


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


def start_bronze(spark: SparkSession, config: Config, once: bool) -> StreamingQuery:
    io.ensure_table(spark, config, BRONZE_EVENTS)
    # The broker does not auto-create topics; an ingest started before any producer waits on an
    # empty topic instead of failing.
    clients.ensure_topic(config, config.kafka.topic)
    records = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", config.kafka.bootstrap)
        .option("subscribe", config.kafka.topic)
        .option("startingOffsets", config.ingest.starting_offsets)
        .option("maxOffsetsPerTrigger", config.ingest.max_offsets_per_trigger)
        # Offsets that vanished (retention, a recreated topic) stop the query loudly.
        .option("failOnDataLoss", "true")
        .load()
    )
    writer = (
        to_bronze_rows(records)
        .writeStream.format("delta")
        .queryName(BRONZE_QUERY)
        .outputMode("append")
        .option("checkpointLocation", checkpoint(config, BRONZE_CHECKPOINT))
    )
    return _with_trigger(writer, config, once).start(BRONZE_EVENTS.path(config))


class SilverBatchWriter:
    """The foreachBatch body of the silver query (runs on the driver, once per micro-batch)."""

    def __init__(self, config: Config, report: Reporter) -> None:
        self.config = config
        self.report = report
        self._app_id: str | None = None

    def app_id(self, spark: SparkSession) -> str:
        """The query id saved in the checkpoint: stable across restarts, new with a new
        checkpoint (whose batch ids restart at 0 and must not be mistaken for replays)."""
        if self._app_id is None:
            metadata = join_uri(checkpoint(self.config, SILVER_CHECKPOINT), "metadata")
            self._app_id = f"silver-ingest-{spark.read.json(metadata).first()['id']}"
        return self._app_id

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        spark = batch.sparkSession
        timer = StepTimer()
        checked = contract.check_contract(batch).persist()
        try:
            with timer("contract"):
                # One pass over the cached batch for both counts (F.count skips null reasons).
                records, quarantined = checked.agg(F.count("*"), F.count("reason")).first()
            if quarantined:
                # Nothing to append otherwise; a replay of this batch then skips it again.
                with timer("quarantine"):
                    quarantine = contract.to_quarantine(checked)
                    app_id = self.app_id(spark)
                    io.append_once(quarantine, self.config, QUARANTINE, app_id, batch_id)
            events = contract.to_plan_events(checked).persist()
            try:
                result = apply_plan_events(events, self.config, timer=timer)
                oldest = events.agg(F.min("event_ts")).first()[0]
            finally:
                events.unpersist()
        finally:
            checked.unpersist()
        log.info("silver batch %d steps: %s", batch_id, timer)
        freshness = None if oldest is None else time.time() - oldest.timestamp()
        self.report(
            SilverBatch(
                batch_id=batch_id,
                records=records,
                events=result.events,
                quarantined=quarantined,
                plans_changed=result.plans_changed,
                seconds=time.monotonic() - started,
                max_freshness_s=freshness,
                steps=dict(timer.seconds),
            )
        )


def start_silver(
    spark: SparkSession, config: Config, once: bool, report: Reporter
) -> StreamingQuery:
    io.ensure_table(spark, config, QUARANTINE)
    ensure_silver_tables(spark, config)
    writer = (
        spark.readStream.format("delta")
        # Bounded batches: an ingest that fell behind catches up in steps its heap can hold.
        .option("maxBytesPerTrigger", str(config.ingest.silver_max_bytes_per_trigger))
        .load(BRONZE_EVENTS.path(config))
        .writeStream.queryName(SILVER_QUERY)
        .option("checkpointLocation", checkpoint(config, SILVER_CHECKPOINT))
        .foreachBatch(SilverBatchWriter(config, report))
    )
    return _with_trigger(writer, config, once).start()


def _with_trigger(writer, config: Config, once: bool):
    if once:
        return writer.trigger(availableNow=True)
    return writer.trigger(processingTime=f"{config.ingest.trigger_interval_s} seconds")


@dataclass
class _BronzeWatcher:
    """Turns the bronze query's progress into BronzeBatch reports (polled by the run loop)."""

    report: Reporter
    last_batch: int = -1
    seen: set[str] = field(default_factory=set)

    def poll(self, query: StreamingQuery) -> None:
        for progress in query.recentProgress:
            batch_id = int(progress["batchId"])
            if batch_id <= self.last_batch or progress["numInputRows"] == 0:
                continue
            self.last_batch = batch_id
            self.report(BronzeBatch(batch_id, int(progress["numInputRows"]), _kafka_lag(progress)))


def _kafka_lag(progress: dict) -> int | None:
    """Records the topic holds beyond this batch's end offsets, summed over partitions."""
    for source in progress.get("sources", []):
        latest, end = _offsets(source.get("latestOffset")), _offsets(source.get("endOffset"))
        if latest and end:
            return sum(max(0, offset - end.get(key, 0)) for key, offset in latest.items())
    return None


def _offsets(value: object) -> dict[tuple[str, str], int]:
    """{"topic": {"0": 12, ...}} (a dict or its JSON text) -> {(topic, partition): offset}."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return {}
    if not isinstance(value, dict):
        return {}
    return {
        (topic, partition): int(offset)
        for topic, partitions in value.items()
        if isinstance(partitions, dict)
        for partition, offset in partitions.items()
    }


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
    """Ingest everything available now (Kafka -> bronze, then bronze -> silver) and return."""
    bronze = start_bronze(spark, config, once=True)
    await_query(bronze, BRONZE_QUERY)
    _BronzeWatcher(report).poll(bronze)
    await_query(start_silver(spark, config, once=True, report=report), SILVER_QUERY)


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
    starters = {
        BRONZE_QUERY: lambda: start_bronze(spark, config, once=False),
        SILVER_QUERY: lambda: start_silver(spark, config, once=False, report=report),
    }
    queries: dict[str, StreamingQuery | None] = dict.fromkeys(starters)
    failures = dict.fromkeys(starters, 0)
    retry_at = dict.fromkeys(starters, 0.0)
    watcher = _BronzeWatcher(report)
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
                    if name == BRONZE_QUERY:
                        watcher = _BronzeWatcher(report)
                except Exception as exc:  # e.g. a service down at (re)start: retry later
                    _note_failure(name, _short(exc), failures, config)
                    retry_at[name] = time.monotonic() + config.ingest.restart_backoff_s
            bronze = queries[BRONZE_QUERY]
            if bronze is not None:
                watcher.poll(bronze)
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
