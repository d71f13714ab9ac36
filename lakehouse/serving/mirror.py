"""Mirroring gold (and the quality results) into PostgreSQL schema `gold` (`serving.schema`)
for dashboards.

Each table is published atomically, in one of two ways (`choose_publish` says which, and why):

- **changes**: for a table gold changes a few rows at a time (`ROW_KEYS`: MERGE by key,
  appends), when everything since the mirrored Delta version is such a change. The keys in the
  change feed since that version are copied to a temporary table; in one transaction on the
  live table their rows are deleted, their current rows COPYed in and the version recorded.
- **full**: a staged swap, for the first publish, a rebuild (an overwrite), a re-created table,
  a schema change, a change feed no longer available, or more than `MAX_CHANGED_SHARE` of the
  rows changed (the commits' own metrics). In one transaction: create a staging table with
  explicitly mapped column types, COPY the pinned Delta version into it, build its indexes,
  drop the old table, rename the staging table into its place, grant the BI role read access
  and record the version.

Either way readers see the old complete table until the commit and the new one after it.
Publishing a Delta version that is already mirrored does nothing; publishers of one table
take turns (a transaction-level advisory lock); a PostgreSQL that cannot be reached is retried
with backoff.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import operator
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    DataType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructType,
    TimestampType,
)

from lakehouse import clients, commits, io
from lakehouse.config import Config
from lakehouse.tables import (
    COST_TRENDS,
    GOLD_TABLES,
    PLAN_ANOMALIES,
    PLAN_COSTS,
    QUALITY_RESULTS_TABLE,
    SERVICE_PAIR_COUNTS,
    SERVICE_PAIRS,
    SERVICE_PATTERNS,
    Table,
)

log = logging.getLogger(__name__)

STATE_TABLE = "_mirror_state"
MIRRORED: tuple[Table, ...] = (*GOLD_TABLES, QUALITY_RESULTS_TABLE)

# The columns dashboards filter and join on, per mirrored table.
INDEXES: dict[str, tuple[tuple[str, ...], ...]] = {
    PLAN_COSTS.name: (("plan_id",), ("plan_type", "creation_month"), ("org",)),
    COST_TRENDS.name: (("plan_type", "creation_month"), ("org",)),
    SERVICE_PATTERNS.name: (("service_id",),),
    SERVICE_PAIR_COUNTS.name: (("service_a", "service_b"),),
    SERVICE_PAIRS.name: (("service_a", "service_b"),),
    PLAN_ANOMALIES.name: (("plan_id",), ("is_anomaly", "plan_type")),
    QUALITY_RESULTS_TABLE.name: (("table_name", "run_at"), ("run_id",)),
}


@dataclass(frozen=True)
class RowKey:
    """The columns that identify a mirrored table's row group (non-null text, so that the live
    table's DELETE can use its index: tests/unit/test_mirror_sql.py)."""

    columns: tuple[str, ...]
    # One row per key: its current row is the change feed's last image of the key, and a
    # publish reads only the feed. Otherwise the key's rows are read from the table version.
    unique: bool


# Mirrored tables gold changes a few rows at a time (per-plan MERGEs by key, appended quality
# runs): a publish after such commits replaces only the rows of the keys in the change feed.
# The aggregate tables are rewritten whole by each refresh (small, bounded by the catalogue)
# and always swapped whole.
ROW_KEYS: dict[str, RowKey] = {
    PLAN_COSTS.name: RowKey(("plan_id",), unique=True),
    PLAN_ANOMALIES.name: RowKey(("plan_id",), unique=True),
    QUALITY_RESULTS_TABLE.name: RowKey(("run_id",), unique=False),
}

# Beyond this share of the mirrored rows changed, the staged swap is cheaper than deleting and
# re-inserting them in the live indexed table, and it leaves no dead tuples behind.
MAX_CHANGED_SHARE = 0.5
# The change feed's images that carry a key's new row.
_NEW_ROW_IMAGES = ("insert", "update_postimage")

# Spark type -> PostgreSQL type (as format_type() spells it, so that a mirrored table's columns
# compare with the Delta schema). Anything else is refused, never guessed.
_PG_TYPES: dict[type[DataType], str] = {
    StringType: "text",
    LongType: "bigint",
    IntegerType: "integer",
    DoubleType: "double precision",
    BooleanType: "boolean",
    DateType: "date",
    TimestampType: "timestamp with time zone",
}

