"""Table maintenance against real Delta tables: compaction and Z-ordering change the files, never
the rows; the streaming ingest carries on across a compacted bronze and silver exactly once;
VACUUM deletes only what no retained version needs, and says how many files it deleted."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from lake_checks import assert_bronze_exactly_once, assert_lakehouse_matches
from support import isolated_lakehouse, produce

from lakehouse import io, maintenance
from lakehouse.ingest.operations import ingest
from lakehouse.plans.scenario import event_history
from lakehouse.tables import BRONZE_EVENTS, PLAN_EVENTS, PLAN_HISTORY, PLANS, SILVER_TABLES

pytestmark = pytest.mark.usefixtures("local_stack")


def _rows(spark, lake, table) -> list[tuple]:  # type: ignore[no-untyped-def]
    frame = io.read_table(spark, lake, table)
    return sorted((tuple(r) for r in frame.collect()), key=repr)


def test_compaction_keeps_rows_and_the_stream_goes_on_exactly_once(
    spark, config, tmp_path: Path
) -> None:
    lake = isolated_lakehouse(config, str(tmp_path / "warehouse"), "maintain")
    events, final = event_history(21, plans=30, changes=120)
    records = [(e.key(), e.value()) for e in events]
    thirds = len(records) // 3
    # Three ingest runs: three commits' worth of small files in bronze and in each silver table.
    positions = []
    for part in (records[:thirds], records[thirds : 2 * thirds]):
        positions += produce(lake, part)
        assert ingest(spark, lake, once=True) == 0
    tables = [BRONZE_EVENTS, PLAN_EVENTS, *SILVER_TABLES]
    before = {t.name: (_rows(spark, lake, t), maintenance.layout(spark, lake, t)) for t in tables}
    assert all(layout.files > 1 for _, layout in before.values()), before

    done = maintenance.maintain(spark, lake, tables, zorder=False, vacuum_files=False)

    assert [m.table for m in done] == [t.name for t in tables]
    for result, table in zip(done, tables, strict=True):
        rows, layout = before[table.name]
        assert _rows(spark, lake, table) == rows, table.name
        assert (result.before, result.after.files) == (layout, 1), result
        assert result.files_removed == layout.files and result.files_added == 1
        assert result.vacuumed_files is None
        last = io.delta_table(spark, lake, table).history(1).first()
        assert (last["operation"], last["operationParameters"]["zOrderBy"]) == ("OPTIMIZE", "[]")

    # The derived query reads silver.plan_events as a stream and gold reads silver's change
    # feed: both must ignore the compaction (dataChange=false) and see only the new events.
    positions += produce(lake, records[2 * thirds :])
    assert ingest(spark, lake, once=True) == 0
    assert_lakehouse_matches(spark, lake, final)
    assert_bronze_exactly_once(spark, lake, positions)
    plans_version = io.latest_version(spark, lake, PLANS)
    feed = (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", plans_version - 1)
        .option("endingVersion", plans_version - 1)
        .load(PLANS.path(lake))
    )
    assert feed.count() == 0  # the OPTIMIZE commit, one before the last ingest's MERGE

    # The derived query caught up: its source may be vacuumed whenever. A commit it has not
    # read yet: fine while recent, held back once it is older than the retention window.
    retain_s = lake.maintenance.vacuum_retain_hours * 3600
    now = time.time()
    assert maintenance.stream_source_vacuum_hold(spark, lake, now + 10 * retain_s) is None
    unread = io.read_table(spark, lake, PLAN_EVENTS).limit(1)
    io.append(unread.localCheckpoint(), lake, PLAN_EVENTS)
    assert maintenance.stream_source_vacuum_hold(spark, lake, now + retain_s - 3600) is None
    later = now + retain_s + 2 * 3600
    held = maintenance.stream_source_vacuum_hold(spark, lake, later)
    assert held is not None and "beyond the 168 h VACUUM retention" in held, held
    (result,) = maintenance.maintain(spark, lake, [PLAN_EVENTS], False, now_epoch=later)
    assert (result.vacuum_held, result.vacuumed_files) == (held, None)
    assert "VACUUM HELD BACK" in result.render()


def test_zorder_clusters_by_the_declared_key_and_vacuum_counts_what_it_deleted(
    spark, config, tmp_path: Path
) -> None:
    lake = isolated_lakehouse(config, str(tmp_path / "warehouse"), "zorder")
    events, _ = event_history(22, plans=20, changes=60)
    records = [(e.key(), e.value()) for e in events]
    for part in (records[:40], records[40:]):
        produce(lake, part)
        assert ingest(spark, lake, once=True) == 0
    rows = _rows(spark, lake, PLAN_HISTORY)
    compacted_version = io.latest_version(spark, lake, PLAN_HISTORY)

    (result,) = maintenance.maintain(spark, lake, [PLAN_HISTORY], zorder=True, vacuum_files=True)

    assert result.zorder_by == PLAN_HISTORY.zorder_by == ("plan_id",)
    assert _rows(spark, lake, PLAN_HISTORY) == rows
    optimize = io.delta_table(spark, lake, PLAN_HISTORY).history().where("operation = 'OPTIMIZE'")
    assert optimize.first()["operationParameters"]["zOrderBy"] == '["plan_id"]'
    # Everything is younger than the 7 days kept: VACUUM could delete nothing, so it did not
    # run (no VACUUM commit), and time travel still works.
    assert (result.vacuumed_files, result.vacuum_skipped) == (0, "no file older than 168 h")
    history = io.delta_table(spark, lake, PLAN_HISTORY).history().select("operation").collect()
    assert not {"VACUUM START", "VACUUM END"} & {row[0] for row in history}
    # The same files seen from 7 days and a second later: old enough, VACUUM could delete them.
    week_later = time.time() + 168 * 3600 + 1
    assert maintenance.vacuum_could_delete(spark, lake, PLAN_HISTORY, 168, week_later)
    assert not maintenance.vacuum_could_delete(spark, lake, PLAN_HISTORY, 168, time.time())
    old = io.read_version(spark, lake, PLAN_HISTORY, compacted_version)
    assert sorted((tuple(r) for r in old.collect()), key=repr) == rows

    # With no retention at all, the files the compaction replaced go (Delta's safety check
    # off for this one call), and the count says how many.
    folder = Path(PLAN_HISTORY.path(lake))
    files_before = len(list(folder.rglob("*.parquet")))
    spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
    try:
        deleted = maintenance.vacuum(spark, lake, PLAN_HISTORY, retain_hours=0)
    finally:
        spark.conf.unset("spark.databricks.delta.retentionDurationCheck.enabled")
    assert deleted >= result.files_removed  # the replaced files, and old change-feed files
    assert len(list(folder.rglob("*.parquet"))) == files_before - deleted
    assert len(list(folder.glob("*.parquet"))) == result.after.files
    assert _rows(spark, lake, PLAN_HISTORY) == rows
