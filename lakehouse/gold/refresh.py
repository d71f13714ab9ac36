"""Keeping gold tables up to date from silver: full rebuilds and incremental refreshes.

How a gold table knows what it has seen: every write to it carries, in the same Delta commit
(`userMetadata`), the versions of the source tables it was computed from (a `Watermark`). The
next run reads the sources' Change Data Feed from there to the sources' current versions, finds
the keys that changed and recomputes only those from the sources *at* those versions (time
travel). Because the watermark and the data commit together, a crash between two gold tables
leaves each one knowing exactly where it stands; a run with nothing new writes nothing.

A refresh falls back to a full rebuild when the table has no watermark (new, or written by
something else) or when the change feed for the range is gone (VACUUM / log retention).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import reduce

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StructField, StructType

from lakehouse import io
from lakehouse.config import Config
from lakehouse.gold import costs, services
from lakehouse.tables import (
    COST_TRENDS,
    PLAN_COSTS,
    PLAN_SERVICES,
    PLANS,
    SERVICE_LINK_COUNTS,
    SERVICE_PAIR_COUNTS,
    SERVICE_PAIRS,
    SERVICE_PATTERNS,
    SERVICES,
    Table,
)

log = logging.getLogger(__name__)

_USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"
_WATERMARK_KEY = "lakehouse.gold.watermark"
# Commits searched back for a watermark: only maintenance (OPTIMIZE, VACUUM's start and end)
# commits come between two gold writes, a few per night.
_WATERMARK_LOOKBACK = 50


class GoldError(RuntimeError):
    """A gold job cannot run; the message says what to do."""


@dataclass(frozen=True)
class Watermark:
    """The source table versions (and model version) a gold table's content reflects."""

    sources: dict[str, int]
    model_version: str | None = None

    def to_json(self) -> str:
        body = {"sources": self.sources, "model_version": self.model_version}
        return json.dumps({_WATERMARK_KEY: body}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> Watermark | None:
        try:
            body = json.loads(text or "")[_WATERMARK_KEY]
            return cls({k: int(v) for k, v in body["sources"].items()}, body.get("model_version"))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


@dataclass
class Refresh:
    """What one run did to one gold table."""

    table: str
    mode: str  # full | incremental | up-to-date
    keys_changed: int | None = None
    seconds: float = 0.0
    sources: dict[str, int] = field(default_factory=dict)
    # Why the run refreshed or rebuilt, when the cost estimate chose (RefreshCosts.choose).
    choice: str = ""

    def render(self) -> str:
        changed = "" if self.keys_changed is None else f", {self.keys_changed} keys changed"
        versions = ", ".join(f"{name} v{v}" for name, v in sorted(self.sources.items()))
        why = f"; {self.choice}" if self.choice else ""
        return f"{self.table}: {self.mode}{changed} in {self.seconds:.1f}s (from {versions}){why}"


_COSTS_FILE = "_refresh_costs.json"


@dataclass(frozen=True)
class RefreshCosts:
    """What a gold table's own last rebuild and last two refreshes took: the estimate that
    chooses between them. A refresh is mostly fixed cost at the sizes measured (1,000 or
    20 changed plans: 4.6 s against 4.1 s at 100k plans), so one measurement is taken as
    is; two with different key counts are extrapolated along their line."""

    full_s: float | None = None
    # (keys changed, seconds) of the latest refreshes, newest last.
    refreshes: tuple[tuple[int, float], ...] = ()

    def estimate(self, keys: int) -> float | None:
        """Seconds a refresh of `keys` changed keys should take (None: never measured)."""
        if not self.refreshes:
            return None
        (k1, s1), (k2, s2) = self.refreshes[0], self.refreshes[-1]
        if k1 == k2:
            return s2
        slope = max(0.0, (s2 - s1) / (k2 - k1))
        return max(min(s1, s2), s2 + slope * (keys - k2))

    def choose(self, keys: int) -> tuple[bool, str]:
        """(refresh?, the reason in words): refresh unless the estimate says rebuilding is
        cheaper; a table with no measured refresh or rebuild refreshes, to measure it."""
        estimate = self.estimate(keys)
        if estimate is None or self.full_s is None:
            return True, "refreshed: no measured refresh and rebuild to compare yet"
        if estimate <= self.full_s:
            return True, f"refreshed: estimate {estimate:.1f}s <= rebuild {self.full_s:.1f}s"
        return False, f"rebuilt: refresh estimate {estimate:.1f}s > rebuild {self.full_s:.1f}s"

    def after(self, result: Refresh) -> RefreshCosts:
        """These costs with `result`'s run taken in."""
        if result.mode == "full":
            return RefreshCosts(result.seconds, self.refreshes)
        if result.mode == "incremental" and result.keys_changed is not None:
            run = (result.keys_changed, round(result.seconds, 3))
            return RefreshCosts(self.full_s, (*self.refreshes, run)[-2:])
        return self

    def to_json(self) -> str:
        return json.dumps({"full_s": self.full_s, "refreshes": self.refreshes})

    @classmethod
    def from_json(cls, text: str | None) -> RefreshCosts:
        try:
            body = json.loads(text or "")
            full = body["full_s"]
            runs = tuple((int(k), float(s)) for k, s in body["refreshes"])
            return cls(None if full is None else float(full), runs)
        except (ValueError, KeyError, TypeError):
            return cls()


# ------------------------------------------------------------------------------- Delta helpers


def current_version(spark: SparkSession, config: Config, table: Table) -> int:
    if not io.table_exists(spark, config, table):
        raise GoldError(
            f"{table.name} does not exist at {table.path(config)}: run `lakehouse ingest --once` "
            "(or `lakehouse snapshot --bootstrap`) to build silver first"
        )
    return io.latest_version(spark, config, table)


def read_watermark(spark: SparkSession, config: Config, table: Table) -> Watermark | None:
    """The watermark of the table's latest commit that carries one (None: never refreshed, or
    its commit is older than the log keeps). Read from the log files, no Spark job."""
    if not io.table_exists(spark, config, table):
        return None
    latest = io.latest_version(spark, config, table)
    for version in range(latest, max(-1, latest - _WATERMARK_LOOKBACK), -1):
        mark = Watermark.from_json(io.commit_user_metadata(spark, config, table, version))
        if mark is not None:
            return mark
    return None


@contextmanager
def stamped(spark: SparkSession, watermark: Watermark) -> Iterator[None]:
    """Delta commits made inside carry `watermark` as their userMetadata."""
    spark.conf.set(_USER_METADATA, watermark.to_json())
    try:
        yield
    finally:
        spark.conf.unset(_USER_METADATA)


def overwrite(rows: DataFrame, config: Config, table: Table, watermark: Watermark) -> None:
    """Replace the table whole, stamped with `watermark`. Small aggregate tables are written
    this way even when refreshed: their new rows may read the current ones."""
    io.overwrite(rows, config, table, watermark.to_json())


def semi_join(
    rows: DataFrame, keys: DataFrame, columns: Sequence[str], how: str = "left_semi"
) -> DataFrame:
    """Rows whose `columns` match a row of `keys`, nulls matching nulls (`how="left_anti"`:
    the rows that match none)."""
    k = keys.select(*(F.col(c).alias(f"_k_{c}") for c in columns))
    match = reduce(lambda a, b: a & b, (rows[c].eqNullSafe(k[f"_k_{c}"]) for c in columns))
    return rows.join(k, match, how)


def replace_rows(
    target: DeltaTable,
    fresh: DataFrame,
    scope: DataFrame,
    keys: Sequence[str],
    columns: Sequence[str],
    ignore: Sequence[str] = (),
) -> None:
    """Make the rows of `target` whose keys are in `scope` equal to `fresh` (rows of keys in
    scope only): insert new keys, update rows that differ (`ignore`d columns aside), delete
    rows that have no fresh row. Equal rows are left alone, so their change feed stays quiet.
    Keys are compared null-safely."""
    k = scope.select(*keys).distinct().alias("k")
    f = fresh.withColumn("_present", F.lit(True)).alias("f")
    match = reduce(lambda a, b: a & b, (F.col(f"k.{c}").eqNullSafe(F.col(f"f.{c}")) for c in keys))
    source = k.join(f, match, "left").select(
        *(F.col(f"k.{c}").alias(c) for c in keys),
        *(F.col(f"f.{c}").alias(c) for c in columns if c not in keys),
        F.col("f._present").alias("_present"),
    )
    on = " AND ".join(f"t.{c} <=> s.{c}" for c in keys)
    compared = [c for c in columns if c not in keys and c not in ignore]
    differs = " OR ".join(f"NOT (t.{c} <=> s.{c})" for c in compared) or "false"
    values = {c: f"s.{c}" for c in columns}
    (
        target.alias("t")
        .merge(source.alias("s"), on)
        .whenMatchedDelete(condition="s._present IS NULL")
        .whenMatchedUpdate(condition=f"s._present AND ({differs})", set=values)
        .whenNotMatchedInsert(condition="s._present", values=values)
        .execute()
    )


# ------------------------------------------------------------------------------- refreshes
#
# Two kinds of gold table:
# - per-plan tables (plan_costs, plan_anomalies) grow with the data: the rows of changed plans
#   are recomputed and MERGEd in (`replace_rows`; deletion vectors, no file rewrites);
# - aggregate tables (cost_trends, service_*) are bounded by plan types x orgs x months or by the
#   service catalogue, whatever the number of plans: their new content is computed from the
#   change and the current rows, then written whole (`overwrite`), cheaper than a MERGE.


class ChangedPlans:
    """The plan ids that changed in silver since a watermark, read once per watermark for one
    run: the service tables of a run usually share a watermark and so one change feed read."""

    def __init__(self, spark: SparkSession, config: Config, now: dict[str, int]) -> None:
        self.spark = spark
        self.config = config
        self.now = now
        self._read: dict[tuple[tuple[str, int], ...], list[str] | None] = {}

    def since(self, mark: Watermark) -> list[str] | None:
        """Plan ids that changed in silver.plans or silver.plan_services between `mark` and
        `now` (collected: an increment is small), or None when a change feed is gone or more
        than gold.max_incremental_plans changed (the caller rebuilds, cheaper then)."""
        key = tuple(sorted(mark.sources.items()))
        if key not in self._read:
            self._read[key] = _read_changed_plan_ids(self.spark, self.config, mark, self.now)
        return self._read[key]


def _read_changed_plan_ids(
    spark: SparkSession, config: Config, since: Watermark, now: dict[str, int]
) -> list[str] | None:
    feeds = []
    for table in (PLANS, PLAN_SERVICES):
        after, upto = since.sources[table.name], now[table.name]
        if after == upto:
            continue
        feed = io.read_changes(spark, config, table, after, upto)
        if feed is None:
            return None
        feeds.append(feed.select("plan_id"))
    if not feeds:
        return []
    return collect_plan_ids(reduce(DataFrame.unionByName, feeds), config)


def collect_plan_ids(changed: DataFrame, config: Config) -> list[str] | None:
    """The distinct plan_id values of `changed`, or None when there are more than
    gold.max_incremental_plans (rebuilding is cheaper by then)."""
    limit = config.gold.max_incremental_plans
    ids = changed.select("plan_id").distinct().limit(limit + 1).collect()
    if len(ids) > limit:
        log.info("more than %d plans changed: rebuilding instead of refreshing", limit)
        return None
    return sorted(row["plan_id"] for row in ids)


def keys_frame(spark: SparkSession, column: str, values: Sequence[str]) -> DataFrame:
    """One string column `column` holding `values`: the key list of `with_keys`."""
    return spark.createDataFrame([(v,) for v in values], f"{column} string")


def with_keys(rows: DataFrame, keys: DataFrame, how: str = "left_semi") -> DataFrame:
    """Rows whose value in the one column of `keys` is among its values (`how="left_anti"`:
    is not; nulls match nothing). A broadcast join, not `Column.isin`: PySpark builds an isin
    of the 10,000 ids of a 1%-changed million-plan lake in ~6 s (a py4j call per literal),
    where the join costs ~1 s in all."""
    (column,) = keys.columns
    return rows.join(F.broadcast(keys), column, how)


def _silver_versions(spark: SparkSession, config: Config) -> dict[str, int]:
    return {t.name: current_version(spark, config, t) for t in (PLANS, PLAN_SERVICES)}


def begin_refresh(
    spark: SparkSession,
    config: Config,
    table: Table,
    sources: dict[str, int],
    full: bool,
    model_version: str | None = None,
) -> tuple[Refresh, Watermark | None]:
    """The run's Refresh record and the watermark to refresh from (None: rebuild). The table's
    watermark is usable when it names the same sources and model version; equal to the new
    one, the table is up to date."""
    if not io.table_exists(spark, config, table):
        io.ensure_table(spark, config, table)
    mark = read_watermark(spark, config, table)
    usable = (
        not full
        and mark is not None
        and set(mark.sources) == set(sources)
        and mark.model_version == model_version
    )
    if usable and mark is not None and mark.sources == sources:
        return Refresh(table.name, "up-to-date", 0, sources=sources), mark
    return Refresh(table.name, "incremental" if usable else "full", sources=sources), (
        mark if usable else None
    )


def cheaper_to_refresh(
    spark: SparkSession, config: Config, table: Table, result: Refresh, keys: int
) -> bool:
    """Whether applying `keys` changed keys beats a rebuild, by the table's own last runs
    (always true with gold.choose_by_cost off); the reason goes on `result` and the log."""
    if not config.gold.choose_by_cost:
        return True
    costs = RefreshCosts.from_json(io.read_side_file(spark, config, table, _COSTS_FILE))
    refresh, result.choice = costs.choose(keys)
    log.info("%s: %s", table.name, result.choice)
    return refresh


def unless_cheaper_to_rebuild(
    spark: SparkSession,
    config: Config,
    table: Table,
    result: Refresh,
    changed: list[str] | None,
) -> list[str] | None:
    """`changed` (the changed plan ids to refresh), or None (rebuild) when the table's own last
    runs say a rebuild is cheaper (`cheaper_to_refresh`)."""
    if changed is None or cheaper_to_refresh(spark, config, table, result, len(changed)):
        return changed
    return None


def finished(
    spark: SparkSession, config: Config, table: Table, result: Refresh, started: float
) -> Refresh:
    """`result` with its time, which is also kept for the table's next choice."""
    result.seconds = time.monotonic() - started
    costs = RefreshCosts.from_json(io.read_side_file(spark, config, table, _COSTS_FILE))
    io.write_side_file(spark, config, table, _COSTS_FILE, costs.after(result).to_json())
    return result


def refresh_plan_costs(spark: SparkSession, config: Config, full: bool = False) -> Refresh:
    """gold.plan_costs from silver.plans + silver.plan_services: recompute changed plans."""
    started = time.monotonic()
    sources = _silver_versions(spark, config)
    result, mark = begin_refresh(spark, config, PLAN_COSTS, sources, full)
    if result.mode == "up-to-date":
        return result
    plans = io.read_version(spark, config, PLANS, sources[PLANS.name])
    plan_services = io.read_version(spark, config, PLAN_SERVICES, sources[PLAN_SERVICES.name])
    changed = None if mark is None else ChangedPlans(spark, config, sources).since(mark)
    changed = unless_cheaper_to_rebuild(spark, config, PLAN_COSTS, result, changed)
    watermark = Watermark(sources)
    if changed is None:
        result.mode = "full"
        overwrite(costs.to_plan_costs(plans, plan_services), config, PLAN_COSTS, watermark)
    else:
        result.keys_changed = len(changed)
        keys = keys_frame(spark, "plan_id", changed)
        fresh = costs.to_plan_costs(with_keys(plans, keys), with_keys(plan_services, keys))
        target = io.delta_table(spark, config, PLAN_COSTS)
        with stamped(spark, watermark):
            replace_rows(target, fresh, keys, ["plan_id"], PLAN_COSTS.schema.fieldNames())
    return finished(spark, config, PLAN_COSTS, result, started)


def refresh_cost_trends(spark: SparkSession, config: Config, full: bool = False) -> Refresh:
    """gold.cost_trends from gold.plan_costs: recompute the trend groups whose plans changed
    (and the following month, whose month-over-month figures move with them)."""
    started = time.monotonic()
    version = current_version(spark, config, PLAN_COSTS)
    sources = {PLAN_COSTS.name: version}
    result, mark = begin_refresh(spark, config, COST_TRENDS, sources, full)
    if result.mode == "up-to-date":
        return result
    plan_costs = io.read_version(spark, config, PLAN_COSTS, version)
    watermark = Watermark(sources)
    groups = None
    if mark is not None:
        feed = io.read_changes(spark, config, PLAN_COSTS, mark.sources[PLAN_COSTS.name], version)
        if feed is not None:
            groups = costs.trend_groups(feed).persist()
            result.keys_changed = groups.count()
            if _most_trend_groups(spark, config, result) or not cheaper_to_refresh(
                spark, config, COST_TRENDS, result, result.keys_changed
            ):
                groups.unpersist()
                groups, result.keys_changed = None, None
    if groups is None:
        result.mode = "full"
        overwrite(costs.to_cost_trends(plan_costs), config, COST_TRENDS, watermark)
    else:
        rewrite_keys, needed = costs.trend_scope(groups)
        subset = semi_join(plan_costs, needed, costs.TREND_KEYS)
        fresh = semi_join(costs.to_cost_trends(subset), rewrite_keys, costs.TREND_KEYS)
        current = io.read_table(spark, config, COST_TRENDS)
        kept = semi_join(current, rewrite_keys, costs.TREND_KEYS, how="left_anti")
        overwrite(kept.unionByName(fresh), config, COST_TRENDS, watermark)
        groups.unpersist()
    return finished(spark, config, COST_TRENDS, result, started)


# Share of cost_trends' groups changed from which a refresh rebuilds: it recomputes the changed
# groups and their neighbouring months, at half of the groups that reads most of plan_costs, and
# its extra passes (the change feed, the kept rows) cost more than the rest saves (measured at
# 1M plans, 1% changed: 4,443 groups changed, refreshed in 13.8 s against a 9.9 s rebuild).
_TREND_REBUILD_SHARE = 0.5


def _most_trend_groups(spark: SparkSession, config: Config, result: Refresh) -> bool:
    """Whether `result.keys_changed` trend groups are most of cost_trends (the reason goes on
    `result` and the log): rebuilding is cheaper then, whatever the measured costs say."""
    groups = io.read_table(spark, config, COST_TRENDS).count()
    changed = result.keys_changed or 0
    if changed < _TREND_REBUILD_SHARE * groups:
        return False
    result.choice = f"rebuilt: {changed} of {groups} trend groups changed"
    log.info("%s: %s", COST_TRENDS.name, result.choice)
    return True


def refresh_service_tables(
    spark: SparkSession, config: Config, full: bool = False
) -> list[Refresh]:
    """gold.service_pair_counts and gold.service_link_counts by contribution from silver, then
    gold.service_patterns and gold.service_pairs derived whole from them."""
    sources = _silver_versions(spark, config)
    links = ServiceLinks(spark, config, sources)
    count = services.live_plan_count(links.plans_now).first()
    live_plans = spark.createDataFrame([(count[0] if count else 0,)], _LIVE_PLANS_SCHEMA)
    try:
        results = [
            _refresh_by_contribution(
                spark, config, links, full, SERVICE_PAIR_COUNTS,
                rebuild=lambda live: services.to_pair_counts(services.plan_pairs(live)),
                update=services.update_pair_counts,
            ),
            _refresh_by_contribution(
                spark, config, links, full, SERVICE_LINK_COUNTS,
                rebuild=services.to_link_counts,
                update=services.update_link_counts,
            ),
            _refresh_patterns(spark, config, sources, live_plans, full),
        ]  # fmt: skip
    finally:
        links.release()
    results.append(_refresh_pairs(spark, config, live_plans, full))
    return results


_LIVE_PLANS_SCHEMA = StructType([StructField("live_plans", LongType(), False)])


class ServiceLinks:
    """The live links of silver at one run's versions, and of the plans changed since a
    watermark before and after the change: selected once per watermark and kept in memory for
    the run (both tables maintained by contribution usually share a watermark; selecting a
    changed plan's links reads all of silver at each version)."""

    def __init__(self, spark: SparkSession, config: Config, now: dict[str, int]) -> None:
        self.spark = spark
        self.config = config
        self.now = now
        self.changed_plans = ChangedPlans(spark, config, now)
        self.plans_now = io.read_version(spark, config, PLANS, now[PLANS.name])
        self.plan_services_now = io.read_version(
            spark, config, PLAN_SERVICES, now[PLAN_SERVICES.name]
        )
        self._changes: dict[tuple[tuple[str, int], ...], tuple[DataFrame, DataFrame]] = {}

    def live(self) -> DataFrame:
        """Every live link now: what a rebuild reads."""
        return services.live_links(self.plans_now, self.plan_services_now)

    def before_and_after(self, mark: Watermark, changed: list[str]) -> tuple[DataFrame, DataFrame]:
        """The live links of the `changed` plans (ChangedPlans.since(mark)) at `mark` and now."""
        key = tuple(sorted(mark.sources.items()))
        if key not in self._changes:
            keys = keys_frame(self.spark, "plan_id", changed)
            before = _links_before(self.spark, self.config, mark, keys)
            after = services.live_links(
                with_keys(self.plans_now, keys), with_keys(self.plan_services_now, keys)
            )
            self._changes[key] = (before.persist(), after.persist())
        return self._changes[key]

    def release(self) -> None:
        for before, after in self._changes.values():
            before.unpersist()
            after.unpersist()
        self._changes.clear()


def _links_before(
    spark: SparkSession, config: Config, mark: Watermark, plan_ids: DataFrame
) -> DataFrame:
    """live_links of the plans in `plan_ids` (a `keys_frame`) as silver held them at `mark`."""
    return services.live_links(
        with_keys(io.read_version(spark, config, PLANS, mark.sources[PLANS.name]), plan_ids),
        with_keys(
            io.read_version(spark, config, PLAN_SERVICES, mark.sources[PLAN_SERVICES.name]),
            plan_ids,
        ),
    )


def _refresh_by_contribution(
    spark: SparkSession,
    config: Config,
    links: ServiceLinks,
    full: bool,
    table: Table,
    rebuild: Callable[[DataFrame], DataFrame],
    update: Callable[[DataFrame, DataFrame, DataFrame], DataFrame],
) -> Refresh:
    """A service table kept by contribution: rebuilt as `rebuild(every live link)`, or refreshed
    as `update(its current rows, the changed plans' links before, after)`, written whole."""
    started = time.monotonic()
    result, mark = begin_refresh(spark, config, table, links.now, full)
    if result.mode == "up-to-date":
        return result
    changed = None if mark is None else links.changed_plans.since(mark)
    changed = unless_cheaper_to_rebuild(spark, config, table, result, changed)
    watermark = Watermark(links.now)
    if changed is None or mark is None:
        result.mode = "full"
        overwrite(rebuild(links.live()), config, table, watermark)
    else:
        result.keys_changed = len(changed)
        before, after = links.before_and_after(mark, changed)
        overwrite(update(io.read_table(spark, config, table), before, after), config, table,
                  watermark)  # fmt: skip
    return finished(spark, config, table, result, started)


def _refresh_patterns(
    spark: SparkSession,
    config: Config,
    sources: dict[str, int],
    live_plans: DataFrame,
    full: bool,
) -> Refresh:
    """gold.service_patterns is derived whole from gold.service_link_counts (a few rows per
    service), which the same run has just brought to `sources`: its watermark is theirs."""
    started = time.monotonic()
    result, _ = begin_refresh(spark, config, SERVICE_PATTERNS, sources, full)
    if result.mode == "up-to-date":
        return result
    result.mode = "full"
    rows = services.patterns_from_link_counts(
        io.read_table(spark, config, SERVICE_LINK_COUNTS),
        io.read_table(spark, config, SERVICES),
        live_plans,
    )
    overwrite(rows, config, SERVICE_PATTERNS, Watermark(sources))
    result.seconds = time.monotonic() - started
    return result


def _refresh_pairs(
    spark: SparkSession, config: Config, live_plans: DataFrame, full: bool
) -> Refresh:
    """gold.service_pairs is small (pairs above the support floor): derived whole each time its
    inputs moved."""
    started = time.monotonic()
    sources = {
        t.name: current_version(spark, config, t) for t in (SERVICE_PAIR_COUNTS, SERVICE_PATTERNS)
    }
    result, _ = begin_refresh(spark, config, SERVICE_PAIRS, sources, full)
    if result.mode == "up-to-date":
        return result
    result.mode = "full"
    rows = services.to_service_pairs(
        io.read_version(spark, config, SERVICE_PAIR_COUNTS, sources[SERVICE_PAIR_COUNTS.name]),
        io.read_version(spark, config, SERVICE_PATTERNS, sources[SERVICE_PATTERNS.name]),
        live_plans,
        config.gold.pair_min_support,
    )
    overwrite(rows, config, SERVICE_PAIRS, Watermark(sources))
    result.seconds = time.monotonic() - started
    return result
