"""Unit tests for the pure DataFrame transforms of the streaming medallion (lakehouse.ingest).

Inputs are small inline DataFrames with explicit schemas; outputs are compared as whole frames
with chispa against hand-built expectations. Columns stamped with current_timestamp()
(updated_at, recorded_at, quarantined_at, indexed_at) are dropped before comparing, together
with any row where they are null (so a missing stamp fails the comparison). Needs only the local
SparkSession (no services).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from frames import assert_frames_equal
from plan_samples import Doc, cost_share, plan_service
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    DataType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from lakehouse.ingest import contract, search, silver
from lakehouse.ingest.snapshot import (
    STORED_PLAN,
    STORED_TEXT,
    check_stored,
    reconcile,
    snapshot_events,
    to_snapshot_quarantine,
    to_snapshot_rows,
)
from lakehouse.ingest.stream import to_bronze_rows, to_plan_event_rows
from lakehouse.plans.events import ChangeEvent, EventContractError, parse_event
from lakehouse.plans.generator import generate_plan
from lakehouse.plans.scenario import RawRecord, malformed_records
from lakehouse.tables import (
    BRONZE_PLAN_EVENTS,
    BRONZE_PLAN_SNAPSHOTS,
    PLAN_DOCUMENT,
    QUARANTINE_PLAN_EVENTS,
    SILVER_PLAN_EVENTS,
    SILVER_PLAN_HISTORY,
    SILVER_PLAN_SERVICES,
    SILVER_PLANS,
    SINK_REFUSALS,
)

T0 = 1_764_000_000_000  # epoch millis every test's event times are offset from
TOPIC = "plans.changes"
INGESTED = datetime(2026, 1, 2, 3, 4, 5)
UPDATED = datetime(2026, 1, 1, 0, 0, 0)


# --- schemas of intermediate frames (declared here; the library names them only in docstrings)


def _schema(*fields: tuple[str, DataType]) -> StructType:
    return StructType([StructField(name, dtype, True) for name, dtype in fields])


def _without(schema: StructType, *names: str) -> StructType:
    return StructType([f for f in schema.fields if f.name not in names])


# contract.to_plan_events / snapshot.snapshot_events output, silver.* input.
PLAN_EVENT = _schema(
    ("plan_id", StringType()),
    ("version", LongType()),
    ("op", StringType()),
    ("event_id", StringType()),
    ("event_ts", TimestampType()),
    ("org", StringType()),
    ("plan_type", StringType()),
    ("creation_date", DateType()),
    ("deductible", DoubleType()),
    ("copay", DoubleType()),
    ("service_count", IntegerType()),
    ("doc", StringType()),
    ("plan", PLAN_DOCUMENT),
    ("kafka_partition", IntegerType()),
    ("kafka_offset", LongType()),
)
CHECKED_REASONS = _schema(
    ("partition", IntegerType()),
    ("offset", LongType()),
    ("reason", StringType()),
    ("detail", StringType()),
)
LINKED = _schema(
    ("plan_id", StringType()),
    ("plan_version", LongType()),
    ("event_ts", TimestampType()),
    ("planservice_id", StringType()),
    ("service_id", StringType()),
    ("service_name", StringType()),
    ("org", StringType()),
    ("deductible", DoubleType()),
    ("copay", DoubleType()),
)
PLAN_SERVICE_CHANGE = StructType(
    [*_without(SILVER_PLAN_SERVICES, "updated_at").fields, StructField("_delete", BooleanType())]
)
SEARCH_SERVICE = _schema(
    ("planservice_id", StringType()),
    ("service_id", StringType()),
    ("name", StringType()),
    ("org", StringType()),
    ("deductible", DoubleType()),
    ("copay", DoubleType()),
)
SEARCH_DOCUMENT = _schema(
    ("plan_id", StringType()),
    ("version", LongType()),
    ("org", StringType()),
    ("plan_type", StringType()),
    ("creation_date", StringType()),
    ("deductible", DoubleType()),
    ("copay", DoubleType()),
    ("service_count", IntegerType()),
    ("services", ArrayType(SEARCH_SERVICE)),
    ("event_ts", LongType()),
)
SEARCH_DELETE = _schema(("plan_id", StringType()), ("version", LongType()))
RECONCILE_ROW = _schema(
    ("plan_id", StringType()),
    ("kind", StringType()),
    ("source_version", LongType()),
    ("silver_version", LongType()),
    ("detail", StringType()),
    ("snapshot_id", StringType()),
)
KAFKA_SOURCE = _schema(
    ("key", BinaryType()),
    ("value", BinaryType()),
    ("topic", StringType()),
    ("partition", IntegerType()),
    ("offset", LongType()),
    ("timestamp", TimestampType()),
    ("timestampType", IntegerType()),
)


# --- helpers


def _ts(ms: int) -> datetime:
    """Epoch millis as PySpark collects a TimestampType value: naive, in local time."""
    return datetime.fromtimestamp(ms // 1000).replace(microsecond=ms % 1000 * 1000)


def _date(text: str) -> date:
    return datetime.strptime(text, "%m-%d-%Y").date()


def _conform(value: Any, dtype: DataType) -> Any:
    """A JSON value shaped as Spark reads it with `dtype`: known fields only, in schema order,
    numbers of double fields as floats."""
    if value is None:
        return None
    if isinstance(dtype, StructType):
        return {
            f.name: _conform(value[f.name], f.dataType) for f in dtype.fields if f.name in value
        }
    if isinstance(dtype, ArrayType):
        return [_conform(item, dtype.elementType) for item in value]
    if isinstance(dtype, DoubleType):
        return float(value)
    return value


def _canonical(doc: Doc) -> str:
    """The canonical JSON text silver keeps for a plan document (to_json of PLAN_DOCUMENT)."""
    return json.dumps(_conform(doc, PLAN_DOCUMENT), separators=(",", ":"), ensure_ascii=False)


def _service(ps_id: str, svc_id: str, name: str, deductible: float = 10, copay: float = 0) -> Doc:
    ps = plan_service(ps_id, svc_id, name, f"{ps_id}-mcs")
    ps["planserviceCostShares"] = cost_share(f"{ps_id}-mcs", deductible, copay)
    return ps


def _doc(
    plan_id: str,
    services: list[Doc],
    *,
    deductible: float = 2000,
    copay: float = 23,
    created: str = "12-12-2017",
    plan_type: str = "inNetwork",
) -> Doc:
    return {
        "planCostShares": cost_share(f"{plan_id}-mcs", deductible, copay),
        "linkedPlanServices": services,
        "_org": "example.com",
        "objectId": plan_id,
        "objectType": "plan",
        "planType": plan_type,
        "creationDate": created,
    }


def _event(
    plan_id: str,
    version: int,
    op: str,
    ts_ms: int,
    doc: Doc | None = None,
    partition: int | None = 0,
    offset: int | None = 0,
    event_id: str | None = "",
) -> tuple:
    """A PLAN_EVENT row, its derived columns computed here from `doc` (None for a delete)."""
    live = doc is not None
    return (
        plan_id,
        version,
        op,
        f"ev-{plan_id}-{version}" if event_id == "" else event_id,
        _ts(ts_ms),
        doc["_org"] if live else None,
        doc["planType"] if live else None,
        _date(doc["creationDate"]) if live else None,
        float(doc["planCostShares"]["deductible"]) if live else None,
        float(doc["planCostShares"]["copay"]) if live else None,
        len(doc["linkedPlanServices"]) if live else None,
        _canonical(doc) if live else None,
        _conform(doc, PLAN_DOCUMENT),
        partition,
        offset,
    )


def _plan_row(event: tuple) -> tuple:
    """A silver.plans row (SILVER_PLANS, updated_at = UPDATED) from a PLAN_EVENT row."""
    e = dict(zip(PLAN_EVENT.fieldNames(), event, strict=True))
    e["is_deleted"] = e["op"] == "d"
    e["updated_at"] = UPDATED
    return tuple(e[name] for name in SILVER_PLANS.fieldNames())


def _plans(spark: SparkSession, events: list[tuple]) -> DataFrame:
    return spark.createDataFrame([_plan_row(e) for e in events], SILVER_PLANS)


def _assert_stamped(frame: DataFrame, column: str) -> DataFrame:
    """`frame` without `column` (a current_timestamp() stamp) and without the rows where it is
    null, so the whole-frame comparison that follows fails unless every row is stamped."""
    return frame.where(F.col(column).isNotNull()).drop(column)


# --- contract: check_contract, to_quarantine, to_plan_events


def _plan_a() -> Doc:
    return generate_plan(7, 0).doc


def _plan_a_v2() -> Doc:
    doc = copy.deepcopy(_plan_a())
    doc["planType"] = "PPO"
    doc["planCostShares"]["deductible"] = 1234.5
    doc["planCostShares"]["copay"] = 12.25
    doc["linkedPlanServices"] = doc["linkedPlanServices"][:1]
    return doc


def _plan_h() -> Doc:
    """A hand-written plan: non-ASCII name, integral costs, a leap day."""
    return _doc(
        "plan-hand-1",
        [_service("ps-h1", "svc-h1", "Café dentaire", 15, 5), _service("ps-h2", "svc-h2", "X-ray")],
        deductible=500,
        copay=0,
        created="02-29-2020",
    )


def _valid_events() -> list[ChangeEvent]:
    plan_b = generate_plan(7, 1).doc["objectId"]
    return [
        ChangeEvent("c", _plan_a()["objectId"], 1, _plan_a(), event_id="ev-a1", ts_ms=T0 + 5),
        ChangeEvent(
            "u",
            _plan_a()["objectId"],
            2,
            _plan_a_v2(),
            event_id="ev-a2",
            ts_ms=T0 + 9,
            source={"system": "unit-test"},
        ),
        ChangeEvent("d", plan_b, 4, None, event_id="ev-b4", ts_ms=T0 + 12),
        ChangeEvent("c", "plan-hand-1", 1, _plan_h(), event_id="ev-h1", ts_ms=T0 + 1_001),
    ]


def _malformed() -> list[RawRecord]:
    return malformed_records(11, _valid_events()[0])


def _kafka_ts(partition: int, offset: int) -> datetime | None:
    # One record without a broker timestamp: kafka_ts is nullable and must stay null.
    return None if (partition, offset) == (1, 100) else _ts(T0 + 100 * partition + offset)


def _bronze(spark: SparkSession) -> DataFrame:
    """Valid events at partition 0 offsets 0.., malformed records at partition 1 offsets 100..."""
    rows = [
        (e.key(), e.value(), TOPIC, 0, i, _kafka_ts(0, i), INGESTED)
        for i, e in enumerate(_valid_events())
    ]
    rows += [
        (r.key, r.value, TOPIC, 1, 100 + i, _kafka_ts(1, 100 + i), INGESTED)
        for i, r in enumerate(_malformed())
    ]
    return spark.createDataFrame(rows, BRONZE_PLAN_EVENTS)


@pytest.fixture(scope="module")
def checked(spark: SparkSession) -> Iterator[DataFrame]:
    """check_contract over `_bronze`, persisted so the contract UDF runs once for the module."""
    frame = contract.check_contract(_bronze(spark)).persist()
    try:
        yield frame
    finally:
        frame.unpersist()


def _contract_detail(record: RawRecord) -> str:
    try:
        parse_event(record.key, record.value)
    except EventContractError as exc:
        return exc.detail[:2000]
    raise AssertionError(f"{record} passed the contract")


def test_malformed_records_break_the_contract_with_their_expected_reason() -> None:
    def reason(record: RawRecord) -> str | None:
        try:
            parse_event(record.key, record.value)
        except EventContractError as exc:
            return exc.reason
        return None

    records = _malformed()
    assert [reason(r) for r in records] == [r.expected_reason for r in records]
    assert None not in {r.expected_reason for r in records}


def test_check_contract_sets_reason_and_detail_on_every_record(
    spark: SparkSession, checked: DataFrame
) -> None:
    expected = spark.createDataFrame(
        [(0, i, None, None) for i in range(len(_valid_events()))]
        + [
            (1, 100 + i, r.expected_reason, _contract_detail(r)) for i, r in enumerate(_malformed())
        ],
        CHECKED_REASONS,
    )
    assert_frames_equal(checked.select(*CHECKED_REASONS.fieldNames()), expected)


def test_to_quarantine_keeps_each_malformed_record_with_its_reason_and_position(
    spark: SparkSession, checked: DataFrame
) -> None:
    quarantine = contract.to_quarantine(checked)
    expected = spark.createDataFrame(
        [
            (
                r.expected_reason,
                _contract_detail(r),
                r.key,
                r.value,
                None if r.value is None else r.value.decode("utf-8", errors="replace"),
                TOPIC,
                1,
                100 + i,
                _kafka_ts(1, 100 + i),
            )
            for i, r in enumerate(_malformed())
        ],
        _without(QUARANTINE_PLAN_EVENTS, "quarantined_at"),
    )
    assert_frames_equal(_assert_stamped(quarantine, "quarantined_at"), expected)


def test_to_plan_events_types_the_valid_records(spark: SparkSession, checked: DataFrame) -> None:
    events = contract.to_plan_events(checked)
    a, a2, h = _plan_a(), _plan_a_v2(), _plan_h()
    plan_b = generate_plan(7, 1).doc["objectId"]
    expected = spark.createDataFrame(
        [
            _event(a["objectId"], 1, "c", T0 + 5, a, 0, 0, "ev-a1"),
            _event(a["objectId"], 2, "u", T0 + 9, a2, 0, 1, "ev-a2"),
            _event(plan_b, 4, "d", T0 + 12, None, 0, 2, "ev-b4"),
            _event("plan-hand-1", 1, "c", T0 + 1_001, h, 0, 3, "ev-h1"),
        ],
        PLAN_EVENT,
    )
    assert_frames_equal(events, expected)


def test_to_plan_events_doc_is_canonical_json_of_the_document(checked: DataFrame) -> None:
    events = contract.to_plan_events(checked)
    docs = {
        (r.plan_id, r.version): r.doc for r in events.select("plan_id", "version", "doc").collect()
    }
    h = _plan_h()
    loaded = json.loads(docs[("plan-hand-1", 1)])
    assert loaded == h  # 500 == 500.0: same document by value
    assert loaded["planCostShares"] == {
        "deductible": 500.0,
        "copay": 0.0,
        "_org": "example.com",
        "objectId": "plan-hand-1-mcs",
        "objectType": "membercostshare",
    }
    assert isinstance(loaded["planCostShares"]["deductible"], float)
    assert [ps["planserviceCostShares"]["copay"] for ps in loaded["linkedPlanServices"]] == [
        5.0,
        0.0,
    ]
    assert all(
        isinstance(ps["planserviceCostShares"][k], float)
        for ps in loaded["linkedPlanServices"]
        for k in ("deductible", "copay")
    )
    assert list(loaded) == PLAN_DOCUMENT.fieldNames()  # keys in schema order, whatever came in
    assert "Café dentaire" in docs[("plan-hand-1", 1)]  # kept as text, not \u-escaped
    assert docs[(generate_plan(7, 1).doc["objectId"], 4)] is None


def test_contract_on_an_empty_batch(spark: SparkSession) -> None:
    checked = contract.check_contract(spark.createDataFrame([], BRONZE_PLAN_EVENTS))
    quarantine = contract.to_quarantine(checked).drop("quarantined_at")
    expected_quarantine = spark.createDataFrame(
        [], _without(QUARANTINE_PLAN_EVENTS, "quarantined_at")
    )
    assert_frames_equal(quarantine, expected_quarantine)
    events = contract.to_plan_events(checked)
    assert_frames_equal(events, spark.createDataFrame([], PLAN_EVENT))


# --- silver: latest_per_plan, to_plan_rows


def _doc_v(plan_id: str, version: int) -> Doc:
    """A distinct valid document per (plan, version), so a wrong pick changes the frame."""
    return _doc(
        plan_id,
        [_service(f"{plan_id}-ps1", "svc-1", f"Checkup v{version}")],
        deductible=1000 + version,
    )


def _history_of_events() -> list[tuple]:
    """Events as a replaying producer delivers them: late, duplicated, deleted and re-created."""
    return [
        # plan-a: v1, v3, then v2 arrives late
        _event("plan-a", 1, "c", T0 + 10, _doc_v("plan-a", 1), 0, 1),
        _event("plan-a", 3, "u", T0 + 30, _doc_v("plan-a", 3), 0, 5),
        _event("plan-a", 2, "u", T0 + 20, _doc_v("plan-a", 2), 0, 7),
        # plan-b: v2 delivered twice (second copy later in the log, with another event id)
        _event("plan-b", 1, "c", T0 + 11, _doc_v("plan-b", 1), 1, 2),
        _event("plan-b", 2, "u", T0 + 21, _doc_v("plan-b", 2), 1, 9, "ev-b2-redelivered"),
        _event("plan-b", 2, "u", T0 + 21, _doc_v("plan-b", 2), 1, 4),
        # plan-c: created, deleted, re-created at a higher version
        _event("plan-c", 1, "c", T0 + 12, _doc_v("plan-c", 1), 0, 2),
        _event("plan-c", 2, "d", T0 + 22, None, 0, 3),
        _event("plan-c", 3, "c", T0 + 32, _doc_v("plan-c", 3), 0, 4),
        # plan-d: deleted last
        _event("plan-d", 1, "c", T0 + 13, _doc_v("plan-d", 1), 1, 1),
        _event("plan-d", 2, "d", T0 + 23, None, 1, 3),
        # plan-e: a snapshot row (no Kafka position) and the stream's copy of the same version
        _event("plan-e", 4, "r", T0 + 40, _doc_v("plan-e", 4), None, None, None),
        _event("plan-e", 4, "u", T0 + 40, _doc_v("plan-e", 4), 0, 6),
    ]


@pytest.mark.parametrize("reverse", [False, True], ids=["log-order", "reversed"])
def test_latest_per_plan_keeps_the_highest_version(spark: SparkSession, reverse: bool) -> None:
    events = _history_of_events()
    frame = spark.createDataFrame(events[::-1] if reverse else events, PLAN_EVENT)
    expected = spark.createDataFrame(
        [
            _event("plan-a", 3, "u", T0 + 30, _doc_v("plan-a", 3), 0, 5),
            _event("plan-b", 2, "u", T0 + 21, _doc_v("plan-b", 2), 1, 4),  # first delivered
            _event("plan-c", 3, "c", T0 + 32, _doc_v("plan-c", 3), 0, 4),
            _event("plan-d", 2, "d", T0 + 23, None, 1, 3),
            _event("plan-e", 4, "u", T0 + 40, _doc_v("plan-e", 4), 0, 6),  # positioned first
        ],
        PLAN_EVENT,
    )
    assert_frames_equal(silver.latest_per_plan(frame), expected)


def test_latest_per_plan_of_nothing_is_empty(spark: SparkSession) -> None:
    empty = spark.createDataFrame([], PLAN_EVENT)
    assert_frames_equal(silver.latest_per_plan(empty), empty)


def test_to_plan_rows_writes_live_plans_and_tombstones(spark: SparkSession) -> None:
    latest = [
        _event("plan-a", 3, "u", T0 + 30, _doc_v("plan-a", 3), 0, 5),
        _event("plan-d", 2, "d", T0 + 23, None, 1, 3),
        _event("plan-e", 4, "r", T0 + 40, _doc_v("plan-e", 4), None, None, None),
    ]
    rows = silver.to_plan_rows(spark.createDataFrame(latest, PLAN_EVENT))
    a3, e4 = _canonical(_doc_v("plan-a", 3)), _canonical(_doc_v("plan-e", 4))
    created = date(2017, 12, 12)
    expected = spark.createDataFrame(
        [
            ("plan-a", 3, False, "u", "ev-plan-a-3", _ts(T0 + 30), "example.com", "inNetwork",
             created, 1003.0, 23.0, 1, a3, 0, 5),
            ("plan-d", 2, True, "d", "ev-plan-d-2", _ts(T0 + 23), None, None,
             None, None, None, None, None, 1, 3),
            ("plan-e", 4, False, "r", None, _ts(T0 + 40), "example.com", "inNetwork",
             created, 1004.0, 23.0, 1, e4, None, None),
        ],
        _without(SILVER_PLANS, "updated_at"),
    )  # fmt: skip
    assert_frames_equal(_assert_stamped(rows, "updated_at"), expected)


# --- silver: to_history_rows, history_validity


def _history_row(
    plan_id: str, version: int, op: str, from_ms: int, doc: Doc | None, event_id: str = ""
) -> tuple:
    """A SILVER_PLAN_HISTORY row as first inserted (valid_to open, is_current true), without
    recorded_at (see `_recorded`)."""
    return (
        plan_id,
        version,
        op,
        f"ev-{plan_id}-{version}" if event_id == "" else event_id,
        op == "d",
        _ts(from_ms),
        None,
        True,
        None if doc is None else _canonical(doc),
    )


def _recorded(rows: list[tuple]) -> list[tuple]:
    """History rows as stored: recorded_at appended."""
    return [(*row, UPDATED) for row in rows]


def test_to_history_rows_one_open_row_per_version(spark: SparkSession) -> None:
    history = silver.to_history_rows(spark.createDataFrame(_history_of_events(), PLAN_EVENT))
    expected = spark.createDataFrame(
        [
            _history_row("plan-a", 1, "c", T0 + 10, _doc_v("plan-a", 1)),
            _history_row("plan-a", 2, "u", T0 + 20, _doc_v("plan-a", 2)),
            _history_row("plan-a", 3, "u", T0 + 30, _doc_v("plan-a", 3)),
            _history_row("plan-b", 1, "c", T0 + 11, _doc_v("plan-b", 1)),
            # the duplicate collapses to the first delivered copy (offset 4, not 9)
            _history_row("plan-b", 2, "u", T0 + 21, _doc_v("plan-b", 2)),
            _history_row("plan-c", 1, "c", T0 + 12, _doc_v("plan-c", 1)),
            _history_row("plan-c", 2, "d", T0 + 22, None),
            _history_row("plan-c", 3, "c", T0 + 32, _doc_v("plan-c", 3)),
            _history_row("plan-d", 1, "c", T0 + 13, _doc_v("plan-d", 1)),
            _history_row("plan-d", 2, "d", T0 + 23, None),
            # the stream's copy (has a Kafka position) wins over the snapshot row
            _history_row("plan-e", 4, "u", T0 + 40, _doc_v("plan-e", 4)),
        ],
        _without(SILVER_PLAN_HISTORY, "recorded_at"),
    )
    assert_frames_equal(_assert_stamped(history, "recorded_at"), expected)


def test_to_history_rows_of_nothing_is_empty(spark: SparkSession) -> None:
    history = silver.to_history_rows(spark.createDataFrame([], PLAN_EVENT)).drop("recorded_at")
    expected = spark.createDataFrame([], _without(SILVER_PLAN_HISTORY, "recorded_at"))
    assert_frames_equal(history, expected)


VALIDITY = _schema(
    ("plan_id", StringType()),
    ("version", LongType()),
    ("valid_to", TimestampType()),
    ("is_current", BooleanType()),
)


def test_history_validity_a_late_version_closes_its_predecessor(spark: SparkSession) -> None:
    before = [
        _history_row("plan-a", 1, "c", T0 + 10, _doc_v("plan-a", 1)),
        _history_row("plan-a", 3, "u", T0 + 30, _doc_v("plan-a", 3)),
        _history_row("plan-x", 1, "c", T0 + 50, _doc_v("plan-x", 1)),
    ]
    validity = silver.history_validity(
        spark.createDataFrame(_recorded(before), SILVER_PLAN_HISTORY)
    )
    expected = spark.createDataFrame(
        [
            ("plan-a", 1, _ts(T0 + 30), False),
            ("plan-a", 3, None, True),
            ("plan-x", 1, None, True),
        ],
        VALIDITY,
    )
    assert_frames_equal(validity, expected)

    # v2 arrives late: v1 now ends where v2 starts, and v2 where v3 starts.
    late = [*before, _history_row("plan-a", 2, "u", T0 + 20, _doc_v("plan-a", 2))]
    validity = silver.history_validity(spark.createDataFrame(_recorded(late), SILVER_PLAN_HISTORY))
    expected = spark.createDataFrame(
        [
            ("plan-a", 1, _ts(T0 + 20), False),
            ("plan-a", 2, _ts(T0 + 30), False),
            ("plan-a", 3, None, True),
            ("plan-x", 1, None, True),
        ],
        VALIDITY,
    )
    assert_frames_equal(validity, expected)


def test_history_validity_over_duplicated_deleted_and_recreated_events(
    spark: SparkSession,
) -> None:
    history = silver.to_history_rows(spark.createDataFrame(_history_of_events(), PLAN_EVENT))
    validity = silver.history_validity(history)
    expected = spark.createDataFrame(
        [
            ("plan-a", 1, _ts(T0 + 20), False),
            ("plan-a", 2, _ts(T0 + 30), False),
            ("plan-a", 3, None, True),
            # one row per version: the duplicate v2 opens no zero-length interval
            ("plan-b", 1, _ts(T0 + 21), False),
            ("plan-b", 2, None, True),
            # the tombstone is valid until the re-create
            ("plan-c", 1, _ts(T0 + 22), False),
            ("plan-c", 2, _ts(T0 + 32), False),
            ("plan-c", 3, None, True),
            ("plan-d", 1, _ts(T0 + 23), False),
            ("plan-d", 2, None, True),
            ("plan-e", 4, None, True),
        ],
        VALIDITY,
    )
    assert_frames_equal(validity, expected)


def test_history_validity_of_nothing_is_empty(spark: SparkSession) -> None:
    empty = spark.createDataFrame([], SILVER_PLAN_HISTORY)
    expected = spark.createDataFrame([], VALIDITY)
    assert_frames_equal(silver.history_validity(empty), expected)


# --- silver: linked_services, to_plan_service_rows, plan_service_changes, to_service_rows


def _services_plans() -> list[tuple]:
    a = _doc(
        "plan-a",
        [_service("ps-a1", "svc-1", "Checkup", 10, 5), _service("ps-a2", "svc-2", "Dental", 0, 25)],
    )
    b = _doc("plan-b", [_service("ps-b1", "svc-1", "Annual checkup", 20, 0)])
    return [
        _event("plan-a", 3, "u", T0 + 30, a, 0, 5),
        _event("plan-b", 1, "c", T0 + 50, b, 0, 6),
        _event("plan-c", 2, "d", T0 + 40, None, 0, 7),  # a tombstone links nothing
    ]


def _linked_rows() -> list[tuple]:
    return [
        ("plan-a", 3, _ts(T0 + 30), "ps-a1", "svc-1", "Checkup", "example.com", 10.0, 5.0),
        ("plan-a", 3, _ts(T0 + 30), "ps-a2", "svc-2", "Dental", "example.com", 0.0, 25.0),
        ("plan-b", 1, _ts(T0 + 50), "ps-b1", "svc-1", "Annual checkup", "example.com", 20.0, 0.0),
    ]


def test_linked_services_one_row_per_plan_service_of_live_plans(spark: SparkSession) -> None:
    linked = silver.linked_services(_plans(spark, _services_plans()))
    expected = spark.createDataFrame(_linked_rows(), LINKED)
    assert_frames_equal(linked, expected)


def test_linked_services_of_tombstones_only_is_empty(spark: SparkSession) -> None:
    tombstones = _plans(spark, [_event("plan-c", 2, "d", T0 + 40, None, 0, 7)])
    expected = spark.createDataFrame([], LINKED)
    assert_frames_equal(silver.linked_services(tombstones), expected)


def test_to_plan_service_rows_layout(spark: SparkSession) -> None:
    rows = silver.to_plan_service_rows(spark.createDataFrame(_linked_rows(), LINKED))
    expected = spark.createDataFrame(
        [
            ("plan-a", "ps-a1", "svc-1", "Checkup", "example.com", 10.0, 5.0, 3),
            ("plan-a", "ps-a2", "svc-2", "Dental", "example.com", 0.0, 25.0, 3),
            ("plan-b", "ps-b1", "svc-1", "Annual checkup", "example.com", 20.0, 0.0, 1),
        ],
        _without(SILVER_PLAN_SERVICES, "updated_at"),
    )
    assert_frames_equal(_assert_stamped(rows, "updated_at"), expected)


def _plan_service_row(
    plan_id: str, ps_id: str, svc_id: str, name: str | None, version: int, d: float = 10.0
) -> tuple:
    return (plan_id, ps_id, svc_id, name, "example.com", d, 0.0, version, UPDATED)


def test_plan_service_changes_deletes_unlinked_and_deleted_plan_rows(spark: SparkSession) -> None:
    existing = spark.createDataFrame(
        [
            _plan_service_row("plan-a", "ps-a1", "svc-1", "Checkup", 1),
            _plan_service_row("plan-a", "ps-a2", "svc-2", "Dental", 1),  # unlinked in v2
            _plan_service_row("plan-b", "ps-b1", "svc-1", "Checkup", 4),  # unchanged
            _plan_service_row("plan-c", "ps-c1", "svc-3", None, 2),  # plan-c deleted
            _plan_service_row("plan-c", "ps-c2", "svc-1", "Checkup", 2),
        ],
        SILVER_PLAN_SERVICES,
    )
    wanted = spark.createDataFrame(
        [
            _plan_service_row("plan-a", "ps-a1", "svc-1", "Checkup", 2, d=15.0),
            _plan_service_row("plan-a", "ps-a3", "svc-4", "Vision", 2),  # newly linked
            _plan_service_row("plan-b", "ps-b1", "svc-1", "Checkup", 4),
        ],
        SILVER_PLAN_SERVICES,
    )
    changes = silver.plan_service_changes(existing, wanted)
    expected = spark.createDataFrame(
        [
            ("plan-a", "ps-a1", "svc-1", "Checkup", "example.com", 15.0, 0.0, 2, False),
            ("plan-a", "ps-a3", "svc-4", "Vision", "example.com", 10.0, 0.0, 2, False),
            ("plan-b", "ps-b1", "svc-1", "Checkup", "example.com", 10.0, 0.0, 4, False),
            ("plan-a", "ps-a2", "svc-2", "Dental", "example.com", 10.0, 0.0, 1, True),
            ("plan-c", "ps-c1", "svc-3", None, "example.com", 10.0, 0.0, 2, True),
            ("plan-c", "ps-c2", "svc-1", "Checkup", "example.com", 10.0, 0.0, 2, True),
        ],
        PLAN_SERVICE_CHANGE,
    )
    assert_frames_equal(_assert_stamped(changes, "updated_at"), expected)


def test_plan_service_changes_with_nothing_existing_inserts_everything(
    spark: SparkSession,
) -> None:
    existing = spark.createDataFrame([], SILVER_PLAN_SERVICES)
    wanted = spark.createDataFrame(
        [_plan_service_row("plan-a", "ps-a1", "svc-1", "Checkup", 1)], SILVER_PLAN_SERVICES
    )
    changes = silver.plan_service_changes(existing, wanted).drop("updated_at")
    expected = spark.createDataFrame(
        [("plan-a", "ps-a1", "svc-1", "Checkup", "example.com", 10.0, 0.0, 1, False)],
        PLAN_SERVICE_CHANGE,
    )
    assert_frames_equal(changes, expected)

    both_empty = silver.plan_service_changes(existing, existing).drop("updated_at")
    expected = spark.createDataFrame([], PLAN_SERVICE_CHANGE)
    assert_frames_equal(both_empty, expected)


def test_to_service_rows_the_latest_name_wins(spark: SparkSession) -> None:
    linked = spark.createDataFrame(
        [
            # svc-1: renamed by the later plan version, whatever the row order
            ("plan-b", 1, _ts(T0 + 50), "ps-b1", "svc-1", "Annual checkup", "new.org", 0.0, 0.0),
            ("plan-a", 3, _ts(T0 + 30), "ps-a1", "svc-1", "Checkup", "example.com", 0.0, 0.0),
            # svc-2: same event time in two plans -> lowest plan_id, then planservice_id
            ("plan-z", 1, _ts(T0 + 60), "ps-z1", "svc-2", "Dental (z)", "example.com", 0.0, 0.0),
            ("plan-m", 1, _ts(T0 + 60), "ps-m2", "svc-2", "Dental (m2)", "example.com", 0.0, 0.0),
            ("plan-m", 1, _ts(T0 + 60), "ps-m1", "svc-2", "Dental (m1)", "example.com", 0.0, 0.0),
            # svc-3: the newest mention has no name or org; it still wins
            ("plan-a", 3, _ts(T0 + 30), "ps-a9", "svc-3", "Vision", "example.com", 0.0, 0.0),
            ("plan-q", 2, _ts(T0 + 70), "ps-q1", "svc-3", None, None, 0.0, 0.0),
        ],
        LINKED,
    )
    expected = spark.createDataFrame(
        [
            ("svc-1", "Annual checkup", "new.org", _ts(T0 + 50)),
            ("svc-2", "Dental (m1)", "example.com", _ts(T0 + 60)),
            ("svc-3", None, None, _ts(T0 + 70)),
        ],
        _schema(
            ("service_id", StringType()),
            ("service_name", StringType()),
            ("org", StringType()),
            ("seen_at", TimestampType()),
        ),
    )
    rows = _assert_stamped(silver.to_service_rows(linked), "updated_at")
    assert_frames_equal(rows, expected)


# --- search: to_search_documents, to_search_deletes


def test_to_search_documents_indexes_live_plans_only(spark: SparkSession) -> None:
    plans = _plans(spark, _services_plans())
    before_ms = int(datetime.now(UTC).timestamp() * 1000)
    documents = search.to_search_documents(plans)
    indexed_at = [r.indexed_at for r in documents.select("indexed_at").collect()]
    after_ms = int(datetime.now(UTC).timestamp() * 1000)
    assert len(indexed_at) == 2
    assert all(before_ms - 1_000 <= ms <= after_ms + 1_000 for ms in indexed_at)
    expected = spark.createDataFrame(
        [
            ("plan-a", 3, "example.com", "inNetwork", "12-12-2017", 2000.0, 23.0, 2,
             [("ps-a1", "svc-1", "Checkup", "example.com", 10.0, 5.0),
              ("ps-a2", "svc-2", "Dental", "example.com", 0.0, 25.0)],
             T0 + 30),
            ("plan-b", 1, "example.com", "inNetwork", "12-12-2017", 2000.0, 23.0, 1,
             [("ps-b1", "svc-1", "Annual checkup", "example.com", 20.0, 0.0)],
             T0 + 50),
        ],
        SEARCH_DOCUMENT,
    )  # fmt: skip
    assert_frames_equal(documents.drop("indexed_at"), expected)


def test_to_search_documents_keeps_the_date_text_and_event_millis(spark: SparkSession) -> None:
    doc = _doc("plan-leap", [_service("ps-l1", "svc-9", "Eye exam")], created="02-29-2020")
    plans = _plans(spark, [_event("plan-leap", 7, "u", T0 + 123, doc, 0, 1)])
    expected = spark.createDataFrame(
        [
            ("plan-leap", 7, "example.com", "inNetwork", "02-29-2020", 2000.0, 23.0, 1,
             [("ps-l1", "svc-9", "Eye exam", "example.com", 10.0, 0.0)], T0 + 123),
        ],
        SEARCH_DOCUMENT,
    )  # fmt: skip
    documents = search.to_search_documents(plans).drop("indexed_at")
    assert_frames_equal(documents, expected)


def test_to_search_deletes_lists_tombstones_only(spark: SparkSession) -> None:
    plans = _plans(spark, [*_services_plans(), _event("plan-d", 9, "d", T0 + 90, None, 1, 1)])
    expected = spark.createDataFrame([("plan-c", 2), ("plan-d", 9)], SEARCH_DELETE)
    assert_frames_equal(search.to_search_deletes(plans), expected)


def test_search_transforms_of_nothing_are_empty(spark: SparkSession) -> None:
    empty = spark.createDataFrame([], SILVER_PLANS)
    assert_frames_equal(
        search.to_search_documents(empty).drop("indexed_at"),
        spark.createDataFrame([], SEARCH_DOCUMENT),
    )
    assert_frames_equal(search.to_search_deletes(empty), spark.createDataFrame([], SEARCH_DELETE))


def test_to_refusal_rows_names_the_sink_and_where_the_refused_version_came_from(
    spark: SparkSession,
) -> None:
    refused = spark.createDataFrame(
        [
            ("index", "plan-a", 3, 400, "nested limit", '{"plan_id": "plan-a"}'),
            ("delete", "plan-s", 2, 400, "bad delete", None),  # a snapshot row: no position
            ("index", "plan-o", 1, 400, "stale", "{}"),  # silver moved on: no matching row
        ],
        search.REFUSAL,
    )
    positions = StructType(
        [
            StructField("plan_id", StringType()),
            StructField("version", LongType()),
            StructField("kafka_partition", IntegerType()),
            StructField("kafka_offset", LongType()),
            StructField("doc", StringType()),
        ]
    )
    plans = spark.createDataFrame(
        [
            ("plan-a", 3, 1, 17, "{}"),
            ("plan-s", 2, None, None, None),
            ("plan-o", 2, 0, 4, "{}"),
            ("plan-x", 5, 2, 9, "{}"),  # not refused: not in the output
        ],
        positions,
    )
    expected = spark.createDataFrame(
        [
            (
                "elasticsearch",
                "index",
                "plan-a",
                3,
                400,
                "nested limit",
                '{"plan_id": "plan-a"}',
                1,
                17,
            ),
            ("elasticsearch", "delete", "plan-s", 2, 400, "bad delete", None, None, None),
            ("elasticsearch", "index", "plan-o", 1, 400, "stale", "{}", None, None),
        ],  # fmt: skip
        _without(SINK_REFUSALS, "refused_at"),
    )
    rows = search.to_refusal_rows(refused, plans)
    assert_frames_equal(_assert_stamped(rows, "refused_at"), expected)


# --- snapshot: to_snapshot_rows, snapshot_events, reconcile

SNAPSHOT_TS = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def _stored(
    plan_id: str,
    doc: Doc | None,
    version: int,
    deleted: bool,
    updated_ms: int,
    outbox: tuple[str, int] | None = None,
) -> tuple:
    """A STORED_PLAN row: the plan's fields (None for a tombstone), `_id`, `_lakehouse`."""
    plan = _conform(doc, PLAN_DOCUMENT) or {}
    bookkeeping = {
        "version": version,
        "deleted": deleted,
        "updated_ms": updated_ms,
        "outbox": None if outbox is None else {"event_id": outbox[0], "version": outbox[1]},
    }
    return (plan_id, *(plan.get(name) for name in PLAN_DOCUMENT.fieldNames()), bookkeeping)


