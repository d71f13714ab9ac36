"""Assertions shared by the ingest tests: the lakehouse equals what a source history implies."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

from lakehouse import clients, io
from lakehouse.config import Config
from lakehouse.ingest.indexer import Indexer
from lakehouse.plans.events import ChangeEvent
from lakehouse.plans.scenario import FinalState
from lakehouse.tables import BRONZE_EVENTS, PLAN_SERVICES, PLANS, SERVICES


def _ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).replace(tzinfo=None)


def _canonical(document: dict | None) -> object:
    """Documents compared by value (silver stores costs as doubles: 250 == 250.0)."""
    return None if document is None else json.loads(json.dumps(document))


def expected_history(events: list[ChangeEvent]) -> list[tuple]:
    """(plan_id, version, op, is_deleted, valid_from, valid_to, is_current) per version."""
    by_plan: dict[str, dict[int, ChangeEvent]] = {}
    for event in events:
        by_plan.setdefault(event.plan_id, {})[event.version] = event
    rows = []
    for plan_id, versions in by_plan.items():
        ordered = [versions[v] for v in sorted(versions)]
        for event, following in zip(ordered, [*ordered[1:], None], strict=True):
            rows.append(
                (
                    plan_id,
                    event.version,
                    event.op,
                    event.op == "d",
                    _ts(event.ts_ms),
                    None if following is None else _ts(following.ts_ms),
                    following is None,
                )
            )
    return sorted(rows)


def expected_plan_services(final: dict[str, FinalState]) -> list[tuple]:
    rows = []
    for plan_id, state in final.items():
        for ps in (state.document or {}).get("linkedPlanServices", []):
            costs = ps["planserviceCostShares"]
            rows.append(
                (
                    plan_id,
                    ps["objectId"],
                    ps["linkedService"]["objectId"],
                    ps["linkedService"]["name"],
                    float(costs["deductible"]),
                    float(costs["copay"]),
                    state.version,
                )
            )
    return sorted(rows)


def assert_lakehouse_matches(
    spark, config: Config, final: dict[str, FinalState], not_indexed: frozenset[str] = frozenset()
) -> None:
    """Silver, its derived tables and the index hold `final`; the index leaves out the plans in
    `not_indexed` (documents it refused). The index is the real-time indexer's output: this
    first drains the topic through it (`lakehouse indexer --once`)."""
    silver = {r["plan_id"]: r for r in io.read_table(spark, config, PLANS).collect()}
    assert sorted(silver) == sorted(final)
    got = {
        plan_id: (
            row["version"],
            row["is_deleted"],
            _canonical(row["doc"] and json.loads(row["doc"])),
        )
        for plan_id, row in silver.items()
    }
    want = {
        plan_id: (state.version, state.document is None, _canonical(state.document))
        for plan_id, state in final.items()
    }
    assert got == want
    for plan_id, state in final.items():
        row = silver[plan_id]
        if state.document is not None:
            doc = state.document
            assert (row["org"], row["plan_type"], row["creation_date"].strftime("%m-%d-%Y")) == (
                doc["_org"],
                doc["planType"],
                doc["creationDate"],
            )
            assert (row["deductible"], row["copay"], row["service_count"]) == (
                doc["planCostShares"]["deductible"],
                doc["planCostShares"]["copay"],
                len(doc["linkedPlanServices"]),
            )

    services = sorted(
        tuple(r)
        for r in io.read_table(spark, config, PLAN_SERVICES)
        .select(
            "plan_id",
            "planservice_id",
            "service_id",
            "service_name",
            "deductible",
            "copay",
            "plan_version",
        )  # fmt: skip
        .collect()
    )
    assert services == expected_plan_services(final)

    names = {
        r["service_id"]: r["service_name"] for r in io.read_table(spark, config, SERVICES).collect()
    }
    linked = {(row[2], row[3]) for row in expected_plan_services(final)}
    assert {(sid, names.get(sid)) for sid, _ in linked} == linked

    Indexer(config, report=lambda _: None).run(threading.Event(), once=True)
    assert_index_matches(config, final, not_indexed)


def assert_index_matches(
    config: Config, final: dict[str, FinalState], not_indexed: frozenset[str] = frozenset()
) -> None:
    """The index (through its alias) holds each live plan of `final` at its version, as its
    external version too, with its costs; nothing else (deleted plans are gone)."""
    es = clients.es_client(config)
    try:
        es.indices.refresh(index=config.elasticsearch.index)
        hits = es.search(index=config.elasticsearch.index, body={"size": 10_000, "version": True})[
            "hits"
        ]["hits"]
    finally:
        es.close()
    indexed = {
        h["_id"]: (h["_version"], h["_source"]["version"], h["_source"]["deductible"]) for h in hits
    }
    live = {
        k: (s.version, s.version, float(s.document["planCostShares"]["deductible"]))
        for k, s in final.items()
        if s.document is not None and k not in not_indexed
    }
    assert indexed == live


def assert_bronze_exactly_once(spark, config: Config, positions: list[tuple[int, int]]) -> None:
    rows = io.read_table(spark, config, BRONZE_EVENTS).select("partition", "offset").collect()
    assert sorted((r["partition"], r["offset"]) for r in rows) == sorted(positions)
