"""Benchmark: the gold.plan_costs quality suite on the rows a change touched (`run_quality` with
`quality.changed_rows_only`) against the full pass over the same version, in the same run.

    .venv/bin/python bench/quality_changes.py --rows 1000000 [--changed 0.01] [--repeats 3]
    .venv/bin/python bench/quality_changes.py --render docs/benchmarks/quality.json

1. A gold.plan_costs-shaped Delta table with --rows rows (`mirror_throughput.plan_costs_frame`,
   deterministic) is written to a temporary warehouse and checked once, every row, with
   `quality.changed_rows_only` on (no clean check yet), so that the next run has one to start
   from (not timed).
2. Each repeat, for each pattern (`uniform`: --changed of the plans spread over the table;
   `concentrated`: one contiguous range of them; `mirror_changes.changed_rows`), the change is
   MERGEd by gold's own `replace_rows` (not timed). Then, timed, on the same version: the suite
   on the changed rows (it must report "rows changed in ...", and advances the clean check),
   then the full pass (`quality.changed_rows_only` off, the default).
   Both record their results, as the nightly run does.
3. Equality: both passes give every check the same status. Reported per pattern: median and
   best seconds of each, their ratio, and the Spark jobs and tasks of each
   (`lakehouse.spark_cost`).

The run day is a Monday (the full-pass weekday is Sunday). Results (JSON, markdown, a plot) go
to docs/benchmarks/quality[-TAG].*; the summary reads the `headline` (the uniform pattern).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from changes_vs_full import plot, record
from machine_info import machine
from mirror_changes import PATTERNS, changed_rows
from mirror_throughput import plan_costs_frame
from pyspark.sql import SparkSession
from quiet_spark import quiet_spark

from lakehouse import io, spark_cost
from lakehouse.config import PROJECT_ROOT, Config, load_config
from lakehouse.gold.refresh import replace_rows
from lakehouse.quality import runner, suites
from lakehouse.spark import build_spark, stop_spark
from lakehouse.tables import PLAN_COSTS

OUT = PROJECT_ROOT / "docs" / "benchmarks"
MONDAY = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)


def check(spark: SparkSession, lake: Config, now: datetime, scope: str) -> dict[str, Any]:
    """One timed run of the suite, whose progress line must name `scope` (without
    `quality.changed_rows_only` it names none: pass "")."""
    suite = suites.select(lake, table=PLAN_COSTS.name)
    lines: list[str] = []
    started = time.monotonic()
    with spark_cost.measure(spark) as cost:
        run = runner.run_quality(spark, lake, suite, now, progress=lines.append)
    seconds = time.monotonic() - started
    if scope not in lines[-1] or (not scope and "; " in lines[-1]):
        raise RuntimeError(f"not a pass over {scope or 'every row'}: {lines[-1]}")
    return {
        "seconds": round(seconds, 3),
        "scope": lines[-1].rsplit("; ", 1)[-1].rstrip(")")
        if lake.quality.changed_rows_only
        else "every row",
        "statuses": {r.check: r.status for r in run.results},
        "spark_jobs": cost.result.jobs,
        "spark_tasks": cost.result.tasks,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--changed", type=float, default=0.01, help="share of plans changed")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--files", type=int, default=8, help="Delta data files of the table")
    parser.add_argument("--tag", default="", help="suffix of the result files")
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument("--render", type=Path, help="only write the .md and .png from this .json")
    args = parser.parse_args()
    if args.render:
        write(json.loads(args.render.read_text()), args.tag)
        return 0
    if args.rows < 1000 or args.repeats < 1 or not 0 < args.changed < 0.5:
        parser.error("--rows >= 1000, --repeats >= 1, 0 < --changed < 0.5")

    base = quiet_spark(load_config("local"), args.driver_memory)
    root = Path(tempfile.mkdtemp(prefix="bench-quality-"))
    changes_lake = dataclasses.replace(
        base,
        warehouse=str(root / "warehouse"),
        checkpoints="",
        quality=dataclasses.replace(
            base.quality, changed_rows_only=True, full_pass_weekday="sunday"
        ),
    )
    full_lake = dataclasses.replace(
        changes_lake, quality=dataclasses.replace(changes_lake.quality, changed_rows_only=False)
    )
    spark = build_spark(changes_lake, app_name="bench-quality")
    runs: dict[str, list[dict[str, Any]]] = {p: [] for p in PATTERNS}
    equal = True
    try:
        print(f"delta: writing {args.rows:,} plan_costs rows in {args.files} files")
        io.ensure_table(spark, changes_lake, PLAN_COSTS)
        frame = plan_costs_frame(spark, args.rows, args.files)
        io.overwrite(frame, changes_lake, PLAN_COSTS, "bench")
        first = check(spark, changes_lake, MONDAY, "every row: no clean check recorded")
        print(f"first full pass (not counted): {first['seconds']:.1f}s")
        hour = 0
        for repeat in range(1, args.repeats + 1):
            for pattern in PATTERNS:
                fresh = changed_rows(spark, changes_lake, pattern, args.changed, args.rows, repeat)
                fresh = fresh.localCheckpoint(eager=True)
                replace_rows(
                    io.delta_table(spark, changes_lake, PLAN_COSTS),
                    fresh,
                    fresh.select("plan_id"),
                    ["plan_id"],
                    PLAN_COSTS.schema.fieldNames(),
                )
                hour += 1
                changes = check(
                    spark, changes_lake, MONDAY + timedelta(hours=hour), "rows changed in"
                )
                full = check(spark, full_lake, MONDAY + timedelta(hours=hour, minutes=30), "")
                same = changes["statuses"] == full["statuses"]
                equal = equal and same
                runs[pattern].append({"changes": changes, "full": full, "equal": same})
                print(
                    f"repeat {repeat} {pattern:<12} changes {changes['seconds']:6.2f}s "
                    f"({changes['spark_jobs']} jobs)  full {full['seconds']:6.2f}s "
                    f"({full['spark_jobs']} jobs)  {changes['seconds'] / full['seconds']:.3f}x  "
                    f"same verdicts {same}"
                )
    finally:
        stop_spark(spark)
        shutil.rmtree(root, ignore_errors=True)

    result = record(
        "quality: the changed rows vs every row",
        __doc__,
        args,
        machine(),
        runs,
        equal,
        ("spark_jobs", "spark_tasks", "scope"),
        ("changed rows, median" + ("" if equal else ", verdicts NOT equal"), "full pass, median"),
    )
    write(result, args.tag)
    return 0 if equal else 1


def write(result: dict[str, Any], tag: str) -> None:
    name = "quality" + (f"-{tag}" if tag else "")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    git = result["git"]
    commit = git.get("commit", "?")[:7] + ("*" if git.get("uncommitted") else "")
    lines = [
        f"# Quality: the changed rows vs every row ({result['rows']:,} plan_costs rows, "
        f"{result['changed']:.0%} changed)",
        "",
        f"Run {result['date']} on {result['machine'].get('cores')} cores, commit {commit}. "
        "`bench/quality_changes.py` (method in its docstring and in the JSON), "
        f"{result['repeats']} repeats per pattern; the gold.plan_costs suite (12 checks).",
        "",
        "| pattern | changed rows: median (best) s | every row: median (best) s | changed / "
        "full | Spark jobs (changed / full) | Spark tasks (changed / full) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for pattern, p in result["patterns"].items():
        c, f = p["changes"], p["full"]
        lines.append(
            f"| {pattern} | {c['median_s']:.2f} ({c['best_s']:.2f}) | {f['median_s']:.2f} "
            f"({f['best_s']:.2f}) | **{p['ratio']:.3f}x** | {c['spark_jobs']} / "
            f"{f['spark_jobs']} | {c['spark_tasks']} / {f['spark_tasks']} |"
        )
    lines += [
        "",
        f"Same status for every check in both passes, every repeat: **{result['equal']}**.",
        "",
        f"![changed rows vs every row]({name}.png)",
        "",
    ]
    (OUT / f"{name}.md").write_text("\n".join(lines))

    plot(
        result["patterns"],
        ("changed rows", "every row"),
        f"plan_costs quality suite, {result['rows']:,} rows, {result['changed']:.0%} changed",
        OUT / f"{name}.png",
    )


if __name__ == "__main__":
    raise SystemExit(main())
