"""The change-event contract (docs/change-events.md): one Kafka record per create/update/delete.

key   = plan objectId (UTF-8)
value = UTF-8 JSON object {event_id, op, plan_id, version, ts_ms, after, source?}

Producers build events with `ChangeEvent`; consumers check raw records with `parse_event`, which
names the first broken rule so the record can be quarantined with that reason.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from lakehouse.plans.schema import PlanValidationError, validate_plan

OPS = ("c", "u", "d")
# Bounds a consumer can store: versions are signed 64-bit (Delta LONG); ts_ms must be a real
# instant Spark's timestamp_millis can convert (up to 9999-12-31T23:59:59.999Z).
MAX_VERSION = 2**63 - 1
MAX_TS_MS = 253_402_300_799_999
REQUIRED_FIELDS = ("event_id", "op", "plan_id", "version", "ts_ms", "after")


class EventContractError(ValueError):
    """A record that breaks the change-event contract; `reason` is a short stable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ChangeEvent:
    op: str
    plan_id: str
    version: int
    after: dict[str, Any] | None
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    ts_ms: int = field(default_factory=lambda: time.time_ns() // 1_000_000)
    source: dict[str, Any] | None = None

    def key(self) -> bytes:
        return self.plan_id.encode("utf-8")

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "event_id": self.event_id,
            "op": self.op,
            "plan_id": self.plan_id,
            "version": self.version,
            "ts_ms": self.ts_ms,
            "after": self.after,
        }
        if self.source is not None:
            body["source"] = self.source
        return body

    def value(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> ChangeEvent:
        return cls(
            op=body["op"],
            plan_id=body["plan_id"],
            version=body["version"],
            after=body["after"],
            event_id=body["event_id"],
            ts_ms=body["ts_ms"],
            source=body.get("source"),
        )


def parse_event(key: bytes | None, value: bytes | None) -> ChangeEvent:
    """Check a raw Kafka record against the contract; raise EventContractError naming the rule.

    Unknown extra fields are tolerated (producers may add fields; consumers ignore them).
    """
    if value is None:
        raise EventContractError("null-value", "the record has no value")
    try:
        body = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EventContractError("not-json", str(exc)) from None
    if not isinstance(body, dict):
        raise EventContractError("not-object", f"value is a JSON {type(body).__name__}")
    missing = [f for f in REQUIRED_FIELDS if f not in body]
    if missing:
        raise EventContractError("missing-field", ", ".join(missing))

    event_id, op, plan_id = body["event_id"], body["op"], body["plan_id"]
    version, ts_ms, after = body["version"], body["ts_ms"], body["after"]
    if not isinstance(event_id, str) or not event_id:
        raise EventContractError("bad-event_id", "event_id must be a non-empty string")
    if op not in OPS:
        raise EventContractError("unknown-op", f"op {op!r} is not one of c, u, d")
    if not isinstance(plan_id, str) or not plan_id:
        raise EventContractError("bad-plan_id", "plan_id must be a non-empty string")
    if key is None or key.decode("utf-8", errors="replace") != plan_id:
        shown = None if key is None else key.decode("utf-8", errors="replace")
        raise EventContractError("key-mismatch", f"key {shown!r} != plan_id {plan_id!r}")
    if not _is_int(version) or not 1 <= version <= MAX_VERSION:
        raise EventContractError(
            "bad-version", f"version must be an integer in [1, 2**63), got {version!r}"
        )
    if not _is_int(ts_ms) or not 0 <= ts_ms <= MAX_TS_MS:
        raise EventContractError(
            "bad-ts_ms", f"ts_ms must be epoch milliseconds up to year 9999, got {ts_ms!r}"
        )
    if "source" in body and body["source"] is not None and not isinstance(body["source"], dict):
        raise EventContractError("bad-source", "source must be an object when present")
    if op == "d":
        if after is not None:
            raise EventContractError("delete-with-after", "a delete event carries after = null")
    else:
        if not isinstance(after, dict):
            raise EventContractError("missing-after", f"op {op!r} needs the full document")
        try:
            validate_plan(after)
        except PlanValidationError as exc:
            # Its own reason: silver parses this date, and an unreadable one must never
            # become a silent null there.
            reason = (
                "bad-creation_date"
                if any(issue.path == "creationDate" for issue in exc.errors)
                else "schema-violation"
            )
            raise EventContractError(reason, str(exc).replace("\n", "; ")) from None
        if after["objectId"] != plan_id:
            raise EventContractError(
                "plan_id-mismatch", f"after.objectId {after['objectId']!r} != plan_id {plan_id!r}"
            )
    return ChangeEvent.from_dict(body)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
