"""Table maintenance: compact small files, cluster by lookup keys, remove unneeded files.

A streaming ingest commits every trigger interval and every commit adds files: bronze one per
Kafka partition, each silver MERGE up to `spark.shuffle_partitions` per table, plus change-feed
and deletion-vector files. Left alone, the file count grows with the number of batches, and so
does the cost of every read and MERGE (docs/benchmarks/README.md, "table layout"). The nightly
flow runs `maintain` after gold:

- OPTIMIZE (bin-packing compaction) of every table. Files already large are left alone, so a
  table with nothing to compact costs a log read.
- OPTIMIZE ZORDER BY the table's `zorder_by` columns, on `maintenance.zorder_weekday` only: it
  rewrites the whole table, compaction does not.
- VACUUM, keeping `maintenance.vacuum_retain_hours` (at least Delta's 7 days): time travel, a
  stream that fell behind and gold's change-feed reads need the files of recent versions. It
  only runs where it can delete something (`vacuum_could_delete`): VACUUM of a table whose files
  are all younger than the retention costs about 24 Spark jobs and deletes nothing.
  silver.plan_events (the derived query's stream source) is not vacuumed while that query has
  not read past a version older than the retention window (`stream_source_vacuum_hold`):
  compaction has removed the small files it still has to read, and VACUUM would delete them
  for good. The run reports the hold; the nightly flow alerts.

OPTIMIZE commits with dataChange=false: streaming readers skip them and the change feed does not
report them. It can still conflict with a concurrent writer that removed the files it compacts
(the streaming ingest's MERGEs); such a table is retried, and the writer side of a conflict is
a failed micro-batch that the ingest replays from its checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO
from zoneinfo import ZoneInfo

from delta.exceptions import (
    ConcurrentDeleteDeleteException,
    ConcurrentDeleteReadException,
    ConcurrentTransactionException,
)
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse import io
from lakehouse.config import Config
from lakehouse.ingest import lag
from lakehouse.tables import MAINTAINED_TABLES, PLAN_EVENTS, Table

# The table a streaming query reads (the derived silver query): its VACUUM waits for that query.
STREAM_SOURCE = PLAN_EVENTS

log = logging.getLogger(__name__)

# Another writer removed files this OPTIMIZE read: the table is compacted again from its new state.
_CONFLICTS = (
    ConcurrentDeleteReadException,
    ConcurrentDeleteDeleteException,
    ConcurrentTransactionException,
)


@dataclass(frozen=True)
class Layout:
    """How a table's current version is stored."""

    files: int
    bytes: int

    @property
    def mean_file_bytes(self) -> float:
        return self.bytes / self.files if self.files else 0.0


@dataclass(frozen=True)
class Maintained:
    """What `maintain` did to one table."""

    table: str
    before: Layout
    after: Layout
    zorder_by: tuple[str, ...]  # empty: compaction only
    files_removed: int
    files_added: int
    vacuumed_files: int | None  # None: not vacuumed
    seconds: float
    attempts: int = 1
    vacuum_held: str | None = None  # why VACUUM was held back (see stream_source_vacuum_hold)
    vacuum_skipped: str | None = None  # why VACUUM had nothing to do (see vacuum_could_delete)

    @property
    def vacuumed(self) -> bool:
        """Whether VACUUM ran (neither held back, skipped nor switched off)."""
        return self.vacuumed_files is not None and not self.vacuum_skipped

    def render(self) -> str:
        how = f"zorder by {', '.join(self.zorder_by)}" if self.zorder_by else "compact"
        vacuumed = (
            "" if self.vacuumed_files is None else f", vacuumed {self.vacuumed_files:,} files"
        )
        retried = f" after {self.attempts} attempts" if self.attempts > 1 else ""
        if self.vacuum_held:
            vacuumed = f", VACUUM HELD BACK: {self.vacuum_held}"
        elif self.vacuum_skipped:
            vacuumed = f", no VACUUM needed ({self.vacuum_skipped})"
        return (
            f"{self.table}: {how}: {self.before.files:,} -> {self.after.files:,} files "
            f"(mean {self.before.mean_file_bytes / 1024:,.0f} -> "
            f"{self.after.mean_file_bytes / 1024:,.0f} KiB; {self.files_removed:,} removed, "
            f"{self.files_added:,} added){vacuumed} in {self.seconds:.1f}s{retried}"
        )


def layout(spark: SparkSession, config: Config, table: Table) -> Layout:
    """Files and bytes of the table's current version (DESCRIBE DETAIL)."""
    row = io.delta_table(spark, config, table).detail().select("numFiles", "sizeInBytes").first()
    return Layout(int(row["numFiles"] or 0), int(row["sizeInBytes"] or 0))


