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
import re
from dataclasses import dataclass
from typing import Any

from lakehouse.plans.events import MAX_RECORD_BYTES, ChangeEvent
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
        RawRecord(key, b"\xff\xfe\x00garbage", "bad-unicode"),
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
        *hostile_records(template),
    ]


def hostile_records(template: ChangeEvent) -> list[RawRecord]:
    """Records that Python's json accepts but that break a limit of the contract, or that a
    stricter parser (Spark's Jackson) or a sink (Elasticsearch) would read differently or refuse;
    each with the reason it must get. Deletes among them: a delete names its plan only in the
    envelope. (A topic we create refuses records much over MAX_RECORD_BYTES: the one over it
    here is just over, padded with whitespace, so its size is all that is wrong.)"""
    body = template.to_dict()
    key = template.key()
    delete = body | {"op": "d", "after": None}

    def text(fields: dict[str, Any], extra: str = "") -> bytes:
        """The JSON of `fields` with raw `extra` text (`"name": value` pairs) appended inside."""
        raw = json.dumps(fields)
        return (raw[:-1] + ", " + extra + "}" if extra else raw).encode()

    def doc(**changes: Any) -> dict[str, Any]:
        return copy.deepcopy(body["after"]) | changes

    def costs(value: str) -> bytes:
        return text(body).replace(
            b'"deductible": ', b'"deductible": ' + value.encode() + b', "x": ', 1
        )

    deep = "[" * 20 + "]" * 20
    very_deep = "[" * 5000 + "]" * 5000
    first_service = body["after"]["linkedPlanServices"][0]
    control_name = doc(
        linkedPlanServices=[
            first_service
            | {"linkedService": first_service["linkedService"] | {"name": "Dental\u0007 care"}}
        ]
    )
    surrogate = text(body).replace(b'"_org": "', b'"_org": "\\ud800', 1)
    long_id = "p" * 300
    padded = text(body).replace(b"{", b"{" + b" " * MAX_RECORD_BYTES, 1)
    return [
        RawRecord(key, padded, "record-too-large"),
        RawRecord(key, text(body, '"extra": ' + "1" * 1001), "bad-number"),
        RawRecord(key, text(delete, '"extra": ' + "9" * 1001), "bad-number"),
        RawRecord(key, text(body, '"extra": ' + str(2**70)), "bad-number"),
        RawRecord(key, costs("1e400"), "bad-number"),
        RawRecord(key, costs("NaN"), "bad-number"),
        RawRecord(key, text(body, '"version": 2'), "duplicate-key"),
        RawRecord(key, text(delete, '"plan_id": "other"'), "duplicate-key"),
        RawRecord(key, text(body, '"extra": ' + deep), "too-deep"),
        RawRecord(key, text(delete, '"extra": ' + very_deep), "too-deep"),
        RawRecord(key, text(body | {"after": control_name}), "control-character"),
        RawRecord(key, text(body | {"source": {"note": "line\nbreak"}}), "control-character"),
        RawRecord(key, surrogate, "bad-unicode"),
        RawRecord(key, text(body | {"after": doc(_org="o" * 5000)}), "string-too-long"),
        RawRecord(key, text(body | {"after": doc(_org="o" * 500)}), "schema-violation"),
        RawRecord(key, text(body | {"event_id": "e" * 500}), "bad-event_id"),
        RawRecord(long_id.encode(), text(delete | {"plan_id": long_id}), "bad-plan_id"),
        RawRecord(b"bad id!", text(delete | {"plan_id": "bad id!"}), "bad-plan_id"),
        RawRecord(
            key,
            text(body | {"after": doc(planCostShares=doc()["planCostShares"] | {"copay": 2e7})}),
            "schema-violation",
        ),
    ]


MUTATIONS = (
    "flip-byte",
    "truncate",
    "retype",
    "drop-field",
    "stretch-number",
    "lengthen-string",
    "control-character",
    "duplicate-key",
)
_RETYPED: tuple[Any, ...] = (None, "text", 0, -1, 1.5, 2**64, [], {}, True, "9" * 40)


def mutated_records(seed: int, events: list[ChangeEvent], count: int) -> list[RawRecord]:
    """`count` seeded mutations of valid `events` (one of MUTATIONS each: bytes flipped, cut
    short, a field retyped or dropped, a number or string stretched, a control character or a
    duplicate key inserted). Many break the contract, some do not: the verdict is the
    contract's, so `expected_reason` is left None."""
    rng = random.Random(seed)
    records = []
    for _ in range(count):
        event = rng.choice(events)
        value = _mutate(rng, rng.choice(MUTATIONS), event)
        records.append(RawRecord(event.key(), value))
    return records


def _mutate(rng: random.Random, kind: str, event: ChangeEvent) -> bytes:
    raw = event.value()
    if kind == "flip-byte":
        at = rng.randrange(len(raw))
        return raw[:at] + bytes([raw[at] ^ (1 << rng.randrange(8))]) + raw[at + 1 :]
    if kind == "truncate":
        return raw[: rng.randrange(len(raw))]
    if kind in ("stretch-number", "lengthen-string", "control-character"):
        text = raw.decode()
        spans = _spans(text, number=kind == "stretch-number")
        if not spans:
            return raw
        start, end = rng.choice(spans)
        piece = text[start:end]
        if kind == "stretch-number":
            piece = piece * rng.choice((2, 10, 60, 1500))
        elif kind == "lengthen-string":
            piece = piece * rng.choice((2, 10, 300, 3000))
        else:
            at = rng.randrange(len(piece) + 1)
            piece = piece[:at] + rng.choice(("\\u0000", "\\t", "\\u001b", "\\u0085")) + piece[at:]
        return (text[:start] + piece + text[end:]).encode()
    body = event.to_dict()
    node, name = _random_field(rng, body)
    if kind == "retype":
        node[name] = rng.choice(_RETYPED)
    elif kind == "drop-field":
        del node[name]
    else:  # duplicate-key: the same name again, with another value, as raw text
        text = json.dumps(body)
        return (text[:-1] + f', "{name}": ' + json.dumps(rng.choice(_RETYPED)) + "}").encode()
    return json.dumps(body).encode()


def _spans(text: str, number: bool) -> list[tuple[int, int]]:
    """(start, end) of every number literal (number=True) or string content in `text`."""
    pattern = r"(?<![\w.\"])\d+(?:\.\d+)?" if number else r'(?<=")[^"\\]+(?=")'
    return [m.span() for m in re.finditer(pattern, text)]


def _random_field(rng: random.Random, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A random (object, key) anywhere in `body`, the envelope's own fields as likely as not."""
    node = body
    while True:
        name = rng.choice(sorted(node))
        child = node[name]
        if isinstance(child, list) and child and isinstance(child[0], dict) and rng.random() < 0.6:
            child = rng.choice(child)
        if isinstance(child, dict) and child and rng.random() < 0.6:
            node = child
            continue
        return node, name
