"""A document written to the operational store around the plan store (a field of another type,
broken bookkeeping, a bare _id) never stops a snapshot: the MongoDB connector reads every field
as text, each document is checked like a change event, the bad ones land in
quarantine.plan_snapshots with their reason, and the good ones are snapshotted and bootstrapped
in the same run."""

from __future__ import annotations

import copy
import dataclasses
import io as text_io
from pathlib import Path

from support import drop_database, isolated_source

from lakehouse import io
from lakehouse.config import Config
from lakehouse.ingest import snapshot
from lakehouse.ingest.operations import show_quarantine
from lakehouse.plans.generator import generate_plan
from lakehouse.plans.store import PlanStore
from lakehouse.tables import PLANS, SNAPSHOT_QUARANTINE, SNAPSHOTS


def test_hostile_stored_documents_are_quarantined_and_the_rest_snapshotted(
    spark, config: Config, local_stack, tmp_path: Path
) -> None:
    source = isolated_source(config, "snapquar")
    lake = dataclasses.replace(source, warehouse=str(tmp_path / "warehouse"), checkpoints="")
    good = [generate_plan(5, i).doc for i in range(3)]
    try:
        with PlanStore.open(lake) as store:
            for plan in good:
                store.create(plan)
            store.delete(good[2]["objectId"])
            template = generate_plan(5, 9).doc
            wrong_type = copy.deepcopy(template) | {"_id": "plan-bad-1", "objectId": "plan-bad-1"}
            wrong_type["planCostShares"]["deductible"] = "abc"
            wrong_type["_lakehouse"] = {"version": 1, "deleted": False, "updated_ms": 1}
            no_meta = copy.deepcopy(template) | {"_id": "plan-bad-2", "objectId": "plan-bad-2"}
            bad_meta = {"_id": "plan-bad-3", "_lakehouse": {"version": "seven"}}
            store.plans.insert_many([wrong_type, no_meta, bad_meta])

        result = snapshot.take_snapshot(spark, lake)
        assert (result.plans, result.live, result.quarantined) == (3, 2, 3)
        snapshotted = {
            r["plan_id"]: (r["version"], r["is_deleted"])
            for r in io.read_table(spark, lake, SNAPSHOTS).collect()
        }
        assert snapshotted == {
            good[0]["objectId"]: (1, False),
            good[1]["objectId"]: (1, False),
            good[2]["objectId"]: (2, True),
        }
        quarantined = sorted(
            (r["snapshot_id"], r["plan_id"], r["reason"])
            for r in io.read_table(spark, lake, SNAPSHOT_QUARANTINE).collect()
        )
        assert quarantined == [
            (result.snapshot_id, "plan-bad-1", "schema-violation"),
            (result.snapshot_id, "plan-bad-2", "bad-bookkeeping"),
            (result.snapshot_id, "plan-bad-3", "bad-bookkeeping"),
        ]

        applied = snapshot.bootstrap_silver(spark, lake)
        assert (applied.events, applied.plans_changed) == (3, 3)
        silver = {
            r["plan_id"]: (r["version"], r["is_deleted"])
            for r in io.read_table(spark, lake, PLANS).collect()
        }
        assert silver == snapshotted

        shown = text_io.StringIO()
        assert show_quarantine(spark, lake, None, 0, shown) == 0
        assert "snapshot quarantine: 3 documents" in shown.getvalue()
    finally:
        drop_database(lake)
