"""Applying a batch of plan events to silver: `merge_plans` (the ingest's hot path) and
`apply_derived` (history, services, plan_services: the second query). The search index is kept
by its own consumer of the change topic (lakehouse.ingest.indexer), not here.

Every step is idempotent, so a batch replayed after a crash, at any point, converges on the same
tables:
- silver.plans: MERGE guarded by version (an older or equal version never overwrites);
- plan_history: insert (plan_id, version) if absent, then recompute valid_to of touched plans;
- plan_services / services: rebuilt from silver.plans for touched plans.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession

from lakehouse import io
from lakehouse.config import Config
from lakehouse.ingest import silver
from lakehouse.tables import (
    PLAN_EVENTS,
    PLAN_HISTORY,
    PLAN_SERVICES,
    PLANS,
    SERVICES,
    SILVER_PLAN_SERVICES,
    SILVER_TABLES,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApplyResult:
    events: int
    plans_touched: int
    plans_changed: int


def apply_plan_events(
    events: DataFrame, config: Config, timer: StepTimer | None = None
) -> ApplyResult:
    """Apply typed plan events (contract.to_plan_events layout) to every silver table: the
    plans MERGE, then the derived tables (a snapshot bootstrap, benchmarks). The streaming
    ingest runs the two halves in two queries, so silver.plans never waits for the rest. The
    caller should persist `events`; it is read several times. Steps are timed into `timer`."""
    timer = timer or StepTimer()
    with timer("count"):
        event_count = events.count()
    if event_count == 0:
        return ApplyResult(0, 0, 0)
    with timer("plans"):
        plans_changed = merge_plans(events, config)
    touched = apply_derived(events, config, timer)
    return ApplyResult(event_count, touched, plans_changed)


def apply_derived(events: DataFrame, config: Config, timer: StepTimer | None = None) -> int:
    """plan_history from the events, then services and plan_services rebuilt from silver.plans
    for the plans the events touch (silver.plans already holds them); returns how many plans
    that is. Idempotent: a replayed batch converges on the same rows."""
    spark = events.sparkSession
    timer = timer or StepTimer()
    with timer("history"):
        _merge_history(events, config)

    touched = events.select("plan_id").distinct()
    current = io.read_table(spark, config, PLANS).join(touched, "plan_id", "left_semi")
    current = current.persist()
    try:
        linked = silver.linked_services(current).persist()
        try:
            # Services first: a reader of plan_services then always finds every service it
            # links in silver.services (services are never deleted).
            with timer("services"):
                _merge_services(linked, config)
            with timer("plan_services"):
                _merge_plan_services(linked, touched, config)
        finally:
            linked.unpersist()
        return current.count()
    finally:
        current.unpersist()


class StepTimer:
    """Seconds spent per step of a batch, for the log (where does a slow batch go?)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[step] = time.monotonic() - started

    def __str__(self) -> str:
        return ", ".join(f"{step} {s:.1f}s" for step, s in self.seconds.items())


def merge_plans(events: DataFrame, config: Config) -> int:
    """MERGE the newest event of each plan into silver.plans, guarded by version; returns how
    many plan rows changed."""
    rows = silver.to_plan_rows(silver.latest_per_plan(events))
    table = io.delta_table(events.sparkSession, config, PLANS)
    before = io.latest_version(events.sparkSession, config, PLANS)
    (
        table.alias("t")
        .merge(rows.alias("s"), "t.plan_id = s.plan_id")
        .whenMatchedUpdateAll(condition="s.version > t.version")
        .whenNotMatchedInsertAll()
        .execute()
    )
    last = table.history(1).select("version", "operationMetrics").first()
    if last is None or last["version"] == before:
        return 0
    metrics = last["operationMetrics"]
    written = ("numTargetRowsUpdated", "numTargetRowsInserted")
    return sum(int(metrics.get(key, 0)) for key in written)


def _merge_history(events: DataFrame, config: Config) -> None:
    """One MERGE: insert versions not yet recorded, re-close the validity of touched plans."""
    history = io.delta_table(events.sparkSession, config, PLAN_HISTORY)
    touched = events.select("plan_id").distinct()
    existing = history.toDF().join(touched, "plan_id", "left_semi")
    changes = silver.history_changes(existing, silver.to_history_rows(events))
    (
        history.alias("t")
        .merge(changes.alias("s"), "t.plan_id = s.plan_id AND t.version = s.version")
        .whenMatchedUpdate(
            condition="NOT (t.valid_to <=> s.valid_to) OR t.is_current <> s.is_current",
            set={"valid_to": "s.valid_to", "is_current": "s.is_current"},
        )
        .whenNotMatchedInsertAll()
        .execute()
    )


def _merge_plan_services(linked: DataFrame, touched: DataFrame, config: Config) -> None:
    spark = linked.sparkSession
    table = io.delta_table(spark, config, PLAN_SERVICES)
    existing = table.toDF().join(touched, "plan_id", "left_semi")
    changes = silver.plan_service_changes(existing, silver.to_plan_service_rows(linked))
    columns = {name: f"s.{name}" for name in SILVER_PLAN_SERVICES.fieldNames()}
    (
        table.alias("t")
        .merge(changes.alias("s"), "t.plan_id = s.plan_id AND t.planservice_id = s.planservice_id")
        .whenMatchedDelete(condition="s._delete")
        .whenMatchedUpdate(
            condition="NOT s._delete AND t.plan_version <> s.plan_version", set=columns
        )
        .whenNotMatchedInsert(condition="NOT s._delete", values=columns)
        .execute()
    )


def _merge_services(linked: DataFrame, config: Config) -> None:
    (
        io.delta_table(linked.sparkSession, config, SERVICES)
        .alias("t")
        .merge(silver.to_service_rows(linked).alias("s"), "t.service_id = s.service_id")
        .whenMatchedUpdateAll(
            condition="s.seen_at > t.seen_at AND NOT (s.service_name <=> t.service_name "
            "AND s.org <=> t.org)"
        )
        .whenNotMatchedInsertAll()
        .execute()
    )


def ensure_silver_tables(spark: SparkSession, config: Config) -> None:
    for table in (PLAN_EVENTS, *SILVER_TABLES):
        io.ensure_table(spark, config, table)
