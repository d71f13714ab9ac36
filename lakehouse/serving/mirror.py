"""Mirroring gold (and the quality results) into PostgreSQL schema `gold` (`serving.schema`)
for dashboards.

Each table is published atomically. In one transaction: create a staging table with explicitly
mapped column types, COPY the pinned Delta version into it, build its indexes, drop the old
table, rename the staging table into its place, grant the BI role read access and record the
Delta version. Readers see the old complete table until the commit and the new one after it.
Publishing a Delta version that is already mirrored does nothing; a PostgreSQL that cannot be
reached is retried with backoff.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import operator
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

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

from lakehouse import clients, io
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

# Spark type -> PostgreSQL type. Anything else is refused, never guessed.
_PG_TYPES: dict[type[DataType], str] = {
    StringType: "text",
    LongType: "bigint",
    IntegerType: "integer",
    DoubleType: "double precision",
    BooleanType: "boolean",
    DateType: "date",
    TimestampType: "timestamptz",
}

T = TypeVar("T")


class MirrorError(RuntimeError):
    """The mirror cannot publish; the message says what to fix."""


class PostgresUnreachable(MirrorError):
    """PostgreSQL could not be reached within the retries."""


@dataclass(frozen=True)
class Published:
    table: str
    target: str
    delta_version: int
    rows: int
    seconds: float
    # False: that Delta version was mirrored already, nothing was written
    written: bool
    # rows PostgreSQL cannot store (a NUL character in a text value): left out of the mirror,
    # still in the Delta table
    left_out: int = 0

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
        return (
            f"{self.target}: {self.rows:,} rows from {self.table} v{self.delta_version} "
            f"in {self.seconds:.1f}s ({rate:,.0f} rows/s){left_out}"
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


def as_copy_text(frame: DataFrame) -> DataFrame:
    """Every column as the text PostgreSQL's COPY parses back to the mapped type: timestamps
    with their UTC offset, the rest as Spark casts them."""
    columns = []
    for field in frame.schema.fields:
        column = F.col(field.name)
        if isinstance(field.dataType, TimestampType):
            # the session time zone is UTC; the offset makes timestamptz exact anyway
            column = F.date_format(column, "yyyy-MM-dd HH:mm:ss.SSSSSSXXX")
        columns.append(column.cast("string").alias(field.name))
    return frame.select(*columns)


def csv_line(values: tuple[str | None, ...]) -> str:
    """One CSV record: null stays an empty unquoted field, every value is quoted. The reference
    for `as_csv_records`, which builds the same records in Spark."""
    return ",".join("" if v is None else '"' + v.replace('"', '""') + '"' for v in values) + "\n"


def as_csv_records(frame: DataFrame) -> DataFrame:
    """record: each row as the CSV record `csv_line` makes of its `as_copy_text` values, and
    storable: false when a text value holds a NUL character (PostgreSQL text cannot, and COPY
    would fail the whole table on it). Built by Spark so that one string per row crosses to the
    driver instead of one per column: pickling the columns and formatting them in Python took
    most of a publish's time (docs/benchmarks/README.md, mirror)."""
    text = as_copy_text(frame)
    fields = [
        F.when(text[name].isNull(), F.lit("")).otherwise(
            F.concat(F.lit('"'), F.replace(text[name], F.lit('"'), F.lit('""')), F.lit('"'))
        )
        for name in text.columns
    ]
    nul = [F.coalesce(F.instr(text[name], "\u0000") > 0, F.lit(False)) for name in text.columns]
    return text.select(
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
    version = io.latest_version(spark, config, table)
    # a table re-created (or another warehouse) restarts its version numbers: the id tells
    table_id = io.table_id(spark, config, table)
    target = target_name(table)
    serving = config.serving
    qualified = f"{serving.schema}.{target}"

    def publish() -> Published:
        started = time.monotonic()
        ensure_bi_role(config)
        conn = clients.pg_connect(config, connect_timeout=5)
        try:
            with conn, conn.cursor() as cur:
                mirrored = _mirrored_version(cur, serving.schema, table.name)
                if mirrored == (table_id, version) and _exists(cur, qualified):
                    return Published(table.name, qualified, version, 0, 0.0, False)
                rows, left_out = _load_and_swap(
                    spark, config, cur, table, target, table_id, version
                )
            seconds = time.monotonic() - started
            return Published(table.name, qualified, version, rows, seconds, True, left_out)
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
    cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
    cur.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.{} (table_name text PRIMARY KEY, delta_table_id "
            "text, delta_version bigint NOT NULL, rows bigint NOT NULL, "
            "published_at timestamptz NOT NULL)"
        ).format(schema, sql.Identifier(STATE_TABLE))
    )
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}.{}").format(schema, staging))
    qualified = sql.SQL("{}.{}").format(schema, staging).as_string(cur)
    cur.execute(create_table_sql(qualified, table.schema))

    frame = as_csv_records(io.read_version(spark, config, table, version))
    reader = _LineReader((row[0], row[1]) for row in frame.toLocalIterator(True))
    columns = sql.SQL(", ").join(sql.Identifier(f.name) for f in table.schema.fields)
    cur.copy_expert(
        sql.SQL("COPY {}.{} ({}) FROM STDIN WITH (FORMAT csv)")
        .format(schema, staging, columns)
        .as_string(cur),
        reader,
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
    cur.execute(
        sql.SQL(
            "INSERT INTO {}.{} VALUES (%s, %s, %s, %s, now()) ON CONFLICT (table_name) DO "
            "UPDATE SET delta_table_id = EXCLUDED.delta_table_id, "
            "delta_version = EXCLUDED.delta_version, rows = EXCLUDED.rows, "
            "published_at = EXCLUDED.published_at"
        ).format(schema, sql.Identifier(STATE_TABLE)),
        (table.name, table_id, version, reader.rows),
    )
    if reader.left_out:
        log.warning("%s: %d rows left out of the mirror (NUL in text)", table.name, reader.left_out)
    return reader.rows, reader.left_out


def _mirrored_version(cur, schema: str, table_name: str) -> tuple[str, int] | None:  # type: ignore[no-untyped-def]
    """(Delta table id, version) last mirrored for the table, if any."""
    if not _exists(cur, f"{schema}.{STATE_TABLE}"):
        return None
    cur.execute(
        f'SELECT delta_table_id, delta_version FROM "{schema}".{STATE_TABLE} '
        "WHERE table_name = %s",
        (table_name,),
    )
    row = cur.fetchone()
    return None if row is None else (row[0], int(row[1]))


def _exists(cur, qualified: str) -> bool:  # type: ignore[no-untyped-def]
    cur.execute("SELECT to_regclass(%s)", (qualified,))
    return cur.fetchone()[0] is not None