def optimize(spark: SparkSession, config: Config, table: Table, zorder: bool) -> tuple[int, int]:
    """Compact the table's small files, or (`zorder` and the table declares `zorder_by`) rewrite
    it clustered by those columns. Returns (files removed, files added)."""
    builder = io.delta_table(spark, config, table).optimize()
    if zorder and table.zorder_by:
        metrics = builder.executeZOrderBy(*table.zorder_by)
    else:
        metrics = builder.executeCompaction()
    row = metrics.select("metrics.numFilesRemoved", "metrics.numFilesAdded").first()
    return int(row["numFilesRemoved"]), int(row["numFilesAdded"])


def compaction_needed(table: Table, before: Layout, zorder: bool) -> bool:
    """Whether OPTIMIZE could change the table: a Z-order rewrites it, compaction needs two
    files to bin-pack, and with deletion vectors even one file may be rewritten to purge its
    deleted rows. A single-file table without them is left alone (OPTIMIZE would be a no-op
    costing two Spark jobs)."""
    deletion_vectors = dict(table.properties).get("delta.enableDeletionVectors") == "true"
    return (zorder and bool(table.zorder_by)) or before.files > 1 or deletion_vectors


def vacuum_could_delete(
    spark: SparkSession, config: Config, table: Table, retain_hours: int, now_epoch: float
) -> bool:
    """Whether VACUUM could delete any file: it deletes only files (outside `_delta_log`) last
    modified before now minus the retention (Delta's VacuumCommand compares each file's
    modification time with that horizon), so a table whose files are all younger has nothing
    to delete, and its VACUUM (about 24 Spark jobs, 2 s on 2 cores) is skipped. (A skipped
    VACUUM also leaves empty partition folders, which it would remove.)"""
    return io.has_file_modified_before(spark, config, table, now_epoch - retain_hours * 3600)


def vacuum(spark: SparkSession, config: Config, table: Table, retain_hours: int) -> int:
    """Delete files no version within `retain_hours` needs; returns how many were deleted (from
    the VACUUM END commit that `spark.databricks.delta.vacuum.logging.enabled` records)."""
    delta = io.delta_table(spark, config, table)
    before = io.latest_version(spark, config, table)
    delta.vacuum(float(retain_hours))
    # The newest VACUUM END after `before`: a writer may have committed since (the ingest).
    end = (
        delta.history(20)
        .where((F.col("version") > before) & (F.col("operation") == "VACUUM END"))
        .orderBy(F.col("version").desc())
        .select("operationMetrics")
        .first()
    )
    return 0 if end is None else int(end["operationMetrics"].get("numDeletedFiles", 0))


def stream_source_vacuum_hold(spark: SparkSession, config: Config, now_epoch: float) -> str | None:
    """Why VACUUM of silver.plan_events (the derived query's source) must wait, or None when it
    is safe: the derived query still has to read it from a version committed before the
    retention window, whose files compaction may have removed (VACUUM deletes removed files
    older than the window). A query that never ran reads the current files when it starts:
    nothing to protect."""
    next_version = lag.derived_next_version(config)
    if next_version is None or next_version > io.latest_version(spark, config, STREAM_SOURCE):
        return None
    committed = io.commit_epoch(spark, config, STREAM_SOURCE, next_version)
    retain_s = config.maintenance.vacuum_retain_hours * 3600
    if committed is None:
        return (
            f"the derived query still has to read {STREAM_SOURCE.name} version "
            f"{next_version}, whose log entry is gone"
        )
    age_s = now_epoch - committed
    if age_s < retain_s:
        return None
    return (
        f"the derived query still has to read {STREAM_SOURCE.name} from version "
        f"{next_version}, committed "
        f"{age_s / 3600:,.0f} h ago, beyond the {retain_s / 3600:,.0f} h VACUUM retention: "
        "catch the ingest up (`lakehouse ingest --lag`) before files it needs are deleted"
    )