def _store(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(
        [
            _stored("plan-a", _doc_v("plan-a", 3), 3, False, T0 + 30),
            _stored("plan-d", None, 2, True, T0 + 23),
            # written, its event not yet published
            _stored("plan-p", _doc_v("plan-p", 5), 5, False, T0 + 55, ("ev-p5", 5)),
        ],
        STORED_PLAN,
    )


def _snapshot_row(
    plan_id: str,
    version: int | None,
    doc: Doc | None,
    updated_ms: int | None,
    deleted: bool = False,
    pending: bool = False,
    snapshot_id: str = "snap-1",
) -> tuple:
    return (
        snapshot_id,
        _ts(int(SNAPSHOT_TS.timestamp() * 1000)),
        plan_id,
        version,
        deleted,
        pending,
        updated_ms,
        None if doc is None else _canonical(doc),
    )


def test_to_snapshot_rows_from_stored_plans(spark: SparkSession) -> None:
    rows = to_snapshot_rows(_store(spark), "snap-1", SNAPSHOT_TS)
    expected = spark.createDataFrame(
        [
            _snapshot_row("plan-a", 3, _doc_v("plan-a", 3), T0 + 30),
            _snapshot_row("plan-d", 2, None, T0 + 23, deleted=True),
            _snapshot_row("plan-p", 5, _doc_v("plan-p", 5), T0 + 55, pending=True),
        ],
        BRONZE_PLAN_SNAPSHOTS,
    )
    assert_frames_equal(rows, expected)


def _as_text(plan_id: str, doc: Doc | None, bookkeeping: dict[str, Any] | None) -> tuple:
    """A STORED_TEXT row as the Mongo connector reads it: a string as itself, any other value
    as its JSON."""

    def text(value: Any) -> str | None:
        return value if value is None or isinstance(value, str) else json.dumps(value)

    fields = doc or {}
    return (plan_id, *(text(fields.get(n)) for n in PLAN_DOCUMENT.fieldNames()), text(bookkeeping))


def _meta(version: Any, outbox: dict | None = None, deleted: bool = False) -> dict[str, Any]:
    return {"version": version, "deleted": deleted, "updated_ms": T0 + 10, "outbox": outbox}


def test_check_stored_types_valid_documents_and_names_what_is_wrong_with_the_rest(
    spark: SparkSession,
) -> None:
    wrong_type = _doc_v("plan-t", 1)
    wrong_type["planCostShares"]["deductible"] = "abc"
    bell = _doc_v("plan-c", 1)
    bell["linkedPlanServices"][0]["linkedService"]["name"] = "Check\u0007up"
    stored = spark.createDataFrame(
        [
            _as_text("plan-a", _doc_v("plan-a", 3), _meta(3)),
            _as_text("plan-d", None, _meta(2, deleted=True)),
            _as_text(
                "plan-p", _doc_v("plan-p", 5), _meta(5, outbox={"event_id": "e5", "version": 5})
            ),
            _as_text("plan-t", wrong_type, _meta(1)),
            _as_text("plan-c", bell, _meta(1)),
            _as_text("plan-b", _doc_v("plan-b", 1), _meta("seven")),
            _as_text("plan-m", _doc_v("plan-m", 1), None),
            _as_text("plan-n", _doc_v("plan-n", 1), _meta(1)),
        ],
        STORED_TEXT,
    )
    # What a connector reads for a NaN cost: its JSON text
    stored = stored.withColumn(
        "planCostShares",
        F.when(F.col("_id") == "plan-n", F.regexp_replace("planCostShares", r'"copay": [0-9.]+',
               '"copay": NaN')).otherwise(F.col("planCostShares")),
    )  # fmt: skip
    checked = check_stored(stored).persist()
    try:
        reasons = StructType(
            [StructField("_id", StringType()), StructField("reason", StringType())]
        )
        assert_frames_equal(
            checked.select("_id", "reason"),
            spark.createDataFrame(
                [
                    ("plan-a", None),
                    ("plan-d", None),
                    ("plan-p", None),
                    ("plan-t", "schema-violation"),
                    ("plan-c", "control-character"),
                    ("plan-b", "bad-bookkeeping"),
                    ("plan-m", "bad-bookkeeping"),
                    ("plan-n", "bad-number"),
                ],
                reasons,
            ),
        )
        valid = checked.where(F.col("reason").isNull()).select(*STORED_PLAN.fieldNames())
        expected = spark.createDataFrame(
            [
                _stored("plan-a", _doc_v("plan-a", 3), 3, False, T0 + 10),
                _stored("plan-d", None, 2, True, T0 + 10),
                _stored("plan-p", _doc_v("plan-p", 5), 5, False, T0 + 10, ("e5", 5)),
            ],
            STORED_PLAN,
        )
        assert_frames_equal(valid, expected)
        quarantine = to_snapshot_quarantine(checked, "snap-1", SNAPSHOT_TS)
        assert sorted(r["plan_id"] for r in quarantine.collect()) == [
            "plan-b", "plan-c", "plan-m", "plan-n", "plan-t"
        ]  # fmt: skip
        stored_t = json.loads(quarantine.where("plan_id = 'plan-t'").first()["stored"])
        assert json.loads(stored_t["planCostShares"])["deductible"] == "abc"
    finally:
        checked.unpersist()


def test_to_snapshot_rows_of_an_empty_store_is_empty(spark: SparkSession) -> None:
    rows = to_snapshot_rows(spark.createDataFrame([], STORED_PLAN), "snap-1", SNAPSHOT_TS)
    expected = spark.createDataFrame([], BRONZE_PLAN_SNAPSHOTS)
    assert_frames_equal(rows, expected)


def test_snapshot_events_read_live_plans_as_r_and_tombstones_as_d(spark: SparkSession) -> None:
    snapshot = spark.createDataFrame(
        [
            _snapshot_row("plan-a", 3, _doc_v("plan-a", 3), T0 + 30),
            _snapshot_row("plan-d", 2, None, T0 + 23, deleted=True),
            _snapshot_row("plan-p", 5, _doc_v("plan-p", 5), T0 + 55, pending=True),
        ],
        BRONZE_PLAN_SNAPSHOTS,
    )
    expected = spark.createDataFrame(
        [
            _event("plan-a", 3, "r", T0 + 30, _doc_v("plan-a", 3), None, None, None),
            _event("plan-d", 2, "d", T0 + 23, None, None, None, None),
            _event("plan-p", 5, "r", T0 + 55, _doc_v("plan-p", 5), None, None, None),
        ],
        PLAN_EVENT,
    )
    assert_frames_equal(snapshot_events(snapshot), expected)


def test_snapshot_events_of_nothing_is_empty(spark: SparkSession) -> None:
    events = snapshot_events(spark.createDataFrame([], BRONZE_PLAN_SNAPSHOTS))
    assert_frames_equal(events, spark.createDataFrame([], PLAN_EVENT))


def test_reconcile_one_row_per_kind_of_difference(spark: SparkSession) -> None:
    snapshot = spark.createDataFrame(
        [
            _snapshot_row("missing", 1, _doc_v("missing", 1), T0),
            _snapshot_row("missing-deleted", 3, _doc_v("missing-deleted", 3), T0),
            _snapshot_row("extra-deleted", 4, None, T0, deleted=True),
            _snapshot_row("version", 5, _doc_v("version", 5), T0),
            _snapshot_row("content", 2, _doc_v("content", 2), T0),
            _snapshot_row("pending", 6, _doc_v("pending", 6), T0, pending=True),
            _snapshot_row("pending-missing", 1, _doc_v("pending-missing", 1), T0, pending=True),
        ],
        BRONZE_PLAN_SNAPSHOTS,
    )
    other = _doc("content", [_service("content-ps1", "svc-1", "Other name")], deductible=1002)
    plans = _plans(
        spark,
        [
            _event("missing-deleted", 2, "d", T0, None),
            _event("extra", 1, "c", T0, _doc_v("extra", 1)),
            _event("extra-deleted", 3, "u", T0, _doc_v("extra-deleted", 3)),
            _event("version", 4, "u", T0, _doc_v("version", 4)),
            _event("content", 2, "u", T0, other),
            _event("pending", 5, "u", T0, _doc_v("pending", 5)),
        ],
    )
    pending = "; the store still has an unpublished event"
    expected = spark.createDataFrame(
        [
            ("missing", "missing", 1, None, "live in the store, not live in silver", "snap-1"),
            ("missing-deleted", "missing", 3, 2, "live in the store, not live in silver", "snap-1"),
            ("extra", "extra", None, 1, "live in silver, not live in the store", "snap-1"),
            ("extra-deleted", "extra", 4, 3, "live in silver, not live in the store", "snap-1"),
            ("version", "version-mismatch", 5, 4, "silver is at another version", "snap-1"),
            ("content", "content-mismatch", 2, 2, "same version, different document", "snap-1"),
            ("pending", "version-mismatch", 6, 5, f"silver is at another version{pending}",
             "snap-1"),
            ("pending-missing", "missing", 1, None,
             f"live in the store, not live in silver{pending}", "snap-1"),
        ],
        RECONCILE_ROW,
    )  # fmt: skip
    assert_frames_equal(reconcile(snapshot, plans), expected)


def test_reconcile_agreeing_plans_produce_no_row(spark: SparkSession) -> None:
    snapshot = spark.createDataFrame(
        [
            _snapshot_row("same", 3, _doc_v("same", 3), T0),
            _snapshot_row("both-deleted", 4, None, T0, deleted=True),
            _snapshot_row("deleted-in-store-only", 2, None, T0, deleted=True),
            # pending, but silver already has that version: nothing to report
            _snapshot_row("same-pending", 2, _doc_v("same-pending", 2), T0, pending=True),
        ],
        BRONZE_PLAN_SNAPSHOTS,
    )
    plans = _plans(
        spark,
        [
            _event("same", 3, "u", T0 + 5, _doc_v("same", 3)),
            _event("both-deleted", 4, "d", T0, None),
            _event("same-pending", 2, "u", T0, _doc_v("same-pending", 2)),
            _event("deleted-in-silver-only", 7, "d", T0, None),
        ],
    )
    assert_frames_equal(reconcile(snapshot, plans), spark.createDataFrame([], RECONCILE_ROW))


def test_stream_and_snapshot_of_the_same_state_reconcile_cleanly(
    spark: SparkSession, checked: DataFrame
) -> None:
    """The doc silver gets from the stream and the doc a snapshot reads from the store are the
    same text, so reconcile finds nothing (it compares them as strings)."""
    plans = silver.to_plan_rows(silver.latest_per_plan(contract.to_plan_events(checked)))
    a_id, b_id = _plan_a()["objectId"], generate_plan(7, 1).doc["objectId"]
    store = spark.createDataFrame(
        [
            _stored(a_id, _plan_a_v2(), 2, False, T0 + 9),
            _stored(b_id, None, 4, True, T0 + 12),
            _stored("plan-hand-1", _plan_h(), 1, False, T0 + 1_001),
        ],
        STORED_PLAN,
    )
    differences = reconcile(to_snapshot_rows(store, "snap-2", SNAPSHOT_TS), plans)
    assert_frames_equal(differences, spark.createDataFrame([], RECONCILE_ROW))


# --- stream: to_bronze_rows, to_plan_event_rows


def test_to_bronze_rows_keeps_the_raw_record(spark: SparkSession) -> None:
    records = spark.createDataFrame(
        [
            (b"plan-a", b'{"op":"c"}', TOPIC, 0, 41, _ts(T0), 0),
            (None, None, TOPIC, 2, 7, _ts(T0 + 1), 1),  # a tombstone record: no key, no value
            (b"plan-b", b"\xff\x00", TOPIC, 1, 0, None, 0),
        ],
        KAFKA_SOURCE,
    )
    expected = spark.createDataFrame(
        [
            (b"plan-a", b'{"op":"c"}', TOPIC, 0, 41, _ts(T0)),
            (None, None, TOPIC, 2, 7, _ts(T0 + 1)),
            (b"plan-b", b"\xff\x00", TOPIC, 1, 0, None),
        ],
        _without(BRONZE_PLAN_EVENTS, "ingested_at"),
    )
    rows = _assert_stamped(to_bronze_rows(records), "ingested_at")
    assert_frames_equal(rows, expected)


def test_to_plan_event_rows_keeps_every_event_typed_and_stamps_the_given_time(
    spark: SparkSession,
) -> None:
    events = spark.createDataFrame(
        # a duplicate and an older version stay: the derived tables need every delivery
        [*_services_plans(), _services_plans()[0], _event("plan-a", 2, "u", T0 + 20, None, 1, 3)],
        PLAN_EVENT,
    )
    applied = _ts(T0 + 999)
    rows = to_plan_event_rows(events, F.lit(applied))
    expected = spark.createDataFrame(
        [
            (*(e[n] for n in SILVER_PLAN_EVENTS.fieldNames() if n != "applied_at"), applied)
            for e in (dict(zip(PLAN_EVENT.fieldNames(), row, strict=True)) for row in
                      [*_services_plans(), _services_plans()[0],
                       _event("plan-a", 2, "u", T0 + 20, None, 1, 3)])
        ],
        SILVER_PLAN_EVENTS,
    )  # fmt: skip
    assert_frames_equal(rows, expected)
    assert_frames_equal(
        to_plan_event_rows(spark.createDataFrame([], PLAN_EVENT), F.lit(applied)),
        spark.createDataFrame([], SILVER_PLAN_EVENTS),
    )


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        # beyond a signed 64-bit integer: refused while parsing, whatever the field
        ("version", 2**63, "bad-number"),
        ("ts_ms", 2**62, "bad-ts_ms"),
        ("ts_ms", 10**20, "bad-number"),
    ],
)
def test_values_spark_cannot_hold_are_quarantined(
    spark: SparkSession, field: str, value: int, reason: str
) -> None:
    """A version or timestamp beyond what Delta/Spark can store would fail every replay of
    its batch; the contract rejects it instead."""
    doc = generate_plan(1, 0).doc
    body = ChangeEvent("c", doc["objectId"], 1, doc, event_id="e1", ts_ms=1).to_dict()
    raw = (doc["objectId"].encode(), json.dumps(body | {field: value}).encode())
    bronze = spark.createDataFrame(
        [(*raw, "t", 0, 0, None, datetime(2026, 1, 1))], BRONZE_PLAN_EVENTS
    )
    checked = contract.check_contract(bronze)
    assert [r.reason for r in contract.to_quarantine(checked).collect()] == [reason]
    assert contract.to_plan_events(checked).collect() == []


def test_reconcile_of_an_empty_snapshot_reports_every_live_silver_plan(
    spark: SparkSession,
) -> None:
    snapshot = spark.createDataFrame([], BRONZE_PLAN_SNAPSHOTS)
    stamp = datetime(2026, 1, 1)
    plans = spark.createDataFrame(
        [
            (
                "p1",
                3,
                False,
                "u",
                "e",
                stamp,
                None,
                None,
                None,
                None,
                None,
                None,
                "{}",
                0,
                1,
                stamp,
            ),
            ("p2", 2, True, "d", "e", stamp, None, None, None, None, None, None, None, 0, 2, stamp),
        ],
        SILVER_PLANS,
    )
    rows = reconcile(snapshot, plans, "snap-empty").collect()
    assert [
        (r.snapshot_id, r.plan_id, r.kind, r.source_version, r.silver_version) for r in rows
    ] == [("snap-empty", "p1", "extra", None, 3)]
