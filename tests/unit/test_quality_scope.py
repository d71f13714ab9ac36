"""Which rows a quality run reads: the scope choice and the changed rows of a change feed."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from frames import assert_frames_equal

from lakehouse.config import QualityConfig
from lakehouse.quality.rules import Complete, Unique
from lakehouse.quality.scope import Checked, changed_rows, choose_scope, unique_key

MONDAY = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
SUNDAY = datetime(2026, 12, 6, 2, 0, tzinfo=UTC)
ON = QualityConfig(changed_rows_only=True)
_MERGE = {"operation": "MERGE", "operationParameters": {}}
_APPEND = {"operation": "WRITE", "operationParameters": {"mode": "Append"}}
_OVERWRITE = {"operation": "WRITE", "operationParameters": {"mode": "Overwrite"}}
_AT_4 = Checked("id-1", 4, "suite-a")


@pytest.mark.parametrize(
    ("quality", "checked", "current", "history", "now", "expected"),
    [
        (ON, _AT_4, ("id-1", 6), [(5, _MERGE), (6, _APPEND)], MONDAY,
         (4, "rows changed in v5..v6")),
        (ON, _AT_4, ("id-1", 4), [], MONDAY, (4, "no change since the clean check of v4")),
        (ON, _AT_4, ("id-1", 5), [(5, _MERGE)], SUNDAY, (None, "every row: the sunday full pass")),
        (dataclasses.replace(ON, full_pass_weekday="monday"), _AT_4, ("id-1", 5), [(5, _MERGE)],
         SUNDAY, (4, "rows changed in v5..v5")),
        (ON, None, ("id-1", 5), [], MONDAY, (None, "every row: no clean check recorded")),
        (ON, _AT_4, ("id-2", 5), [(5, _MERGE)], MONDAY,
         (None, "every row: the table was re-created")),
        (ON, dataclasses.replace(_AT_4, suite_version="suite-old"), ("id-1", 5), [(5, _MERGE)],
         MONDAY, (None, "every row: the suite changed since the last clean check")),
        (ON, _AT_4, ("id-1", 3), [], MONDAY,
         (None, "every row: the last clean check was of v4, ahead")),
        (ON, _AT_4, ("id-1", 6), [(5, _MERGE), (6, _OVERWRITE)], MONDAY,
         (None, "every row: v6 is a WRITE (Overwrite)")),
        (ON, _AT_4, ("id-1", 5), [(5, None)], MONDAY,
         (None, "every row: commit v5 is no longer in the log")),
    ],
)  # fmt: skip
def test_choose_scope_narrows_to_the_change_only_when_it_can_be_trusted(
    quality, checked, current, history, now, expected
) -> None:
    scope = choose_scope(quality, "suite-a", checked, *current, history, now)
    assert (scope.after, scope.reason) == expected
    assert (scope.table_id, scope.version, scope.full) == (*current, expected[0] is None)


def test_checked_round_trips_and_unreadable_state_means_none() -> None:
    assert Checked.from_json(_AT_4.to_json()) == _AT_4
    assert Checked.from_json(None) is None
    assert Checked.from_json('{"version": "x"}') is None
    assert Checked.from_json("not json") is None


FEED = "plan_id string, cost double, _change_type string, _commit_version long"
TABLE = "plan_id string, cost double"


def test_changed_rows_are_the_last_image_per_key(spark) -> None:
    feed = spark.createDataFrame(
        [
            ("p1", 1.0, "update_preimage", 5),  # updated twice: only its latest row
            ("p1", -1.0, "update_postimage", 5),
            ("p1", -1.0, "update_preimage", 6),
            ("p1", 2.0, "update_postimage", 6),
            ("p2", 3.0, "insert", 5),  # inserted, then deleted: nothing to check
            ("p2", 3.0, "delete", 6),
            ("p3", 4.0, "delete", 5),  # deleted, then inserted again in the next commit
            ("p3", None, "insert", 6),
            ("p4", 5.0, "insert", 6),
        ],
        FEED,
    )
    expected = spark.createDataFrame([("p1", 2.0), ("p3", None), ("p4", 5.0)], TABLE)
    assert_frames_equal(changed_rows(feed, ("plan_id",)), expected)


def test_changed_rows_without_a_key_are_every_new_image(spark) -> None:
    feed = spark.createDataFrame(
        [("e1", 1.0, "insert", 5), ("e1", 1.0, "insert", 6), ("e2", 2.0, "delete", 6)], FEED
    )
    expected = spark.createDataFrame([("e1", 1.0), ("e1", 1.0)], TABLE)
    assert_frames_equal(changed_rows(feed), expected)
    empty = spark.createDataFrame([], FEED)
    assert_frames_equal(changed_rows(empty, ("plan_id",)), spark.createDataFrame([], TABLE))


def test_unique_key_is_the_first_uniqueness_rule() -> None:
    assert unique_key((Complete("org"), Unique(("plan_id",)), Unique(("a", "b")))) == ("plan_id",)
    assert unique_key((Complete("org"),)) == ()
