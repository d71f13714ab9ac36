"""Benchmark: Spark settings sized for a cluster against settings sized for this machine, on
the table maintenance of a small table (what the nightly flow runs for each of 16 tables).

    .venv/bin/python bench/spark_settings.py [--rows 200] [--repeats 3] [--tag NAME]

Spark lists files for VACUUM (and partition discovery) with
`spark.sql.sources.parallelPartitionDiscovery.parallelism` tasks; its default, 10,000, is sized
for millions of files on a cluster. The project sets `spark.listing_parallelism` (8). Each
value below is set on one SparkSession (it is a runtime setting) and measured back to back,
the values interleaved in every repeat: 5 small appends to a table of `--rows` rows (not
timed), then OPTIMIZE (compacting them) and VACUUM (7 days' retention, so the listing is the
whole cost), each timed and counted in Spark jobs and tasks (`lakehouse.spark_cost`). No
services. Writes docs/benchmarks/spark-settings[-TAG].{json,md,png}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from machine_info import git_state, machine
from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType
from quiet_spark import quiet_spark

from lakehouse import io, maintenance, spark_cost
from lakehouse.config import load_config
from lakehouse.spark import build_spark, stop_spark
from lakehouse.tables import Table

OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
LISTING = "spark.sql.sources.parallelPartitionDiscovery.parallelism"
SPARK_DEFAULT = 10_000
SMALL = Table(
    "bench.small",
    "bench/small",
    StructType(
        [
            StructField("id", LongType(), False),
            StructField("plan_type", StringType(), True),
            StructField("cost", DoubleType(), True),
        ]
    ),
)


def _measured(spark, work) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    with spark_cost.measure(spark) as cost:
        work()
    seconds = time.perf_counter() - started
    result = cost.result
    return {
        "seconds": round(seconds, 3),
        "jobs": result.jobs,
        "tasks": result.tasks,
        "widest_stage": result.widest.tasks if result.widest else 0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--values", default=f"{SPARK_DEFAULT},200,32,8,2")
    parser.add_argument("--env", default=None)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    values = [int(v) for v in args.values.split(",")]
    if args.rows < 1 or args.repeats < 1 or any(v < 1 for v in values):
        parser.error("--rows, --repeats and every --values entry must be >= 1")
    warehouse = tempfile.mkdtemp(prefix="bench-spark-settings-")
    config = quiet_spark(load_config(args.env))
    lake = dataclasses.replace(config, warehouse=warehouse)
    spark = build_spark(lake, app_name="bench-spark-settings")
    configured = spark.conf.get(LISTING)
    runs: dict[int, dict[str, list[dict[str, Any]]]] = {
        v: {"optimize": [], "vacuum": []} for v in values
    }
    try:
        io.ensure_table(spark, lake, SMALL)
        rows = [(i, f"type-{i % 6}", float(i)) for i in range(args.rows)]
        for repeat in range(args.repeats + 1):  # the first round warms the JVM up: not kept
            for value in values:
                spark.conf.set(LISTING, str(value))
                for part in range(5):
                    frame = spark.createDataFrame(rows[part::5], SMALL.schema)
                    frame.write.format("delta").mode("append").save(SMALL.path(lake))
                optimized = _measured(
                    spark, lambda: maintenance.optimize(spark, lake, SMALL, zorder=False)
                )
                vacuumed = _measured(spark, lambda: maintenance.vacuum(spark, lake, SMALL, 168))
                if repeat:
                    runs[value]["optimize"].append(optimized)
                    runs[value]["vacuum"].append(vacuumed)
                print(f"round {repeat} listing {value:>6}: optimize {optimized['seconds']:.2f}s "
                      f"{optimized['tasks']} tasks, vacuum {vacuumed['seconds']:.2f}s "
                      f"{vacuumed['tasks']} tasks", file=sys.stderr, flush=True)  # fmt: skip
    finally:
        spark.conf.set(LISTING, configured)
        stop_spark(spark)
    results = {
        str(value): {
            step: {
                "median_s": round(statistics.median(r["seconds"] for r in measured), 3),
                "jobs": max(r["jobs"] for r in measured),
                "tasks": max(r["tasks"] for r in measured),
                "widest_stage": max(r["widest_stage"] for r in measured),
            }
            for step, measured in steps.items()
        }
        for value, steps in runs.items()
    }
    ours = str(config.spark.listing_parallelism)
    if ours not in results:
        parser.error(f"--values must include the configured spark.listing_parallelism ({ours})")
    report = {
        "benchmark": "spark settings: file listing parallelism on table maintenance",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_state(),
        "machine": machine(),
        "rows": args.rows,
        "repeats": args.repeats,
        "configured": int(ours),
        "results": results,
        "headline": {
            "workload": f"VACUUM of a {args.rows}-row table, {args.repeats} runs",
            "label": f"listing parallelism {ours} (configured)",
            "value": results[ours]["vacuum"]["median_s"],
            "unit": "s per VACUUM",
            "baseline_label": f"Spark's default {SPARK_DEFAULT:,}",
            "baseline_value": results[str(SPARK_DEFAULT)]["vacuum"]["median_s"]
            if str(SPARK_DEFAULT) in results
            else results[str(values[0])]["vacuum"]["median_s"],
            "higher_is_better": False,
        },
    }
    write_report(report, args.tag)
    return 0


def write_report(report: dict[str, Any], tag: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name = "spark-settings" + (f"-{tag}" if tag else "")
    (OUT / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    m, results = report["machine"], report["results"]
    base = results[str(report["configured"])]
    lines = [
        f"# Spark settings: file listing parallelism ({report['date']})",
        "",
        f"Machine: {m['cores']} cores, {m['memory_gib']} GiB, {m['platform']}, {m['java']}. "
        f"Commit {report['git']['commit'][:7]}"
        + (" (with uncommitted changes)" if report["git"]["uncommitted"] else "")
        + f". Method: `bench/spark_settings.py` (docstring): a {report['rows']}-row table, "
        f"5 small appends then OPTIMIZE and VACUUM per value, {report['repeats']} interleaved "
        "runs after a warm-up round, medians; jobs and tasks are the most seen.",
        "",
        "| listing parallelism | VACUUM s | vs configured | VACUUM jobs / tasks (widest) "
        "| OPTIMIZE s | OPTIMIZE jobs / tasks (widest) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for value, r in results.items():
        v, o = r["vacuum"], r["optimize"]
        mark = " (configured)" if int(value) == report["configured"] else ""
        lines.append(
            f"| {int(value):,}{mark} | {v['median_s']:.2f} | "
            f"{v['median_s'] / base['vacuum']['median_s']:.2f}x | {v['jobs']} / {v['tasks']:,} "
            f"({v['widest_stage']:,}) | {o['median_s']:.2f} | {o['jobs']} / {o['tasks']:,} "
            f"({o['widest_stage']:,}) |"
        )
    lines += ["", f"![listing parallelism]({name}.png)", ""]
    (OUT / f"{name}.md").write_text("\n".join(lines) + "\n")
    figure, axis = plt.subplots(figsize=(7, 4))
    labels = [f"{int(v):,}" for v in results]
    axis.bar(labels, [r["vacuum"]["median_s"] for r in results.values()], label="VACUUM")
    axis.bar(labels, [r["optimize"]["median_s"] for r in results.values()], label="OPTIMIZE",
             alpha=0.7)  # fmt: skip
    axis.set(xlabel=LISTING, ylabel="median seconds", title="Maintenance of a small table")
    axis.legend()
    figure.tight_layout()
    figure.savefig(OUT / f"{name}.png", dpi=110)
    print((OUT / f"{name}.md").read_text())


if __name__ == "__main__":
    sys.exit(main())
