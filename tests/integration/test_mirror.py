"""The gold -> PostgreSQL mirror against the real local PostgreSQL: explicit types, rows and
indexes; idempotence; readers never see a partial table; an unreachable server is retried; the
BI role reads the mirror and nothing else; a failed quality gate leaves the previous mirror."""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg2
import pytest
from pyspark.sql import functions as F
from support import TcpProxy, drop_schema, write_plan_costs

from lakehouse import clients, io, tables
from lakehouse.config import Config
from lakehouse.gold.refresh import replace_rows
from lakehouse.quality import suites
from lakehouse.quality.alerts import LogNotifier
from lakehouse.quality.gate import publish_if_clean
from lakehouse.serving import mirror

pytestmark = pytest.mark.usefixtures("local_stack")

NOW = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)


@pytest.fixture
def lake(config: Config, tmp_path: Path):
    """A private warehouse and mirror schema; the schema is dropped afterwards."""
    schema = f"gold_test_{uuid.uuid4().hex[:8]}"
    lake = dataclasses.replace(
        config,
        warehouse=str(tmp_path / "warehouse"),
        serving=dataclasses.replace(config.serving, schema=schema, attempts=8, backoff_s=0.5),
    )
    yield lake
    drop_schema(config, schema)


def _plan_costs(
    spark, config: Config, count: int, plan_version: int = 1, orgs: list[str | None] | None = None
) -> None:
    """gold.plan_costs with `count` rows (tricky text, nulls), watermarked like a refresh."""
    orgs = orgs or ["example.org", 'quote "q", comma', "line\nbreak", None, ""]
    rows = [
        (
            f"p-{n:05d}",
            plan_version,
            orgs[n % len(orgs)],
            suites.PLAN_TYPES[n % len(suites.PLAN_TYPES)],
            date(2024, 1 + n % 12, 1 + n % 28),
            date(2024, 1 + n % 12, 1),
            None if n % 7 == 0 else 100.0 + n,
            12.5,
            2 + n % 4,
            n % 3,
            1e7 + n,
            5.0,
            None,
            None if n % 7 == 0 else 1e7 + 112.5 + n,
            NOW,
        )
        for n in range(count)
    ]
    write_plan_costs(spark, config, rows)


def _query(config: Config, sql: str, user: str | None = None) -> list[tuple]:
    conn = clients.pg_connect(config, **({"user": user} if user else {}))
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def _assert_mirrored_as_in_delta(spark, lake: Config) -> None:
    """gold.plan_costs in PostgreSQL holds exactly the latest Delta version's rows."""
    mirrored = _query(lake, f"SELECT * FROM {lake.serving.schema}.plan_costs ORDER BY plan_id")
    source = sorted(
        io.read_table(spark, lake, tables.PLAN_COSTS).collect(), key=lambda r: r.plan_id
    )
    assert [tuple(r) for r in mirrored] == [
        tuple(v.replace(tzinfo=UTC) if isinstance(v, datetime) else v for v in r) for r in source
    ]


def test_publish_maps_types_copies_rows_and_indexes_keys(spark, lake: Config) -> None:
    _plan_costs(spark, lake, 40)
    result = mirror.publish_table(spark, lake, tables.PLAN_COSTS)
    schema = lake.serving.schema
    assert (result.target, result.rows, result.written) == (f"{schema}.plan_costs", 40, True)

    columns = _query(
        lake,
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        f"WHERE table_schema = '{schema}' AND table_name = 'plan_costs' ORDER BY ordinal_position",
    )
    expected_types = {
        "StringType()": "text",
        "LongType()": "bigint",
        "IntegerType()": "integer",
        "DoubleType()": "double precision",
        "DateType()": "date",
        "TimestampType()": "timestamp with time zone",
    }
    assert columns == [
        (f.name, expected_types[repr(f.dataType)], "YES" if f.nullable else "NO")
        for f in tables.GOLD_PLAN_COSTS.fields
    ]

    # every value survives the trip: quotes, commas, newlines, empty text versus null
    _assert_mirrored_as_in_delta(spark, lake)

    indexes = sorted(
        definition.split(" USING btree ")[1]
        for (definition,) in _query(
            lake,
            "SELECT indexdef FROM pg_indexes "
            f"WHERE schemaname = '{schema}' AND tablename = 'plan_costs'",
        )
    )
    assert indexes == ["(org)", "(plan_id)", "(plan_type, creation_month)"]

    # the same Delta version again: nothing written
    again = mirror.publish_table(spark, lake, tables.PLAN_COSTS)
    assert (again.written, again.delta_version) == (False, result.delta_version)
    assert _query(lake, f"SELECT table_name, delta_version, rows FROM {schema}._mirror_state") == [
        ("gold.plan_costs", result.delta_version, 40)
    ]
    # the same version number of a re-created table is a different table: mirrored again
    shutil.rmtree(tables.PLAN_COSTS.path(lake))
    spark._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()  # forget the deleted table's log
    _plan_costs(spark, lake, 12)
    recreated = mirror.publish_table(spark, lake, tables.PLAN_COSTS)
    assert (recreated.delta_version, recreated.written, recreated.rows) == (
        result.delta_version,
        True,
        12,
    )


