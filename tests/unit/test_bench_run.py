"""bench/run.py's summary: one extractor per benchmark's JSON shape, file selection, rendering."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from run import (
    BENCHMARKS,
    Headline,
    Row,
    SummaryError,
    collect,
    extract_declared,
    extract_gold,
    extract_index,
    extract_ingest,
    extract_mirror,
    extract_simulate,
    recorded_commit,
    render,
    result_files,
    row_for,
)

GIT = {"commit": "0123456789abcdef", "uncommitted": []}


def test_simulate_batched_against_the_floor() -> None:
    data = {
        "workload": {"plans": 500, "changes": 3000, "seed": 42},
        "results": [
            {"mode": "store-batched", "events": 3500, "seconds": 70.0, "events_per_s": 50.0},
            {"mode": "store-sync", "events": 3500, "seconds": 87.5, "events_per_s": 40.0},
            {"mode": "raw-floor", "events": 3500, "seconds": 17.5, "events_per_s": 200.0},
        ],
    }
    assert extract_simulate(data) == Headline(
        workload="500 plans + 3,000 changes",
        figure="50 events/s (`store-batched`)",
        baseline="200 events/s (`raw-floor`)",
        ratio="0.25x",
    )


def test_simulate_without_the_floor() -> None:
    data = {
        "workload": {"plans": 1000, "changes": 100000, "seed": 42},
        "results": [
            {"mode": "store-sync", "events": 101000, "seconds": 2020.0, "events_per_s": 50}
        ],
    }
    assert extract_simulate(data) == Headline(
        workload="1,000 plans + 100,000 changes",
        figure="50 events/s (`store-sync`)",
        baseline="not run",
        ratio="-",
    )


def test_ingest_lakehouse_against_the_faster_of_both_baselines() -> None:
    data = {
        "workload": {"plans": 300, "backlog_events": 3000},
        "backlog": {
            "lakehouse": {"events": 3000, "seconds": 3.0, "events_per_s": 1000.0},
            "per-event": {"events": 3000, "seconds": 12.0, "events_per_s": 250.0},
            "deltalake": {"events": 3000, "seconds": 6.0, "events_per_s": 500.0},
        },
    }
    assert extract_ingest(data) == Headline(
        workload="backlog of 3,000 events (300 plans)",
        figure="1,000 events/s into silver (`ingest --once`)",
        baseline="500 events/s (deltalake), 250 events/s (per-event)",
        ratio="2.00x of deltalake",
    )


def test_ingest_without_baselines() -> None:
    data = {
        "workload": {"plans": 300, "backlog_events": 3000},
        "backlog": {"lakehouse": {"events": 3000, "seconds": 3.0, "events_per_s": 1000.0}},
    }
    assert extract_ingest(data) == Headline(
        workload="backlog of 3,000 events (300 plans)",
        figure="1,000 events/s into silver (`ingest --once`)",
        baseline="not run",
        ratio="-",
    )


def test_index_sync_against_the_bulk_helper() -> None:
    data = {
        "docs": 50000,
        "repeats": 1,
        "modes": {
            "lakehouse": {"docs_per_s_median": 5000.0},
            "bulk": {"docs_per_s_median": 4000.0},
            "spark-docs": {"docs_per_s_median": 90000.0},
        },
    }
    assert extract_index(data) == Headline(
        workload="50,000 documents, 1 run",
        figure="5,000 docs/s (`write_plans`: the reindex bulk path, median)",
        baseline="4,000 docs/s (`helpers.bulk`)",
        ratio="1.25x",
    )


def test_gold_incremental_against_the_full_rebuild() -> None:
    data = {
        "plans": 100000,
        "changed_share": 0.01,
        "total_incremental_s": 10.0,
        "total_full_s": 25.0,
        "incremental_equals_full": False,
    }
    assert extract_gold(data) == Headline(
        workload="100,000 plans, 1% changed (uniform)",
        figure="10.0 s incremental refresh (NOT equal to the full rebuild)",
        baseline="25.0 s full rebuild",
        ratio="2.50x",
    )


def test_mirror_against_the_copy_floor() -> None:
    data = {
        "rows": 200000,
        "repeats": 5,
        "modes": {
            "mirror": {"rows_per_s_median": 80000.0},
            "copy": {"rows_per_s_median": 320000.0},
        },
    }
    assert extract_mirror(data) == Headline(
        workload="200,000 rows, 5 runs",
        figure="80,000 rows/s (`publish_table`, median)",
        baseline="320,000 rows/s (plain COPY)",
        ratio="0.25x",
    )


def test_declared_headline_lower_is_better() -> None:
    data = {
        "headline": {
            "workload": "100,000 plans, 2 workers",
            "label": "gold on the standalone cluster",
            "value": 40.0,
            "unit": "s",
            "baseline_label": "local[*]",
            "baseline_value": 30.0,
            "higher_is_better": False,
        }
    }
    assert extract_declared(data) == Headline(
        workload="100,000 plans, 2 workers",
        figure="40.00 s (gold on the standalone cluster)",
        baseline="30.00 s (local[*])",
        ratio="0.75x",
    )


def test_a_malformed_result_names_its_file() -> None:
    data = {"rows": 1, "repeats": 1, "modes": {"mirror": {"rows_per_s_median": 1.0}}}
    with pytest.raises(SummaryError) as raised:
        row_for(BENCHMARKS["mirror"], "mirror-x.json", data, "")
    assert str(raised.value) == (
        "mirror-x.json: not a mirror result bench/run.py can read (KeyError: 'copy'); fix its "
        "extractor or re-run the benchmark"
    )


def test_result_files_put_the_recorded_one_first_and_keep_quick_apart() -> None:
    names = [
        "gold-1m.json",
        "gold-quick.json",
        "gold.json",
        "gold.md",
        "golden.json",
        "mirror.json",
        "simulate-3k.json",
    ]
    assert result_files(BENCHMARKS["gold"], names, quick=False) == ["gold.json", "gold-1m.json"]
    assert result_files(BENCHMARKS["gold"], names, quick=True) == ["gold-quick.json"]
    assert result_files(BENCHMARKS["simulate"], names, quick=False) == ["simulate-3k.json"]


def test_recorded_commit() -> None:
    assert recorded_commit({"git": GIT}) == "0123456"
    assert recorded_commit({"git": {**GIT, "uncommitted": ["bench/run.py"]}}) == "0123456*"
    assert recorded_commit({}) is None


def test_render() -> None:
    headline = Headline("20,000 rows, 5 runs", "17,660 rows/s", "343,290 rows/s", "0.05x")
    rows = [
        Row("mirror", "mirror-20k.json", headline, "2026-11-26", "45cb421*"),
        Row("index", "index.json", None),
    ]
    assert render(rows).split("\n")[4:] == [
        "| benchmark | result | workload | headline | baseline | speed vs baseline | date "
        "| commit |",
        "|---|---|---|---|---|---:|---|---|",
        "| mirror | [mirror-20k](mirror-20k.md) | 20,000 rows, 5 runs | 17,660 rows/s | "
        "343,290 rows/s | 0.05x | 2026-11-26 | 45cb421* |",
        "| index | index.json: not run | | | | | | |",
        "",
        "`commit`: the commit the run recorded (`*`: with uncommitted changes in the working "
        "tree); `(file)`: for results that predate that field, the last commit that changed "
        "the result file.",
        "",
    ]


def test_collect_marks_missing_results_and_refuses_unknown_ones(tmp_path: Path) -> None:
    gold = {
        "date": "2026-11-26T03:12:49+00:00",
        "git": GIT,
        "plans": 1000,
        "changed_share": 0.05,
        "total_incremental_s": 4.0,
        "total_full_s": 5.0,
        "incremental_equals_full": True,
    }
    (tmp_path / "gold-quick.json").write_text(json.dumps(gold))
    only_gold = {"gold": BENCHMARKS["gold"]}
    assert collect(tmp_path, only_gold) == [Row("gold", "gold.json", None)]
    assert collect(tmp_path, only_gold, quick=True) == [
        Row(
            "gold",
            "gold-quick.json",
            Headline("1,000 plans, 5% changed (uniform)", "4.0 s incremental refresh",
                     "5.0 s full rebuild", "1.25x"),
            "2026-11-26",
            "0123456",
        )
    ]  # fmt: skip
    (tmp_path / "gold.json").write_text("{")
    with pytest.raises(SummaryError, match=r"^gold\.json: not valid JSON"):
        collect(tmp_path, only_gold)
    (tmp_path / "gold.json").unlink()
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(SummaryError, match=r"^no benchmark in bench/run\.py writes other\.json"):
        collect(tmp_path, only_gold)
