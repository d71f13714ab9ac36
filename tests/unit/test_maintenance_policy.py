"""Which tables `lakehouse maintain` takes, which it compacts, and on which night it Z-orders."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from lakehouse.config import load_config
from lakehouse.maintenance import (
    Layout,
    Maintained,
    compaction_needed,
    select_tables,
    zorder_today,
)
from lakehouse.tables import MAINTAINED_TABLES, PLAN_COSTS, PLAN_HISTORY, PLANS, TABLES_BY_NAME


def test_every_table_is_maintained_once() -> None:
    names = [t.name for t in MAINTAINED_TABLES]
    assert len(names) == len(set(names))
    assert set(TABLES_BY_NAME) <= set(names)
    assert {"quality.results", "quality.metrics"} <= set(names)


def test_select_tables_keeps_the_order_asked_and_defaults_to_all() -> None:
    assert select_tables([]) == list(MAINTAINED_TABLES)
    assert select_tables(["silver.plan_history", "silver.plans"]) == [PLAN_HISTORY, PLANS]
    with pytest.raises(ValueError, match=r"unknown table\(s\) gold\.costs, x; choose from "):
        select_tables(["silver.plans", "gold.costs", "x"])


@pytest.mark.parametrize(
    ("local_time", "zone", "expected"),
    [
        ("2026-11-29T02:00", "UTC", True),  # a Sunday
        ("2026-11-30T02:00", "UTC", False),  # Monday
        # 23:30 UTC on Saturday is already Sunday in Berlin: the flow's zone decides
        ("2026-11-28T23:30", "Europe/Berlin", True),
    ],
)
def test_zorder_night_is_the_weekday_in_the_flows_time_zone(
    local_time: str, zone: str, expected: bool
) -> None:
    config = load_config("local", environ={})
    config = dataclasses.replace(config, nightly=dataclasses.replace(config.nightly, timezone=zone))
    now = datetime.fromisoformat(local_time).replace(tzinfo=ZoneInfo("UTC"))
    assert config.maintenance.zorder_weekday == 6
    assert zorder_today(config, now.astimezone(ZoneInfo(zone))) is expected


def test_render_says_what_changed() -> None:
    result = Maintained(
        table="silver.plan_history",
        before=Layout(files=96, bytes=96 * 4096),
        after=Layout(files=1, bytes=300 * 1024),
        zorder_by=("plan_id",),
        files_removed=96,
        files_added=1,
        vacuumed_files=None,
        seconds=2.25,
        attempts=2,
    )
    assert result.render() == (
        "silver.plan_history: zorder by plan_id: 96 -> 1 files (mean 4 -> 300 KiB; 96 removed, "
        "1 added) in 2.2s after 2 attempts"
    )
    assert Layout(0, 0).mean_file_bytes == 0.0


@pytest.mark.parametrize(
    ("table", "files", "zorder", "expected"),
    [
        (PLANS, 0, False, False),  # empty: nothing to bin-pack
        (PLANS, 1, False, False),  # one file, no deletion vectors: OPTIMIZE is a no-op
        (PLANS, 2, False, True),
        (PLANS, 1, True, False),  # Z-order night, but silver.plans declares no Z-order key
        (PLAN_HISTORY, 1, True, True),  # its Z-order rewrites even a single file
        (PLAN_HISTORY, 1, False, False),
        (PLAN_COSTS, 1, False, True),  # deletion vectors: one file may need its rows purged
    ],
)
def test_compaction_is_skipped_only_where_optimize_cannot_change_the_table(
    table, files: int, zorder: bool, expected: bool
) -> None:
    assert compaction_needed(table, Layout(files, files * 1024), zorder) is expected


def test_render_says_when_vacuum_had_nothing_to_delete() -> None:
    result = Maintained(
        table="silver.services",
        before=Layout(files=1, bytes=5 * 1024),
        after=Layout(files=1, bytes=5 * 1024),
        zorder_by=(),
        files_removed=0,
        files_added=0,
        vacuumed_files=0,
        seconds=0.5,
        vacuum_skipped="no file older than 168 h",
    )
    assert result.render() == (
        "silver.services: compact: 1 -> 1 files (mean 5 -> 5 KiB; 0 removed, 0 added), "
        "no VACUUM needed (no file older than 168 h) in 0.5s"
    )
    assert not result.vacuumed
    assert dataclasses.replace(result, vacuum_skipped=None).vacuumed
    assert not dataclasses.replace(result, vacuum_skipped=None, vacuumed_files=None).vacuumed