def test_one_value_postgresql_cannot_hold_leaves_out_its_row_not_the_table(
    spark, lake: Config
) -> None:
    # A NUL in a text value (gold written before the contract refused control characters):
    # COPY would fail the whole table on it. The row is left out and counted; the rest is live.
    # The other gold tables do not exist: each is reported, none stops the others.
    _plan_costs(spark, lake, 9, orgs=["example.org", "nul\u0000here", "other.org"])
    lines: list[str] = []
    with pytest.raises(mirror.MirrorError, match=r"^5 table\(s\) not mirrored \(1 were\)"):
        mirror.publish_all(spark, lake, lines.append)
    assert lines[0].startswith(f"{lake.serving.schema}.plan_costs: 6 rows from gold.plan_costs")
    assert lines[0].endswith(
        "; 3 rows left out (a NUL character, which PostgreSQL text cannot hold)"
    )
    assert [line.split(": ")[0:2] for line in lines[1:]] == [
        [name, "NOT MIRRORED"]
        for name in ("cost_trends", "service_patterns", "service_pair_counts", "service_pairs",
                     "plan_anomalies")
    ]  # fmt: skip
    mirrored = _query(lake, f"SELECT DISTINCT org FROM {lake.serving.schema}.plan_costs")
    assert sorted(org for (org,) in mirrored) == ["example.org", "other.org"]


def _read_while(lake: Config, query: str, action: Callable[[], object]) -> list[tuple]:
    """What `query` returned, run over and over by a reader of its own (autocommit, so each
    run sees the latest commit) from before `action` starts until after it ended."""
    seen: list[tuple] = []
    stop = threading.Event()

    def poll() -> None:
        conn = clients.pg_connect(lake)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                while not stop.is_set():
                    cur.execute(query)
                    seen.append(cur.fetchone())
        finally:
            conn.close()

    reader = threading.Thread(target=poll, daemon=True)
    reader.start()
    try:
        time.sleep(0.3)
        action()
        time.sleep(0.3)
    finally:
        stop.set()
        reader.join(timeout=30)
    return seen


def test_readers_never_see_a_partial_table(spark, lake: Config) -> None:
    _plan_costs(spark, lake, 2000, plan_version=1)
    mirror.publish_table(spark, lake, tables.PLAN_COSTS)
    _plan_costs(spark, lake, 6000, plan_version=2)

    query = (
        "SELECT count(*), min(plan_version), max(plan_version) "
        f"FROM {lake.serving.schema}.plan_costs"
    )
    seen = _read_while(lake, query, lambda: mirror.publish_table(spark, lake, tables.PLAN_COSTS))
    assert set(seen) == {(2000, 1, 1), (6000, 2, 2)}
    # old, then new: never back, never in between
    switch = seen.index((6000, 2, 2))
    assert all(s == (2000, 1, 1) for s in seen[:switch])
    assert all(s == (6000, 2, 2) for s in seen[switch:])


def _merge_plan_costs(spark, lake: Config, fresh: list[tuple], scope: list[str]) -> None:
    """The per-plan refresh's MERGE: rows of `scope` plan ids become `fresh` (absent: deleted)."""
    replace_rows(
        io.delta_table(spark, lake, tables.PLAN_COSTS),
        spark.createDataFrame(fresh, tables.GOLD_PLAN_COSTS),
        spark.createDataFrame([(p,) for p in scope], "plan_id string"),
        ["plan_id"],
        tables.GOLD_PLAN_COSTS.fieldNames(),
    )


