"""A document Elasticsearch refuses for its content never holds the index back: it is recorded
in quarantine.sink_refusals with the refusal and the Kafka position of the plan's version, the
documents around it are indexed in the same batch, silver is complete, and a replay of the
same plans records nothing twice."""

from __future__ import annotations

import copy
import io as text_io
from pathlib import Path

from lake_checks import assert_lakehouse_matches
from support import drop_database, isolated_lakehouse, produce

from lakehouse import clients, io
from lakehouse.config import Config
from lakehouse.ingest.operations import ingest, show_quarantine
from lakehouse.ingest.search import INDEX_BODY
from lakehouse.plans.scenario import event_history
from lakehouse.tables import PLANS, REFUSED_DOCUMENTS

# An index whose own limit some plans break: more nested services than it takes.
NESTED_LIMIT = 5


def test_refused_documents_are_recorded_and_the_rest_indexed(
    spark, config: Config, tmp_path: Path
) -> None:
    lake = isolated_lakehouse(config, str(tmp_path / "warehouse"), "refusals")
    body = copy.deepcopy(INDEX_BODY)
    body["settings"]["index.mapping.nested_objects.limit"] = NESTED_LIMIT
    es = clients.es_client(lake)
    es.indices.create(index=lake.elasticsearch.index, body=body)
    try:
        events, final = event_history(41, plans=14, changes=20)
        positions = produce(lake, [(e.key(), e.value()) for e in events])
        assert ingest(spark, lake, once=True) == 0

        too_big = {
            plan_id: state.version
            for plan_id, state in final.items()
            if state.document is not None
            and len(state.document["linkedPlanServices"]) > NESTED_LIMIT
        }
        assert 0 < len(too_big) < sum(s.document is not None for s in final.values())
        assert_lakehouse_matches(spark, lake, final, not_indexed=frozenset(too_big))

        silver = {
            r["plan_id"]: (r["kafka_partition"], r["kafka_offset"])
            for r in io.read_table(spark, lake, PLANS).collect()
        }
        refusals = io.read_table(spark, lake, REFUSED_DOCUMENTS).collect()
        assert sorted(
            (r["sink"], r["operation"], r["plan_id"], r["version"], r["status"]) for r in refusals
        ) == sorted(("elasticsearch", "index", p, v, 400) for p, v in too_big.items())
        for row in refusals:
            assert "nested" in row["error"], row["error"]
            assert (row["kafka_partition"], row["kafka_offset"]) == silver[row["plan_id"]]
            assert (row["kafka_partition"], row["kafka_offset"]) in positions
            assert row["document"] is not None and row["plan_id"] in row["document"]

        # The same plans again (a replayed batch): nothing recorded twice, nothing lost.
        produce(lake, [(e.key(), e.value()) for e in events[-5:]])
        assert ingest(spark, lake, once=True) == 0
        assert io.read_table(spark, lake, REFUSED_DOCUMENTS).count() == len(too_big)

        shown = text_io.StringIO()
        assert show_quarantine(spark, lake, None, 3, shown) == 0
        assert f"sink refusals: {len(too_big):,} documents" in shown.getvalue()
        assert "elasticsearch index status 400:" in shown.getvalue()
    finally:
        es.indices.delete(index=lake.elasticsearch.index, ignore_unavailable=True)
        es.close()
        drop_database(lake)
