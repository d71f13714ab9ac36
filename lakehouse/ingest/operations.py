"""What `lakehouse ingest | indexer | reindex | quarantine | snapshot | reconcile` and the jobs/
entrypoints do: run, print progress and a summary, return an exit status."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from typing import TextIO

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse import io
from lakehouse.config import Config
from lakehouse.ingest import indexer as indexers
from lakehouse.ingest import reindex as reindexing
from lakehouse.ingest import snapshot as snapshots
from lakehouse.ingest.stream import DerivedBatch, IngestError, PlansBatch, run_continuous, run_once
from lakehouse.tables import PLANS, QUARANTINE, REFUSED_DOCUMENTS, SNAPSHOT_QUARANTINE


def format_progress(batch: PlansBatch | DerivedBatch) -> str:
    if isinstance(batch, DerivedBatch):
        return (
            f"derived batch {batch.batch_id}: {batch.events:,} events -> history, services of "
            f"{batch.plans_touched:,} plans in {batch.seconds:.1f}s"
        )
    age = batch.max_freshness_s
    freshness = "" if age is None else f", oldest event {age:,.1f}s old"
    return (
        f"plans batch {batch.batch_id}: {batch.records:,} records -> {batch.events:,} events, "
        f"{batch.quarantined:,} quarantined, {batch.plans_changed:,} plans changed "
        f"in {batch.seconds:.1f}s{freshness}"
    )


def printer(out: TextIO) -> Callable[[PlansBatch | DerivedBatch], None]:
    def report(batch: PlansBatch | DerivedBatch) -> None:
        print(format_progress(batch), file=out, flush=True)

    return report


def ingest(spark: SparkSession, config: Config, once: bool, out: TextIO = sys.stdout) -> int:
    """Run the medallion: `once` drains what is available and returns, otherwise runs until
    SIGINT/SIGTERM. Exit status 0, or 1 with the failing query named on stderr."""
    report = printer(out)
    print(
        f"ingest: {config.kafka.topic} @ {config.kafka.bootstrap} -> {config.warehouse} "
        f"({'once' if once else 'continuous'})",
        file=out,
        flush=True,
    )
    try:
        if once:
            run_once(spark, config, report)
        else:
            stop = threading.Event()
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: stop.set())
            run_continuous(spark, config, report, stop)
    except IngestError as exc:
        print(f"ingest: {exc}; committed batches are kept, rerun to resume", file=sys.stderr)
        return 1
    print(ingest_summary(spark, config), file=out, flush=True)
    return 0


def format_indexed(batch: indexers.IndexedBatch) -> str:
    age = batch.max_freshness_s
    freshness = "" if age is None else f", newest event {age:,.2f}s old"
    extra = "".join(
        f", {n:,} {what}"
        for n, what in ((batch.dead_letters, "dead-lettered"), (batch.skipped, "skipped"))
        if n
    )
    return (
        f"indexer: {batch.records:,} records -> {batch.indexed:,} indexed, "
        f"{batch.deleted:,} deleted{extra} in {batch.seconds:.2f}s{freshness}"
    )


def run_indexer(config: Config, once: bool, out: TextIO = sys.stdout) -> int:
    """The real-time search indexer: `once` indexes what the topic holds now and returns,
    otherwise runs until SIGINT/SIGTERM. Exit 0, or 1 when Elasticsearch stayed unreachable."""
    print(
        f"indexer: {config.kafka.topic} @ {config.kafka.bootstrap} -> "
        f"{config.elasticsearch.url} alias {config.elasticsearch.index} "
        f"({'once' if once else 'continuous'})",
        file=out,
        flush=True,
    )
    stop = threading.Event()
    if not once:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
    running = indexers.Indexer(config, lambda b: print(format_indexed(b), file=out, flush=True))
    try:
        totals = running.run(stop, once=once)
    except indexers.IndexerError as exc:
        print(f"indexer: {exc}; committed offsets are kept, rerun to resume", file=sys.stderr)
        return 1
    print(totals.render(), file=out, flush=True)
    return 0


def wait_for_indexer(config: Config, timeout_s: float, out: TextIO = sys.stdout) -> int:
    """Exit 0 once a running indexer has caught up with the topic, 1 after `timeout_s`."""
    if indexers.wait_caught_up(config, timeout_s, lambda line: print(line, file=out, flush=True)):
        return 0
    print(
        f"indexer: not caught up after {timeout_s:.0f}s; is it running? "
        "(`lakehouse stack status`, `lakehouse stack logs indexer`)",
        file=sys.stderr,
    )
    return 1


def reindex(spark: SparkSession, config: Config, out: TextIO = sys.stdout) -> int:
    result = reindexing.reindex(spark, config, lambda line: print(line, file=out, flush=True))
    print(result.render(config.elasticsearch.index), file=out, flush=True)
    return 0


def ingest_summary(spark: SparkSession, config: Config) -> str:
    plans = io.read_table(spark, config, PLANS)
    row = plans.agg(
        F.count("*").alias("plans"),
        F.sum(F.col("is_deleted").cast("int")).alias("deleted"),
    ).first()
    quarantined = io.read_table(spark, config, QUARANTINE).count()
    total, deleted = int(row["plans"]), int(row["deleted"] or 0)
    return (
        f"ingest: silver holds {total - deleted:,} live plans and {deleted:,} tombstones; "
        f"{quarantined:,} records in quarantine"
    )


def quarantine_by_reason(quarantine: DataFrame) -> DataFrame:
    """Quarantine rows -> reason, records, first_quarantined, last_quarantined, where
    (topic/partition/offset of the latest record), most frequent first."""
    latest = F.max_by(
        F.concat_ws(":", "topic", F.col("partition"), F.col("offset")),
        "quarantined_at",
    )
    return (
        quarantine.groupBy("reason")
        .agg(
            F.count("*").alias("records"),
            F.min("quarantined_at").alias("first_quarantined"),
            F.max("quarantined_at").alias("last_quarantined"),
            latest.alias("latest_at"),
        )
        .orderBy(F.col("records").desc(), "reason")
    )


def snapshot_quarantine_by_reason(quarantine: DataFrame) -> DataFrame:
    """quarantine.plan_snapshots rows -> reason, documents, latest (snapshot id), most first."""
    return (
        quarantine.groupBy("reason")
        .agg(F.count(F.lit(1)).alias("documents"), F.max("snapshot_id").alias("latest"))
        .orderBy(F.col("documents").desc(), "reason")
    )


def refusals_by_sink(refusals: DataFrame) -> DataFrame:
    """quarantine.sink_refusals rows -> sink, operation, status, documents, last (refused_at),
    most first."""
    return (
        refusals.groupBy("sink", "operation", "status")
        .agg(F.count(F.lit(1)).alias("documents"), F.max("refused_at").alias("last"))
        .orderBy(F.col("documents").desc(), "sink", "operation", "status")
    )


def show_quarantine(
    spark: SparkSession, config: Config, reason: str | None, limit: int, out: TextIO = sys.stdout
) -> int:
    if not io.table_exists(spark, config, QUARANTINE):
        print(f"quarantine: no table at {QUARANTINE.path(config)} yet (nothing ingested)", file=out)
    else:
        _show_records(io.read_table(spark, config, QUARANTINE), reason, limit, out)
    if io.table_exists(spark, config, SNAPSHOT_QUARANTINE):
        _show_snapshot_quarantine(io.read_table(spark, config, SNAPSHOT_QUARANTINE), out)
    if io.table_exists(spark, config, REFUSED_DOCUMENTS):
        _show_refusals(io.read_table(spark, config, REFUSED_DOCUMENTS), limit, out)
    else:
        print("sink refusals: none (no document was refused by a sink)", file=out)
    _show_dead_letters(indexers.read_dead_letters(config), limit, out)
    return 0


def _show_dead_letters(letters: list[indexers.DeadLetter], limit: int, out: TextIO) -> None:
    if not letters:
        print("indexer dead letters: none", file=out)
        return
    print(f"indexer dead letters: {len(letters):,} documents", file=out)
    for letter in letters[-limit:] if limit else []:
        print(
            f"- {letter.index} {letter.operation} {letter.plan_id} v{letter.version} "
            f"(from {letter.partition}:{letter.offset}) status {letter.status}: "
            f"{letter.error[:200]}",
            file=out,
        )


def _show_snapshot_quarantine(quarantine: DataFrame, out: TextIO) -> None:
    by_reason = snapshot_quarantine_by_reason(quarantine).collect()
    print(f"snapshot quarantine: {sum(r['documents'] for r in by_reason):,} documents", file=out)
    for row in by_reason:
        print(f"  {row['reason']:<20} {row['documents']:>8,}  latest snapshot {row['latest']}",
              file=out)  # fmt: skip


def _show_refusals(refusals: DataFrame, limit: int, out: TextIO) -> None:
    summary = refusals_by_sink(refusals).collect()
    print(f"sink refusals: {sum(r['documents'] for r in summary):,} documents", file=out)
    for row in summary:
        print(
            f"  {row['sink']} {row['operation']} status {row['status']}: "
            f"{row['documents']:>8,}  ({row['last']:%Y-%m-%d %H:%M:%S})",
            file=out,
        )
    latest = refusals.orderBy(F.col("refused_at").desc()).limit(limit).collect() if limit else []
    for row in latest:
        position = (
            "snapshot"
            if row["kafka_partition"] is None
            else f"{row['kafka_partition']}:{row['kafka_offset']}"
        )
        print(
            f"- {row['sink']} {row['operation']} {row['plan_id']} v{row['version']} "
            f"(from {position}): {row['error'][:200]}",
            file=out,
        )


def _show_records(quarantine: DataFrame, reason: str | None, limit: int, out: TextIO) -> None:
    summary = quarantine_by_reason(quarantine).collect()
    print(f"quarantine: {sum(r['records'] for r in summary):,} records", file=out)
    for row in summary:
        print(
            f"  {row['reason']:<20} {row['records']:>8,}  latest at {row['latest_at']} "
            f"({row['last_quarantined']:%Y-%m-%d %H:%M:%S})",
            file=out,
        )
    if limit:
        rows = quarantine if reason is None else quarantine.where(F.col("reason") == reason)
        for row in rows.orderBy(F.col("quarantined_at").desc()).limit(limit).collect():
            value = (row["value_text"] or "")[:120]
            print(
                f"- {row['topic']}:{row['partition']}:{row['offset']} {row['reason']}: "
                f"{row['detail']}\n    value: {value}",
                file=out,
            )


def snapshot(spark: SparkSession, config: Config, bootstrap: bool, out: TextIO = sys.stdout) -> int:
    result = snapshots.take_snapshot(spark, config)
    print(result.render(config), file=out)
    if bootstrap:
        applied = snapshots.bootstrap_silver(spark, config)
        print(
            f"bootstrap: {applied.events:,} snapshot rows merged into silver, "
            f"{applied.plans_changed:,} plans changed",
            file=out,
        )
    return 0


def reconcile(spark: SparkSession, config: Config, out: TextIO = sys.stdout) -> int:
    """Exit 0 when silver matches the latest snapshot, 3 when it differs."""
    try:
        result = snapshots.run_reconciliation(spark, config)
    except snapshots.SnapshotMissing as exc:
        print(f"reconcile: {exc}", file=sys.stderr)
        return 1
    print(result.summary(), file=out)
    return 0 if result.total == 0 else 3
