"""Benchmark: random access into the plan generator, a late plan against the first ones.

    .venv/bin/python bench/plan_generator.py [--plans 2000] [--repeats 5] [--tag NAME]

`generate_plan(seed, index)` draws from an RNG of its own, so plan 999,999 must cost what plan 0
costs (tests/unit/test_plan_generator.py checks that only its own RNG is made; the time lives
here). Each repeat generates plans 0 .. N-1 and plans 999,999 .. 999,999 + N - 1, interleaved;
the medians per plan are compared. No services, no Spark. Writes
docs/benchmarks/generator[-TAG].{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from machine_info import git_state, machine

from lakehouse.plans.generator import generate_plan

OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
SEED = 7
LATE = 999_999


def per_plan_us(start: int, count: int) -> float:
    started = time.perf_counter()
    for index in range(start, start + count):
        generate_plan(SEED, index)
    return (time.perf_counter() - started) / count * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    if args.plans < 1 or args.repeats < 1:
        parser.error("--plans and --repeats must be >= 1")
    per_plan_us(0, 100)  # warm-up
    runs: dict[str, list[float]] = {"first": [], "late": []}
    for _ in range(args.repeats):
        runs["first"].append(per_plan_us(0, args.plans))
        runs["late"].append(per_plan_us(LATE, args.plans))
    first, late = (round(statistics.median(runs[k]), 1) for k in ("first", "late"))
    report = {
        "benchmark": "plan generator random access",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_state(),
        "machine": machine(),
        "plans": args.plans,
        "repeats": args.repeats,
        "us_per_plan": {"first": first, "late": late},
        "headline": {
            "workload": f"{args.plans:,} plans from index {LATE:,} vs from 0, {args.repeats} runs",
            "label": "late plans",
            "value": late,
            "unit": "µs per plan",
            "baseline_label": "first plans",
            "baseline_value": first,
            "higher_is_better": False,
        },
    }
    name = "generator" + (f"-{args.tag}" if args.tag else "")
    (OUT / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    (OUT / f"{name}.md").write_text(
        f"# Plan generator random access ({report['date']})\n\n"
        f"Machine: {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}; commit "
        f"{report['git']['commit'][:7]}. Method: `bench/plan_generator.py` (docstring).\n\n"
        "| plans | µs per plan | vs plans from 0 |\n|---|---:|---:|\n"
        f"| from 0 | {first} | 1.00x |\n| from {LATE:,} | {late} | {first / late:.2f}x |\n"
    )
    print(json.dumps(report["us_per_plan"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
