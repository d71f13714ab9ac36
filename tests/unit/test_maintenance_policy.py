"""Which tables `lakehouse maintain` takes, and on which night it Z-orders."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from lakehouse.config import load_config
from lakehouse.maintenance import Layout, Maintained, select_tables, zorder_today
from lakehouse.tables import MAINTAINED_TABLES, PLAN_HISTORY, PLANS, TABLES_BY_NAME


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
