"""Unit tests for lakehouse.plans.schema: every schema rule, the custom rules and the date helpers.

Each bad case asserts the exact, whole list of (path, rule) issues, so a rule that stops firing,
fires twice or fires somewhere else fails the test.
"""

from __future__ import annotations

import copy
import pickle
import random
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from plan_samples import Doc, cost_share, plan_service

from lakehouse.plans.schema import (
    PLAN_SCHEMA,
    PlanValidationError,
    ValidationIssue,
    format_creation_date,
    parse_creation_date,
    passes_schema_fast,
    plan_issues,
    validate_plan,
)

PLAN_ID = "12xvxc345ssdsds-508"

_JSONSCHEMA = Draft202012Validator(PLAN_SCHEMA)


def sample_plan() -> Doc:
    """A valid plan; the planservices share no ids with the plan or each other."""
    return {
        "planCostShares": cost_share("1234vxc2324sdf-501", 2000, 23),
        "linkedPlanServices": [
            plan_service(
                "27283xvx9asdff-504",
                "1234520xvc30asdf-502",
                "Yearly physical",
                "1234512xvc1314asdfs-503",
            ),
            plan_service(
                "27283xvx9sdf-506", "1234520xvc30sff-505", "well baby", "1234512xvc1314sdfsd-506"
            ),
        ],
        "_org": "example.com",
        "objectId": PLAN_ID,
        "objectType": "plan",
        "planType": "inNetwork",
        "creationDate": "12-12-2017",
    }


def _services(count: int) -> list[Doc]:
    return [plan_service(f"ps-{i}", f"svc-{i}", f"service {i}", f"psc-{i}") for i in range(count)]


def _at(doc: Doc, path: tuple[str | int, ...]) -> Any:
    node: Any = doc
    for part in path:
        node = node[part]
    return node


def _set(path: tuple[str | int, ...], value: Any) -> Callable[[Doc], Doc]:
    def apply(doc: Doc) -> Doc:
        _at(doc, path[:-1])[path[-1]] = value
        return doc

    return apply


def _del(path: tuple[str | int, ...]) -> Callable[[Doc], Doc]:
    def apply(doc: Doc) -> Doc:
        del _at(doc, path[:-1])[path[-1]]
        return doc

    return apply


def _chain(*steps: Callable[[Doc], Doc]) -> Callable[[Doc], Doc]:
    def apply(doc: Doc) -> Doc:
        for step in steps:
            doc = step(doc)
        return doc

    return apply


def _issues(doc: object) -> list[tuple[str, str]]:
    """(path, rule) pairs raised by validate_plan; [] when the document is valid."""
    try:
        validate_plan(doc)
    except PlanValidationError as exc:
        return [(issue.path, issue.rule) for issue in exc.errors]
    return []


PS0 = ("linkedPlanServices", 0)
PS1 = ("linkedPlanServices", 1)


def test_schema_is_valid_draft_2020_12() -> None:
    Draft202012Validator.check_schema(PLAN_SCHEMA)
    assert PLAN_SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(PLAN_SCHEMA["$defs"]) >= {"costShare", "service", "planService"}


def test_sample_plan_is_valid() -> None:
    validate_plan(sample_plan())
    assert plan_issues(sample_plan()) == []


GOOD: dict[str, Callable[[Doc], Doc]] = {
    **{
        f"planType-{plan_type}": _set(("planType",), plan_type)
        for plan_type in ["inNetwork", "outOfNetwork", "HMO", "PPO", "EPO", "POS"]
    },
    "creationDate-leap-day": _set(("creationDate",), "02-29-2020"),
    "creationDate-first-day": _set(("creationDate",), "01-01-2019"),
    "creationDate-last-day": _set(("creationDate",), "12-31-2019"),
    "creationDate-small-year": _set(("creationDate",), "06-15-0999"),
    "objectId-all-allowed-chars": _set(("objectId",), "aZ09._:-"),
    "objectId-64-chars": _set(("objectId",), "x" * 64),
    "objectId-1-char": _set(("objectId",), "p"),
    "_org-one-char": _set(("_org",), "x"),
    "costs-zero": _chain(
        _set(("planCostShares", "deductible"), 0), _set(("planCostShares", "copay"), 0)
    ),
    "costs-float": _set((*PS1, "planserviceCostShares", "copay"), 12.5),
    "linkedPlanServices-empty": _set(("linkedPlanServices",), []),
    "linkedPlanServices-50": _set(("linkedPlanServices",), _services(50)),
    "name-200-chars": _set((*PS0, "linkedService", "name"), "n" * 200),
    "service-shared-by-two-planservices": _set(
        (*PS1, "linkedService", "objectId"), "1234520xvc30asdf-502"
    ),
}


