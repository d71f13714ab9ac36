"""Benchmark: silver's file layout under streaming MERGEs, and what the tuning knobs buy.

    .venv/bin/python bench/table_layout.py [--plans 20000,100000] [--batches 10] \\
        [--batch-plans 500] [--partitions 2,4,8,16] [--tag NAME]

No services: silver is bulk-loaded (bench/silver_fixture.py) and then changed by the silver
apply itself (`apply_plan_events`, the streaming ingest's foreachBatch body, without
Elasticsearch), `--batches` micro-batches of `--batch-plans` changed plans each (9 in 10
re-priced, 1 in 10 deleted). Per batch it records the seconds per step and, from the Delta
history, how many files the batch's commits removed and added.

1. MERGE cost against table size, for each size in --plans and two table layouts:
   - `rewrite`: copy-on-write, a MERGE rewrites every file that holds a changed row;
   - `deletion-vectors` (`delta.enableDeletionVectors`): a MERGE marks changed rows as deleted
     and writes only the new rows.
2. Small files and compaction, on the largest size of the layout silver uses: files per table,
   a full scan (an aggregate over plan_history and plan_services), a point lookup (one plan's
   history) and one more batch; then the same after `lakehouse.maintenance` compaction, and
   again after Z-ordering plan_history by plan_id.
3. Shuffle partitions: the batches again at the smallest size, in silver's own layout, with each
   --partitions value (`spark.sql.shuffle.partitions`, which also sets how many files a MERGE
   writes).
4. Bronze, where small files pile up fastest (append-only, a file per Kafka partition per
   batch): --bronze-commits appends of 3 files each, then the scan `ingest --lag` runs (highest
   offset per partition) and a full scan of the raw events, before and after compaction.

Timings are the median over the batches after the first. Results (JSON, markdown with ratios,
a plot) go to docs/benchmarks/layout[-TAG].*.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from machine_info import git_state, machine
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from quiet_spark import quiet_spark
from silver_fixture import change_plans, load_history, load_plans

from lakehouse import io, maintenance
from lakehouse.config import PROJECT_ROOT, Config, load_config
from lakehouse.ingest.apply import StepTimer
from lakehouse.plans.generator import plan_id_for
from lakehouse.plans.scenario import event_history
from lakehouse.spark import build_spark, stop_spark
from lakehouse.tables import BRONZE_EVENTS, PLAN_HISTORY, PLAN_SERVICES, SILVER_TABLES, Table

OUT = PROJECT_ROOT / "docs" / "benchmarks"
SEED = 17
LAYOUTS: dict[str, tuple[tuple[str, str], ...]] = {
    "rewrite": (),
    "deletion-vectors": (("delta.enableDeletionVectors", "true"),),
}
# What silver's tables declare (lakehouse/tables.py: no deletion vectors); part 3 measures it.
SILVER_LAYOUT = "rewrite"


def isolated(config: Config, root: Path, name: str) -> Config:
    return dataclasses.replace(config, warehouse=str(root / name), checkpoints="")


def create_silver(spark: SparkSession, config: Config, layout: str) -> None:
    for table in SILVER_TABLES:
        io.ensure_table(spark, config, with_layout(table, layout))


def with_layout(table: Table, layout: str) -> Table:
    return dataclasses.replace(table, properties=LAYOUTS[layout])


def versions(spark: SparkSession, config: Config) -> dict[str, int]:
    return {t.name: io.latest_version(spark, config, t) for t in SILVER_TABLES}


def files_changed(spark: SparkSession, config: Config, since: dict[str, int]) -> dict[str, int]:
    """Files removed and added (and deletion vectors added) by the commits after `since`."""
    totals = {"removed": 0, "added": 0, "deletion_vectors": 0}
    keys = {
        "removed": "numTargetFilesRemoved",
        "added": "numTargetFilesAdded",
        "deletion_vectors": "numTargetDeletionVectorsAdded",
    }
    for table in SILVER_TABLES:
        history = io.delta_table(spark, config, table).history()
        for row in history.where(F.col("version") > since[table.name]).collect():
            metrics = row["operationMetrics"] or {}
            for name, key in keys.items():
                totals[name] += int(metrics.get(key, 0))
    return totals


def run_batches(
    spark: SparkSession, config: Config, plans: int, batches: int, batch_plans: int, first: int
) -> list[dict[str, Any]]:
    """`batches` silver batches of `batch_plans` changed plans; versions from `first` up."""
    results = []
    for index in range(batches):
        before = versions(spark, config)
        timer = StepTimer()
        started = time.monotonic()
        change_plans(spark, config, SEED, plans, batch_plans / plans, first + index, timer)
        seconds = time.monotonic() - started
        results.append(
            {
                "seconds": round(seconds, 3),
                "steps": {k: round(v, 3) for k, v in timer.seconds.items()},
                "files": files_changed(spark, config, before),
            }
        )
        print(
            f"   batch {index + 1}/{batches}: {seconds:.1f}s ({timer}); "
            f"files {results[-1]['files']}",
            file=sys.stderr,
            flush=True,
        )
    return results


def summarise(batches: list[dict[str, Any]]) -> dict[str, Any]:
    steady = batches[1:] or batches
    steps = sorted({step for b in steady for step in b["steps"]})
    return {
        "median_s": round(statistics.median(b["seconds"] for b in steady), 3),
        "steps_median_s": {
            s: round(statistics.median(b["steps"].get(s, 0.0) for b in steady), 3) for s in steps
        },
        "files_per_batch": {
            k: round(statistics.mean(b["files"][k] for b in steady), 1) for k in steady[0]["files"]
        },
        "batches": batches,
    }


def silver_files(spark: SparkSession, config: Config) -> dict[str, int]:
    return {t.name: maintenance.layout(spark, config, t).files for t in SILVER_TABLES}


def timed(work) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    work()
    return round(time.monotonic() - started, 3)


def read_costs(spark: SparkSession, config: Config, plans: int, version: int) -> dict[str, Any]:
    """Files, a full scan, a point lookup (median of 3) and one more batch."""
    history = io.read_table(spark, config, PLAN_HISTORY)
    services = io.read_table(spark, config, PLAN_SERVICES)

    def scan() -> None:
        history.groupBy("is_current").agg(F.count("*"), F.max("valid_from")).collect()
        services.groupBy("service_id").agg(F.sum("copay")).collect()

    lookups = [plan_id_for(SEED, i * 7919 % plans) for i in range(3)]
    lookup_s = [timed(lambda p=p: history.where(F.col("plan_id") == p).collect()) for p in lookups]
    return {
        "files": silver_files(spark, config),
        "scan_s": min(timed(scan) for _ in range(3)),
        "lookup_s": statistics.median(lookup_s),
        "batch_s": timed(lambda: change_plans(spark, config, SEED, plans, 500 / plans, version)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", default="20000,100000", help="silver sizes (plans)")
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--batch-plans", type=int, default=500)
    parser.add_argument("--partitions", default="2,4,8,16", help="shuffle partitions, part 3")
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--compaction-layout", default="deletion-vectors", choices=list(LAYOUTS))
    parser.add_argument("--bronze-commits", type=int, default=300, help="part 4; 0 skips it")
    parser.add_argument("--env", default=None)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    try:
        sizes = sorted(int(p) for p in args.plans.split(",") if p.strip())
        partitions = [int(p) for p in args.partitions.split(",") if p.strip()]
    except ValueError:
        parser.error("--plans and --partitions take comma-separated integers, e.g. 20000,100000")
    layouts = [name.strip() for name in args.layouts.split(",") if name.strip()]
    if unknown := sorted(set(layouts) - set(LAYOUTS)):
        parser.error(f"unknown layout(s) {unknown}; choose from {', '.join(LAYOUTS)}")
    if not sizes or args.batches < 2 or not 0 < args.batch_plans < sizes[0]:
        parser.error("need a size, --batches >= 2 and 0 < --batch-plans < the smallest size")

    config = quiet_spark(load_config(args.env), driver_memory="4g")
    root = Path(config.state_dir).absolute() / "bench-layout"
    shutil.rmtree(root, ignore_errors=True)
    spark = build_spark(config, app_name="bench-table-layout")
    default_partitions = config.spark.shuffle_partitions
    merge: list[dict[str, Any]] = []
    compaction: dict[str, Any] = {}
    by_partitions: list[dict[str, Any]] = []
    bronze: dict[str, Any] = {}
    try:
        print("== warm-up (not counted)", file=sys.stderr)
        warm = isolated(config, root, "warm-up")
        create_silver(spark, warm, "deletion-vectors")
        load_plans(spark, warm, SEED, 2000)
        load_history(spark, warm)
        run_batches(spark, warm, 2000, 2, 100, 2)

        for size in sizes:
            for layout in layouts:
                print(f"== {layout}, {size:,} plans", file=sys.stderr, flush=True)
                lake = isolated(config, root, f"{layout}-{size}")
                create_silver(spark, lake, layout)
                load_plans(spark, lake, SEED, size)
                load_history(spark, lake)
                batches = run_batches(spark, lake, size, args.batches, args.batch_plans, 2)
                merge.append({"layout": layout, "plans": size, **summarise(batches)})
                if size == sizes[-1] and layout == args.compaction_layout:
                    compaction = measure_compaction(spark, lake, size, args.batches + 2)
                shutil.rmtree(lake.warehouse, ignore_errors=True)

        for count in partitions:
            print(f"== {count} shuffle partitions, {sizes[0]:,} plans", file=sys.stderr)
            spark.conf.set("spark.sql.shuffle.partitions", str(count))
            lake = isolated(config, root, f"partitions-{count}")
            create_silver(spark, lake, SILVER_LAYOUT)
            load_plans(spark, lake, SEED, sizes[0])
            load_history(spark, lake)
            batches = run_batches(spark, lake, sizes[0], args.batches, args.batch_plans, 2)
            by_partitions.append({"partitions": count, **summarise(batches)})
            shutil.rmtree(lake.warehouse, ignore_errors=True)
        spark.conf.set("spark.sql.shuffle.partitions", str(default_partitions))
        if args.bronze_commits:
            bronze = measure_bronze(spark, isolated(config, root, "bronze"), args.bronze_commits)
    finally:
        stop_spark(spark)
        shutil.rmtree(root, ignore_errors=True)

    report = {
        "benchmark": "silver table layout",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_state(),
        "workload": {
            "sizes": sizes,
            "batches": args.batches,
            "batch_plans": args.batch_plans,
            "shuffle_partitions": default_partitions,
            "compaction_layout": args.compaction_layout,
            "partitions_layout": SILVER_LAYOUT,
            "seed": SEED,
        },
        "machine": machine(),
        "merge": merge,
        "compaction": compaction,
        "partitions": by_partitions,
        "bronze": bronze,
    }
    report["headline"] = headline(report)
    write_report(report, args.tag)
    return 0


def headline(report: dict[str, Any]) -> dict[str, Any] | None:
    """For bench/run.py, the first part the run has: the silver batch at the largest size with
    deletion vectors vs rewrite; else bronze's full scan compacted vs as written; else silver's
    full scan compacted vs as written."""
    w = report["workload"]
    largest = w["sizes"][-1]
    at = {r["layout"]: r["median_s"] for r in report["merge"] if r["plans"] == largest}
    if set(at) == set(LAYOUTS):
        return {
            "workload": f"silver batch of {w['batch_plans']:,} changed plans into {largest:,}",
            "label": "deletion vectors",
            "value": at["deletion-vectors"],
            "unit": "s per batch",
            "baseline_label": "copy-on-write rewrite",
            "baseline_value": at["rewrite"],
            "higher_is_better": False,
        }
    if report.get("bronze"):
        b = report["bronze"]
        workload = f"bronze full scan after {b['commits']} appends ({b['events']:,} events)"
        before, after = b["as written"]["full_scan_s"], b["compacted"]["full_scan_s"]
    elif report.get("compaction"):
        workload = f"silver full scan, {largest:,} plans after {w['batches']} batches"
        before = report["compaction"]["as written"]["scan_s"]
        after = report["compaction"]["compacted"]["scan_s"]
    else:
        return None
    return {
        "workload": workload,
        "label": "compacted",
        "value": after,
        "unit": "s",
        "baseline_label": "as written",
        "baseline_value": before,
        "higher_is_better": False,
    }


def measure_compaction(
    spark: SparkSession, config: Config, plans: int, version: int
) -> dict[str, Any]:
    """Read costs as the batches left silver, after compaction, after Z-ordering."""
    print("== compaction", file=sys.stderr, flush=True)
    stages: dict[str, Any] = {"as written": read_costs(spark, config, plans, version)}
    started = time.monotonic()
    maintenance.maintain(spark, config, SILVER_TABLES, zorder=False, vacuum_files=False)
    stages["compacted"] = {
        "maintain_s": round(time.monotonic() - started, 3),
        **read_costs(spark, config, plans, version + 1),
    }
    started = time.monotonic()
    maintenance.maintain(spark, config, [PLAN_HISTORY], zorder=True, vacuum_files=False)
    stages["z-ordered"] = {
        "maintain_s": round(time.monotonic() - started, 3),
        **read_costs(spark, config, plans, version + 2),
    }
    for name, stage in stages.items():
        print(f"   {name}: {json.dumps(stage)}", file=sys.stderr, flush=True)
    return stages


def measure_bronze(spark: SparkSession, config: Config, commits: int) -> dict[str, Any]:
    """Bronze after `commits` small appends (3 files each, like a 3-partition topic), and after
    compaction: files, the lag probe's scan, a full scan (min of 3 each)."""
    print(f"== bronze: {commits} appends", file=sys.stderr, flush=True)
    events, _ = event_history(SEED, plans=1000, changes=commits * 60 - 1000)
    per_commit = len(events) // commits
    io.ensure_table(spark, config, BRONZE_EVENTS)
    started = time.monotonic()
    for index in range(commits):
        chunk = events[index * per_commit : (index + 1) * per_commit]
        rows = [
            (e.key(), e.value(), "plans.cdc", i % 3, index * per_commit + i, datetime.now(UTC),
             datetime.now(UTC))
            for i, e in enumerate(chunk)
        ]  # fmt: skip
        frame = spark.createDataFrame(rows, BRONZE_EVENTS.schema).repartition(3, "partition")
        io.append(frame, config, BRONZE_EVENTS)
        if (index + 1) % 50 == 0:
            print(f"   {index + 1} appends", file=sys.stderr, flush=True)
    append_s = time.monotonic() - started

    # A new DataFrame per run: collecting the same one again would reuse its shuffle output.
    def lag_scan() -> None:
        table = io.read_table(spark, config, BRONZE_EVENTS)
        table.groupBy("partition").agg(F.max("offset")).collect()

    def full_scan() -> None:
        table = io.read_table(spark, config, BRONZE_EVENTS)
        table.select(F.sum(F.length("value")), F.count_distinct("key")).collect()

    def costs() -> dict[str, Any]:
        return {
            "files": maintenance.layout(spark, config, BRONZE_EVENTS).files,
            "lag_scan_s": min(timed(lag_scan) for _ in range(3)),
            "full_scan_s": min(timed(full_scan) for _ in range(3)),
        }

    result: dict[str, Any] = {
        "commits": commits,
        "events": per_commit * commits,
        "append_s_per_commit": round(append_s / commits, 3),
        "as written": costs(),
    }
    started = time.monotonic()
    maintenance.maintain(spark, config, [BRONZE_EVENTS], zorder=False, vacuum_files=False)
    result["compacted"] = {"maintain_s": round(time.monotonic() - started, 3), **costs()}
    print(f"   {json.dumps(result)}", file=sys.stderr, flush=True)
    return result


