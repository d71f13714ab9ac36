"""Unit tests for lakehouse.api.protocol: ETags and conditional headers, cursors, media types
and the strict JSON body parser. No server: these are the rules the routes apply."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lakehouse.api.protocol import (
    BAD_CURSOR,
    MALFORMED_JSON,
    MAX_BODY_BYTES,
    PRECONDITION_FAILED,
    PRECONDITION_REQUIRED,
    TOO_LARGE,
    UNSUPPORTED_MEDIA_TYPE,
    ApiError,
    decode_cursor,
    encode_cursor,
    etag,
    if_match_version,
    named_version,
    none_match,
    parse_json_object,
    require_media_type,
)
from lakehouse.plans.events import MAX_DEPTH


def refused(call: Callable[..., object], *args: object) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call(*args)
    return caught.value


# ------------------------------------------------------------------------------------ ETags
def test_etag_is_strong_and_one_per_version() -> None:
    assert [etag(1), etag(2), etag(10)] == ['"v1"', '"v2"', '"v10"']


@pytest.mark.parametrize("header", ['"v3"', ' "v3" ', '"v1", "v3"', "*", '"v2",*'])
def test_if_match_accepts_the_current_tag_among_others_or_a_star(header: str) -> None:
    assert if_match_version(header, 3) == 3


@pytest.mark.parametrize("header", [None, "", "   "])
def test_if_match_is_required(header: str | None) -> None:
    error = refused(if_match_version, header, 3)
    assert (error.status, error.code, error.headers) == (428, PRECONDITION_REQUIRED, {})


@pytest.mark.parametrize("header", ['"v2"', 'W/"v3"', '"v30"', "v3", '"v2", "v4"'])
def test_if_match_compares_strongly_and_says_the_current_tag(header: str) -> None:
    # A weak tag never matches If-Match (RFC 9110 13.1.1): the write would be a blind one.
    error = refused(if_match_version, header, 3)
    assert (error.status, error.code, error.headers) == (
        412,
        PRECONDITION_FAILED,
        {"ETag": '"v3"'},
    )
    assert '"v3"' in error.message


@pytest.mark.parametrize(
    ("header", "version"),
    [
        ('"v3"', 3),
        (' "v12" ', 12),
        ('"v0"', 0),
        (None, None),
        ("", None),
        ("*", None),  # needs the current version
        ('"v3", "v4"', None),  # several tags: compared against the current version
        ('W/"v3"', None),  # weak: never matches a write
        ('"v"', None),
        ('"v-1"', None),
        ('"v³"', None),  # a digit to str.isdigit, not to int()
        ('"x3"', None),
        ("v3", None),
    ],
)
def test_the_version_a_single_strong_tag_names(header: str | None, version: int | None) -> None:
    assert named_version(header) == version


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        (None, False),
        ('"v3"', True),
        ('W/"v3"', True),  # If-None-Match compares weakly
        ('"v1", W/"v3"', True),
        ("*", True),
        ('"v2"', False),
        ('"v33"', False),
        ("", False),
    ],
)
def test_if_none_match(header: str | None, matches: bool) -> None:
    assert none_match(header, 3) is matches


# ---------------------------------------------------------------------------------- cursors
@pytest.mark.parametrize(
    "position",
    [["P-1"], [1.5, "plan-é"], [None, "x"], ["a" * 300], [0]],
)
def test_cursor_round_trips_and_is_url_safe(position: list) -> None:
    cursor = encode_cursor(position)
    assert decode_cursor(cursor) == position
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not base64!",
        "é",
        "e30",  # base64 of "{}": JSON, but not a position
        "W10",  # "[]": an empty position
        "bnVsbA",  # "null"
        "WyJh",  # '["a': truncated
    ],
)
def test_a_cursor_this_api_did_not_return_is_refused(cursor: str) -> None:
    error = refused(decode_cursor, cursor)
    assert (error.status, error.code) == (400, BAD_CURSOR)


# ------------------------------------------------------------------------------ media types
@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "Application/JSON"],
)
def test_json_media_types_are_accepted(content_type: str) -> None:
    require_media_type(content_type, ("application/json",))


@pytest.mark.parametrize("content_type", [None, "", "text/plain", "application/jsonx"])
def test_other_media_types_are_refused(content_type: str | None) -> None:
    error = refused(require_media_type, content_type, ("application/json",))
    assert (error.status, error.code) == (415, UNSUPPORTED_MEDIA_TYPE)


# ------------------------------------------------------------------------------ JSON bodies
def test_a_json_object_is_parsed_whole() -> None:
    body = b'{"planType": "inNetwork", "cost": {"deductible": 10.5}, "list": [1, null, true]}'
    assert parse_json_object(body) == {
        "planType": "inNetwork",
        "cost": {"deductible": 10.5},
        "list": [1, None, True],
    }


def nested(depth: int) -> bytes:
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


def test_nesting_up_to_the_contract_depth_is_accepted() -> None:
    assert parse_json_object(nested(MAX_DEPTH)) is not None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
        (b'{"x": {"b": 1, "b": 1}}', "duplicate key 'b'"),
        (b'{"a": NaN}', "NaN is not JSON"),
        (b'{"a": -Infinity}', "-Infinity is not JSON"),
        (b'{"a": 1e999}', "out of range"),
        (b'{"a": [1, -1e400]}', "out of range"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"plan"', "must be a JSON object"),
        (b"null", "must be a JSON object"),
        (b"", "not valid JSON"),
        (b'{"a": 1', "not valid JSON"),
        (b'{"a": "\xff"}', "not UTF-8"),
        (nested(MAX_DEPTH + 1), f"deeper than {MAX_DEPTH}"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),  # the parser's own recursion limit
    ],
)
def test_bodies_parsers_would_disagree_on_are_refused(body: bytes, reason: str) -> None:
    error = refused(parse_json_object, body)
    assert (error.status, error.code) == (400, MALFORMED_JSON)
    assert reason in error.message


def test_a_body_over_the_event_size_limit_is_too_large() -> None:
    at_limit = b'{"a": "' + b"x" * (MAX_BODY_BYTES - 9) + b'"}'
    assert len(at_limit) == MAX_BODY_BYTES
    assert parse_json_object(at_limit) == {"a": "x" * (MAX_BODY_BYTES - 9)}
    error = refused(parse_json_object, at_limit + b" ")
    assert (error.status, error.code) == (413, TOO_LARGE)


def test_an_error_body_names_its_code_and_issues_only_when_there_are_some() -> None:
    assert ApiError(404, "not-found", "no plan P").body() == {
        "error": {"code": "not-found", "message": "no plan P"}
    }
    issues = [{"path": "$.planType", "rule": "required"}]
    assert ApiError(400, "invalid-plan", "bad", issues).body() == {
        "error": {"code": "invalid-plan", "message": "bad", "issues": issues}
    }
