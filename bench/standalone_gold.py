"""Benchmark: the gold full rebuild with spark-submit, local[2] versus a Spark standalone cluster
of two 1-core workers on the same machine.

    .venv/bin/python bench/standalone_gold.py [--plans 20000] [--tag NAME]   # no services needed

1. Silver gets --plans generated plans once (bench/silver_fixture.py: the silver apply without
   Kafka), in a local session of this process, which then idles until step 5.
2. A private standalone cluster starts (lakehouse/stack/cluster.py): a master and two workers of
   1 core and 2 GiB each, on 127.0.0.1, with their own state folder and free ports.
3. Each side gets its own copy of that silver and its own MLflow registry (SQLite), and runs the
   nightly gold jobs as an operator does, one spark-submit per job (jobs/submit.sh):
   cost_analysis --full, service_patterns --full, anomaly_detection --mode both --full. The
   sides alternate job by job, local[2] first. Taken: each job's wall time (JVM, session and,
   on the cluster, executor start included) and the time each job reports per table.
4. The master's JSON must list the three cluster applications as FINISHED with 2 cores: they ran
   on the workers' executors, not in local mode.
5. Both sides' gold tables are compared row for row (scored_at aside): they must be equal.

One run per side. Results (JSON, markdown with the ratios, a plot) go to
docs/benchmarks/standalone[-TAG].*.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from machine_info import machine
from quiet_spark import quiet_spark
from silver_fixture import load_plans

from lakehouse import io, stack
from lakehouse.config import PROJECT_ROOT, Config, load_config
from lakehouse.spark import build_spark, stop_spark
from lakehouse.stack.cluster import master_state, private_cluster
from lakehouse.tables import GOLD_TABLES, SILVER_TABLES

OUT = PROJECT_ROOT / "docs" / "benchmarks"
SUBMIT = str(PROJECT_ROOT / "jobs" / "submit.sh")
LOCAL = "local[2]"

# (job label, spark-submit arguments), in the order run_all_jobs.sh runs them.
JOBS: list[tuple[str, list[str]]] = [
    ("cost_analysis", ["jobs/cost_analysis.py", "--full"]),
    ("service_patterns", ["jobs/service_patterns.py", "--full"]),
    ("anomaly_detection", ["jobs/anomaly_detection.py", "--mode", "both", "--full"]),
]
# What a gold job prints per table: "gold.plan_costs: full in 18.6s (from ...)".
TABLE_LINE = re.compile(r"^(gold\.\w+): (\S+) in ([\d.]+)s", re.MULTILINE)


def finished_apps(cluster: Config, count: int) -> list[dict]:
    """The master's completed applications, once all `count` are there (the master learns of
    an application's end a moment after its spark-submit returns)."""
    deadline = time.monotonic() + 60
    while True:
        apps = master_state(cluster)["completedapps"]
        if len(apps) >= count or time.monotonic() > deadline:
            return [{k: app[k] for k in ("name", "state", "cores", "duration")} for app in apps]
        time.sleep(1)


def side_env(side: Path, master: str, driver_memory: str) -> dict[str, str]:
    return {
        **os.environ,
        "LAKEHOUSE_ENV": "local",
        "LAKEHOUSE_WAREHOUSE": str(side / "warehouse"),
        "LAKEHOUSE_SPARK_MASTER": master,
        "LAKEHOUSE_SPARK_DRIVER_MEMORY": driver_memory,
        "LAKEHOUSE_SPARK_UI": "false",
        "LAKEHOUSE_MLFLOW_TRACKING_URI": f"sqlite:///{side / 'mlflow.db'}",
    }