@pytest.mark.parametrize("mutate", GOOD.values(), ids=GOOD.keys())
def test_good_documents(mutate: Callable[[Doc], Doc]) -> None:
    assert _issues(mutate(sample_plan())) == []


REQUIRED_PLAN_KEYS = [
    "objectId",
    "objectType",
    "_org",
    "planType",
    "creationDate",
    "planCostShares",
    "linkedPlanServices",
]

# "12-12-2017" in fullwidth digits: a `\d`-based pattern would accept it, int() would parse it.
FULLWIDTH_DATE = "12-12-2017".translate(
    str.maketrans("0123456789", "".join(map(chr, range(0xFF10, 0xFF1A))))
)
PS0_COSTS_COPAY = "linkedPlanServices[0].planserviceCostShares.copay"
PS1_COSTS_COPAY = "linkedPlanServices[1].planserviceCostShares.copay"

BAD: dict[str, tuple[Callable[[Doc], Doc], list[tuple[str, str]]]] = {
    # required, at every node type
    **{f"plan-missing-{key}": (_del((key,)), [("$", "required")]) for key in REQUIRED_PLAN_KEYS},
    "linkedService-missing-_org": (
        _del((*PS0, "linkedService", "_org")),
        [("linkedPlanServices[0].linkedService", "required")],
    ),
    "linkedService-missing-name": (
        _del((*PS0, "linkedService", "name")),
        [("linkedPlanServices[0].linkedService", "required")],
    ),
    "planservice-missing-objectId": (
        _del((*PS1, "objectId")),
        [("linkedPlanServices[1]", "required")],
    ),
    "planservice-missing-linkedService": (
        _del((*PS0, "linkedService")),
        [("linkedPlanServices[0]", "required")],
    ),
    "planCostShares-missing-copay": (
        _del(("planCostShares", "copay")),
        [("planCostShares", "required")],
    ),
    "planserviceCostShares-missing-objectType": (
        _del((*PS0, "planserviceCostShares", "objectType")),
        [("linkedPlanServices[0].planserviceCostShares", "required")],
    ),
    # _org
    "_org-empty": (_set(("_org",), ""), [("_org", "minLength")]),
    "_org-not-string": (
        _set(("planCostShares", "_org"), 7),
        [("planCostShares._org", "type")],
    ),
    # objectType const per node type
    "plan-objectType": (_set(("objectType",), "Plan"), [("objectType", "const")]),
    "planCostShares-objectType": (
        _set(("planCostShares", "objectType"), "planservice"),
        [("planCostShares.objectType", "const")],
    ),
    "planservice-objectType": (
        _set((*PS0, "objectType"), "service"),
        [("linkedPlanServices[0].objectType", "const")],
    ),
    "linkedService-objectType": (
        _set((*PS1, "linkedService", "objectType"), "planservice"),
        [("linkedPlanServices[1].linkedService.objectType", "const")],
    ),
    "planserviceCostShares-objectType": (
        _set((*PS1, "planserviceCostShares", "objectType"), "plan"),
        [("linkedPlanServices[1].planserviceCostShares.objectType", "const")],
    ),
    # objectId pattern
    "objectId-space": (_set(("objectId",), "a b"), [("objectId", "pattern")]),
    "objectId-empty": (_set(("objectId",), ""), [("objectId", "pattern")]),
    "objectId-65-chars": (_set(("objectId",), "x" * 65), [("objectId", "pattern")]),
    "objectId-slash": (
        _set((*PS0, "linkedService", "objectId"), "svc/1"),
        [("linkedPlanServices[0].linkedService.objectId", "pattern")],
    ),
    # jsonschema's pattern uses re.search, where `$` matches before a final newline
    "objectId-trailing-newline": (_set(("objectId",), "plan-1\n"), [("objectId", "pattern")]),
    "objectId-int": (_set(("objectId",), 508), [("objectId", "type")]),
    # planType
    "planType-unknown": (_set(("planType",), "gold"), [("planType", "enum")]),
    "planType-wrong-case": (_set(("planType",), "hmo"), [("planType", "enum")]),
    # creationDate
    "creationDate-iso": (_set(("creationDate",), "2017-12-12"), [("creationDate", "pattern")]),
    "creationDate-month-13": (
        _set(("creationDate",), "13-01-2017"),
        [("creationDate", "pattern")],
    ),
    "creationDate-unpadded": (_set(("creationDate",), "1-1-2017"), [("creationDate", "pattern")]),
    "creationDate-slashes": (
        _set(("creationDate",), "12/12/2017"),
        [("creationDate", "pattern")],
    ),
    "creationDate-trailing-newline": (
        _set(("creationDate",), "12-12-2017\n"),
        [("creationDate", "pattern")],
    ),
    "creationDate-fullwidth-digits": (
        _set(("creationDate",), FULLWIDTH_DATE),
        [("creationDate", "pattern")],
    ),
    "creationDate-not-string": (_set(("creationDate",), 20171212), [("creationDate", "type")]),
    "creationDate-feb-30": (
        _set(("creationDate",), "02-30-2020"),
        [("creationDate", "calendar-date")],
    ),
    "creationDate-feb-29-non-leap": (
        _set(("creationDate",), "02-29-2019"),
        [("creationDate", "calendar-date")],
    ),
    "creationDate-feb-29-1900": (
        _set(("creationDate",), "02-29-1900"),
        [("creationDate", "calendar-date")],
    ),
    "creationDate-april-31": (
        _set(("creationDate",), "04-31-2021"),
        [("creationDate", "calendar-date")],
    ),
    "creationDate-year-0": (
        _set(("creationDate",), "01-01-0000"),
        [("creationDate", "calendar-date")],
    ),
    # costs
    "deductible-negative": (
        _set(("planCostShares", "deductible"), -1),
        [("planCostShares.deductible", "minimum")],
    ),
    "copay-negative-float": (
        _set((*PS0, "planserviceCostShares", "copay"), -0.01),
        [(PS0_COSTS_COPAY, "minimum")],
    ),
    "copay-string": (
        _set((*PS1, "planserviceCostShares", "copay"), "23"),
        [(PS1_COSTS_COPAY, "type")],
    ),
    "copay-bool-true": (
        _set((*PS1, "planserviceCostShares", "copay"), True),
        [(PS1_COSTS_COPAY, "type")],
    ),
    "deductible-bool-false": (
        _set(("planCostShares", "deductible"), False),
        [("planCostShares.deductible", "type")],
    ),
    # additionalProperties, at every node type
    "plan-extra-property": (_set(("planName",), "x"), [("$", "additionalProperties")]),
    "planCostShares-extra-property": (
        _set(("planCostShares", "coinsurance"), 0.2),
        [("planCostShares", "additionalProperties")],
    ),
    "planservice-extra-property": (
        _set((*PS0, "notes"), "x"),
        [("linkedPlanServices[0]", "additionalProperties")],
    ),
    "linkedService-extra-property": (
        _set((*PS0, "linkedService", "code"), "99396"),
        [("linkedPlanServices[0].linkedService", "additionalProperties")],
    ),
    "planserviceCostShares-extra-property": (
        _set((*PS1, "planserviceCostShares", "_id"), "x"),
        [("linkedPlanServices[1].planserviceCostShares", "additionalProperties")],
    ),
    # service name
    "name-empty": (
        _set((*PS0, "linkedService", "name"), ""),
        [("linkedPlanServices[0].linkedService.name", "minLength")],
    ),
    "name-201-chars": (
        _set((*PS0, "linkedService", "name"), "n" * 201),
        [("linkedPlanServices[0].linkedService.name", "maxLength")],
    ),
    "name-not-string": (
        _set((*PS0, "linkedService", "name"), ["Yearly physical"]),
        [("linkedPlanServices[0].linkedService.name", "type")],
    ),
    # linkedPlanServices
    "linkedPlanServices-51": (
        _set(("linkedPlanServices",), _services(51)),
        [("linkedPlanServices", "maxItems")],
    ),
    "linkedPlanServices-object": (
        _set(("linkedPlanServices",), {}),
        [("linkedPlanServices", "type")],
    ),
    "planservice-not-object": (
        _set(("linkedPlanServices", 0), "x"),
        [("linkedPlanServices[0]", "type")],
    ),
    "planCostShares-not-object": (
        _set(("planCostShares",), [2000, 23]),
        [("planCostShares", "type")],
    ),
    # objectId uniqueness
    "duplicate-planservice-ids": (
        _set((*PS1, "objectId"), "27283xvx9asdff-504"),
        [("linkedPlanServices[1].objectId", "unique-objectId")],
    ),
    "planCostShares-id-is-plan-id": (
        _set(("planCostShares", "objectId"), PLAN_ID),
        [("planCostShares.objectId", "unique-objectId")],
    ),
    "planservice-id-is-plan-id": (
        _set((*PS0, "objectId"), PLAN_ID),
        [("linkedPlanServices[0].objectId", "unique-objectId")],
    ),
    "planserviceCostShares-id-is-planCostShares-id": (
        _set((*PS1, "planserviceCostShares", "objectId"), "1234vxc2324sdf-501"),
        [("linkedPlanServices[1].planserviceCostShares.objectId", "unique-objectId")],
    ),
    "linkedService-id-is-plan-id": (
        _set((*PS0, "linkedService", "objectId"), PLAN_ID),
        [("linkedPlanServices[0].linkedService.objectId", "unique-objectId")],
    ),
    "linkedService-id-is-other-planservice-id": (
        _set((*PS0, "linkedService", "objectId"), "27283xvx9sdf-506"),
        [("linkedPlanServices[0].linkedService.objectId", "unique-objectId")],
    ),
    # several problems at once: all are reported, sorted by path
    "many-issues": (
        _chain(
            _del((*PS0, "linkedService", "_org")),
            _set(("planType",), "gold"),
            _set((*PS1, "planserviceCostShares", "copay"), -5),
            _set(("creationDate",), "02-30-2020"),
            _set((*PS1, "objectId"), "27283xvx9asdff-504"),
        ),
        [
            ("creationDate", "calendar-date"),
            ("linkedPlanServices[0].linkedService", "required"),
            ("linkedPlanServices[1].objectId", "unique-objectId"),
            (PS1_COSTS_COPAY, "minimum"),
            ("planType", "enum"),
        ],
    ),
    # a broken item does not stop the custom rules on the sound parts
    "broken-item-and-duplicate-id": (
        _chain(
            _set(("linkedPlanServices",), [None, *_services(2)]),
            _set(("planCostShares", "objectId"), "ps-1"),
        ),
        [
            ("linkedPlanServices[0]", "type"),
            ("linkedPlanServices[2].objectId", "unique-objectId"),
        ],
    ),
}


