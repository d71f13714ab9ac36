"""How the nightly gold stages' cost grows with the data: the exponent b of seconds = a * plans^b.

    .venv/bin/python bench/gold_growth.py [gold-10k.json gold.json gold-1m.json] [--tag NAME]

Reads recorded runs of bench/gold_incremental.py at different sizes (by default the 10k, 100k and
1M plan runs in docs/benchmarks/) and fits, per stage and for full rebuild and incremental
refresh (1% changed) separately, a straight line through log(seconds) against log(plans):
b = 1 is linear growth, below 1 means fixed costs still weigh, above 1 means worse than linear.
The exponent between the two largest sizes is reported beside the fit, since at small sizes the
fixed costs (job planning, Delta log reads) flatten the fit. Writes docs/benchmarks/growth[-TAG].*
(JSON, markdown, a log-log plot); no services and no Spark needed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from machine_info import git_state

OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
DEFAULT_RUNS = ("gold-10k.json", "gold.json", "gold-1m.json")
SIDES = ("full", "incremental")


def growth_exponent(sizes: list[float], seconds: list[float]) -> float:
    """Least-squares slope of log(seconds) against log(sizes)."""
    if len(sizes) != len(seconds) or len(set(sizes)) < 2:
        raise ValueError("need the same number of sizes and timings, at two sizes at least")
    xs, ys = [math.log(s) for s in sizes], [math.log(t) for t in seconds]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


def stage_seconds(run: dict[str, Any], side: str) -> dict[str, float]:
    """{stage: seconds} of one recorded gold run, plus "all" (their sum)."""
    stages = {name: float(stage["seconds"]) for name, stage in run[side].items()}
    return {**stages, "all": sum(stages.values())}


def growth(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per side and stage: the plans, the seconds, the fitted exponent and the exponent between
    the two largest sizes."""
    runs = sorted(runs, key=lambda run: run["plans"])
    sizes = [float(run["plans"]) for run in runs]
    result: dict[str, Any] = {"plans": [run["plans"] for run in runs]}
    for side in SIDES:
        per_run = [stage_seconds(run, side) for run in runs]
        result[side] = {
            stage: {
                "seconds": [timings[stage] for timings in per_run],
                "exponent": round(growth_exponent(sizes, [t[stage] for t in per_run]), 3),
                "exponent_largest": round(
                    growth_exponent(sizes[-2:], [t[stage] for t in per_run[-2:]]), 3
                ),
            }
            for stage in per_run[0]
        }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", default=list(DEFAULT_RUNS))
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    paths = [Path(p) if Path(p).exists() else OUT / p for p in args.runs]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        parser.error(f"no such run(s): {', '.join(missing)}; run bench/gold_incremental.py first")
    runs = [json.loads(p.read_text()) for p in paths]
    if len({run["plans"] for run in runs}) < 2:
        parser.error("the runs must be at two different sizes at least")
    fitted = growth(runs)
    everything = fitted["full"]["all"]
    report = {
        "benchmark": "gold cost growth",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_state(),
        "runs": [
            {"file": p.name, "plans": r["plans"], "date": r["date"]}
            for p, r in zip(paths, runs, strict=True)
        ],  # fmt: skip
        "growth": fitted,
        # The largest run against linear growth from the one before it: how much cheaper than
        # linear the data made the nightly gold.
        "headline": {
            "workload": "gold full rebuild, "
            + " -> ".join(f"{n:,}" for n in fitted["plans"][-2:])
            + f" plans (b = {everything['exponent_largest']:.2f})",
            "label": f"measured at {fitted['plans'][-1]:,}",
            "value": everything["seconds"][-1],
            "unit": "s",
            "baseline_label": f"linear from {fitted['plans'][-2]:,}",
            "baseline_value": round(
                everything["seconds"][-2] * fitted["plans"][-1] / fitted["plans"][-2], 2
            ),
            "higher_is_better": False,
        },
    }
    write_report(report, args.tag)
    print(json.dumps({side: {s: v["exponent"] for s, v in fitted[side].items()} for side in SIDES}))
    return 0


def write_report(report: dict[str, Any], tag: str) -> None:
    name = "growth" + (f"-{tag}" if tag else "")
    (OUT / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    fitted = report["growth"]
    plans = fitted["plans"]
    lines = [
        "# Gold: cost growth with data size",
        "",
        "From the recorded runs "
        + ", ".join(
            f"[{r['file']}]({r['file'].removesuffix('.json')}.md) ({r['plans']:,} plans,"
            f" {r['date'][:10]})"
            for r in report["runs"]
        )  # fmt: skip
        + "; method in `bench/gold_growth.py`. Exponent b of seconds = a * plans^b: 1 is linear.",
        "",
        "| side | stage | "
        + " | ".join(f"{n:,} plans (s)" for n in plans)
        + " | b (fit) | b (largest two) |",
        "|---|---|" + "---:|" * (len(plans) + 2),
    ]
    for side in SIDES:
        for stage, row in fitted[side].items():
            timings = " | ".join(f"{t:.1f}" for t in row["seconds"])
            label = f"**{stage}**" if stage == "all" else stage
            lines.append(
                f"| {side} | {label} | {timings} | {row['exponent']:.2f} | "
                f"{row['exponent_largest']:.2f} |"
            )
    lines += ["", f"![growth]({name}.png)", ""]
    (OUT / f"{name}.md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for axis, side in zip(axes, SIDES, strict=True):
        for stage, row in fitted[side].items():
            axis.plot(plans, row["seconds"], "o-", label=f"{stage} (b={row['exponent']:.2f})",
                      linewidth=2.5 if stage == "all" else 1)  # fmt: skip
        axis.plot(plans, [fitted[side]["all"]["seconds"][0] * n / plans[0] for n in plans], ":",
                  color="grey", label="linear from the smallest")  # fmt: skip
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("plans")
        axis.set_title(f"{side}" + (" (1% changed)" if side == "incremental" else " rebuild"))
        axis.legend(fontsize=7)
    axes[0].set_ylabel("seconds")
    fig.tight_layout()
    fig.savefig(OUT / f"{name}.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
