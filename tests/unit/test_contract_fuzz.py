"""Seeded fuzzing of the change-event contract through the real silver step.

Two thousand mutations of valid events (bytes flipped, records cut short, fields retyped,
dropped or duplicated, numbers and strings stretched, control characters inserted) go, with the
valid events around them, through the contract check, the quarantine split and one silver batch
written to real Delta tables. The expectation is computed in Python, record by record, from the
contract's own verdict (`contract_verdict`): every position lands in exactly one of quarantine
and events with the reason Python gives it, and silver holds, per plan, the valid record of the
highest version (first delivered on a tie). No service is needed (no search index).
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from frames import assert_frames_equal
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import (
    BooleanType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from lakehouse import io
from lakehouse.config import Config
from lakehouse.ingest import contract
from lakehouse.ingest.apply import apply_plan_events, ensure_silver_tables
from lakehouse.plans.scenario import RawRecord, event_history, mutated_records
from lakehouse.tables import BRONZE_PLAN_EVENTS, PLAN_HISTORY, PLANS

SEED = 20261203
MUTATED = 2_000
TOPIC = "plans.changes"
INGESTED = datetime(2026, 12, 3, 2, 0, 0)

POSITION_REASON = StructType(
    [
        StructField("partition", IntegerType()),
        StructField("offset", LongType()),
        StructField("reason", StringType()),
    ]
)
SILVER_WINNER = StructType(
    [
        StructField("plan_id", StringType()),
        StructField("version", LongType()),
        StructField("is_deleted", BooleanType()),
        StructField("event_id", StringType()),
        StructField("kafka_partition", IntegerType()),
        StructField("kafka_offset", LongType()),
    ]
)
HISTORY_KEY = StructType([StructField("plan_id", StringType()), StructField("version", LongType())])


@dataclasses.dataclass(frozen=True)
class Position:
    partition: int
    offset: int
    record: RawRecord


def _positions() -> list[Position]:
    """Valid events on partition 0, in source order; their mutations on partition 1."""
    events, _ = event_history(SEED, plans=30, changes=60)
    valid = [RawRecord(e.key(), e.value()) for e in events]
    mutated = mutated_records(SEED, events, MUTATED)
    return [Position(0, i, r) for i, r in enumerate(valid)] + [
        Position(1, i, r) for i, r in enumerate(mutated)
    ]


@pytest.fixture(scope="module")
def positions() -> list[Position]:
    return _positions()


@pytest.fixture(scope="module")
def checked(spark: SparkSession, positions: list[Position]) -> Iterator[DataFrame]:
    rows = [
        (p.record.key, p.record.value, TOPIC, p.partition, p.offset, None, INGESTED)
        for p in positions
    ]
    frame = contract.check_contract(spark.createDataFrame(rows, BRONZE_PLAN_EVENTS)).persist()
    yield frame
    frame.unpersist()


def test_the_mutations_exercise_many_verdicts_and_leave_some_records_valid(
    positions: list[Position],
) -> None:
    # Guards the fuzzer itself: a mutator that stopped mutating (or broke everything the same
    # way) would make the pipeline assertions below trivially true.
    reasons = collections.Counter(
        contract.contract_verdict(p.record.key, p.record.value)[0]
        for p in positions
        if p.partition == 1
    )
    assert len(reasons) >= 12, reasons
    assert 50 <= reasons[None] <= MUTATED // 2, reasons
    assert contract.CHECK_FAILED not in reasons, reasons


def test_every_position_is_quarantined_or_an_event_with_the_contracts_reason(
    spark: SparkSession, positions: list[Position], checked: DataFrame
) -> None:
    quarantine = contract.to_quarantine(checked).select("partition", "offset", "reason")
    events = contract.to_plan_events(checked).selectExpr(
        "kafka_partition AS partition", "kafka_offset AS offset", "CAST(NULL AS STRING) AS reason"
    )
    expected = spark.createDataFrame(
        [
            (p.partition, p.offset, contract.contract_verdict(p.record.key, p.record.value)[0])
            for p in positions
        ],
        POSITION_REASON,
    )
    # A union equal to one row per position: each position in exactly one of the two outputs.
    assert_frames_equal(quarantine.unionByName(events), expected)


def test_one_silver_batch_keeps_the_highest_valid_version_of_each_plan(
    spark: SparkSession,
    config: Config,
    tmp_path: Path,
    positions: list[Position],
    checked: DataFrame,
) -> None:
    lake = dataclasses.replace(config, warehouse=str(tmp_path / "warehouse"), checkpoints="")
    ensure_silver_tables(spark, lake)
    events = contract.to_plan_events(checked).persist()
    try:
        result = apply_plan_events(events, lake)
    finally:
        events.unpersist()

    valid = []
    for p in positions:
        reason, _, event = contract.contract_verdict(p.record.key, p.record.value)
        if reason is None and event is not None:
            event_id, op, plan_id, version, _, _ = event
            valid.append((plan_id, version, op == "d", event_id, p.partition, p.offset))
    winners: dict[str, tuple[str, int, bool, str, int, int]] = {}
    for row in valid:
        best = winners.get(row[0])
        # highest version; on a tie the first delivered (lowest partition, then offset)
        if best is None or (row[1], -row[4], -row[5]) > (best[1], -best[4], -best[5]):
            winners[row[0]] = row
    assert_frames_equal(
        io.read_table(spark, lake, PLANS).select(*SILVER_WINNER.fieldNames()),
        spark.createDataFrame(list(winners.values()), SILVER_WINNER),
    )
    assert_frames_equal(
        io.read_table(spark, lake, PLAN_HISTORY).select("plan_id", "version"),
        spark.createDataFrame(sorted({(r[0], r[1]) for r in valid}), HISTORY_KEY),
    )
    assert (result.events, result.plans_changed) == (len(valid), len(winners))
