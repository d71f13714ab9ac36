"""Benchmark: publishing a changed gold.plan_costs (`mirror.publish_table`, mode `changes`)
against publishing the same Delta version in full (the staged swap), in the same run.

    .venv/bin/python bench/mirror_changes.py --rows 1000000 [--changed 0.01] [--repeats 3]
    .venv/bin/python bench/mirror_changes.py --render docs/benchmarks/publish.json

1. A gold.plan_costs-shaped Delta table with --rows rows (`mirror_throughput.plan_costs_frame`,
   deterministic) is written to a temporary warehouse and published once in full to a dedicated
   PostgreSQL schema (`bench_mirror_changes`, dropped at the end), not timed.
2. Each repeat, for each pattern:
   - `uniform`: --changed of the plans, spread over the whole table (xxhash64 of the row
     number), get a new plan_version and copay;
   - `concentrated`: the same number of plans, one contiguous range of row numbers (a few
     files: one organisation's plans edited together).
   The change is MERGEd into the Delta table by the gold refresh's own `replace_rows` (not
   timed). Then, timed: `publish_table` (it must choose `changes`), the md5 over all mirrored
   rows in plan_id order; the mirror's state row is deleted and the same version published again
   (it must choose `full`), md5 again. Equal md5s: the change applied equals the full publish.
3. Reported per pattern: the median and best seconds of each path, their ratio (changes /
   full, medians), and the Spark jobs and tasks of each publish (`lakehouse.spark_cost`).

Results (JSON, markdown, a plot) go to docs/benchmarks/publish[-TAG].* (the summary reads the
`headline`: the uniform pattern).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from changes_vs_full import plot, record
from machine_info import machine
from mirror_throughput import content_md5, execute, plan_costs_frame, postgres_settings
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from quiet_spark import quiet_spark

from lakehouse import io, spark_cost
from lakehouse.config import PROJECT_ROOT, Config, load_config
from lakehouse.gold.refresh import replace_rows
from lakehouse.serving import mirror
from lakehouse.spark import build_spark, stop_spark
from lakehouse.tables import PLAN_COSTS

OUT = PROJECT_ROOT / "docs" / "benchmarks"
SCHEMA = "bench_mirror_changes"
PATTERNS = ("uniform", "concentrated")


def changed_rows(
    spark: SparkSession, config: Config, pattern: str, share: float, rows: int, repeat: int
) -> DataFrame:
    """The current rows of the plans this repeat changes, with a new version and copay."""
    current = io.read_table(spark, config, PLAN_COSTS)
    number = F.regexp_extract("plan_id", r"(\d+)$", 1).cast("long")
    count = max(1, int(rows * share))
    if pattern == "uniform":
        buckets = round(1 / share)
        chosen = F.pmod(F.xxhash64(number, F.lit(repeat)), F.lit(buckets)) == 0
    else:
        start = (repeat * 7919 * count) % max(1, rows - count)
        chosen = number.between(start, start + count - 1)
    return (
        current.where(chosen)
        .withColumn("plan_version", F.col("plan_version") + 1)
        .withColumn("plan_copay", F.col("plan_copay") + 1.0)
        .withColumn("total_cost", F.col("total_cost") + 1.0)
    )


def publish(spark: SparkSession, lake: Config, expected: str) -> dict[str, Any]:
    started = time.monotonic()
    with spark_cost.measure(spark) as cost:
        result = mirror.publish_table(spark, lake, PLAN_COSTS)
    seconds = time.monotonic() - started
    if result.mode != expected:
        raise RuntimeError(f"expected a {expected} publish, got {result.render()}")
    return {
        "seconds": round(seconds, 3),
        "rows": result.rows,
        "keys": result.keys,
        "spark_jobs": cost.result.jobs,
        "spark_tasks": cost.result.tasks,
    }


def forget_mirrored(lake: Config) -> None:
    execute(
        lake, f'DELETE FROM "{SCHEMA}".{mirror.STATE_TABLE} WHERE table_name = %s', PLAN_COSTS.name
    )


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
    if args.rows < 1000 or args.repeats < 1 or not 0 < args.changed < mirror.MAX_CHANGED_SHARE:
        parser.error(f"--rows >= 1000, --repeats >= 1, 0 < --changed < {mirror.MAX_CHANGED_SHARE}")

    base = quiet_spark(load_config("local"), args.driver_memory)
    root = Path(tempfile.mkdtemp(prefix="bench-mirror-changes-"))
    lake = dataclasses.replace(
        base,
        warehouse=str(root / "warehouse"),
        checkpoints="",
        serving=dataclasses.replace(base.serving, schema=SCHEMA),
    )
    execute(lake, f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')  # a killed run's leftovers
    spark = build_spark(lake, app_name="bench-mirror-changes")
    runs: dict[str, list[dict[str, Any]]] = {p: [] for p in PATTERNS}
    equal = True
    try:
        print(f"delta: writing {args.rows:,} plan_costs rows in {args.files} files")
        io.ensure_table(spark, lake, PLAN_COSTS)
        io.overwrite(plan_costs_frame(spark, args.rows, args.files), lake, PLAN_COSTS, "bench")
        io.delta_table(spark, lake, PLAN_COSTS)  # the table's properties: deletion vectors
        first = publish(spark, lake, "full")
        print(f"first publish (not counted): {first['seconds']:.1f}s")
        for repeat in range(1, args.repeats + 1):
            for pattern in PATTERNS:
                fresh = changed_rows(spark, lake, pattern, args.changed, args.rows, repeat)
                fresh = fresh.localCheckpoint(eager=True)
                replace_rows(
                    io.delta_table(spark, lake, PLAN_COSTS),
                    fresh,
                    fresh.select("plan_id"),
                    ["plan_id"],
                    PLAN_COSTS.schema.fieldNames(),
                )
                changes = publish(spark, lake, "changes")
                after_changes = content_md5(lake, f'"{SCHEMA}".plan_costs')
                forget_mirrored(lake)
                full = publish(spark, lake, "full")
                after_full = content_md5(lake, f'"{SCHEMA}".plan_costs')
                same = after_changes == after_full
                equal = equal and same
                runs[pattern].append({"changes": changes, "full": full, "equal": same})
                print(
                    f"repeat {repeat} {pattern:<12} changes {changes['seconds']:6.2f}s "
                    f"({changes['keys']:,} keys, {changes['spark_jobs']} jobs)  full "
                    f"{full['seconds']:6.2f}s ({full['spark_jobs']} jobs)  "
                    f"{changes['seconds'] / full['seconds']:.3f}x  equal {same}"
                )
        pg = postgres_settings(lake)
    finally:
        stop_spark(spark)
        shutil.rmtree(root, ignore_errors=True)
        execute(lake, f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')

    result = record(
        "mirror: publish the change vs publish in full",
        __doc__,
        args,
        {**machine(), "postgres": pg},
        runs,
        equal,
        ("rows", "keys", "spark_jobs", "spark_tasks"),
        (
            "publish the change, median" + ("" if equal else ", NOT equal to full"),
            "full publish, median",
        ),
    )
    write(result, args.tag)
    return 0 if equal else 1


def write(result: dict[str, Any], tag: str) -> None:
    name = "publish" + (f"-{tag}" if tag else "")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    git = result["git"]
    commit = git.get("commit", "?")[:7] + ("*" if git.get("uncommitted") else "")
    lines = [
        f"# Mirror: publish the change vs publish in full ({result['rows']:,} plan_costs rows, "
        f"{result['changed']:.0%} changed)",
        "",
        f"Run {result['date']} on {m.get('cores')} cores, commit {commit}; PostgreSQL "
        f"{m['postgres']['server_version']} (fsync {m['postgres']['fsync']}) on the same cores. "
        f"`bench/mirror_changes.py` (method in its docstring and in the JSON), "
        f"{result['repeats']} repeats per pattern.",
        "",
        "| pattern | changes: median (best) s | full: median (best) s | changes / full | keys "
        "| rows written (changes / full) | Spark jobs (changes / full) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for pattern, p in result["patterns"].items():
        c, f = p["changes"], p["full"]
        lines.append(
            f"| {pattern} | {c['median_s']:.2f} ({c['best_s']:.2f}) | {f['median_s']:.2f} "
            f"({f['best_s']:.2f}) | **{p['ratio']:.3f}x** | {c['keys']:,} | {c['rows']:,} / "
            f"{f['rows']:,} | {c['spark_jobs']} / {f['spark_jobs']} |"
        )
    lines += [
        "",
        f"Changes applied equal to the full publish (md5 over all rows, every repeat): "
        f"**{result['equal']}**.",
        "",
        f"![changes vs full]({name}.png)",
        "",
    ]
    (OUT / f"{name}.md").write_text("\n".join(lines))

    plot(
        result["patterns"],
        ("changes", "full"),
        f"publish gold.plan_costs, {result['rows']:,} rows, {result['changed']:.0%} changed",
        OUT / f"{name}.png",
    )


if __name__ == "__main__":
    raise SystemExit(main())