@pytest.mark.parametrize(("mutate", "expected"), BAD.values(), ids=BAD.keys())
def test_bad_documents(mutate: Callable[[Doc], Doc], expected: list[tuple[str, str]]) -> None:
    assert _issues(mutate(sample_plan())) == expected


@pytest.mark.parametrize("garbage", [None, [], "x", 42, True, 1.5, [sample_plan()]], ids=repr)
def test_garbage_is_a_validation_error_not_a_crash(garbage: object) -> None:
    assert _issues(garbage) == [("$", "type")]


def test_empty_object_lists_every_required_key() -> None:
    with pytest.raises(PlanValidationError) as info:
        validate_plan({})
    assert [(i.path, i.rule) for i in info.value.errors] == [("$", "required")] * 7
    missing = {i.message.split("'")[1] for i in info.value.errors}
    assert missing == set(REQUIRED_PLAN_KEYS)


def test_garbage_nodes_inside_a_plan() -> None:
    doc = sample_plan()
    doc["planCostShares"] = None
    doc["linkedPlanServices"][0]["linkedService"] = "x"
    doc["linkedPlanServices"][1]["planserviceCostShares"] = [True]
    assert _issues(doc) == [
        ("linkedPlanServices[0].linkedService", "type"),
        ("linkedPlanServices[1].planserviceCostShares", "type"),
        ("planCostShares", "type"),
    ]