def maintain(
    spark: SparkSession,
    config: Config,
    tables: Sequence[Table],
    zorder: bool,
    vacuum_files: bool = True,
    progress: Callable[[str], None] = log.info,
    attempts: int = 3,
    now_epoch: float | None = None,
) -> list[Maintained]:
    """Compact (or Z-order, see `optimize`) and vacuum each existing table of `tables`, one at a
    time. A table whose OPTIMIZE conflicts with a concurrent writer is retried up to `attempts`
    times; the last conflict is raised. `now_epoch` (default: the clock) dates the bronze
    VACUUM hold and the retention horizon `vacuum_could_delete` checks against."""
    done: list[Maintained] = []
    now = time.time() if now_epoch is None else now_epoch
    for table in _existing(spark, config, tables):
        started = time.monotonic()
        before = layout(spark, config, table)
        removed, added, attempt = (
            _optimize_retrying(spark, config, table, zorder, attempts)
            if compaction_needed(table, before, zorder)
            else (0, 0, 1)
        )
        held = skipped = None
        vacuumed: int | None = None
        if vacuum_files and table == STREAM_SOURCE:
            held = stream_source_vacuum_hold(spark, config, now)
            if held:
                log.warning("%s: VACUUM held back: %s", table.name, held)
        if vacuum_files and not held:
            keep = config.maintenance.vacuum_retain_hours
            if vacuum_could_delete(spark, config, table, keep, now):
                vacuumed = vacuum(spark, config, table, keep)
            else:
                vacuumed, skipped = 0, f"no file older than {keep} h"
        result = Maintained(
            table=table.name,
            before=before,
            # nothing rewritten: the layout is the one read before (saves a snapshot's jobs)
            after=layout(spark, config, table) if removed or added else before,
            zorder_by=table.zorder_by if zorder else (),
            files_removed=removed,
            files_added=added,
            vacuumed_files=vacuumed,
            seconds=time.monotonic() - started,
            attempts=attempt,
            vacuum_held=held,
            vacuum_skipped=skipped,
        )
        progress(result.render())
        done.append(result)
    return done


def _optimize_retrying(
    spark: SparkSession, config: Config, table: Table, zorder: bool, attempts: int
) -> tuple[int, int, int]:
    """`optimize`, again from the table's new state after a conflict with a concurrent writer,
    up to `attempts` times (the last conflict is raised): (removed, added, attempts made)."""
    for attempt in range(1, attempts):
        try:
            return (*optimize(spark, config, table, zorder), attempt)
        except _CONFLICTS as exc:
            log.warning("%s: OPTIMIZE conflicted (%s); retrying", table.name, type(exc).__name__)
    return (*optimize(spark, config, table, zorder), attempts)


def _existing(spark: SparkSession, config: Config, tables: Iterable[Table]) -> list[Table]:
    return [t for t in tables if io.table_exists(spark, config, t)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `lakehouse maintain` and jobs/maintain_tables.py."""
    parser.add_argument(
        "--table",
        action="append",
        default=[],
        metavar="NAME",
        help="a table to maintain, e.g. silver.plans (repeatable; default: every table)",
    )
    zorder = parser.add_mutually_exclusive_group()
    zorder.add_argument(
        "--zorder",
        action="store_true",
        default=None,
        help="Z-order clustered tables now (default: on maintenance.zorder_weekday only)",
    )
    zorder.add_argument("--no-zorder", dest="zorder", action="store_false", help="compact only")
    parser.add_argument("--no-vacuum", action="store_true", help="skip VACUUM")


def zorder_today(config: Config, now: datetime | None = None) -> bool:
    """Whether tonight is `maintenance.zorder_weekday` in `nightly.timezone`."""
    today = now or datetime.now(ZoneInfo(config.nightly.timezone))
    return today.weekday() == config.maintenance.zorder_weekday


def select_tables(names: Sequence[str]) -> list[Table]:
    """The maintained tables named (all of them for none); ValueError names unknown ones."""
    if not names:
        return list(MAINTAINED_TABLES)
    by_name = {t.name: t for t in MAINTAINED_TABLES}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown table(s) {', '.join(unknown)}; choose from {', '.join(by_name)}")
    return [by_name[n] for n in names]


def run(
    spark: SparkSession,
    config: Config,
    tables: Sequence[Table],
    zorder: bool | None = None,
    vacuum_files: bool = True,
    out: TextIO = sys.stdout,
) -> int:
    """`lakehouse maintain`: maintain `tables`, a line per table; `zorder` None follows
    `maintenance.zorder_weekday`. Exit status 0."""
    zorder = zorder_today(config) if zorder is None else zorder
    keep = config.maintenance.vacuum_retain_hours
    how = "zorder" if zorder else "compact"
    how += f", vacuum keeping {keep} h" if vacuum_files else ""
    print(f"maintain: {len(tables)} tables under {config.warehouse} ({how})", file=out, flush=True)
    done = maintain(
        spark, config, tables, zorder, vacuum_files, lambda line: print(line, file=out, flush=True)
    )
    removed = sum(m.files_removed for m in done)
    print(f"maintain: {len(done)} tables, {removed:,} files compacted away", file=out, flush=True)
    return 0
