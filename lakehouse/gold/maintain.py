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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import reduce

from delta.tables import DeltaTable
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse import io
from lakehouse.config import Config
from lakehouse.gold import costs, services
from lakehouse.tables import (
    COST_TRENDS,
    GOLD_TABLES,
    PLAN_COSTS,
    PLAN_SERVICES,
    PLANS,
    SERVICE_PAIR_COUNTS,
    SERVICE_PAIRS,
    SERVICE_PATTERNS,
    SERVICES,
    Table,
)

log = logging.getLogger(__name__)

_USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"
_WATERMARK_KEY = "lakehouse.gold.watermark"


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

    def render(self) -> str:
        changed = "" if self.keys_changed is None else f", {self.keys_changed} keys changed"
        versions = ", ".join(f"{name} v{v}" for name, v in sorted(self.sources.items()))
        return f"{self.table}: {self.mode}{changed} in {self.seconds:.1f}s (from {versions})"


# ------------------------------------------------------------------------------- Delta helpers


def current_version(spark: SparkSession, config: Config, table: Table) -> int:
    if not io.table_exists(spark, config, table):
        raise GoldError(
            f"{table.name} does not exist at {table.path(config)}: run `lakehouse ingest --once` "
            "(or `lakehouse snapshot --bootstrap`) to build silver first"
        )
    row = io.delta_table(spark, config, table).history(1).select("version").first()
    assert row is not None, f"{table.name} has no commits"
    return int(row["version"])


def read_at(spark: SparkSession, config: Config, table: Table, version: int) -> DataFrame:
    return spark.read.format("delta").option("versionAsOf", version).load(table.path(config))


def read_watermark(spark: SparkSession, config: Config, table: Table) -> Watermark | None:
    """The watermark of the table's latest commit that carries one (None: never refreshed)."""
    if not io.table_exists(spark, config, table):
        return None
    history = (
        io.delta_table(spark, config, table)
        .history()
        .where(F.col("userMetadata").contains(_WATERMARK_KEY))
        .orderBy(F.col("version").desc())
        .select("userMetadata")
        .first()
    )
    return None if history is None else Watermark.from_json(history["userMetadata"])


@contextmanager
def stamped(spark: SparkSession, watermark: Watermark) -> Iterator[None]:
    """Delta commits made inside carry `watermark` as their userMetadata."""
    spark.conf.set(_USER_METADATA, watermark.to_json())
    try:
        yield
    finally:
        spark.conf.unset(_USER_METADATA)