T = TypeVar("T")


class MirrorError(RuntimeError):
    """The mirror cannot publish; the message says what to fix."""


class PostgresUnreachable(MirrorError):
    """PostgreSQL could not be reached within the retries."""


class PublishMode(StrEnum):
    UNCHANGED = "unchanged"  # that Delta version is mirrored already: nothing written
    CHANGES = "changes"  # the changed keys' rows replaced in the live table
    FULL = "full"  # the whole version loaded into a staging table and swapped in


@dataclass(frozen=True)
class MirrorState:
    """What `_mirror_state` records of a table's last publish."""

    table_id: str | None
    version: int
    rows: int


@dataclass(frozen=True)
class PublishChoice:
    mode: PublishMode
    reason: str


@dataclass(frozen=True)
class Published:
    table: str
    target: str
    delta_version: int
    # rows COPYed: the whole table (full), or the changed keys' current rows (changes)
    rows: int
    seconds: float
    mode: PublishMode
    reason: str
    # rows PostgreSQL cannot store (a NUL character in a text value): left out of the mirror,
    # still in the Delta table
    left_out: int = 0
    # changes: keys in the change feed, and the mirrored rows deleted for them
    keys: int = 0
    deleted: int = 0

    @property
    def written(self) -> bool:
        return self.mode is not PublishMode.UNCHANGED

    def render(self) -> str:
        if not self.written:
            return f"{self.target}: already at {self.table} v{self.delta_version}"
        rate = self.rows / self.seconds if self.seconds else 0.0
        left_out = (
            f"; {self.left_out:,} rows left out (a NUL character, which PostgreSQL text cannot "
            "hold)"
            if self.left_out
            else ""
        )
        what = (
            f"{self.keys:,} changed keys: {self.deleted:,} rows deleted, {self.rows:,} written"
            if self.mode is PublishMode.CHANGES
            else f"{self.rows:,} rows"
        )
        return (
            f"{self.target}: {what} from {self.table} v{self.delta_version} "
            f"in {self.seconds:.1f}s ({rate:,.0f} rows/s; {self.mode}: {self.reason}){left_out}"
        )


def choose_publish(
    table_name: str,
    mirrored: MirrorState | None,
    table_id: str,
    version: int,
    columns_match: bool,
    history: Sequence[commits.Commit],
) -> PublishChoice:
    """How to publish `version` of the table (see the module doc). `history`: the commitInfo of
    each version after the mirrored one up to `version` (None where the log no longer holds
    it); `columns_match`: the mirrored table's columns are the Delta schema's."""
    if mirrored is not None and (mirrored.table_id, mirrored.version) == (table_id, version):
        return PublishChoice(PublishMode.UNCHANGED, "that version is mirrored")
    if table_name not in ROW_KEYS:
        return PublishChoice(PublishMode.FULL, "the table is rewritten whole by each refresh")
    if mirrored is None:
        return PublishChoice(PublishMode.FULL, "first publish")
    if mirrored.table_id != table_id:
        return PublishChoice(PublishMode.FULL, "the Delta table was re-created")
    if mirrored.version > version:
        return PublishChoice(PublishMode.FULL, f"the mirror is at v{mirrored.version}, ahead")
    if not columns_match:
        return PublishChoice(PublishMode.FULL, "the mirrored columns differ from the schema")
    rebuilt = commits.first_rebuild(history)
    if rebuilt is not None:
        return PublishChoice(PublishMode.FULL, rebuilt)
    changed = sum(commits.rows_changed(info) for _, info in history if info is not None)
    if changed > MAX_CHANGED_SHARE * max(mirrored.rows, 1):
        return PublishChoice(
            PublishMode.FULL,
            f"{changed:,} rows changed, more than {MAX_CHANGED_SHARE:.0%} of the "
            f"{mirrored.rows:,} mirrored",
        )
    return PublishChoice(
        PublishMode.CHANGES, f"v{mirrored.version + 1}..v{version} change rows by key"
    )


def target_name(table: Table) -> str:
    """gold.plan_costs -> plan_costs; quality.results -> quality_results."""
    layer, name = table.name.split(".", 1)
    return name if layer == "gold" else f"{layer}_{name}"