def test_error_message_lists_every_issue_sorted_by_path() -> None:
    doc = sample_plan()
    doc["planType"] = "gold"
    doc["creationDate"] = "2017-12-12"
    doc["linkedPlanServices"] = _services(11)
    doc["linkedPlanServices"][10]["_org"] = ""
    doc["linkedPlanServices"][2]["_org"] = ""
    with pytest.raises(PlanValidationError) as info:
        validate_plan(doc)
    err = info.value
    assert isinstance(err, ValueError)
    assert all(isinstance(issue, ValidationIssue) for issue in err.errors)
    lines = str(err).splitlines()
    assert lines == [str(issue) for issue in err.errors]
    assert [line.split(":")[0] for line in lines] == [
        "creationDate",
        "linkedPlanServices[2]._org",
        "linkedPlanServices[10]._org",
        "planType",
    ]
    assert lines[0] == (
        "creationDate: '2017-12-12' does not match "
        "'^(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])-[0-9]{4}$' (pattern)"
    )
    assert lines[-1].endswith("(enum)")


def test_issue_str_and_frozen() -> None:
    issue = ValidationIssue("planType", "enum", "'gold' is not one of [...]")
    assert str(issue) == "planType: 'gold' is not one of [...] (enum)"
    with pytest.raises(AttributeError):
        issue.path = "x"  # type: ignore[misc]