def run_job(args: list[str], env: dict[str, str]) -> dict:
    started = time.monotonic()
    done = subprocess.run(
        [SUBMIT, *args], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=3600
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"{args[0]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    tables = {name: float(s) for name, _, s in TABLE_LINE.findall(done.stdout)}
    return {"seconds": round(seconds, 1), "tables": tables}


def same_gold(spark, left: Config, right: Config) -> dict[str, bool]:
    """Each gold table of the two sides holds the same rows (scored_at aside), compared in
    Spark."""
    equal = {}
    for table in GOLD_TABLES:
        a = io.read_table(spark, left, table).drop("scored_at")
        b = io.read_table(spark, right, table).drop("scored_at")
        equal[table.name] = not (a.exceptAll(b).limit(1).count() or b.exceptAll(a).limit(1).count())
    return equal


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--tag", default="", help="suffix of the result files")
    parser.add_argument("--driver-memory", default="2g", help="both sides' driver (default 2g)")
    args = parser.parse_args()
    if args.plans < 1000:
        parser.error("--plans must be >= 1000")

    base = quiet_spark(load_config("local"))
    root = Path(tempfile.mkdtemp(prefix="bench-standalone-"))
    source = dataclasses.replace(base, warehouse=str(root / "silver" / "warehouse"))
    sides = {LOCAL: root / "local", "standalone": root / "standalone"}
    lakes = {
        name: dataclasses.replace(base, warehouse=str(p / "warehouse")) for name, p in sides.items()
    }
    cluster = private_cluster(base, root / "cluster-state")
    masters = {LOCAL: LOCAL, "standalone": cluster.cluster.master_url}
    load_before = os.getloadavg()
    spark = build_spark(source, app_name="bench-standalone")
    try:
        print(f"silver: loading {args.plans:,} plans")
        started = time.monotonic()
        load_plans(spark, source, args.seed, args.plans)
        load_s = time.monotonic() - started
        print(f"  {load_s:.1f}s")
        for lake in lakes.values():
            for table in SILVER_TABLES:
                if Path(table.path(source)).exists():
                    shutil.copytree(table.path(source), table.path(lake))

        print("cluster: a master and 2 workers (1 core, 2 GiB each)")
        started = time.monotonic()
        stack.up_cluster(cluster, report=lambda line: print(f"  {line}"))
        cluster_start_s = time.monotonic() - started
        try:
            results: dict[str, dict[str, dict]] = {name: {} for name in sides}
            for job, job_args in JOBS:
                for name, folder in sides.items():
                    env = side_env(folder, masters[name], args.driver_memory)
                    results[name][job] = outcome = run_job(job_args, env)
                    print(f"  {job:<18} {name:<10} {outcome['seconds']:7.1f}s")
            apps = finished_apps(cluster, count=len(JOBS))
        finally:
            stack.down(cluster, report=lambda _: None, cluster_only=True)
        on_cluster = sorted((a["name"], a["state"], a["cores"]) for a in apps)
        expected = sorted((f"lakehouse-{job.replace('_', '-')}", "FINISHED", 2) for job, _ in JOBS)
        ran_on_cluster = on_cluster == expected
        print(f"  the cluster's applications: {on_cluster}")
        equal = same_gold(spark, lakes[LOCAL], lakes["standalone"])
        print(f"  gold equal on both sides: {equal}")
    finally:
        stop_spark(spark)
        shutil.rmtree(root, ignore_errors=True)

    totals = {name: round(sum(j["seconds"] for j in results[name].values()), 1) for name in sides}
    result = {
        "benchmark": "gold full rebuild: spark-submit on local[2] vs a standalone cluster",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "method": __doc__,
        "plans": args.plans,
        "driver_memory": args.driver_memory,
        "cluster": {
            "workers": cluster.cluster.workers,
            "cores_per_worker": cluster.cluster.worker_cores,
            "worker_memory": cluster.cluster.worker_memory,
            "executor_memory": "1g (Spark's default)",
            "start_s": round(cluster_start_s, 1),
        },
        "silver_load_s": round(load_s, 1),
        "jobs": results,
        "total_s": totals,
        "cluster_over_local": round(totals["standalone"] / totals[LOCAL], 2),
        # read by bench/run.py for docs/benchmarks/summary.md
        "headline": {
            "workload": f"gold full rebuild, {args.plans:,} plans, 3 spark-submits",
            "label": "standalone, 2 workers x 1 core",
            "value": totals["standalone"],
            "unit": "s",
            "baseline_label": LOCAL,
            "baseline_value": totals[LOCAL],
            "higher_is_better": False,
        },
        "cluster_applications": apps,
        "ran_on_cluster": ran_on_cluster,
        "gold_equal": equal,
    }
    write(result, args.tag)
    return 0 if ran_on_cluster and all(equal.values()) else 1


def write(result: dict, tag: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name = "standalone" + (f"-{tag}" if tag else "")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")

    jobs = [job for job, _ in JOBS]
    local = [result["jobs"][LOCAL][j]["seconds"] for j in jobs]
    cluster = [result["jobs"]["standalone"][j]["seconds"] for j in jobs]
    fig, ax = plt.subplots(figsize=(8, 4))
    x = range(len(jobs))
    ax.bar([i - 0.2 for i in x], local, 0.4, label="local[2], one JVM")
    ax.bar([i + 0.2 for i in x], cluster, 0.4, label="standalone, 2 workers x 1 core")
    ax.set_xticks(list(x), jobs)
    ax.set_ylabel("seconds (spark-submit wall time)")
    ax.set_title(
        f"Gold full rebuild, {result['plans']:,} plans, {result['machine']['cores']} cores"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT / f"{name}.png", dpi=110)

    lines = [
        f"# Gold full rebuild: local[2] vs a standalone cluster ({result['plans']:,} plans)",
        "",
        f"Run {result['date']} on {result['machine']['cores']} cores, "
        f"{result['machine']['memory_gib']} GiB (load average "
        f"{result['load_average_before'][0]:.1f} before, {result['load_average_after'][0]:.1f} "
        "after: the machine is shared); `bench/standalone_gold.py` (method in its docstring and "
        "in the JSON). One spark-submit per job and side, the sides alternating.",
        "",
        "| job | local[2] (s) | standalone (s) | standalone / local |",
        "|---|---:|---:|---:|",
    ]
    for job, a, b in zip(jobs, local, cluster, strict=True):
        lines.append(f"| {job} | {a:.1f} | {b:.1f} | {b / a:.2f}x |")
    total = result["total_s"]
    lines += [
        f"| **all** | **{total[LOCAL]:.1f}** | **{total['standalone']:.1f}** | "
        f"**{result['cluster_over_local']:.2f}x** |",
        "",
        "Time each job reported per table (inside the job, JVM and session start excluded):",
        "",
        "| table | local[2] (s) | standalone (s) |",
        "|---|---:|---:|",
    ]
    for job in jobs:
        for table, seconds in result["jobs"][LOCAL][job]["tables"].items():
            other = result["jobs"]["standalone"][job]["tables"].get(table, float("nan"))
            lines.append(f"| {table} | {seconds:.1f} | {other:.1f} |")
    why = (
        "Why the cluster is not faster here: both sides have the same two cores."
        if result["cluster_over_local"] >= 1
        else "The cluster came out ahead this time, but both sides have the same two cores."
    ) + (
        " The cluster adds JVMs (master, two workers, and per application two executors that "
        "start cold: class loading and JIT of Spark, Delta and the connectors twice, and the "
        "connector jars and the lakehouse package fetched by each), sends every task over RPC, "
        "and fetches shuffle blocks through the network stack over loopback instead of from its "
        "own block manager. Gold at this size is many small Delta stages, so those fixed costs "
        "dominate. What the run proves is that the same jobs, unchanged, run on executors of "
        "separate workers and write the same tables; the speed-up comes from workers on other "
        "machines (docs/scale-out.md)."
    )
    apps = ", ".join(
        f"{app['name']} {app['state']} on {app['cores']} cores"
        for app in result["cluster_applications"]
    )
    lines += [
        "",
        f"The cluster's applications, from the master's JSON: {apps} "
        f"(ran on the cluster: **{result['ran_on_cluster']}**). Gold equal on both sides, row "
        f"for row: **{all(result['gold_equal'].values())}**. Cluster start: "
        f"{result['cluster']['start_s']:.0f} s; silver load (not timed as gold): "
        f"{result['silver_load_s']:.0f} s.",
        "",
        why,
        "",
        f"![local vs standalone]({name}.png)",
        "",
    ]
    (OUT / f"{name}.md").write_text("\n".join(lines))
    print(f"wrote {OUT / name}.{{json,md,png}}")


if __name__ == "__main__":
    sys.exit(main())
