"""The quality suites, one per table, declared as code next to the table names they guard.

A suite's version is a hash of its declared checks (thresholds from config included), so every
result row says exactly which rules it was judged by, and a changed rule shows up in history
without anyone remembering to bump a number.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from lakehouse import tables
from lakehouse.config import Config, QualityConfig
from lakehouse.quality.rules import (
    AllowedValues,
    Complete,
    Freshness,
    MeanChange,
    NonNegative,
    References,
    RowCountChange,
    Rule,
    Satisfies,
    Unique,
)
from lakehouse.tables import Table

LAYERS = ("bronze", "silver", "gold")

# The plan document's planType enum (lakehouse/schemas/plan.schema.json).
PLAN_TYPES = ("inNetwork", "outOfNetwork", "HMO", "PPO", "EPO", "POS")
# c, u, d from the change stream; r for rows loaded from a Mongo snapshot.
OPS = ("c", "u", "d", "r")
FLAGGED_BY = ("rule", "model", "rule+model")

# Plans describe coverage bought in this century; a date past today is a parsing error.
_CREATION_DATE_SANE = Satisfies(
    "creation_date within 1990-01-01 .. today",
    "creation_date IS NULL OR creation_date BETWEEN DATE'1990-01-01' AND current_date()",
)
# Clocks of producer and Spark may disagree a little; more than 5 minutes is a broken clock.
_NO_FUTURE_EVENTS = Satisfies(
    "event_ts not after updated_at (+5 min)",
    "event_ts <= updated_at + INTERVAL 5 MINUTES",
    severity="warning",
)


@dataclass(frozen=True)
class Suite:
    table: Table
    rules: tuple[Rule, ...]

    @property
    def layer(self) -> str:
        return self.table.name.split(".", 1)[0]

    @property
    def version(self) -> str:
        return hashlib.sha256(repr(self.rules).encode()).hexdigest()[:12]


def suites(config: Config) -> tuple[Suite, ...]:
    """Every suite, bronze first: the order a run checks them in."""
    q = config.quality
    return (
        *_bronze(q),
        *_silver(q),
        *_gold(q),
    )


def select(config: Config, layer: str | None = None, table: str | None = None) -> list[Suite]:
    """The suites of one layer or one table (both None: all). Unknown names raise ValueError
    listing the known ones."""
    chosen = list(suites(config))
    if layer is not None:
        if layer not in LAYERS:
            raise ValueError(f"unknown layer {layer!r}; known layers: {', '.join(LAYERS)}")
        chosen = [s for s in chosen if s.layer == layer]
    if table is not None:
        known = [s.table.name for s in chosen]
        if table not in known:
            raise ValueError(f"no quality suite for table {table!r}; suites: {', '.join(known)}")
        chosen = [s for s in chosen if s.table.name == table]
    return chosen


def _bronze(q: QualityConfig) -> tuple[Suite, ...]:
    return (
        Suite(
            tables.BRONZE_EVENTS,
            (
                # Exactly-once from Kafka: a replayed micro-batch must not append twice.
                Unique(("topic", "partition", "offset")),
                Complete("value"),
                Satisfies(
                    "kafka_ts not after ingested_at (+5 min)",
                    "kafka_ts IS NULL OR kafka_ts <= ingested_at + INTERVAL 5 MINUTES",
                    severity="warning",
                ),
                # Bronze only ever appends: fewer rows than last run means lost data.
                RowCountChange(q.row_count_max_drop, severity="error"),
            ),
        ),
        Suite(
            tables.SNAPSHOTS,
            (
                Unique(("snapshot_id", "plan_id")),
                Satisfies("live plans have a document", "is_deleted OR doc IS NOT NULL"),
            ),
        ),
    )


def _silver(q: QualityConfig) -> tuple[Suite, ...]:
    return (
        Suite(
            tables.PLANS,
            (
                Unique(("plan_id",)),
                Satisfies(
                    "live plans have a plan_type and costs",
                    "is_deleted OR (plan_type IS NOT NULL AND deductible IS NOT NULL "
                    "AND copay IS NOT NULL)",
                ),
                AllowedValues("plan_type", PLAN_TYPES),
                AllowedValues("op", OPS),
                NonNegative("deductible"),
                NonNegative("copay"),
                _CREATION_DATE_SANE,
                _NO_FUTURE_EVENTS,
                # Deleted plans stay as tombstones: silver.plans never shrinks.
                RowCountChange(q.row_count_max_drop, severity="error"),
                MeanChange("deductible", q.mean_max_change),
                Freshness(q.silver_max_age_minutes, "event_ts", q.freshness_severity),  # type: ignore[arg-type]
            ),
        ),
        Suite(
            tables.PLAN_SERVICES,
            (
                Unique(("plan_id", "planservice_id")),
                Complete("service_id"),
                References("service_id", tables.SERVICES.name, "service_id"),
                NonNegative("deductible"),
                NonNegative("copay"),
                RowCountChange(q.row_count_max_drop),
            ),
        ),
        Suite(
            tables.SERVICES,
            (
                Unique(("service_id",)),
                Complete("service_name", severity="warning"),
            ),
        ),
        Suite(
            tables.PLAN_HISTORY,
            (
                Unique(("plan_id", "version")),
                AllowedValues("op", OPS),
                Satisfies("valid_from <= valid_to", "valid_to IS NULL OR valid_from <= valid_to"),
                Satisfies("current rows are open-ended", "is_current = (valid_to IS NULL)"),
            ),
        ),
    )


def _gold(q: QualityConfig) -> tuple[Suite, ...]:
    fresh = Freshness(q.gold_max_age_minutes, None, q.freshness_severity)  # type: ignore[arg-type]
    return (
        Suite(
            tables.PLAN_COSTS,
            (
                Unique(("plan_id",)),
                AllowedValues("plan_type", PLAN_TYPES),
                NonNegative("plan_deductible"),
                NonNegative("plan_copay"),
                NonNegative("services_copay"),
                NonNegative("total_cost"),
                Satisfies(
                    "distinct services <= service links",
                    "distinct_service_count <= service_count",
                ),
                _CREATION_DATE_SANE,
                RowCountChange(q.row_count_max_drop),
                MeanChange("total_cost", q.mean_max_change),
                fresh,
            ),
        ),
        Suite(
            tables.COST_TRENDS,
            (
                Satisfies("groups hold plans", "plan_count >= 1"),
                NonNegative("total_cost_mean"),
                Satisfies(
                    "median <= p90",
                    "(deductible_median IS NULL OR deductible_median <= deductible_p90) AND "
                    "(total_cost_median IS NULL OR total_cost_median <= total_cost_p90)",
                ),
                fresh,
            ),
        ),
        Suite(
            tables.SERVICE_PATTERNS,
            (
                Unique(("service_id",)),
                References("service_id", tables.SERVICES.name, "service_id"),
                Satisfies("share_of_plans in (0, 1]", "share_of_plans > 0 AND share_of_plans <= 1"),
                Satisfies("plans_using <= links", "plans_using <= links"),
                fresh,
            ),
        ),
        Suite(
            tables.SERVICE_PAIR_COUNTS,
            (
                Unique(("service_a", "service_b")),
                Satisfies("pairs are ordered", "service_a < service_b AND plans_with_pair >= 1"),
            ),
        ),
        Suite(
            tables.SERVICE_PAIRS,
            (
                Unique(("service_a", "service_b")),
                Satisfies(
                    "support and confidences in (0, 1], lift > 0",
                    "support > 0 AND support <= 1 AND confidence_a_to_b > 0 "
                    "AND confidence_a_to_b <= 1 AND confidence_b_to_a > 0 "
                    "AND confidence_b_to_a <= 1 AND lift > 0",
                ),
                fresh,
            ),
        ),
        Suite(
            tables.PLAN_ANOMALIES,
            (
                Unique(("plan_id",)),
                References("plan_id", tables.PLAN_COSTS.name, "plan_id"),
                AllowedValues("flagged_by", FLAGGED_BY),
                Satisfies("is_anomaly iff flagged", "is_anomaly = (flagged_by IS NOT NULL)"),
                fresh,
            ),
        ),
    )