def test_changed_plans_are_applied_to_the_live_table_in_one_transaction(
    spark, lake: Config
) -> None:
    _plan_costs(spark, lake, 3000, plan_version=1)
    first = mirror.publish_table(spark, lake, tables.PLAN_COSTS)
    assert (first.mode, first.reason, first.rows) == ("full", "first publish", 3000)
    rows = {r.plan_id: r for r in io.read_table(spark, lake, tables.PLAN_COSTS).collect()}
    # 300 plans updated, 50 deleted, 50 new ones: the change the nightly MERGE makes
    updated = [(*rows[f"p-{n:05d}"][:1], 2, *rows[f"p-{n:05d}"][2:]) for n in range(300)]
    new = [(f"p-{n:05d}", 2, *rows["p-00001"][2:]) for n in range(3000, 3050)]
    deleted = [f"p-{n:05d}" for n in range(300, 350)]
    _merge_plan_costs(spark, lake, updated + new, [r[0] for r in updated + new] + deleted)

    applied = None

    def publish() -> None:
        nonlocal applied
        applied = mirror.publish_table(spark, lake, tables.PLAN_COSTS)

    query = (
        "SELECT count(*), count(*) FILTER (WHERE plan_version = 2) "
        f"FROM {lake.serving.schema}.plan_costs"
    )
    seen = set(_read_while(lake, query, publish))
    assert applied is not None
    merged_at = io.latest_version(spark, lake, tables.PLAN_COSTS)
    assert (applied.mode, applied.reason) == (
        "changes",
        f"v{first.delta_version + 1}..v{merged_at} change rows by key",
    )
    assert (applied.keys, applied.deleted, applied.rows) == (400, 350, 350)
    # readers saw the old table or the new one, nothing in between
    assert seen == {(3000, 0), (3000, 350)}
    _assert_mirrored_as_in_delta(spark, lake)
    state = f"SELECT delta_version, rows FROM {lake.serving.schema}._mirror_state"
    assert _query(lake, state) == [(merged_at, 3000)]

    # a compaction changes no row: the version is recorded, nothing else
    io.delta_table(spark, lake, tables.PLAN_COSTS).optimize().executeCompaction()
    compacted = mirror.publish_table(spark, lake, tables.PLAN_COSTS)
    assert (compacted.mode, compacted.keys, compacted.deleted, compacted.rows) == (
        "changes", 0, 0, 0,
    )  # fmt: skip
    assert _query(lake, state) == [(merged_at + 1, 3000)]

    # two commits before a publish: the last image of each key wins, a delete included
    again = {r.plan_id: r for r in io.read_table(spark, lake, tables.PLAN_COSTS).collect()}
    bumped = [(p, 5, *again[p][2:]) for p in ("p-00400", "p-00402")]
    _merge_plan_costs(spark, lake, bumped, ["p-00400", "p-00401", "p-00402"])
    back = [(p, 6, *again[p][2:]) for p in ("p-00401", "p-00402")]
    _merge_plan_costs(spark, lake, back, ["p-00400", "p-00401", "p-00402"])
    two = mirror.publish_table(spark, lake, tables.PLAN_COSTS)
    assert (two.mode, two.keys, two.deleted, two.rows) == ("changes", 3, 3, 2)
    _assert_mirrored_as_in_delta(spark, lake)

    # most of the table changed (1,600 plans deleted, 51 of them gone already): the staged
    # swap is cheaper
    _merge_plan_costs(spark, lake, [], [f"p-{n:05d}" for n in range(1600)])
    most = mirror.publish_table(spark, lake, tables.PLAN_COSTS)
    assert (most.mode, most.reason, most.rows) == (
        "full",
        "1,549 rows changed, more than 50% of the 2,999 mirrored",
        1450,
    )
    _assert_mirrored_as_in_delta(spark, lake)

    # a rebuild (overwrite) is swapped whole
    _plan_costs(spark, lake, 20, plan_version=3)
    rebuilt = mirror.publish_table(spark, lake, tables.PLAN_COSTS)
    version = io.latest_version(spark, lake, tables.PLAN_COSTS)
    assert (rebuilt.mode, rebuilt.reason, rebuilt.rows) == (
        "full",
        f"v{version} is a WRITE (Overwrite)",
        20,
    )
    _assert_mirrored_as_in_delta(spark, lake)