def _ratio(value: float, base: float) -> str:
    return f"{base / value:.2f}x" if value else "-"


def write_report(report: dict[str, Any], tag: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    OUT.mkdir(parents=True, exist_ok=True)
    name = "layout" + (f"-{tag}" if tag else "")
    (OUT / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    m, w = report["machine"], report["workload"]
    lines = [
        f"# Silver table layout ({report['date']})",
        "",
        f"Machine: {m['cores']} cores, {m['memory_gib']} GiB, {m['platform']}, {m['java']}. "
        f"Commit {report['git']['commit'][:7]}"
        + (" (with uncommitted changes)" if report["git"]["uncommitted"] else "")
        + f". Method: `bench/table_layout.py` (docstring): {w['batches']} silver batches of "
        f"{w['batch_plans']:,} changed plans per run, median of the batches after the first; "
        f"{w['shuffle_partitions']} shuffle partitions unless stated.",
        "",
        "## MERGE cost against table size",
        "",
        "| plans | layout | seconds per batch | vs rewrite | files removed / added per batch "
        "| plans MERGE s | history MERGE s | plan_services MERGE s |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    rewrite = {r["plans"]: r["median_s"] for r in report["merge"] if r["layout"] == "rewrite"}
    for r in report["merge"]:
        files, steps = r["files_per_batch"], r["steps_median_s"]
        base = rewrite.get(r["plans"])
        lines.append(
            f"| {r['plans']:,} | {r['layout']} | {r['median_s']:.2f} | "
            f"{_ratio(r['median_s'], base) if base else '-'} | "
            f"{files['removed']:.0f} / {files['added']:.0f} | {steps.get('plans', 0):.2f} | "
            f"{steps.get('history', 0):.2f} | {steps.get('plan_services', 0):.2f} |"
        )
    if report["compaction"]:
        c = report["compaction"]
        base = c["as written"]
        lines += [
            "",
            f"## Small files and compaction ({w['sizes'][-1]:,} plans, "
            f"{w['compaction_layout']}, after {w['batches']} batches)",
            "",
            "| state | silver files | maintenance s | full scan s | vs as written "
            "| point lookup s | vs as written | next batch s | vs as written |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for state, s in c.items():
            lines.append(
                f"| {state} | {sum(s['files'].values()):,} | {s.get('maintain_s', '-')} | "
                f"{s['scan_s']:.2f} | {_ratio(s['scan_s'], base['scan_s'])} | "
                f"{s['lookup_s']:.3f} | {_ratio(s['lookup_s'], base['lookup_s'])} | "
                f"{s['batch_s']:.2f} | {_ratio(s['batch_s'], base['batch_s'])} |"
            )
    if report["partitions"]:
        base = next(
            (p["median_s"] for p in report["partitions"]
             if p["partitions"] == w["shuffle_partitions"]),
            report["partitions"][0]["median_s"],
        )  # fmt: skip
        lines += [
            "",
            f"## Shuffle partitions ({w['sizes'][0]:,} plans, {w.get('partitions_layout')})",
            "",
            f"| partitions | seconds per batch | vs {w['shuffle_partitions']} "
            "| files added per batch |",
            "|---:|---:|---:|---:|",
        ]
        for p in report["partitions"]:
            lines.append(
                f"| {p['partitions']} | {p['median_s']:.2f} | {_ratio(p['median_s'], base)} | "
                f"{p['files_per_batch']['added']:.0f} |"
            )
    if report.get("bronze"):
        b = report["bronze"]
        base = b["as written"]
        lines += [
            "",
            f"## Bronze small files ({b['commits']} appends of 3 files, {b['events']:,} events)",
            "",
            "| state | files | maintenance s | lag-probe scan s | vs as written | full scan s "
            "| vs as written |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for state in ("as written", "compacted"):
            stage = b[state]
            lines.append(
                f"| {state} | {stage['files']:,} | {stage.get('maintain_s', '-')} | "
                f"{stage['lag_scan_s']:.2f} | {_ratio(stage['lag_scan_s'], base['lag_scan_s'])} "
                f"| {stage['full_scan_s']:.2f} | "
                f"{_ratio(stage['full_scan_s'], base['full_scan_s'])} |"
            )
    (OUT / f"{name}.md").write_text("\n".join(lines) + "\n")

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in report["merge"]:
        seconds = [b["seconds"] for b in r["batches"]]
        axes[0].plot(range(1, len(seconds) + 1), seconds, marker="o",
                     label=f"{r['layout']}, {r['plans']:,} plans")  # fmt: skip
    axes[0].set(xlabel="batch", ylabel="seconds", title="Silver batch time by layout and size")
    axes[0].legend()
    if report["partitions"]:
        counts = [p["partitions"] for p in report["partitions"]]
        axes[1].bar([str(c) for c in counts], [p["median_s"] for p in report["partitions"]])
        axes[1].set(xlabel="spark.sql.shuffle.partitions", ylabel="median seconds per batch",
                    title=f"Shuffle partitions ({w['sizes'][0]:,} plans)")  # fmt: skip
    figure.tight_layout()
    figure.savefig(OUT / f"{name}.png", dpi=110)
    print((OUT / f"{name}.md").read_text())


if __name__ == "__main__":
    sys.exit(main())