def changes(
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


def overwrite(rows: DataFrame, config: Config, table: Table, watermark: Watermark) -> None:
    (
        rows.select(*table.schema.fieldNames())
        .write.format("delta")
        .mode("overwrite")
        .option("userMetadata", watermark.to_json())
        .save(table.path(config))
    )


def semi_join(rows: DataFrame, keys: DataFrame, columns: Sequence[str]) -> DataFrame:
    """Rows whose `columns` match a row of `keys`, nulls matching nulls."""
    k = keys.select(*(F.col(c).alias(f"_k_{c}") for c in columns))
    match = reduce(lambda a, b: a & b, (rows[c].eqNullSafe(k[f"_k_{c}"]) for c in columns))
    return rows.join(k, match, "left_semi")


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


def ensure_gold_tables(spark: SparkSession, config: Config) -> None:
    for table in GOLD_TABLES:
        io.ensure_table(spark, config, table)


# ------------------------------------------------------------------------------- refreshes


def _changed_plan_ids(
    spark: SparkSession, config: Config, since: Watermark, now: dict[str, int]
) -> DataFrame | None:
    """Plan ids that changed in silver.plans or silver.plan_services between two watermarks,
    or None when a change feed is gone (the caller rebuilds)."""
    feeds = []
    for table in (PLANS, PLAN_SERVICES):
        after, upto = since.sources[table.name], now[table.name]
        if after == upto:
            continue
        feed = changes(spark, config, table, after, upto)
        if feed is None:
            return None
        feeds.append(feed.select("plan_id"))
    if not feeds:
        return spark.createDataFrame([], "plan_id string")
    return reduce(DataFrame.unionByName, feeds).distinct()


def _silver_versions(spark: SparkSession, config: Config) -> dict[str, int]:
    return {t.name: current_version(spark, config, t) for t in (PLANS, PLAN_SERVICES)}


def _start(
    spark: SparkSession, config: Config, table: Table, sources: dict[str, int], full: bool
) -> tuple[Refresh, Watermark | None]:
    """The run's Refresh record and the watermark to refresh from (None: rebuild)."""
    io.ensure_table(spark, config, table)
    mark = read_watermark(spark, config, table)
    usable = mark is not None and set(mark.sources) == set(sources) and not full
    if usable and mark is not None and mark.sources == sources:
        return Refresh(table.name, "up-to-date", 0, sources=sources), mark
    return Refresh(table.name, "incremental" if usable else "full", sources=sources), (
        mark if usable else None
    )


def refresh_plan_costs(spark: SparkSession, config: Config, full: bool = False) -> Refresh:
    """gold.plan_costs from silver.plans + silver.plan_services: recompute changed plans."""
    started = time.monotonic()
    sources = _silver_versions(spark, config)
    result, mark = _start(spark, config, PLAN_COSTS, sources, full)
    if result.mode == "up-to-date":
        return result
    plans = read_at(spark, config, PLANS, sources[PLANS.name])
    plan_services = read_at(spark, config, PLAN_SERVICES, sources[PLAN_SERVICES.name])
    changed = None if mark is None else _changed_plan_ids(spark, config, mark, sources)
    watermark = Watermark(sources)
    if changed is None:
        result.mode = "full"
        rows = costs.to_plan_costs(plans, plan_services)
        overwrite(rows, config, PLAN_COSTS, watermark)
    else:
        changed = changed.persist()
        try:
            result.keys_changed = changed.count()
            fresh = costs.to_plan_costs(
                plans.join(changed, "plan_id", "left_semi"),
                plan_services.join(changed, "plan_id", "left_semi"),
            )
            target = io.delta_table(spark, config, PLAN_COSTS)
            with stamped(spark, watermark):
                replace_rows(target, fresh, changed, ["plan_id"], PLAN_COSTS.schema.fieldNames())
        finally:
            changed.unpersist()
    result.seconds = time.monotonic() - started
    return result


def refresh_cost_trends(spark: SparkSession, config: Config, full: bool = False) -> Refresh:
    """gold.cost_trends from gold.plan_costs: recompute the trend groups whose plans changed
    (and the following month, whose month-over-month figures move with them)."""
    started = time.monotonic()
    version = current_version(spark, config, PLAN_COSTS)
    sources = {PLAN_COSTS.name: version}
    result, mark = _start(spark, config, COST_TRENDS, sources, full)
    if result.mode == "up-to-date":
        return result
    plan_costs = read_at(spark, config, PLAN_COSTS, version)
    watermark = Watermark(sources)
    feed = None
    if mark is not None:
        feed = changes(spark, config, PLAN_COSTS, mark.sources[PLAN_COSTS.name], version)
    if feed is None:
        result.mode = "full"
        overwrite(costs.to_cost_trends(plan_costs), config, COST_TRENDS, watermark)
    else:
        groups = costs.trend_groups(feed).persist()
        try:
            result.keys_changed = groups.count()
            rewrite, needed = costs.trend_scope(groups)
            subset = semi_join(plan_costs, needed, costs.TREND_KEYS)
            fresh = semi_join(costs.to_cost_trends(subset), rewrite, costs.TREND_KEYS)
            target = io.delta_table(spark, config, COST_TRENDS)
            with stamped(spark, watermark):
                replace_rows(
                    target, fresh, rewrite, costs.TREND_KEYS, COST_TRENDS.schema.fieldNames()
                )
        finally:
            groups.unpersist()
    result.seconds = time.monotonic() - started
    return result


def refresh_service_tables(
    spark: SparkSession, config: Config, full: bool = False
) -> list[Refresh]:
    """gold.service_patterns, gold.service_pair_counts and gold.service_pairs from silver."""
    sources = _silver_versions(spark, config)
    plans_now = read_at(spark, config, PLANS, sources[PLANS.name])
    links_now = services.live_links(
        plans_now, read_at(spark, config, PLAN_SERVICES, sources[PLAN_SERVICES.name])
    )
    live_plans = services.live_plan_count(plans_now).persist()
    try:
        results = [
            _refresh_pair_counts(spark, config, sources, links_now, full),
            _refresh_patterns(spark, config, sources, links_now, live_plans, full),
        ]
        results.append(_refresh_pairs(spark, config, live_plans, full))
        return results
    finally:
        live_plans.unpersist()


def _links_before(spark: SparkSession, config: Config, mark: Watermark) -> DataFrame:
    return services.live_links(
        read_at(spark, config, PLANS, mark.sources[PLANS.name]),
        read_at(spark, config, PLAN_SERVICES, mark.sources[PLAN_SERVICES.name]),
    )


def _refresh_pair_counts(
    spark: SparkSession, config: Config, sources: dict[str, int], links_now: DataFrame, full: bool
) -> Refresh:
    started = time.monotonic()
    result, mark = _start(spark, config, SERVICE_PAIR_COUNTS, sources, full)
    if result.mode == "up-to-date":
        return result
    changed = None if mark is None else _changed_plan_ids(spark, config, mark, sources)
    watermark = Watermark(sources)
    if changed is None or mark is None:
        result.mode = "full"
        rows = services.to_pair_counts(services.plan_pairs(links_now))
        overwrite(rows, config, SERVICE_PAIR_COUNTS, watermark)
    else:
        changed = changed.persist()
        try:
            result.keys_changed = changed.count()
            old = services.plan_pairs(
                _links_before(spark, config, mark).join(changed, "plan_id", "left_semi")
            )
            new = services.plan_pairs(links_now.join(changed, "plan_id", "left_semi"))
            delta = services.pair_count_changes(old, new)
            target = io.delta_table(spark, config, SERVICE_PAIR_COUNTS)
            with stamped(spark, watermark):
                (
                    target.alias("t")
                    .merge(
                        delta.alias("s"), "t.service_a = s.service_a AND t.service_b = s.service_b"
                    )
                    .whenMatchedDelete(condition="t.plans_with_pair + s.delta = 0")
                    .whenMatchedUpdate(set={"plans_with_pair": "t.plans_with_pair + s.delta"})
                    .whenNotMatchedInsert(
                        values={
                            "service_a": "s.service_a",
                            "service_b": "s.service_b",
                            "plans_with_pair": "s.delta",
                        }
                    )
                    .execute()
                )
        finally:
            changed.unpersist()
    result.seconds = time.monotonic() - started
    return result


def _refresh_patterns(
    spark: SparkSession,
    config: Config,
    sources: dict[str, int],
    links_now: DataFrame,
    live_plans: DataFrame,
    full: bool,
) -> Refresh:
    started = time.monotonic()
    result, mark = _start(spark, config, SERVICE_PATTERNS, sources, full)
    if result.mode == "up-to-date":
        return result
    names = io.read_table(spark, config, SERVICES)
    changed = None if mark is None else _changed_plan_ids(spark, config, mark, sources)
    watermark = Watermark(sources)
    if changed is None or mark is None:
        result.mode = "full"
        rows = services.to_service_patterns(links_now, names, live_plans)
        overwrite(rows, config, SERVICE_PATTERNS, watermark)
    else:
        before = _links_before(spark, config, mark)
        affected = (
            before.join(changed, "plan_id", "left_semi")
            .select("service_id")
            .unionByName(links_now.join(changed, "plan_id", "left_semi").select("service_id"))
            .distinct()
            .persist()
        )
        try:
            result.keys_changed = affected.count()
            recomputed = services.to_service_patterns(
                links_now.join(affected, "service_id", "left_semi"), names, live_plans
            )
            target = io.delta_table(spark, config, SERVICE_PATTERNS)
            # Every share moves with the number of live plans, so the scope is the whole table.
            untouched = target.toDF().join(affected, "service_id", "left_anti")
            fresh = recomputed.unionByName(services.with_share(untouched, live_plans))
            scope = target.toDF().select("service_id").unionByName(affected)
            with stamped(spark, watermark):
                replace_rows(
                    target, fresh, scope, ["service_id"], SERVICE_PATTERNS.schema.fieldNames()
                )
        finally:
            affected.unpersist()
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
    result, _ = _start(spark, config, SERVICE_PAIRS, sources, full)
    if result.mode == "up-to-date":
        return result
    result.mode = "full"
    rows = services.to_service_pairs(
        read_at(spark, config, SERVICE_PAIR_COUNTS, sources[SERVICE_PAIR_COUNTS.name]),
        read_at(spark, config, SERVICE_PATTERNS, sources[SERVICE_PATTERNS.name]),
        live_plans,
        config.gold.pair_min_support,
    )
    overwrite(rows, config, SERVICE_PAIRS, Watermark(sources))
    result.seconds = time.monotonic() - started
    return result
