"""The dashboard spec is checked before Superset is called; the layout is built from it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lakehouse.serving.superset import (
    DEFAULT_SPEC,
    ChartSpec,
    DatasetSpec,
    SupersetError,
    chart_uuid,
    load_spec,
    position_json,
    spec_problems,
)


def test_the_committed_spec_is_valid_and_takes_the_mirror_schema() -> None:
    spec = load_spec(DEFAULT_SPEC, schema="gold_x")
    quality = next(d for d in spec.datasets if d.sql)
    assert "FROM gold_x.quality_results" in quality.sql and "{schema}" not in quality.sql
    assert spec.slug == "plan-costs"
    placed = sorted(name for row in spec.rows for name, _ in row)
    assert placed == sorted(c.name for c in spec.charts)


def test_a_suffix_renames_every_object_so_a_private_copy_never_touches_the_real_one() -> None:
    plain = load_spec(DEFAULT_SPEC, schema="gold")
    copy = load_spec(DEFAULT_SPEC, schema="gold", suffix=" (test 7F)")
    assert copy.slug == "plan-costs-test-7f"
    assert copy.database_name == plain.database_name + " (test 7F)"
    assert [c.name for c in copy.charts] == [c.name + " (test 7F)" for c in plain.charts]
    assert [c.dataset for c in copy.charts] == [c.dataset + " (test 7F)" for c in plain.charts]
    assert copy.rows == tuple(
        tuple((name + " (test 7F)", width) for name, width in row) for row in plain.rows
    )


def test_every_problem_of_a_broken_spec_is_reported_at_once() -> None:
    spec = load_spec(DEFAULT_SPEC, schema="gold")
    broken = dataclasses.replace(
        spec,
        datasets=(
            DatasetSpec("costs", table="plan_costs"),
            DatasetSpec("costs", table="plan_costs"),
            DatasetSpec("nowhere", table="no_such_table"),
            DatasetSpec("both", table="plan_costs", sql="select 1"),
        ),
        charts=(
            ChartSpec("a", "costs", "table"),
            ChartSpec("b", "missing", "table"),
            ChartSpec("c", "costs", "table"),
        ),
        rows=((("a", 8), ("b", 5)), (("a", 4), ("ghost", 4))),
    )
    assert spec_problems(broken) == [
        "dataset names repeat: costs",
        "dataset 'nowhere': 'no_such_table' is not a mirrored table (cost_trends, plan_anomalies, "
        "plan_costs, quality_results, service_pair_counts, service_pairs, service_patterns)",
        "dataset 'both' needs exactly one of `table` and `sql`",
        "chart 'b' uses unknown dataset 'missing'",
        "dashboard row names unknown chart 'ghost'",
        "chart 'a' must be placed exactly once (placed 2)",
        "chart 'c' must be placed exactly once (placed 0)",
        "dashboard row 1 is 13 columns wide (1..12 each)",
    ]


def test_a_malformed_file_names_itself(tmp_path: Path) -> None:
    path = tmp_path / "dashboard.yaml"
    path.write_text("database: {name: x}\ndatasets: []\n")
    with pytest.raises(SupersetError, match=r"dashboard.yaml: malformed dashboard spec \(KeyError"):
        load_spec(path, schema="gold")


def test_layout_is_one_row_per_spec_row_with_the_given_widths() -> None:
    layout = position_json(((("a", 4), ("b", 8)),), {"a": 11, "b": 12})
    assert layout == {
        "DASHBOARD_VERSION_KEY": "v2",
        "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]},
        "GRID_ID": {"type": "GRID", "id": "GRID_ID", "children": ["ROW-1"], "parents": ["ROOT_ID"]},
        "ROW-1": {
            "type": "ROW",
            "id": "ROW-1",
            "children": ["CHART-11", "CHART-12"],
            "parents": ["ROOT_ID", "GRID_ID"],
            "meta": {"background": "BACKGROUND_TRANSPARENT"},
        },
        "CHART-11": {
            "type": "CHART",
            "id": "CHART-11",
            "children": [],
            "parents": ["ROOT_ID", "GRID_ID", "ROW-1"],
            "meta": {
                "chartId": 11,
                "width": 4,
                "height": 50,
                "sliceName": "a",
                "uuid": chart_uuid("a"),
            },
        },
        "CHART-12": {
            "type": "CHART",
            "id": "CHART-12",
            "children": [],
            "parents": ["ROOT_ID", "GRID_ID", "ROW-1"],
            "meta": {
                "chartId": 12,
                "width": 8,
                "height": 50,
                "sliceName": "b",
                "uuid": chart_uuid("b"),
            },
        },
    }
    assert chart_uuid("a") == chart_uuid("a") != chart_uuid("b")
