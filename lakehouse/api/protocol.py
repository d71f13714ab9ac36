"""The plan API's HTTP contract, free of any web framework: error codes, ETags and the
conditional headers, cursors, media types and the strict JSON body parser.

Every failure answers `{"error": {"code", "message", "issues"?}}` with one of the codes below
(docs/api.md lists them with their status).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass, field
from typing import Any

from lakehouse.plans.events import MAX_DEPTH, MAX_RECORD_BYTES

# Error codes: stable strings clients may branch on.
AUTH_UNAVAILABLE = "auth-unavailable"
BAD_CURSOR = "bad-cursor"
BAD_PLAN_ID = "bad-plan-id"
BAD_QUERY = "bad-query"
BROKER_UNAVAILABLE = "broker-unavailable"
CONFLICT = "conflict"
FORBIDDEN = "forbidden"
INDEX_UNAVAILABLE = "index-unavailable"
INVALID_PATCH = "invalid-patch"
INVALID_PLAN = "invalid-plan"
MALFORMED_JSON = "malformed-json"
NOT_FOUND = "not-found"
PLAN_EXISTS = "plan-exists"
PLAN_ID_MISMATCH = "plan-id-mismatch"
PRECONDITION_FAILED = "precondition-failed"
PRECONDITION_REQUIRED = "precondition-required"
REJECTED_BY_CONTRACT = "rejected-by-contract"
STORE_UNAVAILABLE = "store-unavailable"
TOO_LARGE = "too-large"
UNAUTHORIZED = "unauthorized"
UNSUPPORTED_MEDIA_TYPE = "unsupported-media-type"

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
# A body can be no larger than the change event that would carry it.
MAX_BODY_BYTES = MAX_RECORD_BYTES


@dataclass
class ApiError(Exception):
    """A failure the API answers with `status` and a JSON error body."""

    status: int
    code: str
    message: str
    issues: list[dict[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.issues:
            error["issues"] = self.issues
        return {"error": error}


# ------------------------------------------------------------------------------------ ETags
def etag(version: int) -> str:
    """The strong ETag of a plan at `version`: exact (one per version) and free to compute."""
    return f'"v{version}"'


def _tags(header: str) -> list[str]:
    return [part.strip() for part in header.split(",") if part.strip()]


def if_match_version(header: str | None, current: int) -> int:
    """The version a write conditioned on `If-Match` expects (RFC 9110 13.1.1, strong
    comparison). 428 without the header, 412 when no tag matches the current version."""
    if header is None or not header.strip():
        raise ApiError(
            428,
            PRECONDITION_REQUIRED,
            "this write needs an If-Match header with the plan's ETag (GET it first)",
        )
    tags = _tags(header)
    if "*" in tags or etag(current) in tags:
        return current
    raise ApiError(
        412,
        PRECONDITION_FAILED,
        f"the plan is at {etag(current)}, not {header.strip()}: read it again and retry",
        headers={"ETag": etag(current)},
    )


def named_version(header: str | None) -> int | None:
    """The version an `If-Match` of exactly one strong tag `"v<N>"` names (the usual case: the
    ETag of the client's last read), so the write's own version check can decide without a
    read first; None when deciding needs the current version (`*`, several tags, a tag this
    API never gave)."""
    tags = _tags(header or "")
    if len(tags) != 1:
        return None
    tag = tags[0]
    digits = tag[2:-1] if tag.startswith('"v') and tag.endswith('"') else ""
    return int(digits) if digits.isascii() and digits.isdigit() else None


def none_match(header: str | None, current: int) -> bool:
    """Whether `If-None-Match` matches the current version (weak comparison: a 304)."""
    if header is None:
        return False
    tags = [tag.removeprefix("W/") for tag in _tags(header)]
    return "*" in tags or etag(current) in tags


# ---------------------------------------------------------------------------------- cursors
def encode_cursor(position: list[Any]) -> str:
    """An opaque cursor for the page after `position` (the last item's sort values)."""
    raw = json.dumps(position, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        raise ApiError(400, BAD_CURSOR, "cursor is not one this API returned") from None
    if not isinstance(position, list) or not position:
        raise ApiError(400, BAD_CURSOR, "cursor is not one this API returned")
    return position


# -------------------------------------------------------------------------------- JSON bodies
def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def require_media_type(content_type: str | None, accepted: tuple[str, ...]) -> None:
    if media_type(content_type) not in accepted:
        raise ApiError(
            415,
            UNSUPPORTED_MEDIA_TYPE,
            f"Content-Type must be {' or '.join(accepted)}, got {content_type or 'none'}",
        )


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        duplicate = next(key for key in keys if keys.count(key) > 1)
        raise ValueError(f"duplicate key {duplicate!r}")
    return dict(pairs)


def _no_constants(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of containers, stopping as soon as it exceeds `limit`."""
    stack = [(value, 1)]
    deepest = 0
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object. Refused (400), not guessed: invalid UTF-8 or JSON,
    duplicate keys (parsers disagree on which one wins), NaN / Infinity, non-finite numbers,
    nesting beyond the contract's depth, anything but an object."""
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, TOO_LARGE, f"body over {MAX_BODY_BYTES} bytes")
    try:
        value = json.loads(
            body.decode("utf-8"),
            object_pairs_hook=_unique_keys,
            parse_constant=_no_constants,
        )
    except UnicodeDecodeError:
        raise ApiError(400, MALFORMED_JSON, "body is not UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, MALFORMED_JSON, f"body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError(400, MALFORMED_JSON, "body must be a JSON object")
    if _depth(value, MAX_DEPTH) > MAX_DEPTH:
        raise ApiError(400, MALFORMED_JSON, f"body nests deeper than {MAX_DEPTH} levels")
    _check_finite(value)
    return value


def _check_finite(value: Any) -> None:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, float) and not math.isfinite(node):
            # 1e999 parses to infinity without being the literal Infinity.
            raise ApiError(400, MALFORMED_JSON, f"number {node} is out of range")
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