def pg_type(data_type: DataType) -> str:
    try:
        return _PG_TYPES[type(data_type)]
    except KeyError:
        raise MirrorError(f"no PostgreSQL type is mapped for Spark type {data_type}") from None


def create_table_sql(qualified: str, schema: StructType) -> str:
    columns = ",\n  ".join(
        f'"{f.name}" {pg_type(f.dataType)}{"" if f.nullable else " NOT NULL"}'
        for f in schema.fields
    )
    return f"CREATE TABLE {qualified} (\n  {columns}\n)"


def index_name(target: str, columns: tuple[str, ...], publish_token: str) -> str:
    """Unique per publish: the new table's indexes exist beside the live table's until the
    swap (even when a re-created Delta table republishes the same version number).
    PostgreSQL cuts names at 63 bytes, so long ones end in a hash."""
    name = f"ix_{target}_{'_'.join(columns)}_{publish_token}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[:52]}_{digest}"


def as_copy_text(frame: DataFrame, keep: Sequence[str] = ()) -> DataFrame:
    """Every column as the text PostgreSQL's COPY parses back to the mapped type: timestamps
    with their UTC offset, the rest as Spark casts them; `keep`: columns passed through as they
    are."""
    columns = []
    for field in frame.schema.fields:
        column = F.col(field.name)
        if field.name in keep:
            columns.append(column)
            continue
        if isinstance(field.dataType, TimestampType):
            # the session time zone is UTC; the offset makes timestamptz exact anyway
            column = F.date_format(column, "yyyy-MM-dd HH:mm:ss.SSSSSSXXX")
        columns.append(column.cast("string").alias(field.name))
    return frame.select(*columns)


def csv_line(values: tuple[str | None, ...]) -> str:
    """One CSV record: null stays an empty unquoted field, every value is quoted. The reference
    for `as_csv_records`, which builds the same records in Spark."""
    return ",".join("" if v is None else '"' + v.replace('"', '""') + '"' for v in values) + "\n"


def as_csv_records(frame: DataFrame, keep: Sequence[str] = ()) -> DataFrame:
    """record: each row as the CSV record `csv_line` makes of its `as_copy_text` values, and
    storable: false when a text value holds a NUL character (PostgreSQL text cannot, and COPY
    would fail the whole table on it); `keep`: columns left out of the record and passed
    through before it. Built by Spark so that one string per row crosses to the driver instead
    of one per column: pickling the columns and formatting them in Python took most of a
    publish's time (docs/benchmarks/README.md, mirror)."""
    text = as_copy_text(frame, keep)
    formatted = [name for name in text.columns if name not in keep]
    fields = [
        F.when(text[name].isNull(), F.lit("")).otherwise(
            F.concat(F.lit('"'), F.replace(text[name], F.lit('"'), F.lit('""')), F.lit('"'))
        )
        for name in formatted
    ]
    nul = [F.coalesce(F.instr(text[name], "\u0000") > 0, F.lit(False)) for name in formatted]
    return text.select(
        *keep,
        F.concat(F.concat_ws(",", *fields), F.lit("\n")).alias("record"),
        (~functools.reduce(operator.or_, nul, F.lit(False))).alias("storable"),
    )


class _LineReader:
    """A file-like object over an iterator of (text line, storable) pairs, for psycopg2's
    copy_expert; lines that are not storable are counted and skipped."""

    def __init__(self, lines: Iterator[tuple[str, bool]]) -> None:
        self._lines = lines
        self._buffer = b""
        self.rows = 0
        self.left_out = 0

    def read(self, size: int = 65536) -> bytes:
        while len(self._buffer) < size:
            item = next(self._lines, None)
            if item is None:
                break
            line, storable = item
            if not storable:
                self.left_out += 1
                continue
            self._buffer += line.encode()
            self.rows += 1
        chunk, self._buffer = self._buffer[:size], self._buffer[size:]
        return chunk

    readline = read