def test_a_quality_run_appended_is_published_by_its_run_id(spark, lake: Config) -> None:
    def run(run_id: str, checks: int) -> list[tuple]:
        return [
            (run_id, NOW, "gold", "gold.plan_costs", 3, "v1", f"check {n}", "row", "error",
             "passed", 1.0, None)
            for n in range(checks)
        ]  # fmt: skip

    table = tables.QUALITY_RESULTS_TABLE
    io.ensure_table(spark, lake, table)
    io.append(spark.createDataFrame(run("run-1", 6), tables.QUALITY_RESULTS), lake, table)
    assert mirror.publish_table(spark, lake, table).mode == "full"
    io.append(spark.createDataFrame(run("run-2", 2), tables.QUALITY_RESULTS), lake, table)
    second = mirror.publish_table(spark, lake, table)
    assert (second.mode, second.keys, second.deleted, second.rows) == ("changes", 1, 0, 2)
    mirrored = _query(
        lake,
        f"SELECT run_id, check_name FROM {lake.serving.schema}.quality_results ORDER BY 1, 2",
    )
    assert mirrored == [(r[0], r[6]) for r in run("run-1", 6) + run("run-2", 2)]


def test_unreachable_postgres_is_retried_until_it_is_back(spark, lake: Config) -> None:
    _plan_costs(spark, lake, 30)
    pg_port = int(lake.postgres.dsn.rsplit(":", 1)[1].split("/")[0])
    proxy = TcpProxy(pg_port)
    behind_proxy = dataclasses.replace(
        lake,
        postgres=dataclasses.replace(
            lake.postgres, dsn=lake.postgres.dsn.replace(f":{pg_port}/", f":{proxy.port}/")
        ),
    )
    # the proxy starts down ("PostgreSQL is stopped") and comes up after 3 seconds
    restored = threading.Timer(3.0, proxy.up)
    restored.start()
    try:
        started = time.monotonic()
        result = mirror.publish_table(spark, behind_proxy, tables.PLAN_COSTS)
        waited = time.monotonic() - started
    finally:
        restored.join()
        proxy.down()
    assert (result.written, result.rows) == (True, 30)
    assert waited >= 3.0  # it did wait for the server rather than fail
    assert _query(lake, f"SELECT count(*) FROM {lake.serving.schema}.plan_costs") == [(30,)]

    # down for good: a bounded number of attempts, then a clear error
    hopeless = dataclasses.replace(
        behind_proxy, serving=dataclasses.replace(behind_proxy.serving, attempts=2, backoff_s=0.1)
    )
    with pytest.raises(mirror.MirrorError, match="PostgreSQL unreachable after 2 attempts"):
        mirror.publish_table(spark, hopeless, tables.PLAN_COSTS)


def test_bi_role_reads_the_mirror_and_nothing_else(spark, lake: Config) -> None:
    _plan_costs(spark, lake, 5)
    mirror.publish_table(spark, lake, tables.PLAN_COSTS)
    schema, bi = lake.serving.schema, lake.serving.bi_role
    private = f"public.private_{uuid.uuid4().hex[:8]}"
    owner = clients.pg_connect(lake)
    try:
        with owner, owner.cursor() as cur:
            cur.execute(f"CREATE TABLE {private} AS SELECT 1 AS secret")
        assert _query(lake, f"SELECT count(*) FROM {schema}.plan_costs", user=bi) == [(5,)]
        for statement in (
            f"DELETE FROM {schema}.plan_costs",
            f"INSERT INTO {schema}.plan_costs (plan_id) VALUES ('x')",
            f"CREATE TABLE {schema}.mine (x int)",
            f"SELECT * FROM {private}",
            "CREATE TABLE public.mine (x int)",
        ):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                _query(lake, statement, user=bi)
    finally:
        with owner, owner.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {private}")
        owner.close()


def test_failed_gate_leaves_the_previous_mirror(spark, lake: Config) -> None:
    chosen = suites.select(lake, table="gold.plan_costs")

    def publish() -> None:
        mirror.publish_table(spark, lake, tables.PLAN_COSTS)

    _plan_costs(spark, lake, 20)
    assert publish_if_clean(spark, lake, publish, chosen, [LogNotifier()], now=NOW).published
    before = _query(lake, f"SELECT * FROM {lake.serving.schema}.plan_costs ORDER BY plan_id")

    # the next gold version has a negative cost: the gate holds it back
    _plan_costs(spark, lake, 25)
    bad = io.read_table(spark, lake, tables.PLAN_COSTS).withColumn("plan_copay", F.lit(-1.0))
    bad.write.format("delta").mode("overwrite").save(tables.PLAN_COSTS.path(lake))
    held = publish_if_clean(spark, lake, publish, chosen, [LogNotifier()], now=NOW)
    assert not held.published
    assert [r.check for r in held.run.blocking] == ["non_negative(plan_copay)"]
    after = _query(lake, f"SELECT * FROM {lake.serving.schema}.plan_costs ORDER BY plan_id")
    assert after == before and len(after) == 20
