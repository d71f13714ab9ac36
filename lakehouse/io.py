"""Reading and writing Delta tables: the only place that knows where and how tables are stored."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from delta.tables import DeltaTable
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.config import Config
from lakehouse.tables import Table

log = logging.getLogger(__name__)


def ensure_table(spark: SparkSession, config: Config, table: Table) -> DeltaTable:
    """Create `table` (declared schema, Change Data Feed on, its own properties) if it does not
    exist yet."""
    builder = (
        DeltaTable.createIfNotExists(spark)
        .location(table.path(config))
        .addColumns(table.schema)
        .property("delta.enableChangeDataFeed", "true")
    )
    for key, value in table.properties:
        builder = builder.property(key, value)
    if table.partition_by:
        builder = builder.partitionedBy(*table.partition_by)
    return builder.execute()


def delta_table(spark: SparkSession, config: Config, table: Table) -> DeltaTable:
    return DeltaTable.forPath(spark, table.path(config))


def read_table(spark: SparkSession, config: Config, table: Table) -> DataFrame:
    return spark.read.format("delta").load(table.path(config))


def read_version(spark: SparkSession, config: Config, table: Table, version: int) -> DataFrame:
    """The table as it was at `version` (time travel)."""
    return spark.read.format("delta").option("versionAsOf", version).load(table.path(config))


def latest_version(spark: SparkSession, config: Config, table: Table) -> int:
    """The version of the table's newest commit, from its transaction log on the driver: the
    snapshot update DeltaTable.forPath also makes (the log listed from its last checkpoint),
    without the Spark job `history(1)` runs (~150 ms on 2 cores, paid per table by each step
    that pins versions: quality, the mirror, gold's watermarks, the silver batch)."""
    version = int(_updated_snapshot(spark, config, table).version())
    assert version >= 0, f"{table.name} has no commits"
    return version


def _updated_snapshot(spark: SparkSession, config: Config, table: Table):  # type: ignore[no-untyped-def]
    """The table's latest snapshot (a py4j handle), its log listed from the last checkpoint."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, table.path(config))
    # update(stalenessAcceptable, checkIfUpdatedSinceTs, catalogTableOpt): Scala defaults
    defaults = [getattr(log, f"update$default${n}")() for n in (1, 2, 3)]
    return log.update(*defaults)


def has_file_modified_before(
    spark: SparkSession, config: Config, table: Table, epoch_s: float
) -> bool:
    """Whether any file of the table's folder outside `_delta_log` (data, change-feed and
    deletion-vector files, referenced or not) was last modified before `epoch_s`. Listed on the
    driver through the table's Hadoop file system, stopping at the first such file."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    root = jvm.org.apache.hadoop.fs.Path(table.path(config))
    hadoop_conf = spark.sparkContext._jsc.hadoopConfiguration()
    files = root.getFileSystem(hadoop_conf).listFiles(root, True)
    before_ms = epoch_s * 1000
    while files.hasNext():
        status = files.next()
        if status.getModificationTime() < before_ms and "/_delta_log/" not in str(
            status.getPath().toUri().getPath()
        ):
            return True
    return False


def _hadoop_path(spark: SparkSession, location: str):  # type: ignore[no-untyped-def]
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    path = jvm.org.apache.hadoop.fs.Path(location)
    return path, path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())


@contextmanager
def computed_once(frame: DataFrame) -> Iterator[DataFrame]:
    """`frame` computed now and held on the executors until the block ends.

    A local checkpoint rather than `persist()`: Delta's MERGE plans its source afresh and ignores
    a persisted frame (delta-io/delta#2011), re-running its whole lineage. In the hot path that
    was the Kafka read and the contract's Python UDF again: 6.5 s of an 8 s MERGE at 10,000
    events. A checkpoint has no lineage to re-run.
    """
    held = frame.localCheckpoint(eager=True)
    try:
        yield held
    finally:
        # The blocks would otherwise stay until the JVM collects the frame (the cleaner's GC
        # runs every 30 min), one batch's worth per batch.
        held._jdf.queryExecution().logical().rdd().unpersist(False)


def path_exists(spark: SparkSession, location: str) -> bool:
    """Whether a file or folder exists (local or object store), through Hadoop's file system."""
    path, fs = _hadoop_path(spark, location)
    return bool(fs.exists(path))


def folder_has_entries(spark: SparkSession, location: str) -> bool:
    """Whether a folder exists and holds at least one entry (e.g. a checkpoint's offsets)."""
    path, fs = _hadoop_path(spark, location)
    return bool(fs.exists(path)) and len(fs.listStatus(path)) > 0


def rename_path(spark: SparkSession, source: str, target: str) -> None:
    """Move a file or folder (e.g. a retired checkpoint) if it exists."""
    path, fs = _hadoop_path(spark, source)
    if fs.exists(path):
        target_path, _ = _hadoop_path(spark, target)
        if not fs.rename(path, target_path):
            raise OSError(f"could not rename {source} to {target}")


def snapshot_identity(spark: SparkSession, config: Config, table: Table) -> tuple[str, int]:
    """(table id, latest version) from one update of the transaction log on the driver. The id
    is new when the table is re-created, unlike its version numbers; `detail()` would answer it
    with a Spark job."""
    snapshot = _updated_snapshot(spark, config, table)
    version = int(snapshot.version())
    assert version >= 0, f"{table.name} has no commits"
    return str(snapshot.metadata().id()), version


def commit_epoch(spark: SparkSession, config: Config, table: Table, version: int) -> float | None:
    """When `version` of the table was committed (epoch seconds); None once the log is gone."""
    row = (
        delta_table(spark, config, table)
        .history()
        .where(F.col("version") == version)
        .select(F.col("timestamp").cast("double").alias("t"))
        .first()
    )
    return None if row is None else float(row["t"])