def arrow_batches(frame: DataFrame) -> Iterator[Any]:
    """`frame`'s rows as Arrow record batches, in the order Spark finishes them, as they arrive.

    PySpark 3.5 has no public streaming Arrow collect: this is its `_collect_as_arrow` without
    the list (order does not matter to COPY, memory does) and checks the job's outcome when the
    stream ends. Against `toLocalIterator` (one job per partition, rows pickled one by one) all
    partitions are computed at once and nothing is done per row in Python: exporting 200,000
    plan_costs rows took 1.25 s against 1.50 s, with 0.1 CPU-s of Python against 0.5
    (docs/benchmarks/README.md, mirror)."""
    import pyarrow as pa
    from pyspark.errors.exceptions.captured import unwrap_spark_exception
    from pyspark.rdd import _load_from_socket
    from pyspark.sql.pandas.serializers import ArrowCollectSerializer
    from pyspark.traceback_utils import SCCallSiteSync

    with SCCallSiteSync(frame.sparkSession.sparkContext):
        port, secret, server = frame._jdf.collectAsArrowToPython()
    try:
        for item in _load_from_socket((port, secret), ArrowCollectSerializer()):
            if isinstance(item, pa.RecordBatch):  # the stream ends with the batches' order
                yield item
    finally:
        with unwrap_spark_exception():
            server.getResult()  # raises what failed the job


class _BatchReader:
    """A file-like object over Arrow batches of `as_csv_records` (record, storable), for
    psycopg2's copy_expert: each batch's storable records go on as one slice of their column's
    data buffer (the records end in a newline, so the bytes are the CSV as they stand); the
    records that are not storable are counted and skipped."""

    def __init__(self, batches: Iterator[Any]) -> None:
        self._batches = batches
        self._buffer = memoryview(b"")
        self.rows = 0
        self.left_out = 0

    def read(self, size: int = 65536) -> bytes:
        while not self._buffer:
            batch = next(self._batches, None)
            if batch is None:
                return b""
            self._buffer = self._storable_bytes(batch)
        chunk, self._buffer = self._buffer[:size], self._buffer[size:]
        return bytes(chunk)

    readline = read

    def _storable_bytes(self, batch: Any) -> memoryview:
        import pyarrow.compute as pc

        records = pc.filter(batch.column(0), batch.column(1))  # storable is never null
        self.rows += len(records)
        self.left_out += batch.num_rows - len(records)
        if not len(records):
            return memoryview(b"")
        _, offsets, data = records.buffers()
        # utf8 arrays hold int32 offsets; a sliced array starts at its own offset
        bounds = memoryview(offsets).cast("i")
        start, end = bounds[records.offset], bounds[records.offset + len(records)]
        return memoryview(data)[start:end]


def with_retries(action: Callable[[], T], attempts: int, backoff_s: float, what: str) -> T:
    """Run `action`, retrying when PostgreSQL cannot be reached (backoff doubles each time)."""
    import psycopg2

    for attempt in range(1, attempts + 1):
        try:
            return action()
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            if attempt == attempts:
                raise PostgresUnreachable(
                    f"{what}: PostgreSQL unreachable after {attempts} attempts: {exc}".strip()
                ) from exc
            pause = backoff_s * 2 ** (attempt - 1)
            log.warning("%s: PostgreSQL unreachable (%s); retry in %.1fs", what, exc, pause)
            time.sleep(pause)
    raise AssertionError("unreachable")


def ensure_bi_role(config: Config) -> None:
    """The read-only role dashboards connect as: it may read schema `gold` and nothing else.
    Its password, if any, comes from LAKEHOUSE_BI_PASSWORD (the local cluster trusts loopback)."""
    import os

    from psycopg2 import sql

    role = config.serving.bi_role
    schema = config.serving.schema
    password = os.environ.get("LAKEHOUSE_BI_PASSWORD") or None
    conn = clients.pg_connect(config)
    try:
        with conn, conn.cursor() as cur:
            # Two publishers at once (two nightly runs, parallel tests) would otherwise race on
            # the role's catalog row: "tuple concurrently updated", or a duplicate CREATE ROLE.
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"lakehouse-role:{role}",))
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
            cur.execute(
                sql.SQL("ALTER ROLE {} NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %s").format(
                    sql.Identifier(role)
                ),
                (password,),
            )
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            cur.execute(
                sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                    sql.Identifier(schema), sql.Identifier(role)
                )
            )
            cur.execute(
                sql.SQL("REVOKE CREATE ON SCHEMA public FROM {}").format(sql.Identifier(role))
            )
    finally:
        conn.close()


