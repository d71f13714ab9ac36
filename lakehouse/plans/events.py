"""The change-event contract (docs/change-events.md): one Kafka record per create/update/delete.

key   = plan objectId (UTF-8)
value = UTF-8 JSON object {event_id, op, plan_id, version, ts_ms, after, source?}

Producers build events with `ChangeEvent`; consumers check raw records with `parse_event`, which
names the first broken rule so the record can be quarantined with that reason.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from lakehouse.plans.schema import OBJECT_ID_RE, PlanValidationError, validate_plan

OPS = ("c", "u", "d")
# Bounds a consumer can store: versions are signed 64-bit (Delta LONG); ts_ms must be a real
# instant Spark's timestamp_millis can convert (up to 9999-12-31T23:59:59.999Z).
MAX_INT = 2**63 - 1
MAX_VERSION = MAX_INT
MAX_TS_MS = 253_402_300_799_999
REQUIRED_FIELDS = ("event_id", "op", "plan_id", "version", "ts_ms", "after")
# Reason codes of a record that breaks the contract (docs/change-events.md#reason-codes).
BAD_CREATION_DATE = "bad-creation_date"
BAD_EVENT_ID = "bad-event_id"
BAD_NUMBER = "bad-number"
BAD_PLAN_ID = "bad-plan_id"
BAD_SOURCE = "bad-source"
BAD_TS_MS = "bad-ts_ms"
BAD_UNICODE = "bad-unicode"
BAD_VERSION = "bad-version"
CONTROL_CHARACTER = "control-character"
DELETE_WITH_AFTER = "delete-with-after"
DUPLICATE_KEY = "duplicate-key"
KEY_MISMATCH = "key-mismatch"
MISSING_AFTER = "missing-after"
MISSING_FIELD = "missing-field"
NOT_JSON = "not-json"
NOT_OBJECT = "not-object"
NULL_VALUE = "null-value"
PLAN_ID_MISMATCH = "plan_id-mismatch"
RECORD_TOO_LARGE = "record-too-large"
SCHEMA_VIOLATION = "schema-violation"
STRING_TOO_LONG = "string-too-long"
TOO_DEEP = "too-deep"
UNKNOWN_OP = "unknown-op"
REASONS = (
    BAD_CREATION_DATE,
    BAD_EVENT_ID,
    BAD_NUMBER,
    BAD_PLAN_ID,
    BAD_SOURCE,
    BAD_TS_MS,
    BAD_UNICODE,
    BAD_VERSION,
    CONTROL_CHARACTER,
    DELETE_WITH_AFTER,
    DUPLICATE_KEY,
    KEY_MISMATCH,
    MISSING_AFTER,
    MISSING_FIELD,
    NOT_JSON,
    NOT_OBJECT,
    NULL_VALUE,
    PLAN_ID_MISMATCH,
    RECORD_TOO_LARGE,
    SCHEMA_VIOLATION,
    STRING_TOO_LONG,
    TOO_DEEP,
    UNKNOWN_OP,
)

# Limits of the contract (docs/change-events.md#limits), each breach with its own reason code.
# A record over this size is quarantined by consumers; topics we create refuse batches over
# clients.TOPIC_MAX_MESSAGE_BYTES, just above it. A plan of 50 services is about 25 KB.
MAX_RECORD_BYTES = 1_000_000
# Plans are 4 levels deep (plan > linkedPlanServices > item > linkedService); Jackson's own cap
# is 1,000 and Python's recursion limit about as much: a bound far below both, far above plans.
MAX_DEPTH = 16
# Characters in one number literal (Jackson in Spark refuses over 1,000; a cost needs ~15).
MAX_NUMBER_CHARS = 32
# Integers anywhere in the record fit a signed 64-bit LONG (what Spark and Delta store).
MIN_INT = -(2**63)
# Characters in any string or key (Elasticsearch refuses keyword values over 32,766 bytes; names
# are 200 at most by the plan schema, ids 64 by the objectId pattern, _org 100).
MAX_STRING_CHARS = 1_000
MAX_EVENT_ID_CHARS = 128
# C0 and C1 control characters (tabs and newlines included): no field of a plan needs one, and
# they break log lines, CSV exports and some sinks.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# A lone surrogate (a "\ud800" escape) parses in Python but is not encodable as UTF-8.
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")


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
        """The record value; ValueError for NaN or infinity, which JSON cannot carry."""
        body = self.to_dict()
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()

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
        raise EventContractError(NULL_VALUE, "the record has no value")
    body = loads_strict(value)
    if not isinstance(body, dict):
        raise EventContractError(NOT_OBJECT, f"value is a JSON {type(body).__name__}")
    missing = [f for f in REQUIRED_FIELDS if f not in body]
    if missing:
        raise EventContractError(MISSING_FIELD, ", ".join(missing))

    event_id, op, plan_id = body["event_id"], body["op"], body["plan_id"]
    version, ts_ms, after = body["version"], body["ts_ms"], body["after"]
    if not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_EVENT_ID_CHARS:
        raise EventContractError(
            BAD_EVENT_ID, f"event_id must be a string of 1 to {MAX_EVENT_ID_CHARS} characters"
        )
    if op not in OPS:
        raise EventContractError(UNKNOWN_OP, f"op {op!r} is not one of c, u, d")
    # The objectId pattern for every op: a delete names its plan only here.
    if not isinstance(plan_id, str) or not OBJECT_ID_RE.fullmatch(plan_id):
        raise EventContractError(
            BAD_PLAN_ID, f"plan_id must match {OBJECT_ID_RE.pattern}, got {plan_id!r:.100}"
        )
    if key is None or key.decode("utf-8", errors="replace") != plan_id:
        shown = None if key is None else key.decode("utf-8", errors="replace")
        raise EventContractError(KEY_MISMATCH, f"key {shown!r} != plan_id {plan_id!r}")
    if not _is_int(version) or not 1 <= version <= MAX_VERSION:
        raise EventContractError(
            BAD_VERSION, f"version must be an integer in [1, 2**63), got {version!r}"
        )
    if not _is_int(ts_ms) or not 0 <= ts_ms <= MAX_TS_MS:
        raise EventContractError(
            BAD_TS_MS, f"ts_ms must be epoch milliseconds up to year 9999, got {ts_ms!r}"
        )
    if "source" in body and body["source"] is not None and not isinstance(body["source"], dict):
        raise EventContractError(BAD_SOURCE, "source must be an object when present")
    if op == "d":
        if after is not None:
            raise EventContractError(DELETE_WITH_AFTER, "a delete event carries after = null")
    else:
        if not isinstance(after, dict):
            raise EventContractError(MISSING_AFTER, f"op {op!r} needs the full document")
        try:
            validate_plan(after)
        except PlanValidationError as exc:
            # Its own reason: silver parses this date, and an unreadable one must never
            # become a silent null there.
            reason = (
                BAD_CREATION_DATE
                if any(issue.path == "creationDate" for issue in exc.errors)
                else SCHEMA_VIOLATION
            )
            raise EventContractError(reason, str(exc).replace("\n", "; ")) from None
        if after["objectId"] != plan_id:
            raise EventContractError(
                PLAN_ID_MISMATCH, f"after.objectId {after['objectId']!r} != plan_id {plan_id!r}"
            )
    return ChangeEvent.from_dict(body)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise EventContractError(
            BAD_NUMBER, f"number literal of {len(text)} characters (max {MAX_NUMBER_CHARS})"
        )
    number = int(text)
    if not MIN_INT <= number <= MAX_INT:
        raise EventContractError(BAD_NUMBER, f"integer {text} is outside the signed 64-bit range")
    return number


def _parse_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise EventContractError(
            BAD_NUMBER, f"number literal of {len(text)} characters (max {MAX_NUMBER_CHARS})"
        )
    number = float(text)
    if not math.isfinite(number):
        raise EventContractError(BAD_NUMBER, f"{text} is beyond the range of a double")
    return number


def _parse_constant(text: str) -> float:
    raise EventContractError(BAD_NUMBER, f"{text} is not a JSON number")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    body = dict(pairs)
    if len(body) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise EventContractError(
                    DUPLICATE_KEY, f"key {name!r:.100} appears more than once in an object"
                )
            seen.add(name)
    return body


def _check_string(text: str) -> None:
    if _SURROGATE_RE.search(text):
        raise EventContractError(BAD_UNICODE, f"lone surrogate in {text!r:.100}")
    if _CONTROL_RE.search(text):
        raise EventContractError(CONTROL_CHARACTER, f"control character in {text!r:.100}")
    if len(text) > MAX_STRING_CHARS:
        raise EventContractError(
            STRING_TOO_LONG, f"string of {len(text)} characters (max {MAX_STRING_CHARS})"
        )


def _check_strings_and_depth(body: Any) -> None:
    """Every string and key within the limits; containers nested at most MAX_DEPTH deep. The
    walk is iterative so that no document can exhaust the check's own stack."""
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            _check_string(node)
            continue
        if not isinstance(node, dict | list):
            continue
        if depth > MAX_DEPTH:
            raise EventContractError(TOO_DEEP, f"nesting deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            for key in node:
                _check_string(key)
            stack.extend((child, depth + 1) for child in node.values())
        else:
            stack.extend((child, depth + 1) for child in node)


def loads_strict(value: bytes) -> Any:
    """Parse a record value as the contract reads JSON: strict UTF-8, no duplicate keys, numbers
    a 64-bit integer or a finite double of at most MAX_NUMBER_CHARS characters, strings without
    control characters or lone surrogates and at most MAX_STRING_CHARS long, nesting at most
    MAX_DEPTH. EventContractError names the first broken limit."""
    if len(value) > MAX_RECORD_BYTES:
        raise EventContractError(RECORD_TOO_LARGE, f"{len(value)} bytes (max {MAX_RECORD_BYTES})")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EventContractError(BAD_UNICODE, f"not UTF-8: {exc}") from None
    try:
        body = json.loads(
            text,
            object_pairs_hook=_object,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_parse_constant,
        )
    except RecursionError:
        raise EventContractError(TOO_DEEP, f"nesting deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise EventContractError(NOT_JSON, str(exc)) from None
    _check_strings_and_depth(body)
    return body
