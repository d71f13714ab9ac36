"""The analyst notebooks run as an analyst runs them: each one executed top to bottom in a real
Jupyter kernel (its own Python process and SparkSession) against the small demo lakehouse that
the real pipeline builds (`demo_lake` in conftest.py: simulate, ingest, snapshot, gold jobs,
quality gate and mirror). Every cell runs without an error, every figure is shown in the
notebook and saved as the same PNG, and every table a notebook shows is exactly what the library
computes from the same gold tables here.

The executed notebooks and their figures are kept in test-output/notebooks/ for people to look
at.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient
from pyspark.sql import DataFrame, SparkSession
from support import env_for

from lakehouse import analysis
from lakehouse import io as lake_io
from lakehouse.config import PROJECT_ROOT, Config
from lakehouse.quality import suites as quality_suites
from lakehouse.tables import (
    COST_TRENDS,
    PLAN_ANOMALIES,
    PLAN_COSTS,
    QUALITY_RESULTS_TABLE,
    SERVICE_PAIRS,
    SERVICE_PATTERNS,
    Table,
)

# the demo lakehouse is built once, on the worker that runs every test using it (tests/conftest.py)
pytestmark = pytest.mark.xdist_group("serving")

NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
# A cell may start the kernel's JVM or run a handful of Spark jobs on a loaded 2-core machine.
CELL_TIMEOUT_S = 240

Read = Callable[[Table], DataFrame]


@dataclass(frozen=True)
class Expected:
    """What a notebook must show: each tagged table as the library computes it, and figures."""

    tables: dict[str, Callable[[Read, Config], DataFrame]]
    figures: tuple[str, ...]


EXPECTED = {
    "01_cost_trends": Expected(
        tables={
            "plan_type_summary": lambda read, _: analysis.plan_type_summary(read(PLAN_COSTS)),
            "yearly_cost_trend": lambda read, _: analysis.yearly_cost_trend(
                read(COST_TRENDS), keys=()
            ),
        },
        figures=("cost_components", "total_cost_by_plan_type", "cost_trend"),
    ),
    "02_service_patterns": Expected(
        tables={
            "top_services": lambda read, _: analysis.top_services(read(SERVICE_PATTERNS), n=15),
            "services_per_plan": lambda read, _: analysis.services_per_plan(read(PLAN_COSTS)),
            "top_pairs": lambda read, _: analysis.top_pairs(read(SERVICE_PAIRS), n=15, min_plans=2),
        },
        figures=("top_services", "services_per_plan", "top_pairs", "service_pairs"),
    ),
    "03_anomalies_and_quality": Expected(
        tables={
            "anomaly_summary": lambda read, _: analysis.anomaly_summary(read(PLAN_ANOMALIES)),
            "top_anomalies": lambda read, _: analysis.top_anomalies(
                read(PLAN_ANOMALIES), read(PLAN_COSTS), n=10
            ),
            "label_agreement": lambda read, config: analysis.label_agreement(
                read(PLAN_ANOMALIES), config.gold.label_anomaly_rate
            ),
            "quality_overview": lambda read, _: analysis.quality_overview(
                read(QUALITY_RESULTS_TABLE)
            ),
            "failing_checks": lambda read, _: analysis.failing_checks(read(QUALITY_RESULTS_TABLE)),
        },
        figures=(
            "anomalies_by_plan_type",
            "anomaly_scores",
            "quality_status",
            "quality_row_counts",
        ),
    ),
}


def test_every_notebook_is_covered() -> None:
    # how each notebook is committed (no outputs, no logic): tests/unit/test_notebook_files.py
    assert sorted(p.stem for p in NOTEBOOKS_DIR.glob("*.ipynb")) == sorted(EXPECTED)


@pytest.fixture(scope="module")
def executed(demo_lake: Config) -> Iterator[dict[str, Path | BaseException]]:
    """Every notebook run in a fresh python3 kernel pointed at the demo lakehouse through the
    environment, as a user's shell would: notebook name -> the executed copy in test-output/,
    or what went wrong (each test reports its own notebook's failure).

    The three kernels run side by side: most of a notebook's time is its own JVM starting and
    warming up, which overlaps well even on two cores."""
    output = PROJECT_ROOT / "test-output" / "notebooks"
    shutil.rmtree(output, ignore_errors=True)  # figures of an earlier run prove nothing
    output.mkdir(parents=True)
    settings = {k: v for k, v in env_for(demo_lake).items() if k.startswith("LAKEHOUSE_")}
    # Each kernel's session lives a minute: the JIT's first tier only, as in `make test-unit`
    # (docs/platform-findings.md, "The JIT and short sessions").
    settings["LAKEHOUSE_SPARK_JVM_OPTIONS"] = "-XX:TieredStopAtLevel=1"
    with pytest.MonkeyPatch.context() as env:
        for var, value in {**settings, analysis.OUTPUT_VAR: str(output)}.items():
            env.setenv(var, value)  # each kernel inherits this process's environment
        results = asyncio.run(_execute_all(list(EXPECTED), output))
    yield dict(zip(EXPECTED, results, strict=True))


async def _execute_all(names: list[str], output: Path) -> list[Path | BaseException]:
    async def run(name: str) -> Path:
        notebook = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
        client = NotebookClient(
            notebook,
            kernel_name="python3",
            timeout=CELL_TIMEOUT_S,
            startup_timeout=120,
            resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
        )
        try:
            # raises CellExecutionError, naming the cell and its traceback, on an error
            await client.async_execute()
        finally:
            nbformat.write(notebook, output / f"{name}.ipynb")  # as far as it got
        return output / f"{name}.ipynb"

    return await asyncio.gather(*(run(name) for name in names), return_exceptions=True)


def _outputs_by_tag(notebook: nbformat.NotebookNode) -> dict[str, list[dict]]:
    tagged: dict[str, list[dict]] = {}
    for cell in notebook.cells:
        for tag in cell.get("metadata", {}).get("tags", []):
            tagged[tag] = cell.get("outputs", [])
    return tagged


def _result(outputs: list[dict], mime: str) -> str:
    (shown,) = [o for o in outputs if o["output_type"] == "execute_result"]
    return shown["data"][mime]


def _assert_is_a_real_plot(png: bytes, where: str) -> None:
    import matplotlib.image

    assert png.startswith(b"\x89PNG\r\n\x1a\n"), where
    assert len(png) > 8_000, f"{where}: only {len(png)} bytes"
    pixels = matplotlib.image.imread(io.BytesIO(png), format="png")
    height, width = pixels.shape[:2]
    assert width >= 400 and height >= 250, (where, width, height)
    # more than a blank canvas: many distinct colours (axes, text, marks)
    distinct = len({tuple(p) for p in pixels.reshape(-1, pixels.shape[2])[::7].tolist()})
    assert distinct > 50, f"{where}: {distinct} colours"


# the first test also builds the demo lakehouse and runs the notebooks
@pytest.mark.parametrize("name", list(EXPECTED))
def test_notebook_runs_and_shows_what_the_library_computes(
    name: str,
    executed: dict[str, Path | BaseException],
    demo_lake: Config,
    spark: SparkSession,
) -> None:
    outcome = executed[name]
    if isinstance(outcome, BaseException):
        raise outcome
    notebook = nbformat.read(outcome, as_version=4)
    figures_dir = outcome.parent / name

    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []
    tagged = _outputs_by_tag(notebook)
    expected = EXPECTED[name]

    def read(table: Table) -> DataFrame:
        return lake_io.read_table(spark, demo_lake, table)

    # The tables shown are the library's results on the same gold, cell for cell: rendered
    # with Jupyter's pandas display limits (a terminal's would differ) they are the same HTML.
    shown_frames: dict[str, pd.DataFrame] = {}
    with pd.option_context("display.max_columns", 20, "display.max_rows", 60):
        for table, compute in expected.tables.items():
            frame = compute(read, demo_lake).toPandas()
            assert _result(tagged[f"table:{table}"], "text/html") == frame._repr_html_(), table
            shown_frames[table] = frame

    # Each figure is displayed in the notebook as exactly the PNG it saved, and is a real plot.
    assert sorted(p.stem for p in figures_dir.glob("*.png")) == sorted(expected.figures)
    for figure in expected.figures:
        shown = base64.b64decode(_result(tagged[f"figure:{figure}"], "image/png"))
        saved = (figures_dir / f"{figure}.png").read_bytes()
        assert shown == saved, figure
        _assert_is_a_real_plot(saved, f"{name}/{figure}")

    _assert_shown_numbers_add_up(name, shown_frames, spark, demo_lake)


def _assert_shown_numbers_add_up(
    name: str, shown: dict[str, pd.DataFrame], spark: SparkSession, lake: Config
) -> None:
    """The shown numbers agree with gold counted directly (not through the library)."""
    live = lake_io.read_table(spark, lake, PLAN_COSTS).count()
    if name == "01_cost_trends":
        assert shown["plan_type_summary"]["plans"].sum() == live
        assert shown["plan_type_summary"]["share_of_plans"].sum() == pytest.approx(1.0, abs=1e-3)
        assert shown["yearly_cost_trend"]["plans"].sum() == live
    elif name == "02_service_patterns":
        assert shown["services_per_plan"]["plans"].sum() == live
        patterns = lake_io.read_table(spark, lake, SERVICE_PATTERNS)
        most_used = patterns.agg({"plans_using": "max"}).first()[0]
        assert shown["top_services"]["plans_using"].iloc[0] == most_used
        assert not shown["top_pairs"].empty and (shown["top_pairs"]["plans_with_pair"] >= 2).all()
    else:
        anomalies = lake_io.read_table(spark, lake, PLAN_ANOMALIES)
        flagged = anomalies.where("is_anomaly").count()
        assert shown["anomaly_summary"]["flagged"].sum() == flagged
        assert len(shown["top_anomalies"]) == min(flagged, 10)
        # every suite ran on the demo data and nothing blocked its publish
        overview = shown["quality_overview"]
        assert len(overview) == len(quality_suites.suites(lake)), overview["table_name"].tolist()
        assert overview["errors"].sum() == 0, json.dumps(overview.astype(str).to_dict("records"))
        assert "error" not in set(shown["failing_checks"]["severity"])