def test_calendar_date_message_is_clear() -> None:
    doc = sample_plan()
    doc["creationDate"] = "02-30-2020"
    with pytest.raises(PlanValidationError, match="'02-30-2020' is not a real calendar date"):
        validate_plan(doc)


def test_validation_error_pickles_with_its_issues() -> None:
    with pytest.raises(PlanValidationError) as info:
        validate_plan({"objectType": "plan"})
    clone = pickle.loads(pickle.dumps(info.value))
    assert clone.errors == info.value.errors
    assert str(clone) == str(info.value)


def test_validate_does_not_mutate_the_document() -> None:
    doc = sample_plan()
    doc["linkedPlanServices"][1]["objectId"] = doc["linkedPlanServices"][0]["objectId"]
    before = copy.deepcopy(doc)
    with pytest.raises(PlanValidationError):
        validate_plan(doc)
    assert doc == before


def _every_day(*years: int) -> list[date]:
    start, end = date(min(years), 1, 1), date(max(years), 12, 31)
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def test_creation_date_round_trips_every_day_of_2019_and_2020() -> None:
    days = _every_day(2019, 2020)
    assert len(days) == 365 + 366
    for day in days:
        text = f"{day.month:02d}-{day.day:02d}-{day.year:04d}"
        assert format_creation_date(parse_creation_date(text)) == text
        assert parse_creation_date(format_creation_date(day)) == day


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12-12-2017", date(2017, 12, 12)),
        ("02-29-2020", date(2020, 2, 29)),
        ("01-02-0999", date(999, 1, 2)),
        ("12-31-9999", date(9999, 12, 31)),
    ],
)
def test_parse_creation_date(text: str, expected: date) -> None:
    assert parse_creation_date(text) == expected
    assert format_creation_date(expected) == text


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2017-12-12", "not in MM-dd-yyyy form"),
        ("13-01-2017", "not in MM-dd-yyyy form"),
        ("12-12-2017\n", "not in MM-dd-yyyy form"),
        (" 12-12-2017", "not in MM-dd-yyyy form"),
        ("", "not in MM-dd-yyyy form"),
        (FULLWIDTH_DATE, "not in MM-dd-yyyy form"),
        ("02-30-2020", "not a real calendar date"),
        ("02-29-2019", "not a real calendar date"),
        ("01-01-0000", "not a real calendar date"),
        (None, "must be a string"),
        (20171212, "must be a string"),
    ],
)
def test_parse_creation_date_rejects(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_creation_date(value)


@pytest.mark.parametrize("value", ["12-12-2017", datetime(2017, 12, 12, 8, 30), None])
def test_format_creation_date_rejects_non_dates(value: Any) -> None:
    with pytest.raises(ValueError, match="needs a datetime.date"):
        format_creation_date(value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_costs_are_rejected(value: float) -> None:
    doc = sample_plan()
    doc["planCostShares"]["deductible"] = value
    issues = [(i.path, i.rule) for i in plan_issues(doc)]
    expected_rules = {("planCostShares.deductible", "finite")}
    if value < 0:
        expected_rules.add(("planCostShares.deductible", "minimum"))
    if value > 0:
        expected_rules.add(("planCostShares.deductible", "maximum"))
    assert set(issues) == expected_rules


# Values a mutation puts in place of a node: wrong types, edge numbers, edge strings.
_REPLACEMENTS: tuple[Any, ...] = (
    None, True, False, 0, -1, -0.5, 1e308, float("nan"), float("inf"), "", "x", "x" * 201,
    "ab cd", "12-12-2017\n", "2017-12-12", [], {}, [None], {"objectType": "plan"},
)  # fmt: skip


def _random_mutation(rng: random.Random, doc: Doc) -> Doc:
    """Replace, delete or add one node anywhere in the document."""
    doc = copy.deepcopy(doc)
    parents: list[Any] = [doc]
    slots: list[tuple[Any, str | int]] = []
    while parents:
        node = parents.pop()
        children = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in list(children):
            slots.append((node, key))
            if isinstance(child, dict | list):
                parents.append(child)
    parent, key = rng.choice(slots)
    action = rng.random()
    if action < 0.6:
        parent[key] = rng.choice(_REPLACEMENTS)
    elif action < 0.85 or not isinstance(parent, dict):
        del parent[key]
    else:
        parent[rng.choice(["extra", "objectid", "_org ", key])] = rng.choice(_REPLACEMENTS)
    return doc


def _strings(node: object) -> list[str]:
    if isinstance(node, dict):
        return [s for child in node.values() for s in _strings(child)]
    if isinstance(node, list):
        return [s for child in node for s in _strings(child)]
    return [node] if isinstance(node, str) else []


def test_the_compiled_schema_check_never_passes_what_jsonschema_rejects() -> None:
    # The ingest trusts the compiled check's "valid" without asking jsonschema, so it must never
    # pass a document jsonschema rejects: on the good and bad corpus above, on garbage, and on
    # seeded random mutations. Where it is stricter, jsonschema is asked and has the last word.
    rng = random.Random(20261126)
    docs: list[object] = [mutate(sample_plan()) for mutate in GOOD.values()]
    docs += [mutate(sample_plan()) for mutate, _ in BAD.values()]
    docs += [None, [], "x", 42, True, 1.5, [sample_plan()], {}]
    docs += [_random_mutation(rng, sample_plan()) for _ in range(1800)]
    verdicts = [(passes_schema_fast(doc), not list(_JSONSCHEMA.iter_errors(doc))) for doc in docs]

    wrongly_passed = [doc for doc, (fast, full) in zip(docs, verdicts, strict=True) if fast > full]
    assert wrongly_passed == []
    # The one known difference: its `$` does not match before a trailing newline (jsonschema's
    # does; the custom rules then report "trailing characters").
    stricter = [doc for doc, (fast, full) in zip(docs, verdicts, strict=True) if fast < full]
    assert [any(s.endswith("\n") for s in _strings(doc)) for doc in stricter] == [True] * len(
        stricter
    )
    # Both verdicts occur plenty, so agreement is not a uniform answer.
    assert sum(fast for fast, _ in verdicts) > 150
    assert sum(not fast for fast, _ in verdicts) > 1000
