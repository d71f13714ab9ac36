"""Pure PATCH merges of plan documents; inputs are never mutated, results are deep copies.

Semantics of `merge_patch(current, patch)`:

- nested objects merge recursively: keys in the patch override, keys absent from it are kept;
- `linkedPlanServices` merges by `objectId`: a matching item is merged recursively in place (order
  kept), new items are appended in patch order; every patch item needs an `objectId`;
- a nested object whose `objectId` differs from the current one is another node (e.g. a planservice
  re-linked to a different service): it replaces the current node instead of being merged into it,
  so no fields of the old node leak into the new one;
- any other list is replaced wholesale;
- `null` is rejected anywhere in a patch: deleting sub-nodes is not part of PATCH semantics (use a
  full replace, or `remove_plan_service` to drop a planservice);
- the plan's own `objectId` is immutable.

The result is not validated here; callers run `validate_plan` on it.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["PatchError", "merge_patch", "remove_plan_service"]

_SERVICES = "linkedPlanServices"


class PatchError(ValueError):
    """A patch that cannot be applied; the message names the offending path."""


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _reject_nulls(value: object, path: str) -> None:
    if value is None:
        raise PatchError(
            f"{path or '$'}: null is not allowed in a PATCH; deleting sub-nodes is not part of "
            "PATCH semantics (replace the document, or remove a planservice explicitly)"
        )
    if isinstance(value, dict):
        for key, item in value.items():
            _reject_nulls(item, _join(path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _reject_nulls(item, f"{path}[{i}]")


def _same_node(existing: dict[str, Any], value: dict[str, Any]) -> bool:
    """False when both carry an objectId and they differ: the patch then names another node."""
    return (
        "objectId" not in existing
        or "objectId" not in value
        or (existing["objectId"] == value["objectId"])
    )


def _merge_into(target: dict[str, Any], patch: dict[str, Any], path: str) -> None:
    """Merge `patch` into `target` (a private deep copy) in place."""
    for key, value in patch.items():
        child = _join(path, key)
        existing = target.get(key)
        if not path and key == _SERVICES:
            target[key] = _merge_services(existing, value, child)
        elif isinstance(value, dict) and isinstance(existing, dict) and _same_node(existing, value):
            _merge_into(existing, value, child)
        else:
            target[key] = copy.deepcopy(value)


def _merge_services(existing: object, patch_items: object, path: str) -> list[Any]:
    """Merge planservices by objectId: update matches in place, append the rest in patch order."""
    if not isinstance(patch_items, list):
        raise PatchError(f"{path}: must be an array of planservice objects")
    if existing is None:
        existing = []
    if not isinstance(existing, list):
        raise PatchError(f"{path}: the current document's value is not an array")
    items: list[Any] = existing
    index: dict[str, int] = {}
    for i, item in enumerate(items):
        if isinstance(item, dict) and isinstance(item.get("objectId"), str):
            index.setdefault(item["objectId"], i)

    seen: set[str] = set()
    for i, item in enumerate(patch_items):
        item_path = f"{path}[{i}]"
        if not isinstance(item, dict):
            raise PatchError(f"{item_path}: a planservice must be an object")
        object_id = item.get("objectId")
        if not isinstance(object_id, str) or not object_id:
            raise PatchError(
                f"{item_path}: a planservice in a PATCH needs an objectId (items are merged by it)"
            )
        if object_id in seen:
            raise PatchError(f"{item_path}: objectId {object_id!r} appears more than once")
        seen.add(object_id)
        if object_id in index:
            _merge_into(items[index[object_id]], item, item_path)
        else:
            index[object_id] = len(items)
            items.append(copy.deepcopy(item))
    return items


def merge_patch(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Return a new plan: `current` with `patch` merged in (see the module docstring)."""
    if not isinstance(current, dict):
        raise PatchError(f"$: the current document must be an object, got {type(current).__name__}")
    if not isinstance(patch, dict):
        raise PatchError(f"$: a patch must be an object, got {type(patch).__name__}")
    _reject_nulls(patch, "")
    if "objectId" in patch and patch["objectId"] != current.get("objectId"):
        raise PatchError(
            f"objectId: objectId is immutable ({current.get('objectId')!r} -> "
            f"{patch['objectId']!r})"
        )
    result = copy.deepcopy(current)
    _merge_into(result, patch, "")
    return result


def remove_plan_service(doc: dict[str, Any], planservice_id: str) -> dict[str, Any]:
    """Return a new plan without the planservice `planservice_id`; PatchError if it is absent."""
    services = doc.get(_SERVICES) if isinstance(doc, dict) else None
    if not isinstance(services, list):
        raise PatchError(f"{_SERVICES}: the document has no array of planservices")
    result = copy.deepcopy(doc)
    result[_SERVICES] = [
        item
        for item in result[_SERVICES]
        if not (isinstance(item, dict) and item.get("objectId") == planservice_id)
    ]
    if len(result[_SERVICES]) == len(services):
        raise PatchError(f"{_SERVICES}: no planservice with objectId {planservice_id!r}")
    return result
