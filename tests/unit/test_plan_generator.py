"""Unit tests for lakehouse.plans.generator: determinism, streaming, realism, anomalies, changes.

Pure Python, no services. Large samples are built once per module (5,000 plans kept, 20,000
streamed with only the anomalous ones kept) so the whole file stays well under 10 s.
"""

from __future__ import annotations

import copy
import inspect
import random
import re
import statistics
import tracemalloc
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from lakehouse.plans import generator
from lakehouse.plans.generator import (
    ANOMALY_KINDS,
    ORGANISATIONS,
    PLAN_TYPES,
    SERVICE_BY_ID,
    SERVICE_CATALOGUE,
    SERVICE_ORG,
    TYPICAL_DEDUCTIBLE,
    Change,
    GeneratedPlan,
    anomaly_labels,
    generate_plan,
    iter_plans,
    plan_id_for,
    random_change,
)

SEED = 7
CATEGORIES = frozenset(
    "primary specialist drugs emergency inpatient outpatient imaging lab mental dental vision "
    "pediatric maternity rehab other".split()
)


@dataclass(frozen=True)
class Stream:
    """What consuming 20,000 plans leaves behind: counts and the anomalous plans only."""

    count: int
    anomalies: list[GeneratedPlan]


@pytest.fixture(scope="module")
def plans() -> list[GeneratedPlan]:
    return list(iter_plans(SEED, 5_000))


@pytest.fixture(scope="module")
def stream() -> Stream:
    count = 0
    anomalies: list[GeneratedPlan] = []
    for generated in iter_plans(SEED, 20_000):
        count += 1
        if generated.anomaly is not None:
            anomalies.append(generated)
    return Stream(count, anomalies)


def _services(doc: dict[str, Any]) -> list[str]:
    return [item["linkedService"]["objectId"] for item in doc["linkedPlanServices"]]


def _costs(doc: dict[str, Any]) -> list[tuple[float, float]]:
    nodes = [
        doc["planCostShares"],
        *(i["planserviceCostShares"] for i in doc["linkedPlanServices"]),
    ]
    return [(n["deductible"], n["copay"]) for n in nodes]


