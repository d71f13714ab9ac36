"""Unit tests for lakehouse.plans.merge: PATCH semantics, purity and the errors it raises.

Results are compared as whole dicts against a hand-built expectation, and inputs are compared with
deep copies taken before the call, so a merge that mutates its arguments fails.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from plan_samples import Doc, cost_share, plan_service

from lakehouse.plans.merge import PatchError, merge_patch, remove_plan_service
from lakehouse.plans.schema import validate_plan


def _physical() -> Doc:
    return plan_service(
        "27283xvx9asdff-504", "1234520xvc30asdf-502", "Yearly physical", "1234512xvc1314asdfs-503"
    )


def _well_baby() -> Doc:
    return plan_service(
        "27283xvx9sdf-506", "1234520xvc30sff-505", "well baby", "1234512xvc1314sdfsd-506"
    )


def _dental() -> Doc:
    return plan_service("ps-dental-1", "svc-dental", "Dental cleaning", "psc-dental-1")


def sample_plan() -> Doc:
    """A valid plan with two planservices that share no ids with the plan."""
    return {
        "planCostShares": cost_share("1234vxc2324sdf-501", 2000, 23),
        "linkedPlanServices": [_physical(), _well_baby()],
        "_org": "example.com",
        "objectId": "12xvxc345ssdsds-508",
        "objectType": "plan",
        "planType": "inNetwork",
        "creationDate": "12-12-2017",
    }


def _merge_checked(current: Doc, patch: Doc) -> Doc:
    """merge_patch, asserting that neither input changed and the result shares no objects."""
    current_before, patch_before = copy.deepcopy(current), copy.deepcopy(patch)
    result = merge_patch(current, patch)
    assert current == current_before
    assert patch == patch_before
    assert result is not current
    assert result.get("linkedPlanServices") is not current.get("linkedPlanServices")
    assert result.get("planCostShares") is not current.get("planCostShares")
    return result


def test_sample_plan_is_valid() -> None:
    validate_plan(sample_plan())


def test_cost_change_in_plan_cost_shares_keeps_other_keys() -> None:
    result = _merge_checked(sample_plan(), {"planCostShares": {"deductible": 2500}})
    expected = sample_plan()
    expected["planCostShares"] = cost_share("1234vxc2324sdf-501", 2500, 23)
    assert result == expected
    validate_plan(result)


def test_scalar_change_at_the_root() -> None:
    result = _merge_checked(sample_plan(), {"planType": "PPO", "creationDate": "01-31-2020"})
    expected = sample_plan()
    expected["planType"] = "PPO"
    expected["creationDate"] = "01-31-2020"
    assert result == expected


def test_update_existing_planservice_by_object_id_keeps_others_and_order() -> None:
    patch = {
        "linkedPlanServices": [
            {"objectId": "27283xvx9sdf-506", "planserviceCostShares": {"copay": 15}}
        ]
    }
    result = _merge_checked(sample_plan(), patch)
    well_baby = _well_baby()
    well_baby["planserviceCostShares"]["copay"] = 15
    expected = sample_plan()
    expected["linkedPlanServices"] = [_physical(), well_baby]
    assert result == expected
    validate_plan(result)


def test_append_new_planservice() -> None:
    result = _merge_checked(sample_plan(), {"linkedPlanServices": [_dental()]})
    expected = sample_plan()
    expected["linkedPlanServices"] = [_physical(), _well_baby(), _dental()]
    assert result == expected
    validate_plan(result)


def test_update_and_append_in_one_patch() -> None:
    second_new = plan_service("ps-vision-1", "svc-vision", "Eye exam", "psc-vision-1")
    patch = {
        "planCostShares": {"copay": 30},
        "linkedPlanServices": [
            _dental(),
            {"objectId": "27283xvx9asdff-504", "linkedService": {"name": "Annual physical"}},
            second_new,
        ],
    }
    result = _merge_checked(sample_plan(), patch)
    physical = _physical()
    physical["linkedService"]["name"] = "Annual physical"
    expected = sample_plan()
    expected["planCostShares"]["copay"] = 30
    expected["linkedPlanServices"] = [physical, _well_baby(), _dental(), second_new]
    assert result == expected
    validate_plan(result)


def test_appended_item_is_a_copy_of_the_patch_item() -> None:
    patch = {"linkedPlanServices": [_dental()]}
    result = merge_patch(sample_plan(), patch)
    assert result["linkedPlanServices"][2] == patch["linkedPlanServices"][0]
    assert result["linkedPlanServices"][2] is not patch["linkedPlanServices"][0]
    result["linkedPlanServices"][2]["linkedService"]["name"] = "changed"
    assert patch["linkedPlanServices"][0]["linkedService"]["name"] == "Dental cleaning"


def test_empty_patch_returns_equal_but_distinct_object() -> None:
    current = sample_plan()
    result = _merge_checked(current, {})
    assert result == sample_plan()
    assert result is not current
    for before, after in zip(
        current["linkedPlanServices"], result["linkedPlanServices"], strict=True
    ):
        assert after is not before
        assert after["linkedService"] is not before["linkedService"]


def test_same_object_id_in_patch_is_allowed() -> None:
    result = _merge_checked(sample_plan(), {"objectId": "12xvxc345ssdsds-508", "_org": "b.org"})
    expected = sample_plan()
    expected["_org"] = "b.org"
    assert result == expected


def test_lists_other_than_linked_plan_services_are_replaced() -> None:
    current = sample_plan()
    current["tags"] = ["a", "b", "c"]
    current["planCostShares"]["tiers"] = [{"level": 1}, {"level": 2}]
    patch = {"tags": ["z"], "planCostShares": {"tiers": [{"level": 3}]}}
    result = _merge_checked(current, patch)
    expected = sample_plan()
    expected["tags"] = ["z"]
    expected["planCostShares"]["tiers"] = [{"level": 3}]
    assert result == expected


def test_nested_linked_plan_services_key_is_not_merged_by_id() -> None:
    # Only the plan's own linkedPlanServices merge by objectId; elsewhere lists are replaced.
    current = sample_plan()
    current["planCostShares"]["linkedPlanServices"] = [{"objectId": "a", "v": 1}]
    patch = {"planCostShares": {"linkedPlanServices": [{"objectId": "b"}]}}
    result = _merge_checked(current, patch)
    assert result["planCostShares"]["linkedPlanServices"] == [{"objectId": "b"}]


def test_relinking_a_service_replaces_the_node_instead_of_merging() -> None:
    # A different objectId is a different entity: the old service's name must not leak in.
    new_service = {"_org": "example.com", "objectId": "svc-other", "objectType": "service"}
    patch = {
        "linkedPlanServices": [{"objectId": "27283xvx9asdff-504", "linkedService": new_service}]
    }
    result = _merge_checked(sample_plan(), patch)
    physical = _physical()
    physical["linkedService"] = new_service
    expected = sample_plan()
    expected["linkedPlanServices"] = [physical, _well_baby()]
    assert result == expected


def test_merge_into_a_plan_without_linked_plan_services() -> None:
    current = sample_plan()
    del current["linkedPlanServices"]
    result = _merge_checked(current, {"linkedPlanServices": [_dental()]})
    expected = sample_plan()
    expected["linkedPlanServices"] = [_dental()]
    assert result == expected


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"planType": None}, r"^planType: null is not allowed"),
        ({"planCostShares": {"copay": None}}, r"^planCostShares\.copay: null is not allowed"),
        (
            {"linkedPlanServices": [{"objectId": "27283xvx9sdf-506", "linkedService": None}]},
            r"^linkedPlanServices\[0\]\.linkedService: null is not allowed",
        ),
        ({"tags": ["a", None]}, r"^tags\[1\]: null is not allowed"),
    ],
)
def test_null_values_are_rejected(patch: Doc, message: str) -> None:
    current = sample_plan()
    with pytest.raises(PatchError, match=message):
        merge_patch(current, patch)
    assert current == sample_plan()


def test_planservice_without_object_id_names_the_path() -> None:
    patch = {"linkedPlanServices": [{"planserviceCostShares": {"copay": 1}}]}
    with pytest.raises(PatchError) as info:
        merge_patch(sample_plan(), patch)
    assert str(info.value).startswith("linkedPlanServices[0]: ")
    assert "objectId" in str(info.value)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (
            {"linkedPlanServices": [_dental(), {"_org": "x"}]},
            r"^linkedPlanServices\[1\]: .*objectId",
        ),
        ({"linkedPlanServices": [{"objectId": ""}]}, r"^linkedPlanServices\[0\]: .*objectId"),
        ({"linkedPlanServices": [{"objectId": 504}]}, r"^linkedPlanServices\[0\]: .*objectId"),
        ({"linkedPlanServices": ["x"]}, r"^linkedPlanServices\[0\]: .*must be an object"),
        ({"linkedPlanServices": {"objectId": "x"}}, r"^linkedPlanServices: must be an array"),
        (
            {"linkedPlanServices": [{"objectId": "a"}, {"objectId": "a"}]},
            r"^linkedPlanServices\[1\]: objectId 'a' appears more than once",
        ),
    ],
)
def test_malformed_linked_plan_services_patch(patch: Doc, message: str) -> None:
    with pytest.raises(PatchError, match=message):
        merge_patch(sample_plan(), patch)


def test_object_id_change_is_rejected() -> None:
    current = sample_plan()
    with pytest.raises(PatchError, match="objectId is immutable"):
        merge_patch(current, {"objectId": "other-plan", "planType": "PPO"})
    assert current == sample_plan()


@pytest.mark.parametrize(("current", "patch"), [([], {}), (sample_plan(), []), (None, {})])
def test_non_object_inputs_are_rejected(current: Any, patch: Any) -> None:
    with pytest.raises(PatchError, match=r"^\$: "):
        merge_patch(current, patch)


def test_patch_error_is_a_value_error() -> None:
    assert issubclass(PatchError, ValueError)


def test_remove_plan_service() -> None:
    current = sample_plan()
    result = remove_plan_service(current, "27283xvx9asdff-504")
    expected = sample_plan()
    expected["linkedPlanServices"] = [_well_baby()]
    assert result == expected
    assert list(result) == list(expected)
    assert current == sample_plan()
    assert result["linkedPlanServices"][0] is not current["linkedPlanServices"][1]
    validate_plan(result)


def test_remove_last_plan_service_leaves_an_empty_list() -> None:
    result = remove_plan_service(sample_plan(), "27283xvx9asdff-504")
    result = remove_plan_service(result, "27283xvx9sdf-506")
    expected = sample_plan()
    expected["linkedPlanServices"] = []
    assert result == expected
    validate_plan(result)


def test_remove_absentplan_service() -> None:
    current = sample_plan()
    with pytest.raises(PatchError, match="no planservice with objectId 'nope'"):
        remove_plan_service(current, "nope")
    # a service id is not a planservice id
    with pytest.raises(PatchError, match="no planservice with objectId '1234520xvc30asdf-502'"):
        remove_plan_service(current, "1234520xvc30asdf-502")
    assert current == sample_plan()


def test_remove_from_a_document_without_services() -> None:
    current = sample_plan()
    del current["linkedPlanServices"]
    with pytest.raises(PatchError, match="no array of planservices"):
        remove_plan_service(current, "27283xvx9asdff-504")
