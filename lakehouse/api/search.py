"""GET /v1/search: the filters, the Elasticsearch query they become, and the page of hits.

The query runs against the index alias (never a concrete index, so a reindex's swap is
invisible); hits give plan ids, and the documents come from the plan store, so a search
answers with the same documents as GET /v1/plan/{id}. Results are ordered by relevance when
there is free text, then by plan id, which also makes the cursor (`search_after`) stable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SearchFilters:
    text: str | None = None  # q: words of a service name, or an exact plan id / org / type
    plan_type: str | None = None
    org: str | None = None
    service: str | None = None  # words of a linked service's name
    min_deductible: float | None = None
    max_deductible: float | None = None


@dataclass(frozen=True)
class HitsPage:
    plan_ids: list[str]
    total: int
    # the last hit's sort values when more hits may follow, else None
    next_position: list[Any] | None


def _service_name(words: str) -> dict[str, Any]:
    return {
        "nested": {
            "path": "services",
            "query": {"match": {"services.name": {"query": words, "operator": "and"}}},
            "score_mode": "max",
        }
    }


def search_body(filters: SearchFilters, limit: int, after: list[Any] | None) -> dict[str, Any]:
    """The Elasticsearch request body for one page of `filters`' hits."""
    must: list[dict[str, Any]] = []
    filter_: list[dict[str, Any]] = []
    if filters.text:
        must.append(
            {
                "bool": {
                    "should": [
                        _service_name(filters.text),
                        {"term": {"plan_id": filters.text}},
                        {"term": {"org": filters.text}},
                        {"term": {"plan_type": filters.text}},
                    ],
                    "minimum_should_match": 1,
                }
            }
        )
    if filters.plan_type:
        filter_.append({"term": {"plan_type": filters.plan_type}})
    if filters.org:
        filter_.append({"term": {"org": filters.org}})
    if filters.service:
        filter_.append(_service_name(filters.service))
    cost: dict[str, float] = {}
    if filters.min_deductible is not None:
        cost["gte"] = filters.min_deductible
    if filters.max_deductible is not None:
        cost["lte"] = filters.max_deductible
    if cost:
        filter_.append({"range": {"deductible": cost}})
    sort: list[Any] = [{"plan_id": "asc"}]
    if filters.text:
        sort.insert(0, {"_score": "desc"})
    body: dict[str, Any] = {
        "query": {"bool": {"must": must or [{"match_all": {}}], "filter": filter_}},
        "sort": sort,
        "size": limit,
        "_source": False,
        "track_total_hits": True,
    }
    if after is not None:
        body["search_after"] = after
    return body


def hits_page(response: dict[str, Any], limit: int) -> HitsPage:
    """The plan ids, total and next position of an Elasticsearch search response."""
    hits = response["hits"]["hits"]
    total = response["hits"]["total"]["value"]
    position = hits[-1]["sort"] if len(hits) == limit else None
    return HitsPage([hit["_id"] for hit in hits], total, position)