def _without_plan_id(value: Any, plan_id: str) -> Any:
    """The document with its own ids made seed-neutral, to compare content across seeds."""
    if isinstance(value, dict):
        return {k: _without_plan_id(v, plan_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_plan_id(v, plan_id) for v in value]
    if isinstance(value, str) and value.startswith(plan_id):
        return "PLAN" + value[len(plan_id) :]
    return value


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Minimal PATCH merge for these tests: objects merged, linkedPlanServices by objectId."""
    merged = copy.deepcopy(target)
    for key, value in patch.items():
        if key == "linkedPlanServices":
            items: list[dict[str, Any]] = merged.setdefault(key, [])
            position = {item["objectId"]: n for n, item in enumerate(items)}
            for item in value:
                if item["objectId"] in position:
                    n = position[item["objectId"]]
                    items[n] = _merge(items[n], item)
                else:
                    items.append(copy.deepcopy(item))
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _is_extreme(doc: dict[str, Any]) -> bool:
    if doc["planCostShares"]["deductible"] >= 20 * TYPICAL_DEDUCTIBLE:
        return True
    return any(
        item["planserviceCostShares"]["copay"]
        >= 19.9 * SERVICE_BY_ID[item["linkedService"]["objectId"]].typical_copay
        for item in doc["linkedPlanServices"]
    )


def _is_implausible_mix(doc: dict[str, Any]) -> bool:
    ids = _services(doc)
    if len(ids) != len(set(ids)):
        return True
    services = [SERVICE_BY_ID[i] for i in ids]
    adult_dental = [s for s in services if s.category == "dental" and "Adult" in s.name]
    children = [
        s
        for s in services
        if s.category in ("pediatric", "maternity")
        or (s.category == "vision" and "Children" in s.name)
    ]
    return len(ids) >= 10 and len(adult_dental) == 1 and len(children) == len(ids) - 1


# -------------------------------------------------------------------------------- determinism


def test_generate_plan_is_deterministic_and_matches_iter_plans() -> None:
    first = [generate_plan(SEED, i) for i in range(60)]
    again = [generate_plan(SEED, i) for i in range(60)]
    assert first == again
    assert list(iter_plans(SEED, 60)) == first
    # Each call returns fresh dicts: mutating one plan cannot leak into the next call.
    first[0].doc["linkedPlanServices"][0]["linkedService"]["name"] = "mutated"
    assert generate_plan(SEED, 0) == again[0]


def test_iter_plans_start_gives_the_same_plans_as_a_full_run() -> None:
    assert list(iter_plans(SEED, 20, start=10)) == list(iter_plans(SEED, 30))[10:30]


def test_a_different_seed_gives_different_documents() -> None:
    differing = 0
    for i in range(50):
        a = generate_plan(SEED, i).doc
        b = generate_plan(SEED + 1, i).doc
        assert a["objectId"] == plan_id_for(SEED, i) != b["objectId"]
        if _without_plan_id(a, a["objectId"]) != _without_plan_id(b, b["objectId"]):
            differing += 1
    assert differing == 50


def test_normal_plans_do_not_depend_on_the_anomaly_rate() -> None:
    for i in range(300):
        with_anomalies = generate_plan(SEED, i, anomaly_rate=0.5)
        if with_anomalies.anomaly is None:
            assert generate_plan(SEED, i, anomaly_rate=0.0) == with_anomalies
    assert all(p.anomaly is None for p in iter_plans(SEED, 300, anomaly_rate=0.0))
    assert all(p.anomaly is not None for p in iter_plans(SEED, 300, anomaly_rate=1.0))


def test_random_change_is_deterministic_and_leaves_current_untouched() -> None:
    for i in range(40):
        doc = generate_plan(SEED, i).doc
        before = copy.deepcopy(doc)
        a = random_change(random.Random(1), doc)
        b = random_change(random.Random(1), doc)
        assert a == b
        assert doc == before
    rng_a, rng_b = random.Random(5), random.Random(5)
    doc = generate_plan(SEED, 3).doc
    assert [random_change(rng_a, doc) for _ in range(30)] == [
        random_change(rng_b, doc) for _ in range(30)
    ]


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="index"):
        generate_plan(SEED, -1)
    with pytest.raises(ValueError, match="anomaly_rate"):
        generate_plan(SEED, 0, anomaly_rate=1.5)
    with pytest.raises(ValueError, match="count"):
        iter_plans(SEED, -1)
    with pytest.raises(ValueError, match="weights"):
        random_change(random.Random(0), generate_plan(SEED, 0).doc, weights=(0, 0, 0))


# ---------------------------------------------------------------------------- memory and scale


def test_iter_plans_is_a_generator_that_streams_20000_plans(stream: Stream) -> None:
    assert inspect.isgenerator(iter_plans(SEED, 20_000))
    assert stream.count == 20_000
    assert set(Counter(p.anomaly for p in stream.anomalies)) == set(ANOMALY_KINDS)


def test_streaming_memory_does_not_grow_with_the_count() -> None:
    tracemalloc.start()
    try:
        for _ in iter_plans(SEED, 2_000):
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024, f"peak {peak} bytes: plans are being kept in memory"


def test_a_late_plan_is_generated_without_the_earlier_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every plan draws from an RNG of its own: generating plan 999,999 makes exactly that one RNG
    # (its cost against plan 0's: bench/plan_generator.py).
    made: list[tuple[int, int]] = []
    real = generator._plan_rng
    monkeypatch.setattr(
        generator, "_plan_rng", lambda seed, index: made.append((seed, index)) or real(seed, index)
    )
    late = generate_plan(SEED, 999_999)
    assert made == [(SEED, 999_999)]
    assert late.doc["objectId"] == "plan-7-0999999"
    assert next(iter_plans(SEED, 1, start=999_999)) == late


# ------------------------------------------------------------------------------------ realism


def test_service_catalogue_shape() -> None:
    assert 250 <= len(SERVICE_CATALOGUE) <= 400
    ids = [s.object_id for s in SERVICE_CATALOGUE]
    names = [s.name for s in SERVICE_CATALOGUE]
    assert len(set(ids)) == len(ids)
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"svc-\d{4}", i) for i in ids)
    assert {s.category for s in SERVICE_CATALOGUE} == CATEGORIES
    assert {s.object_id: s for s in SERVICE_CATALOGUE} == SERVICE_BY_ID
    weights = sorted((s.weight for s in SERVICE_CATALOGUE), reverse=True)
    assert weights[-1] > 0
    assert weights[0] > 20 * statistics.median(weights)  # Zipf-like: a few very common services
    assert len(ORGANISATIONS) >= 6
    assert sum(share for _, share in ORGANISATIONS) == pytest.approx(1.0)
    assert sum(weight for _, weight in PLAN_TYPES) == pytest.approx(1.0)


def test_plan_structure_and_ids(plans: list[GeneratedPlan]) -> None:
    for index, generated in enumerate(plans):
        doc = generated.doc
        plan_id = plan_id_for(SEED, index)
        org = doc["_org"]
        assert doc["objectId"] == plan_id
        assert doc["planCostShares"]["objectId"] == f"{plan_id}-mcs"
        assert 1 <= len(doc["linkedPlanServices"]) <= 15
        for k, item in enumerate(doc["linkedPlanServices"]):
            assert item["objectId"] == f"{plan_id}-ps-{k:02d}"
            assert item["planserviceCostShares"]["objectId"] == f"{plan_id}-ps-{k:02d}-mcs"
            assert item["_org"] == item["planserviceCostShares"]["_org"] == org
        assert doc["planCostShares"]["_org"] == org
        if generated.anomaly is None:
            ids = _services(doc)
            assert len(ids) == len(set(ids)), f"{plan_id} links a service twice"


def test_services_are_shared_entities(plans: list[GeneratedPlan]) -> None:
    seen: dict[str, dict[str, Any]] = {}
    for generated in plans:
        for item in generated.doc["linkedPlanServices"]:
            node = item["linkedService"]
            assert seen.setdefault(node["objectId"], node) == node
            assert node == {
                "_org": SERVICE_ORG,
                "objectId": node["objectId"],
                "objectType": "service",
                "name": SERVICE_BY_ID[node["objectId"]].name,
            }
    assert len(seen) >= 200
    usage = Counter(sid for p in plans for sid in _services(p.doc))
    top, *_ = usage.most_common(1)
    assert top[1] > 50 * min(usage.values())  # popularity is skewed


def test_plan_attribute_distributions(plans: list[GeneratedPlan]) -> None:
    docs = [p.doc for p in plans]
    types = Counter(d["planType"] for d in docs)
    assert set(types) == {t for t, _ in PLAN_TYPES}
    assert types["PPO"] > types["EPO"] > types["outOfNetwork"]
    orgs = Counter(d["_org"] for d in docs)
    assert len(orgs) >= 6
    assert orgs.most_common(1)[0][1] > 3 * min(orgs.values())
    years = {datetime.strptime(d["creationDate"], "%m-%d-%Y").year for d in docs}
    assert years == set(range(2014, 2026))
    assert all(re.fullmatch(r"\d{2}-\d{2}-\d{4}", d["creationDate"]) for d in docs)
    counts = Counter(len(d["linkedPlanServices"]) for d in docs)
    assert sum(counts[k] for k in range(3, 9)) > 0.6 * len(docs)


def test_deductibles_are_skewed_by_tier(plans: list[GeneratedPlan]) -> None:
    normal = [p.doc["planCostShares"] for p in plans if p.anomaly is None]
    deductibles = sorted(c["deductible"] for c in normal)
    median = statistics.median(deductibles)
    p99 = deductibles[int(0.99 * len(deductibles))]
    assert 1000 <= median <= 6000
    assert p99 > 3 * median
    assert all(isinstance(d, int) and d % 50 == 0 for d in deductibles)
    copays = [c["copay"] for c in normal]
    assert all(isinstance(c, int) and c % 5 == 0 and c <= 75 for c in copays)
    assert 0.15 < copays.count(0) / len(copays) < 0.5


def test_service_costs_follow_their_category(plans: list[GeneratedPlan]) -> None:
    for generated in plans:
        if generated.anomaly is not None:
            continue
        plan_deductible = generated.doc["planCostShares"]["deductible"]
        for item in generated.doc["linkedPlanServices"]:
            service = SERVICE_BY_ID[item["linkedService"]["objectId"]]
            costs = item["planserviceCostShares"]
            low = service.copay_low * service.copay_multiplier * 0.6
            high = service.copay_high * service.copay_multiplier * 1.3
            assert isinstance(costs["copay"], int)
            # A $0-everything plan gets one $10 service copay, so allow that floor.
            assert low - 1 <= costs["copay"] <= max(high + 1, 10), (service.name, costs)
            if service.deductible_rule == "plan":
                assert costs["deductible"] == plan_deductible
            elif service.deductible_rule == "none":
                assert costs["deductible"] == 0
            else:
                assert 25 <= costs["deductible"] <= 100


# ---------------------------------------------------------------------------------- anomalies


def test_anomaly_fraction_and_labels(plans: list[GeneratedPlan]) -> None:
    labels = [(p.doc["objectId"], p.anomaly) for p in plans]
    assert list(anomaly_labels(SEED, len(plans))) == labels
    fraction = sum(1 for _, a in labels if a is not None) / len(labels)
    assert 0.01 <= fraction <= 0.03
    assert {a for _, a in labels} <= {None, *ANOMALY_KINDS}


def test_each_anomaly_kind_exhibits_its_property(
    plans: list[GeneratedPlan], stream: Stream
) -> None:
    properties = {
        "copay_above_deductible": lambda d: (
            d["planCostShares"]["copay"] > d["planCostShares"]["deductible"]
            and d["planCostShares"]["deductible"] <= 200
        ),
        "extreme_cost": _is_extreme,
        "implausible_service_mix": _is_implausible_mix,
        "zero_cost_everything": lambda d: all(c == (0, 0) for c in _costs(d)),
    }
    for generated in stream.anomalies:
        assert generated.anomaly is not None
        assert properties[generated.anomaly](generated.doc), generated.doc["objectId"]
    # Normal plans never show the properties that define the simple kinds.
    for generated in plans:
        if generated.anomaly is None:
            for kind in ("copay_above_deductible", "extreme_cost", "zero_cost_everything"):
                assert not properties[kind](generated.doc), (kind, generated.doc["objectId"])
    mixes = [p.doc for p in stream.anomalies if p.anomaly == "implausible_service_mix"]
    duplicated = [d for d in mixes if len(set(_services(d))) < len(_services(d))]
    assert 0 < len(duplicated) < len(mixes)  # both variants occur


# ---------------------------------------------------------------------------- schema validity


def test_generated_documents_are_schema_valid(plans: list[GeneratedPlan], stream: Stream) -> None:
    from lakehouse.plans.schema import validate_plan

    for generated in [*plans[:800], *stream.anomalies]:
        validate_plan(generated.doc)


def test_changes_keep_documents_valid() -> None:
    from lakehouse.plans.schema import validate_plan

    rng = random.Random(2024)
    kinds: Counter[str] = Counter()
    appended = 0
    # Plans 0..119 plus some anomalous ones, so changes to bad data stay valid too.
    sources = [generate_plan(SEED, i) for i in range(120)]
    sources += [p for p in iter_plans(SEED, 2_000, start=1_000) if p.anomaly][:30]
    for generated in sources:
        doc = generated.doc
        plan_id = doc["objectId"]
        for _ in range(6):
            change = random_change(rng, doc)
            kinds[change.kind] += 1
            assert isinstance(change, Change)
            if change.kind == "delete":
                assert change.patch is None and change.document is None
                break
            if change.kind == "replace":
                assert change.patch is None and change.document is not None
                assert change.document["objectId"] == plan_id
                assert change.document != doc
                doc = change.document
            else:
                assert change.document is None and change.patch is not None
                assert set(change.patch) <= {"planCostShares", "linkedPlanServices"}
                old_ids = {i["objectId"] for i in doc["linkedPlanServices"]}
                if "planCostShares" in change.patch:
                    assert change.patch["planCostShares"]["objectId"] == f"{plan_id}-mcs"
                for item in change.patch.get("linkedPlanServices", []):
                    if item["objectId"] not in old_ids:
                        appended += 1
                        assert re.fullmatch(rf"{plan_id}-ps-x\d+", item["objectId"])
                        node = item["linkedService"]
                        assert node == SERVICE_BY_ID[node["objectId"]].node()
                        assert node["objectId"] not in _services(doc)
                doc = _merge(doc, change.patch)
            validate_plan(doc)
            ps_ids = [i["objectId"] for i in doc["linkedPlanServices"]]
            assert len(ps_ids) == len(set(ps_ids))
    assert set(kinds) == {"patch", "replace", "delete"}
    assert kinds["patch"] > kinds["replace"] > kinds["delete"]
    assert appended > 0


def test_change_weights_are_respected() -> None:
    rng = random.Random(3)
    doc = generate_plan(SEED, 1).doc
    assert {random_change(rng, doc, weights=(1, 0, 0)).kind for _ in range(200)} == {"patch"}
    assert {random_change(rng, doc, weights=(0, 0, 1)) for _ in range(20)} == {
        Change(kind="delete")
    }
    kinds = Counter(random_change(rng, doc, weights=(0.5, 0.5, 0)).kind for _ in range(1_000))
    assert set(kinds) == {"patch", "replace"}
    assert 400 < kinds["patch"] < 600
