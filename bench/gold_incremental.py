"""Benchmark: gold jobs, full rebuild versus incremental refresh after a small change.

    .venv/bin/python bench/gold_incremental.py --plans 100000 --changed 0.01 [--tag NAME]

1. Silver gets --plans generated plans (bench/silver_fixture.py: the silver apply without Kafka).
2. Gold is built in full, the anomaly model trained and registered (MLflow, a private SQLite).
3. --changed of the plans change in silver (9 in 10 re-priced with services added or dropped,
   1 in 10 deleted): chosen at random (`--pattern uniform`) or one contiguous range of them
   (`concentrated`: loaded together, so in few of silver's files).
4. Incremental: every gold job refreshes from the change feed; each table's wall time is taken.
5. Full: every gold job rebuilds the same final state (`--full`); each table's wall time again.
6. The two results are compared row for row (scored_at aside): they must be equal.

Each stage runs once, on a warm SparkSession (a small full build runs first so that JIT and
first-use costs are not charged to either side). Results (JSON, markdown with ratios and a plot)
go to docs/benchmarks/gold[-TAG].*.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from machine_info import git_state, machine
from quiet_spark import quiet_spark
from resources import ResourceSampler, resource_section
from silver_fixture import change_plans, load_plans

from lakehouse import io, spark_cost
from lakehouse.config import PROJECT_ROOT, Config, load_config
from lakehouse.gold import detection, refresh
from lakehouse.gold.refresh import Refresh
from lakehouse.spark import build_spark, stop_spark
from lakehouse.tables import GOLD_STATE_TABLES, GOLD_TABLES

OUT = PROJECT_ROOT / "docs" / "benchmarks"

Stage = Callable[[object, Config, bool], list[Refresh]]
STAGES: dict[str, Stage] = {
    "plan_costs": lambda s, c, full: [refresh.refresh_plan_costs(s, c, full)],
    "cost_trends": lambda s, c, full: [refresh.refresh_cost_trends(s, c, full)],
    "service tables": lambda s, c, full: refresh.refresh_service_tables(s, c, full),
    "plan_anomalies": lambda s, c, full: [detection.refresh_plan_anomalies(s, c, full)],
}


def run_stages(spark, config: Config, full: bool) -> dict[str, dict]:
    results = {}
    for name, stage in STAGES.items():
        started = time.monotonic()
        with spark_cost.measure(spark) as cost:
            refreshes = stage(spark, config, full)
        seconds = time.monotonic() - started
        results[name] = {
            "seconds": round(seconds, 2),
            "spark_jobs": cost.result.jobs,
            "spark_tasks": cost.result.tasks,
            "modes": [r.mode for r in refreshes],
            "keys_changed": [r.keys_changed for r in refreshes],
        }
        rendered = "; ".join(r.render() for r in refreshes)
        print(f"  {name:<15} {seconds:7.1f}s {cost.result.jobs:4d} jobs  {rendered}")
    return results


def versions(spark, config: Config) -> dict[str, int]:
    return {
        t.name: refresh.current_version(spark, config, t)
        for t in (*GOLD_TABLES, *GOLD_STATE_TABLES)
    }


def same_content(spark, config: Config, before: dict[str, int], after: dict[str, int]) -> bool:
    """Each gold table at two versions holds the same rows (scored_at aside), compared in Spark
    (a million rows do not belong on the driver)."""
    for table in (*GOLD_TABLES, *GOLD_STATE_TABLES):
        old = io.read_version(spark, config, table, before[table.name]).drop("scored_at")
        new = io.read_version(spark, config, table, after[table.name]).drop("scored_at")
        if old.exceptAll(new).limit(1).count() or new.exceptAll(old).limit(1).count():
            print(f"  {table.name} differs")
            return False
    return True


def isolated(config: Config, root: Path) -> Config:
    uri = f"sqlite:///{root / 'mlflow.db'}"
    return dataclasses.replace(
        config,
        warehouse=str(root / "warehouse"),
        checkpoints="",
        # the incremental side measures the refresh path itself, not what the estimate picks
        gold=dataclasses.replace(config.gold, mlflow_tracking_uri=uri, choose_by_cost=False),
    )


def warm_up(spark, config: Config, root: Path, plans: int) -> None:
    """Both code paths once on a small lake, so neither side pays for first use (JIT, class
    loading, the MLflow registry's first connection)."""
    lake = isolated(config, root / "warm-up")
    load_plans(spark, lake, seed=1, plans=plans)
    refresh.refresh_plan_costs(spark, lake)
    detection.train(spark, lake)
    run_stages(spark, lake, full=True)
    change_plans(spark, lake, seed=1, plans=plans, fraction=0.01, version=2)
    run_stages(spark, lake, full=False)
    run_stages(spark, lake, full=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=100_000)
    parser.add_argument("--changed", type=float, default=0.01, help="share of plans changed")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--tag", default="", help="suffix of the result files")
    parser.add_argument(
        "--pattern",
        choices=("uniform", "concentrated"),
        default="uniform",
        help="changed plans at random, or one contiguous range of them",
    )
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument(
        "--warm-up-plans", type=int, default=2000, help="plans of the warm-up lake (not timed)"
    )
    args = parser.parse_args()
    if min(args.plans, args.warm_up_plans) < 1000 or not 0 < args.changed < 1:
        parser.error("--plans and --warm-up-plans must be >= 1000 and --changed in (0, 1)")

    base = quiet_spark(load_config("local"), args.driver_memory)
    root = Path(tempfile.mkdtemp(prefix="bench-gold-"))
    lake = isolated(base, root / "main")
    # started before the session, so that the JVM's start is in its window
    sampler = ResourceSampler(base).start()
    spark = build_spark(lake, app_name="bench-gold")
    try:
        print(f"warm-up ({args.warm_up_plans:,} plans, full and incremental)")
        with sampler.phase("warm-up"):
            warm_up(spark, base, root, args.warm_up_plans)

        print(f"silver: loading {args.plans:,} plans")
        started = time.monotonic()
        with sampler.phase("silver load"):
            load_plans(spark, lake, args.seed, args.plans)
        load_s = time.monotonic() - started
        print(f"  {load_s:.1f}s")

        print("gold: first full build")
        run_stages_before = time.monotonic()
        with sampler.phase("first build + training"):
            refresh.refresh_plan_costs(spark, lake)
            started = time.monotonic()
            trained = detection.train(spark, lake)
            train_s = time.monotonic() - started
            print(trained.render(lake))
            initial = run_stages(spark, lake, full=True)
        print(f"  first build {time.monotonic() - run_stages_before:.1f}s")

        print(f"silver: changing {args.changed:.1%} of the plans ({args.pattern})")
        changed = change_plans(
            spark,
            lake,
            args.seed,
            args.plans,
            args.changed,
            version=2,
            concentrated=args.pattern == "concentrated",
        )
        print(f"  {changed.events} events")

        print("gold: incremental refresh")
        with sampler.phase("incremental"):
            incremental = run_stages(spark, lake, full=False)
        after_incremental = versions(spark, lake)
        print("gold: full rebuild of the same state")
        with sampler.phase("full rebuild"):
            full = run_stages(spark, lake, full=True)
        equal = same_content(spark, lake, after_incremental, versions(spark, lake))
        print(f"  incremental result equals full rebuild: {equal}")
    finally:
        stop_spark(spark)
        sampler.stop()
        shutil.rmtree(root, ignore_errors=True)

    total_full = sum(v["seconds"] for v in full.values())
    total_incr = sum(v["seconds"] for v in incremental.values())
    result = {
        "benchmark": "gold full vs incremental",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_state(),
        "machine": machine(),
        "method": __doc__,
        "plans": args.plans,
        "warm_up_plans": args.warm_up_plans,
        "changed_share": args.changed,
        "pattern": args.pattern,
        "change_events": changed.events,
        "silver_load_s": round(load_s, 1),
        "train_s": round(train_s, 1),
        "model_metrics": trained.evaluation.metrics,
        "initial_full": initial,
        "incremental": incremental,
        "full": full,
        "total_incremental_s": round(total_incr, 2),
        "total_full_s": round(total_full, 2),
        "incremental_equals_full": equal,
        "resources": sampler.summary(),
    }
    write(result, args.tag)
    return 0 if equal else 1


def write(result: dict, tag: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name = "gold" + (f"-{tag}" if tag else "")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")

    stages = list(result["full"])
    full = [result["full"][s]["seconds"] for s in stages]
    incr = [result["incremental"][s]["seconds"] for s in stages]
    fig, ax = plt.subplots(figsize=(8, 4))
    x = range(len(stages))
    ax.bar([i - 0.2 for i in x], full, 0.4, label="full rebuild")
    ax.bar(
        [i + 0.2 for i in x],
        incr,
        0.4,
        label=f"incremental ({result['changed_share']:.0%} changed)",
    )
    ax.set_xticks(list(x), stages)
    ax.set_ylabel("seconds")
    ax.set_title(f"Gold refresh, {result['plans']:,} plans, {result['machine']['cores']} cores")
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT / f"{name}.png", dpi=110)

    m = result["model_metrics"]
    lines = [
        f"# Gold: full rebuild vs incremental refresh ({result['plans']:,} plans, "
        f"{result['changed_share']:.0%} changed, {result.get('pattern', 'uniform')})",
        "",
        f"Run {result['date']} on {result['machine']['cores']} cores, "
        f"{result['machine']['memory_gib']} GiB; `bench/gold_incremental.py` (method in its "
        "docstring and in the JSON). One run per side, warm session.",
        "",
        "| stage | full rebuild (s) | incremental (s) | incremental / full |",
        "|---|---:|---:|---:|",
    ]
    for s, f, i in zip(stages, full, incr, strict=True):
        lines.append(f"| {s} | {f:.1f} | {i:.1f} | {i / f:.2f}x |")
    lines.append(
        f"| **all** | **{result['total_full_s']:.1f}** | **{result['total_incremental_s']:.1f}** "
        f"| **{result['total_incremental_s'] / result['total_full_s']:.2f}x** |"
    )
    lines += [
        "",
        f"Incremental result equal to the full rebuild, row for row: "
        f"**{result['incremental_equals_full']}**.",
        f"Silver load (fixture, not timed as gold): {result['silver_load_s']:.0f} s; model "
        f"training: {result['train_s']:.0f} s.",
        "",
        "Anomaly detectors on the generator's labels (all plans):",
        "",
        "| detector | precision | recall | F1 |",
        "|---|---:|---:|---:|",
        f"| KMeans + CBLOF (MLlib) | {m['model_precision']:.3f} | {m['model_recall']:.3f} | "
        f"{m['model_f1']:.3f} |",
        f"| robust z baseline | {m['rule_precision']:.3f} | {m['rule_recall']:.3f} | "
        f"{m['rule_f1']:.3f} |",
        "",
        f"![full vs incremental]({name}.png)",
        "",
    ]
    if result.get("resources"):
        lines += [*resource_section(result["resources"]), ""]
    (OUT / f"{name}.md").write_text("\n".join(lines))
    print(f"wrote {OUT / name}.{{json,md,png}}")


if __name__ == "__main__":
    sys.exit(main())