def publish_table(spark: SparkSession, config: Config, table: Table) -> Published:
    """Mirror the table's latest Delta version into gold.<target> (see the module doc)."""
    if not io.table_exists(spark, config, table):
        raise MirrorError(f"{table.name} does not exist yet: run the gold jobs first")
    # a table re-created (or another warehouse) restarts its version numbers: the id tells
    table_id, version = io.snapshot_identity(spark, config, table)
    target = target_name(table)
    serving = config.serving
    qualified = f"{serving.schema}.{target}"

    def publish() -> Published:
        started = time.monotonic()
        ensure_bi_role(config)
        conn = clients.pg_connect(config, connect_timeout=5)
        try:
            with conn, conn.cursor() as cur:
                _prepare(cur, serving.schema, table)
                mirrored = _mirrored_state(cur, serving.schema, table.name)
                exists = _exists(cur, qualified)
                history = []
                if mirrored is not None and table.name in ROW_KEYS:
                    history = commits.since(spark, config, table, mirrored.version, version)
                choice = choose_publish(
                    table.name,
                    mirrored if exists else None,
                    table_id,
                    version,
                    exists and _columns(cur, qualified) == expected_columns(table.schema),
                    history,
                )
                if choice.mode is PublishMode.UNCHANGED:
                    return Published(
                        table.name, qualified, version, 0, 0.0, choice.mode, choice.reason
                    )
                applied = None
                if choice.mode is PublishMode.CHANGES:
                    assert mirrored is not None
                    applied = _apply_changes(spark, config, cur, table, table_id, version, mirrored)
                    if applied is None:
                        choice = PublishChoice(
                            PublishMode.FULL,
                            f"the change feed after v{mirrored.version} is no longer available",
                        )
                if applied is not None:
                    keys, deleted, rows, left_out = applied
                else:
                    keys = deleted = 0
                    rows, left_out = _load_and_swap(
                        spark, config, cur, table, target, table_id, version
                    )
                result = Published(
                    table.name, qualified, version, rows, 0.0, choice.mode, choice.reason,
                    left_out, keys, deleted,
                )  # fmt: skip
            return dataclasses.replace(result, seconds=time.monotonic() - started)
        finally:
            conn.close()

    return with_retries(publish, serving.attempts, serving.backoff_s, f"mirror {table.name}")


def publish_all(
    spark: SparkSession, config: Config, progress: Callable[[str], None] = log.info
) -> list[Published]:
    """Mirror every gold table and the quality results, one atomic swap each. A table that
    cannot be mirrored (missing, or refused by PostgreSQL for its content) does not stop the
    others: they are published, then MirrorError names every table that was not. An
    unreachable PostgreSQL (after the retries) stops the run at once."""
    import psycopg2

    results, failed = [], []
    for table in MIRRORED:
        if table is QUALITY_RESULTS_TABLE and not io.table_exists(spark, config, table):
            continue  # no quality run yet: nothing to mirror
        try:
            result = publish_table(spark, config, table)
        except PostgresUnreachable:
            raise
        except (MirrorError, psycopg2.DataError, psycopg2.IntegrityError) as exc:
            failed.append(f"{table.name}: {str(exc).strip().splitlines()[0][:300]}")
            progress(f"{target_name(table)}: NOT MIRRORED: {failed[-1]}")
            continue
        progress(result.render())
        results.append(result)
    if failed:
        raise MirrorError(
            f"{len(failed)} table(s) not mirrored ({len(results)} were): " + "; ".join(failed)
        )
    return results


def _load_and_swap(  # type: ignore[no-untyped-def]
    spark, config: Config, cur, table: Table, target: str, table_id: str, version: int
) -> tuple[int, int]:
    """Load the version into a staging table and swap it in; (rows written, rows left out)."""
    from psycopg2 import sql

    schema = sql.Identifier(config.serving.schema)
    staging = sql.Identifier(f"_staging_{target}")
    final = sql.Identifier(target)
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}.{}").format(schema, staging))
    qualified = sql.SQL("{}.{}").format(schema, staging).as_string(cur)
    cur.execute(create_table_sql(qualified, table.schema))

    records = as_csv_records(io.read_version(spark, config, table, version))
    reader = _copy_from(
        cur, sql.SQL("{}.{}").format(schema, staging), table, _BatchReader(arrow_batches(records))
    )
    token = uuid.uuid4().hex[:8]
    for index_columns in INDEXES.get(table.name, ()):
        cur.execute(
            sql.SQL("CREATE INDEX {} ON {}.{} ({})").format(
                sql.Identifier(index_name(target, index_columns, token)),
                schema,
                staging,
                sql.SQL(", ").join(sql.Identifier(c) for c in index_columns),
            )
        )
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}.{}").format(schema, final))
    cur.execute(sql.SQL("ALTER TABLE {}.{} RENAME TO {}").format(schema, staging, final))
    cur.execute(
        sql.SQL("GRANT SELECT ON {}.{} TO {}").format(
            schema, final, sql.Identifier(config.serving.bi_role)
        )
    )
    _record(cur, config.serving.schema, table, MirrorState(table_id, version, reader.rows))
    if reader.left_out:
        log.warning("%s: %d rows left out of the mirror (NUL in text)", table.name, reader.left_out)
    return reader.rows, reader.left_out


