"""The real-time indexer's pure parts: records -> actions, the bulk request, sorting out the
answers, and its documents against the Spark path's (`search.to_search_documents`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from pyspark.sql import SparkSession

from lakehouse.ingest import contract, search, silver
from lakehouse.ingest.indexer import (
    DELETE,
    INDEX,
    INDEX_REFUSED,
    DeadLetter,
    IndexAction,
    bulk_body,
    sort_out,
    to_index_actions,
    to_index_document,
)
from lakehouse.plans.events import BAD_VERSION, NOT_JSON, ChangeEvent
from lakehouse.plans.scenario import event_history
from lakehouse.tables import BRONZE_PLAN_EVENTS

INDEXED_AT = 1_770_000_000_000


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def _plan(plan_id: str, deductible: float = 2000, services: int = 1) -> dict:
    return {
        "objectId": plan_id,
        "objectType": "plan",
        "_org": "example.com",
        "planType": "inNetwork",
        "creationDate": "12-12-2017",
        "planCostShares": {
            "objectId": f"{plan_id}-cs",
            "objectType": "membercostshare",
            "_org": "example.com",
            "deductible": deductible,
            "copay": 23,
        },
        "linkedPlanServices": [
            {
                "objectId": f"{plan_id}-ps{i}",
                "objectType": "planservice",
                "_org": "example.com",
                "linkedService": {
                    "objectId": f"svc{i}",
                    "objectType": "service",
                    "_org": "example.com",
                    "name": f"Service {i}",
                },
                "planserviceCostShares": {
                    "objectId": f"{plan_id}-ps{i}-cs",
                    "objectType": "membercostshare",
                    "_org": "example.com",
                    "deductible": 10,
                    "copay": 0,
                },
            }
            for i in range(services)
        ],
    }


def _record(partition: int, offset: int, event: ChangeEvent) -> Record:
    return Record(partition, offset, event.key(), event.value())


def _event(op: str, plan_id: str, version: int, ts_ms: int = 1_000, **plan: float) -> ChangeEvent:
    after = None if op == "d" else _plan(plan_id, **plan)  # type: ignore[arg-type]
    return ChangeEvent(op, plan_id, version, after, event_id=f"e-{plan_id}-{version}", ts_ms=ts_ms)


def test_to_index_document_flattens_the_plan_and_its_services() -> None:
    assert to_index_document("p1", 3, _plan("p1", deductible=1500, services=2), 42, 7) == {
        "plan_id": "p1",
        "version": 3,
        "org": "example.com",
        "plan_type": "inNetwork",
        "creation_date": "12-12-2017",
        "deductible": 1500.0,
        "copay": 23.0,
        "service_count": 2,
        "services": [
            {
                "planservice_id": f"p1-ps{i}",
                "service_id": f"svc{i}",
                "name": f"Service {i}",
                "org": "example.com",
                "deductible": 10.0,
                "copay": 0.0,
            }
            for i in range(2)
        ],
        "event_ts": 42,
        "indexed_at": 7,
    }


def test_to_index_actions_keeps_the_newest_version_whatever_the_order() -> None:
    records = [
        _record(0, 10, _event("u", "p1", 3, deductible=300)),
        _record(0, 11, _event("u", "p1", 2, deductible=200)),  # late: older than v3
        _record(1, 5, _event("c", "p2", 1)),
        _record(1, 6, _event("d", "p2", 2)),
        _record(0, 12, _event("u", "p1", 3, deductible=999)),  # duplicate of v3: first kept
    ]
    batch = to_index_actions(records, INDEXED_AT)
    p1 = to_index_document("p1", 3, _plan("p1", deductible=300), 1_000, INDEXED_AT)
    assert batch.actions == (
        IndexAction(INDEX, "p1", 3, p1, 0, 10),
        IndexAction(DELETE, "p2", 2, None, 1, 6),
    )
    assert batch.skipped == {}


def test_to_index_actions_skips_records_that_break_the_contract_by_reason() -> None:
    bad_version = json.loads(_event("u", "p3", 1).value()) | {"version": 0}
    records = [
        Record(0, 1, b"p9", b"{not json"),
        Record(0, 2, b"p3", json.dumps(bad_version).encode()),
        Record(0, 3, b"p9", b"[1"),
        _record(0, 4, _event("c", "p4", 1)),
    ]
    batch = to_index_actions(records, INDEXED_AT)
    assert [(a.plan_id, a.version, a.offset) for a in batch.actions] == [("p4", 1, 4)]
    assert batch.skipped == {NOT_JSON: 2, BAD_VERSION: 1}


def test_to_index_actions_of_nothing_is_nothing() -> None:
    batch = to_index_actions([], INDEXED_AT)
    assert (batch.actions, batch.skipped) == ((), {})


def _actions() -> list[IndexAction]:
    return [
        IndexAction(INDEX, "p1", 3, {"plan_id": "p1", "version": 3}, 0, 10),
        IndexAction(DELETE, "p2", 2, None, 1, 6),
    ]


def test_bulk_body_writes_every_action_to_every_target_with_external_versions() -> None:
    def meta(index: str, plan: str, version: int) -> dict:
        return {"_index": index, "_id": plan, "version": version, "version_type": "external_gte"}

    assert bulk_body(_actions(), ["plans", "plans-next"]) == [
        {"index": meta("plans", "p1", 3)},
        {"plan_id": "p1", "version": 3},
        {"delete": meta("plans", "p2", 2)},
        {"index": meta("plans-next", "p1", 3)},
        {"plan_id": "p1", "version": 3},
        {"delete": meta("plans-next", "p2", 2)},
    ]


def test_sort_out_passes_written_newer_and_gone_and_dead_letters_a_refusal() -> None:
    error = {"type": "mapper_parsing_exception", "reason": "too many nested"}
    items = [
        {"index": {"status": 400, "error": error}},
        {"delete": {"status": 404}},  # already gone
        {"index": {"status": 409}},  # the -next index already holds a newer version
        {"delete": {"status": 404}},
    ]
    outcome = sort_out(_actions(), ["plans", "plans-next"], items, frozenset({"plans-next"}))
    assert outcome.unavailable is None
    assert outcome.dead_letters == (
        DeadLetter(
            reason=INDEX_REFUSED,
            index="plans",
            operation=INDEX,
            plan_id="p1",
            version=3,
            status=400,
            error=json.dumps(error),
            document={"plan_id": "p1", "version": 3},
            partition=0,
            offset=10,
        ),
    )


def test_sort_out_calls_a_429_or_5xx_an_outage_and_a_404_on_a_finished_reindex_nothing() -> None:
    items = [{"index": {"status": 201}}, {"delete": {"status": 200}}]
    for status in (429, 503):
        overloaded = [*items, {"index": {"status": status}}, {"delete": {"status": 200}}]
        outcome = sort_out(_actions(), ["plans", "plans-next"], overloaded)
        assert outcome == type(outcome)((), f"index of p1 in plans-next: {status}")
    gone = [*items, {"index": {"status": 404, "error": "no such index [plans-next]"}}, items[1]]
    outcome = sort_out(_actions(), ["plans", "plans-next"], gone, frozenset({"plans-next"}))
    assert outcome == type(outcome)((), None)


def test_dead_letter_keys_are_stable_across_a_replay() -> None:
    letter = DeadLetter(INDEX_REFUSED, "plans", INDEX, "p1", 3, 400, "e", None, 0, 10)
    assert letter.key == b"plans:index:p1:3"
    assert json.loads(letter.value())["offset"] == 10


def test_indexer_documents_equal_what_the_spark_path_writes(spark: SparkSession) -> None:
    """The same history through the silver path and `search.to_search_documents`, and through
    the indexer: the same document per live plan, the same deletes."""
    events, _ = event_history(11, plans=25, changes=60)
    records = [_record(0, i, e) for i, e in enumerate(events)]
    rows = [
        (r.key, r.value, "t", r.partition, r.offset, None, datetime(2026, 1, 1)) for r in records
    ]
    checked = contract.check_contract(spark.createDataFrame(rows, BRONZE_PLAN_EVENTS))
    plans = silver.to_plan_rows(silver.latest_per_plan(contract.to_plan_events(checked)))
    spark_documents = {
        doc["plan_id"]: doc
        for doc in map(
            json.loads, search.to_search_documents(plans).drop("indexed_at").toJSON().collect()
        )
    }
    spark_deletes = {(r.plan_id, r.version) for r in search.to_search_deletes(plans).collect()}

    batch = to_index_actions(records, INDEXED_AT)
    documents = {
        a.plan_id: {k: v for k, v in a.document.items() if k != "indexed_at"}
        for a in batch.actions
        if a.document is not None
    }
    deletes = {(a.plan_id, a.version) for a in batch.actions if a.operation == DELETE}
    assert len(documents) >= 10 and deletes, "the history must hold live plans and deletes"
    assert documents == spark_documents
    assert deletes == spark_deletes
