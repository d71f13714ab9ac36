"""Which rows a quality run checks in a table: every row, or only the rows changed since the
table's last clean check.

A suite's row-level rules (completeness, ranges, allowed values, references, conditions) hold
for a table when they held at its last clean check and hold for every row written since; a
row's uniqueness is checked among all the rows that share its key. So when every commit since
that check changed rows one by one (`lakehouse.commits`), those rules read only the change feed.
The rules about the table as a whole (row-count and mean anomalies, freshness) read the whole
table as before (only the columns they need). A table is checked in full on the configured
weekday, and whenever the narrower pass cannot be trusted: no clean check recorded, the suite or
the table changed, a rebuild or a vacuumed commit in between.

The last clean check of a table is kept in its folder (`_quality_checked.json`); it advances
only when a run's row-level checks of the table all passed, so a failed row is checked again at
every run until it is fixed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lakehouse import commits, io
from lakehouse.config import WEEKDAYS, Config, QualityConfig
from lakehouse.quality.rules import (
    AllowedValues,
    Complete,
    NonNegative,
    References,
    Rule,
    Satisfies,
    Unique,
)
from lakehouse.quality.suites import Suite

CHECKED_FILE = "_quality_checked.json"
# Rules a row meets or breaks on its own: checked on the changed rows alone.
ROW_RULES = (Complete, NonNegative, AllowedValues, References, Satisfies)
# The change feed's own columns, and the images that carry a row's new content.
_FEED_COLUMNS = ("_change_type", "_commit_version", "_commit_timestamp")
_NEW_IMAGES = ("insert", "update_postimage")


@dataclass(frozen=True)
class Checked:
    """The last clean check of a table: its id, the version checked and the suite's version."""

    table_id: str
    version: int
    suite_version: str

    def to_json(self) -> str:
        return json.dumps(
            {"table_id": self.table_id, "version": self.version, "suite": self.suite_version}
        )

    @classmethod
    def from_json(cls, text: str | None) -> Checked | None:
        if not text:
            return None
        try:
            body = json.loads(text)
            return cls(str(body["table_id"]), int(body["version"]), str(body["suite"]))
        except (ValueError, KeyError, TypeError):
            return None  # unreadable: the next run is a full one


@dataclass(frozen=True)
class Scope:
    """What a run checks in one table: `version`, every row (`after` None) or the rows changed
    after version `after`; `reason` says why."""

    table_id: str
    version: int
    after: int | None
    reason: str

    @property
    def full(self) -> bool:
        return self.after is None


def choose_scope(
    quality: QualityConfig,
    suite_version: str,
    checked: Checked | None,
    table_id: str,
    version: int,
    history: Sequence[commits.Commit],
    now: datetime,
) -> Scope:
    """The scope of a run at `now` with `quality.changed_rows_only` on (see the module doc);
    `history`: the commits after the last clean check up to `version`."""

    def full(reason: str) -> Scope:
        return Scope(table_id, version, None, reason)

    today = WEEKDAYS[now.weekday()]
    if today == quality.full_pass_weekday:
        return full(f"every row: the {today} full pass")
    if checked is None:
        return full("every row: no clean check recorded")
    if checked.table_id != table_id:
        return full("every row: the table was re-created")
    if checked.suite_version != suite_version:
        return full("every row: the suite changed since the last clean check")
    if checked.version > version:
        return full(f"every row: the last clean check was of v{checked.version}, ahead")
    rebuilt = commits.first_rebuild(history)
    if rebuilt is not None:
        return full(f"every row: {rebuilt}")
    if checked.version == version:
        return Scope(table_id, version, version, f"no change since the clean check of v{version}")
    return Scope(
        table_id, version, checked.version, f"rows changed in v{checked.version + 1}..v{version}"
    )


def changed_rows(feed: DataFrame, key: Sequence[str] = ()) -> DataFrame:
    """The rows the feed's commits wrote, in the table's columns (the feed's own columns
    dropped). With `key`: each key's last image only, and none for a key whose last image is a
    delete (a row updated twice is checked as it is now, not as it was in between)."""
    images = feed.where(F.col("_change_type") != "update_preimage")
    if key:
        latest = Window.partitionBy(*key).orderBy(
            F.col("_commit_version").desc(), F.col("_change_type").isin(*_NEW_IMAGES).desc()
        )
        images = images.withColumn("_n", F.row_number().over(latest)).where("_n = 1").drop("_n")
    return images.where(F.col("_change_type").isin(*_NEW_IMAGES)).drop(*_FEED_COLUMNS)


def unique_key(rules: Sequence[Rule]) -> tuple[str, ...]:
    """The key of the suite's first uniqueness rule (the table's grain), if it has one."""
    return next((r.columns for r in rules if isinstance(r, Unique)), ())


# ------------------------------------------------------------------------------------ I/O


def plan_scope(spark: SparkSession, config: Config, suite: Suite, now: datetime) -> Scope:
    """The scope of checking the suite's table now, at its latest version."""
    table = suite.table
    table_id, version = io.snapshot_identity(spark, config, table)
    checked = Checked.from_json(io.read_side_file(spark, config, table, CHECKED_FILE))
    history = (
        [] if checked is None else commits.since(spark, config, table, checked.version, version)
    )
    scope = choose_scope(config.quality, suite.version, checked, table_id, version, history, now)
    if scope.full or scope.after == version:
        return scope
    if io.read_changes(spark, config, table, scope.after, version) is None:
        return Scope(table_id, version, None, "every row: the change feed is no longer available")
    return scope


def record_clean_check(spark: SparkSession, config: Config, suite: Suite, scope: Scope) -> None:
    checked = Checked(scope.table_id, scope.version, suite.version)
    io.write_side_file(spark, config, suite.table, CHECKED_FILE, checked.to_json())
