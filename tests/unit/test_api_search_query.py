"""Unit tests for lakehouse.api.search: the Elasticsearch body each filter combination becomes
(whole-body equality) and the page read from a response."""

from __future__ import annotations

from lakehouse.api.search import HitsPage, SearchFilters, hits_page, search_body

SERVICE_WORDS = {
    "nested": {
        "path": "services",
        "query": {"match": {"services.name": {"query": "well baby", "operator": "and"}}},
        "score_mode": "max",
    }
}


def test_no_filter_is_every_plan_by_id() -> None:
    assert search_body(SearchFilters(), limit=20, after=None) == {
        "query": {"bool": {"must": [{"match_all": {}}], "filter": []}},
        "sort": [{"plan_id": "asc"}],
        "size": 20,
        "_source": False,
        "track_total_hits": True,
    }


def test_free_text_matches_service_words_or_an_exact_id_org_or_type_by_relevance() -> None:
    body = search_body(SearchFilters(text="well baby"), limit=5, after=None)
    assert body == {
        "query": {
            "bool": {
                "must": [
                    {
                        "bool": {
                            "should": [
                                SERVICE_WORDS,
                                {"term": {"plan_id": "well baby"}},
                                {"term": {"org": "well baby"}},
                                {"term": {"plan_type": "well baby"}},
                            ],
                            "minimum_should_match": 1,
                        }
                    }
                ],
                "filter": [],
            }
        },
        # relevance first, the id breaks ties so the cursor is stable
        "sort": [{"_score": "desc"}, {"plan_id": "asc"}],
        "size": 5,
        "_source": False,
        "track_total_hits": True,
    }


def test_every_filter_narrows_without_scoring_and_the_cursor_continues() -> None:
    filters = SearchFilters(
        plan_type="inNetwork",
        org="example.com",
        service="well baby",
        min_deductible=100.0,
        max_deductible=2000.5,
    )
    assert search_body(filters, limit=50, after=["P-0042"]) == {
        "query": {
            "bool": {
                "must": [{"match_all": {}}],
                "filter": [
                    {"term": {"plan_type": "inNetwork"}},
                    {"term": {"org": "example.com"}},
                    SERVICE_WORDS,
                    {"range": {"deductible": {"gte": 100.0, "lte": 2000.5}}},
                ],
            }
        },
        "sort": [{"plan_id": "asc"}],
        "size": 50,
        "_source": False,
        "track_total_hits": True,
        "search_after": ["P-0042"],
    }


def test_a_one_sided_range_and_a_zero_bound_are_kept() -> None:
    only_max = search_body(SearchFilters(max_deductible=0.0), limit=1, after=None)
    only_min = search_body(SearchFilters(min_deductible=0.0), limit=1, after=None)
    assert only_max["query"]["bool"]["filter"] == [{"range": {"deductible": {"lte": 0.0}}}]
    assert only_min["query"]["bool"]["filter"] == [{"range": {"deductible": {"gte": 0.0}}}]


def test_empty_strings_are_no_filter() -> None:
    filters = SearchFilters(text="", plan_type="", org="", service="")
    assert search_body(filters, limit=3, after=None) == search_body(
        SearchFilters(), limit=3, after=None
    )


def response(ids: list[str], total: int) -> dict:
    hits = [{"_id": plan_id, "sort": [plan_id]} for plan_id in ids]
    return {"hits": {"total": {"value": total, "relation": "eq"}, "hits": hits}}


def test_a_full_page_gives_the_last_hit_as_next_position() -> None:
    assert hits_page(response(["A", "B"], total=7), limit=2) == HitsPage(["A", "B"], 7, ["B"])


def test_a_short_or_empty_page_is_the_last() -> None:
    assert hits_page(response(["A"], total=1), limit=2) == HitsPage(["A"], 1, None)
    assert hits_page(response([], total=0), limit=2) == HitsPage([], 0, None)