# What Delta raises for a path without a table, or with a `_delta_log` but no commit yet.
_NO_TABLE_ERRORS = frozenset({"DELTA_MISSING_DELTA_TABLE", "DELTA_TABLE_NOT_FOUND"})


def read_side_file(spark: SparkSession, config: Config, table: Table, name: str) -> str | None:
    """The text of the small file `name` kept in the table's folder (None: there is none).
    Names start with `_`, which Delta and VACUUM leave alone."""
    fs, path = _side_path(spark, config, table, name)
    if not fs.exists(path):
        return None
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(fs.open(path), "UTF-8"))
    try:
        lines = []
        while (line := reader.readLine()) is not None:
            lines.append(line)
        return "\n".join(lines)
    finally:
        reader.close()


def write_side_file(
    spark: SparkSession, config: Config, table: Table, name: str, text: str
) -> None:
    """Replace the small file `name` in the table's folder: written aside, then renamed into
    place, so a reader finds the old text, the new one or, for a moment, none (Hadoop's rename
    does not replace), never a part."""
    fs, path = _side_path(spark, config, table, name)
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    staged = jvm.org.apache.hadoop.fs.Path(f"{path.toString()}.{uuid.uuid4().hex}.tmp")
    stream = fs.create(staged, True)
    try:
        stream.write(bytearray(text.encode()))
    finally:
        stream.close()
    fs.delete(path, False)
    fs.rename(staged, path)


def _side_path(spark: SparkSession, config: Config, table: Table, name: str):  # type: ignore[no-untyped-def]
    if not name.startswith("_") or "/" in name:
        raise ValueError(f"side file names start with _ and name no folder: {name!r}")
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    path = jvm.org.apache.hadoop.fs.Path(f"{table.path(config)}/{name}")
    return path.getFileSystem(spark._jsc.hadoopConfiguration()), path  # type: ignore[union-attr]


def commit_info(spark: SparkSession, config: Config, table: Table, version: int) -> dict | None:
    """The commitInfo action of the table's commit `version` (operation, operationParameters,
    userMetadata, ...), read from its log file on the driver; None when that commit file is
    gone or holds none. `DeltaTable.history()` answers the same but runs two Spark jobs
    (~300 ms on 2 cores) per call."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    path = jvm.org.apache.hadoop.fs.Path(f"{table.path(config)}/_delta_log/{version:020d}.json")
    fs = path.getFileSystem(spark._jsc.hadoopConfiguration())  # type: ignore[union-attr]
    if not fs.exists(path):
        return None
    reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(fs.open(path), "UTF-8"))
    try:
        # Delta writes commitInfo as the commit's first action; the loop is for other writers.
        while (line := reader.readLine()) is not None:
            action = json.loads(line)
            if "commitInfo" in action:
                info = action["commitInfo"]
                return info if isinstance(info, dict) else None
    finally:
        reader.close()
    return None


def commit_user_metadata(
    spark: SparkSession, config: Config, table: Table, version: int
) -> str | None:
    """The userMetadata of the table's commit `version` (None: no such commit file, or no
    metadata); gold reads its watermarks this way, once per table per run."""
    info = commit_info(spark, config, table, version)
    metadata = None if info is None else info.get("userMetadata")
    return metadata if isinstance(metadata, str) else None


def read_changes(
    spark: SparkSession, config: Config, table: Table, after: int, upto: int
) -> DataFrame | None:
    """Change Data Feed rows of versions after..upto (both images of an update), or None when
    the feed for that range is no longer available."""
    try:
        feed = (
            spark.read.format("delta")
            .option("readChangeFeed", "true")
            .option("startingVersion", after + 1)
            .option("endingVersion", upto)
            .load(table.path(config))
        )
        feed.schema  # noqa: B018 - resolving the plan is what fails on a vacuumed range
        return feed
    except AnalysisException as exc:
        log.warning("change feed of %s v%d..v%d unavailable: %s", table.name, after, upto, exc)
        return None


def table_exists(spark: SparkSession, config: Config, table: Table) -> bool:
    # Not DeltaTable.isDeltaTable: it answers from the session's cached DeltaLog without
    # refreshing it, so a process that first asks while another one is creating the table
    # (its `_delta_log` folder made, no commit yet) is told "no table" for the cache's hour.
    # forPath loads the latest snapshot, which refreshes that cache.
    try:
        DeltaTable.forPath(spark, table.path(config))
    except AnalysisException as error:
        if error.getErrorClass() in _NO_TABLE_ERRORS:
            return False
        raise
    return True


def append_once(rows: DataFrame, config: Config, table: Table, app_id: str, batch_id: int) -> None:
    """Append `rows` unless this (app_id, batch_id) was already committed to the table.

    Delta records the pair in the same commit, so replaying a micro-batch after a crash does
    not append it twice.
    """
    (
        rows.select(*table.schema.fieldNames())
        .write.format("delta")
        .mode("append")
        .option("txnAppId", app_id)
        .option("txnVersion", batch_id)
        .save(table.path(config))
    )


def overwrite(rows: DataFrame, config: Config, table: Table, user_metadata: str) -> None:
    """Replace the table's content; `user_metadata` is recorded in the same commit. `rows` may
    read the table itself: Delta pins the snapshot a query reads."""
    (
        rows.select(*table.schema.fieldNames())
        .write.format("delta")
        .mode("overwrite")
        .option("userMetadata", user_metadata)
        .save(table.path(config))
    )


def append(rows: DataFrame, config: Config, table: Table) -> None:
    rows.select(*table.schema.fieldNames()).write.format("delta").mode("append").save(
        table.path(config)
    )
