"""Integration tests: every test in this folder is marked `integration` (so `-m "not
integration"` selects exactly the tests that need no service), and the fixtures shared across
modules (a small demo lakehouse, built once per run)."""

from __future__ import annotations

import dataclasses
import io as text_io
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import drop_database, drop_schema, isolated_lakehouse

from lakehouse.config import Config

HERE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def demo_lake(
    spark, config: Config, local_stack: bool, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Config]:
    """What `make demo` leaves behind, at test size: a simulated plan store ingested into
    bronze/silver and the search index, a snapshot, every gold table, a trained and scored
    anomaly model, a passed quality run and its mirror in a private PostgreSQL schema. For the
    surfaces that read them (notebooks, Superset)."""
    from lakehouse.gold import jobs
    from lakehouse.ingest.indexer import Indexer
    from lakehouse.ingest.operations import ingest, snapshot
    from lakehouse.plans.simulate import simulate
    from lakehouse.plans.store import PlanStore
    from lakehouse.quality.gate import publish_if_clean
    from lakehouse.serving.mirror import publish_all

    root = tmp_path_factory.mktemp("demo-lake")
    lake = isolated_lakehouse(config, str(root / "warehouse"), "demo")
    lake = dataclasses.replace(
        lake,
        serving=dataclasses.replace(lake.serving, schema=f"gold_demo_{uuid.uuid4().hex[:8]}"),
        gold=dataclasses.replace(lake.gold, mlflow_tracking_uri=f"sqlite:///{root}/mlflow.db"),
    )
    try:
        with PlanStore.open(lake, batch_size=50) as store:
            simulate(store, plans=80, changes=60, seed=11)
        assert ingest(spark, lake, once=True) == 0
        Indexer(lake, report=lambda _: None).run(threading.Event(), once=True)
        assert snapshot(spark, lake, False, text_io.StringIO()) == 0
        assert jobs.run(spark, lake, "all", jobs.JobOptions(modes=("train", "score"))) == 0
        outcome = publish_if_clean(spark, lake, lambda: publish_all(spark, lake, print))
        assert outcome.published, [r.message for r in outcome.run.blocking]
        yield lake
    finally:
        drop_database(lake)
        drop_schema(lake, lake.serving.schema)
