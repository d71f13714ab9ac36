"""What the benchmarks of a change against its full path share (`mirror_changes.py`,
`quality_changes.py`): the summary per pattern, the declared headline and the plot."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from machine_info import git_state

PATHS = ("changes", "full")


def summarise(
    runs: dict[str, list[dict[str, Any]]], kept: tuple[str, ...]
) -> dict[str, dict[str, Any]]:
    """Per pattern and path: median and best seconds, the `kept` fields of the last run; per
    pattern: the ratio of the medians (changes / full)."""
    summary = {}
    for pattern, pattern_runs in runs.items():
        paths: dict[str, Any] = {}
        for path in PATHS:
            seconds = [r[path]["seconds"] for r in pattern_runs]
            last = pattern_runs[-1][path]
            paths[path] = {
                "median_s": statistics.median(seconds),
                "best_s": min(seconds),
                **{k: last[k] for k in kept},
            }
        paths["ratio"] = paths["changes"]["median_s"] / paths["full"]["median_s"]
        summary[pattern] = paths
    return summary


def record(
    benchmark: str,
    method: str | None,
    args: Any,
    machine: dict[str, Any],
    runs: dict[str, list[dict[str, Any]]],
    equal: bool,
    kept: tuple[str, ...],
    labels: tuple[str, str],
) -> dict[str, Any]:
    """The result file's content: the run's parameters (`args`: rows, changed, files, repeats),
    every run, the summary per pattern and the headline, labelled `labels` (the change's path
    when equal, and the full path's)."""
    summary = summarise(runs, kept)
    return {
        "benchmark": benchmark,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_state(),
        "machine": machine,
        "method": method,
        "rows": args.rows,
        "changed": args.changed,
        "files": args.files,
        "repeats": args.repeats,
        "equal": equal,
        "runs": runs,
        "patterns": summary,
        "headline": headline(
            f"{args.rows:,} plan_costs rows, {args.changed:.0%} changed (uniform)",
            summary,
            labels[0],
            labels[1],
        ),
    }


def headline(
    workload: str, summary: dict[str, dict[str, Any]], label: str, baseline_label: str
) -> dict[str, Any]:
    """The summary's headline (bench/run.py, `extract_declared`): the uniform pattern."""
    return {
        "workload": workload,
        "label": label,
        "value": summary["uniform"]["changes"]["median_s"],
        "unit": "s",
        "baseline_label": baseline_label,
        "baseline_value": summary["uniform"]["full"]["median_s"],
        "higher_is_better": False,
    }


def plot(
    summary: dict[str, dict[str, Any]], labels: tuple[str, str], title: str, target: Path
) -> None:
    """Median seconds of both paths per pattern, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.5))
    patterns = list(summary)
    width = 0.38
    for offset, path, label in zip((-width / 2, width / 2), PATHS, labels, strict=True):
        axis.bar(
            [i + offset for i in range(len(patterns))],
            [summary[p][path]["median_s"] for p in patterns],
            width,
            label=label,
        )
    axis.set_xticks(range(len(patterns)), patterns)
    axis.set_ylabel("seconds (median)")
    axis.set_title(title)
    axis.legend()
    figure.tight_layout()
    figure.savefig(target, dpi=110)
    plt.close(figure)