def _apply_changes(  # type: ignore[no-untyped-def]
    spark: SparkSession,
    config: Config,
    cur,
    table: Table,
    table_id: str,
    version: int,
    mirrored: MirrorState,
) -> tuple[int, int, int, int] | None:
    """Replace the rows of the keys in the change feed after the mirrored version with their
    rows at `version`, in the live table; (keys, rows deleted, rows written, rows left out), or
    None when that feed is no longer available (vacuumed)."""
    from psycopg2 import sql

    feed = io.read_changes(spark, config, table, mirrored.version, version)
    if feed is None:
        return None
    key = ROW_KEYS[table.name]
    keys, lines = (_feed_rows if key.unique else _version_rows)(
        spark, config, table, key, feed, version
    )
    schema = sql.Identifier(config.serving.schema)
    live = sql.SQL("{}.{}").format(schema, sql.Identifier(target_name(table)))
    key_list = sql.SQL(", ").join(sql.Identifier(c) for c in key.columns)
    # ON COMMIT DROP: the key list lives exactly as long as the transaction that uses it
    cur.execute(
        sql.SQL(
            "CREATE TEMP TABLE _mirror_keys ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA"
        ).format(key_list, live)
    )
    cur.copy_expert(
        sql.SQL("COPY _mirror_keys ({}) FROM STDIN WITH (FORMAT csv)")
        .format(key_list)
        .as_string(cur),
        # a key PostgreSQL cannot hold (NUL) has no mirrored row to delete
        _LineReader((csv_line(k), not any("\u0000" in v for v in k)) for k in keys),
    )
    match = sql.SQL(" AND ").join(
        sql.SQL("t.{c} = k.{c}").format(c=sql.Identifier(c)) for c in key.columns
    )
    cur.execute(sql.SQL("DELETE FROM {} t USING _mirror_keys k WHERE {}").format(live, match))
    deleted = cur.rowcount
    reader = _copy_from(cur, live, table, _LineReader(iter(lines)))
    _record(
        cur, config.serving.schema, table,
        MirrorState(table_id, version, mirrored.rows - deleted + reader.rows),
    )  # fmt: skip
    return len(keys), deleted, reader.rows, reader.left_out


def _feed_rows(
    spark: SparkSession, config: Config, table: Table, key: RowKey, feed: DataFrame, version: int
) -> tuple[list[tuple[str, ...]], list[tuple[str, bool]]]:
    """The changed keys and the CSV records of their current rows, for a table with one row per
    key: each key's last image in the feed (none when that is a delete). One Spark job over the
    change files alone, without a shuffle: the table is not read, and the last image per key
    is picked on the driver (ranked by a window in Spark, this step took 1.09 s for 10,000
    keys of 1M rows; 0.49-0.79 s this way). An update's old image is never the last one and
    is left on the executors."""
    kept = [f"_key_{c}" for c in key.columns]
    images = as_csv_records(
        feed.where(F.col("_change_type") != "update_preimage").select(
            *table.schema.fieldNames(),
            *(F.col(c).alias(k) for c, k in zip(key.columns, kept, strict=True)),
            "_commit_version",
            F.col("_change_type").isin(*_NEW_ROW_IMAGES).alias("_new"),
        ),
        keep=[*kept, "_commit_version", "_new"],
    ).collect()
    last: dict[tuple[str, ...], tuple[tuple[int, bool], str, bool]] = {}
    for image in images:
        k = tuple(image[c] for c in kept)
        # within one commit a key's new row outranks its delete
        rank = (image["_commit_version"], image["_new"])
        if k not in last or rank > last[k][0]:
            last[k] = (rank, image.record, image.storable)
    lines = [(record, storable) for (_, new), record, storable in last.values() if new]
    return list(last), lines


