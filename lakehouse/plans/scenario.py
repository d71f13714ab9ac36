"""Change-event histories with a known outcome, and the ways a real topic garbles them.

Used by the ingest tests and benchmarks: `event_history` writes the events a store would emit
for random creates, updates, deletes and re-creates and returns the final state they imply;
`disorder` then duplicates, redelivers and reorders them as a replaying producer would, and
`malformed_records` adds records that break the contract, each with the reason it must get.
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass
from typing import Any

from lakehouse.plans.events import ChangeEvent
from lakehouse.plans.generator import generate_plan, random_change
from lakehouse.plans.merge import merge_patch

SOURCE = {"system": "lakehouse.scenario"}


@dataclass(frozen=True)
class FinalState:
    """What a correct consumer ends with for one plan."""

    version: int
    document: dict[str, Any] | None  # None: deleted (a tombstone at `version`)


@dataclass(frozen=True)
class RawRecord:
    """A record as it goes on the topic, and the quarantine reason it must get (None: valid)."""

    key: bytes | None
    value: bytes | None
    expected_reason: str | None = None


def event_history(
    seed: int, plans: int, changes: int, start_ms: int = 1_764_000_000_000
) -> tuple[list[ChangeEvent], dict[str, FinalState]]:
    """`plans` creates then `changes` random changes (patch, replace, delete; a change to a
    deleted plan re-creates it at the next version), in source order with increasing ts_ms."""
    rng = random.Random(seed)
    events: list[ChangeEvent] = []
    state: dict[str, FinalState] = {}
    clock = start_ms

    def emit(op: str, plan_id: str, document: dict[str, Any] | None) -> None:
        nonlocal clock
        clock += rng.randint(1, 50)
        version = state[plan_id].version + 1 if plan_id in state else 1
        events.append(
            ChangeEvent(op, plan_id, version, copy.deepcopy(document), ts_ms=clock, source=SOURCE)
        )
        state[plan_id] = FinalState(version, document)

    for index in range(plans):
        doc = generate_plan(seed, index).doc
        emit("c", doc["objectId"], doc)
    ids = sorted(state)
    for _ in range(changes):
        plan_id = rng.choice(ids)
        current = state[plan_id].document
        if current is None:
            reborn = generate_plan(seed + 1, ids.index(plan_id)).doc | {"objectId": plan_id}
            emit("c", plan_id, reborn)
            continue
        change = random_change(rng, current)
        if change.kind == "delete":
            emit("d", plan_id, None)
        elif change.kind == "replace":
            emit("u", plan_id, change.document)
        else:
            emit("u", plan_id, merge_patch(current, change.patch or {}))
    return events, state


def disorder(
    events: list[ChangeEvent],
    seed: int,
    duplicate_rate: float = 0.1,
    reorder_rate: float = 0.2,
) -> list[ChangeEvent]:
    """The same events as a misbehaving pipeline delivers them: some sent twice (same event_id,
    once right away and once later), and some swapped with a later event of the same plan."""
    rng = random.Random(seed)
    delivered = list(events)
    for i in range(len(delivered) - 1):
        if rng.random() < reorder_rate:
            later = [
                j
                for j in range(i + 1, min(i + 40, len(delivered)))
                if delivered[j].plan_id == delivered[i].plan_id
            ]
            if later:
                j = rng.choice(later)
                delivered[i], delivered[j] = delivered[j], delivered[i]
    for event in [e for e in events if rng.random() < duplicate_rate]:
        delivered.insert(rng.randint(0, len(delivered)), event)
    return delivered


def malformed_records(seed: int, template: ChangeEvent) -> list[RawRecord]:
    """One record per contract rule, each built from a valid `template` (op c or u)."""
    rng = random.Random(seed)
    body = template.to_dict()
    key = template.key()

    def variant(**changes: Any) -> bytes:
        return json.dumps(body | changes).encode()

    bad_date = copy.deepcopy(body["after"]) | {"creationDate": "02-30-2021"}
    iso_date = copy.deepcopy(body["after"]) | {"creationDate": "2021-02-03"}
    no_services = {k: v for k, v in body["after"].items() if k != "linkedPlanServices"}
    other_doc = copy.deepcopy(body["after"]) | {"objectId": f"other-{rng.randrange(10**6)}"}
    without_version = {k: v for k, v in body.items() if k != "version"}
    return [
        RawRecord(key, None, "null-value"),
        RawRecord(key, b"{not json", "not-json"),
        RawRecord(key, b"\xff\xfe\x00garbage", "not-json"),
        RawRecord(key, b"[1, 2, 3]", "not-object"),
        RawRecord(key, json.dumps(without_version).encode(), "missing-field"),
        RawRecord(key, variant(event_id=""), "bad-event_id"),
        RawRecord(key, variant(op="x"), "unknown-op"),
        RawRecord(b"someone-else", variant(), "key-mismatch"),
        RawRecord(None, variant(), "key-mismatch"),
        RawRecord(key, variant(version=0), "bad-version"),
        RawRecord(key, variant(version="7"), "bad-version"),
        RawRecord(key, variant(ts_ms=-5), "bad-ts_ms"),
        RawRecord(key, variant(source="kafka"), "bad-source"),
        RawRecord(key, variant(op="d"), "delete-with-after"),
        RawRecord(key, variant(after=None), "missing-after"),
        RawRecord(key, variant(after=no_services), "schema-violation"),
        RawRecord(key, variant(after=bad_date), "bad-creation_date"),
        RawRecord(key, variant(after=iso_date), "bad-creation_date"),
        RawRecord(key, variant(after=other_doc), "plan_id-mismatch"),
    ]
