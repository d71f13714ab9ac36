"""Hand-written plan documents shared by the schema and merge tests."""

from __future__ import annotations

from typing import Any

Doc = dict[str, Any]


def cost_share(object_id: str, deductible: float, copay: float) -> Doc:
    return {
        "deductible": deductible,
        "_org": "example.com",
        "copay": copay,
        "objectId": object_id,
        "objectType": "membercostshare",
    }


def plan_service(object_id: str, service_id: str, name: str, costs_id: str) -> Doc:
    return {
        "linkedService": {
            "_org": "example.com",
            "objectId": service_id,
            "objectType": "service",
            "name": name,
        },
        "planserviceCostShares": cost_share(costs_id, 10, 0),
        "_org": "example.com",
        "objectId": object_id,
        "objectType": "planservice",
    }