def _version_rows(
    spark: SparkSession, config: Config, table: Table, key: RowKey, feed: DataFrame, version: int
) -> tuple[list[tuple[str, ...]], list[tuple[str, bool]]]:
    """The changed keys and the CSV records of all their rows at `version`, read from the table
    (a key may hold rows the feed does not show)."""
    keys = [tuple(r) for r in feed.select(*key.columns).distinct().collect()]
    if not keys:
        return keys, []
    changed = spark.createDataFrame(keys, StructType([table.schema[c] for c in key.columns]))
    rows = io.read_version(spark, config, table, version).join(
        F.broadcast(changed), list(key.columns), "left_semi"
    )
    records = as_csv_records(rows.select(*table.schema.fieldNames())).collect()
    return keys, [(r.record, r.storable) for r in records]


def _copy_from(cur, qualified, table: Table, reader: _LineReader | _BatchReader):  # type: ignore[no-untyped-def]
    """COPY the CSV records `reader` serves (the table's columns) into `qualified` (an
    sql.Composable); the reader counts what went in and what was left out."""
    from psycopg2 import sql

    columns = sql.SQL(", ").join(sql.Identifier(f.name) for f in table.schema.fields)
    cur.copy_expert(
        sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)")
        .format(qualified, columns)
        .as_string(cur),
        reader,
    )
    if reader.left_out:
        log.warning("%s: %d rows left out of the mirror (NUL in text)", table.name, reader.left_out)
    return reader


def _prepare(cur, schema: str, table: Table) -> None:  # type: ignore[no-untyped-def]
    """The mirror schema and its state table exist, and this transaction holds the table's
    publish lock: a second publisher of the same table waits for the first one's commit and then
    finds its version mirrored."""
    from psycopg2 import sql

    cur.execute(
        "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"lakehouse-mirror:{schema}.{table.name}",)
    )
    cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    cur.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.{} (table_name text PRIMARY KEY, delta_table_id "
            "text, delta_version bigint NOT NULL, rows bigint NOT NULL, "
            "published_at timestamptz NOT NULL)"
        ).format(sql.Identifier(schema), sql.Identifier(STATE_TABLE))
    )


def _record(cur, schema: str, table: Table, state: MirrorState) -> None:  # type: ignore[no-untyped-def]
    from psycopg2 import sql

    cur.execute(
        sql.SQL(
            "INSERT INTO {}.{} VALUES (%s, %s, %s, %s, now()) ON CONFLICT (table_name) DO "
            "UPDATE SET delta_table_id = EXCLUDED.delta_table_id, "
            "delta_version = EXCLUDED.delta_version, rows = EXCLUDED.rows, "
            "published_at = EXCLUDED.published_at"
        ).format(sql.Identifier(schema), sql.Identifier(STATE_TABLE)),
        (table.name, state.table_id, state.version, state.rows),
    )


def expected_columns(schema: StructType) -> list[tuple[str, str, bool]]:
    """(name, PostgreSQL type, NOT NULL) of each column the mirror creates for `schema`."""
    return [(f.name, pg_type(f.dataType), not f.nullable) for f in schema.fields]


def _columns(cur, qualified: str) -> list[tuple[str, str, bool]]:  # type: ignore[no-untyped-def]
    cur.execute(
        "SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (qualified,),
    )
    return [(name, kind, bool(not_null)) for name, kind, not_null in cur.fetchall()]


def _mirrored_state(cur, schema: str, table_name: str) -> MirrorState | None:  # type: ignore[no-untyped-def]
    """What the last publish of the table recorded, if any."""
    cur.execute(
        f'SELECT delta_table_id, delta_version, rows FROM "{schema}".{STATE_TABLE} '
        "WHERE table_name = %s",
        (table_name,),
    )
    row = cur.fetchone()
    return None if row is None else MirrorState(row[0], int(row[1]), int(row[2]))


def _exists(cur, qualified: str) -> bool:  # type: ignore[no-untyped-def]
    cur.execute("SELECT to_regclass(%s)", (qualified,))
    return cur.fetchone()[0] is not None
