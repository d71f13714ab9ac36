"""Benchmark: the PostgreSQL mirror (`mirror.publish_table`) against a plain COPY of the same rows.

    .venv/bin/python bench/mirror_throughput.py --rows 200000 [--repeats 3] [--tag NAME]
    .venv/bin/python bench/mirror_throughput.py --render docs/benchmarks/mirror.json  # .md/.png

1. A gold.plan_costs-shaped Delta table (the declared PLAN_COSTS schema) with --rows rows,
   generated deterministically by Spark from the row number, is written to a temporary
   warehouse in --files files.
2. The same rows are exported once, before any timing, as the CSV the mirror sends (the same
   `as_csv_records`), held in memory.
3. Modes, measured against the running local PostgreSQL in a dedicated schema (`bench_mirror`,
   dropped at the end), interleaved per repeat:
   - `mirror`: `mirror.publish_table`, the lakehouse path (BI role check, staging table, COPY
     streamed from Spark as Arrow batches (`mirror.arrow_batches`), indexes, swap, grant, state
     row, one transaction). Its state row is deleted before each run so that the same Delta
     version is published again, replacing the previous run's table as a nightly republish
     would.
   - `copy`: the floor. `COPY ... FROM STDIN (FORMAT csv)` of the pre-exported CSV into a bare
     table with the same columns, created (empty) beforehand; no indexes, no swap. Timed: the
     COPY and its commit.
   - `copy+index+swap`: the same CSV, but through the mirror's transaction (create staging,
     COPY, the same CREATE INDEX statements, drop + rename, grant, commit): the mirror without
     Spark.
   - `export`: the mirror's Spark side alone (read the pinned version, cast to text,
     `as_csv_records`, Arrow batches, drained in the 8 KiB reads psycopg2 makes); no
     PostgreSQL.
   One warm-up run of every mode is not counted. Each mode is repeated --repeats times; the
   median and the best run are reported, as rows/s and as a ratio to the floor's rows/s.
4. Where the time goes: the `mirror` runs are traced without changing their code path (a
   psycopg2 cursor and connection subclass time each statement and the commit, a `_BatchReader`
   subclass times the reads COPY makes, i.e. the wait on the export; the Delta calls are
   wrapped in timers). CPU seconds are sampled per process: this Python
   (driver), the Spark JVM, the PostgreSQL backend(s), and the rest of the machine. The machine
   may be shared: each run first waits (--wait-idle, --max-wait) until the cores are mostly idle.
5. The mirrored table and the floor's table are compared (md5 over all rows in plan_id order).

Results (JSON, markdown with ratios, a plot) go to docs/benchmarks/mirror[-TAG].*.
"""

from __future__ import annotations

import argparse
import dataclasses
import io as stdio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import psycopg2
import psycopg2.extensions
from machine_info import git_state, machine
from psycopg2 import sql
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from quiet_spark import quiet_spark
from resources import ResourceSampler, resource_section

from lakehouse import clients, io
from lakehouse.config import PROJECT_ROOT, Config, load_config, postgres_password
from lakehouse.plans.generator import ORGANISATIONS, PLAN_TYPES
from lakehouse.serving import mirror
from lakehouse.spark import build_spark, stop_spark
from lakehouse.tables import PLAN_COSTS

OUT = PROJECT_ROOT / "docs" / "benchmarks"
SCHEMA = "bench_mirror"
FLOOR_TABLE = "copy_floor"
# psycopg2's copy_expert reads its file in chunks of this size unless told otherwise; the
# mirror does not tell it, so the export-only mode drains the reader the same way.
COPY_READ_SIZE = 8192
MODES = ("mirror", "copy+index+swap", "copy", "export")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------ the data


def plan_costs_frame(spark: SparkSession, rows: int, files: int) -> DataFrame:
    """`rows` plan_costs rows, a pure function of the row number (xxhash64 of id and a salt
    per column), with the generator's organisations and plan types and some nulls, so that
    every run and both sides see the same bytes."""

    def h(salt: int, modulo: int) -> Any:
        return F.pmod(F.xxhash64(F.col("id"), F.lit(salt)), F.lit(modulo))

    orgs = F.array(*(F.lit(name) for name, _ in ORGANISATIONS))
    plan_types = F.array(*(F.lit(name) for name, _ in PLAN_TYPES))
    frame = (
        spark.range(0, rows, numPartitions=files)
        .withColumn("plan_id", F.format_string("plan-42-%07d", F.col("id")))
        .withColumn("plan_version", (h(1, 20) + 1).cast("long"))
        .withColumn(
            "org",
            F.when(h(2, 100) == 0, F.lit(None)).otherwise(
                F.element_at(orgs, (h(3, len(ORGANISATIONS)) + 1).cast("int"))
            ),
        )
        .withColumn("plan_type", F.element_at(plan_types, (h(4, len(PLAN_TYPES)) + 1).cast("int")))
        .withColumn(
            "creation_date", F.date_add(F.lit("2014-01-01").cast("date"), h(5, 4380).cast("int"))
        )
        .withColumn("creation_month", F.trunc("creation_date", "month"))
        .withColumn(
            "plan_deductible",
            F.when(h(6, 50) == 0, F.lit(None)).otherwise(F.round(h(7, 900_000) / 100.0, 2)),
        )
        .withColumn("plan_copay", F.round(h(8, 15_000) / 100.0, 2))
        .withColumn("service_count", (h(9, 15) + 1).cast("int"))
        .withColumn(
            "distinct_service_count",
            F.greatest(F.lit(1), F.col("service_count") - h(10, 3)).cast("int"),
        )
        .withColumn(
            "services_deductible", F.round(F.col("service_count") * h(11, 300_000) / 100.0, 2)
        )
        .withColumn("max_service_copay", F.round(h(12, 20_000) / 100.0, 2))
        .withColumn(
            "services_copay",
            F.round(F.col("max_service_copay") * (F.col("service_count") + 1) / 2.0, 2),
        )
        .withColumn(
            "total_cost",
            F.col("plan_deductible") + F.col("plan_copay") + F.col("services_copay"),
        )
        .withColumn("event_ts", F.timestamp_seconds(F.lit(1_767_225_600) + h(13, 30 * 86_400)))
    )
    return frame.select(*PLAN_COSTS.schema.fieldNames())


def export_reader(spark: SparkSession, config: Config, version: int) -> mirror._BatchReader:
    """The mirror's Spark side, verbatim from `_load_and_swap`: the reader COPY drains."""
    records = mirror.as_csv_records(io.read_version(spark, config, PLAN_COSTS, version))
    return mirror._BatchReader(mirror.arrow_batches(records))


# ------------------------------------------------------------------------------ measuring


class Trace:
    """Seconds per step of one run, CPU seconds per process."""

    def __init__(self) -> None:
        self.steps: dict[str, float] = defaultdict(float)
        self.postgres_cpu = 0.0
        self.copied = False

    def add(self, step: str, seconds: float) -> None:
        self.steps[step] += seconds


TRACE = Trace()


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 when it cannot be read)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # after the command name: state is field 3, utime 14, stime 15 (1-based, see proc(5))
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy() -> float:
    """CPU seconds all cores have spent on anything but idling and I/O wait, since boot."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def wait_for_idle(max_busy: float, max_wait_s: float) -> float:
    """Wait until the other processes leave the cores mostly idle (the machine is shared: a
    test run beside the benchmark would be measured too). Returns the busy share last seen."""
    cores = os.cpu_count() or 1
    deadline = time.monotonic() + max_wait_s
    announced = False
    while True:
        before = machine_busy()
        time.sleep(3)
        busy = (machine_busy() - before) / 3 / cores
        if busy <= max_busy or time.monotonic() > deadline:
            return busy
        if not announced:
            print(f"  waiting for the machine to calm down ({busy:.0%} busy)", flush=True)
            announced = True


class TracedCursor(psycopg2.extensions.cursor):
    """Times each statement; before the first COPY it is preparation, after it the swap."""

    def execute(self, query: Any, vars: Any = None) -> None:
        text = query if isinstance(query, str) else query.as_string(self)
        started = time.perf_counter()
        try:
            super().execute(query, vars)
        finally:
            if text.startswith("CREATE INDEX"):
                step = "index"
            else:
                step = "swap" if TRACE.copied else "prepare"
            TRACE.add(step, time.perf_counter() - started)

    def copy_expert(self, sql: Any, file: Any, size: int = COPY_READ_SIZE) -> None:
        started = time.perf_counter()
        try:
            super().copy_expert(sql, file, size)
        finally:
            TRACE.add("copy", time.perf_counter() - started)
            TRACE.copied = True


class TracedConnection(psycopg2.extensions.connection):
    """Times the commit, and samples its backend's CPU before it goes away."""

    def commit(self) -> None:
        started = time.perf_counter()
        try:
            super().commit()
        finally:
            # the BI role's transaction commits before the COPY: preparation, not the publish
            TRACE.add("commit" if TRACE.copied else "prepare", time.perf_counter() - started)

    def close(self) -> None:
        if not self.closed:
            TRACE.postgres_cpu += proc_cpu(self.get_backend_pid())
        super().close()


class TracedReader(mirror._BatchReader):
    """Times the reads COPY makes: waiting on Spark for the next records (the first read
    includes planning the export and starting the job)."""

    def read(self, size: int = 65536) -> bytes:
        started = time.perf_counter()
        try:
            return super().read(size)
        finally:
            TRACE.add("copy: export", time.perf_counter() - started)

    readline = read


def traced_connect(config: Config, **overrides: Any) -> Any:
    started = time.perf_counter()
    conn = psycopg2.connect(
        config.postgres.dsn,
        password=postgres_password(),
        connection_factory=TracedConnection,
        cursor_factory=TracedCursor,
        **overrides,
    )
    TRACE.add("prepare", time.perf_counter() - started)
    return conn


@dataclasses.dataclass
class Run:
    seconds: float
    steps: dict[str, float]
    cpu: dict[str, float]
    # share of all cores busy just before the run (None: not waited for)
    busy_before: float | None = None


def measure(action: Callable[[], None], jvm_pid: int) -> Run:
    """Wall time, traced steps and CPU seconds per process of one run of `action`."""
    global TRACE
    TRACE = Trace()
    python0, jvm0, machine0 = time.process_time(), proc_cpu(jvm_pid), machine_busy()
    started = time.perf_counter()
    action()
    seconds = time.perf_counter() - started
    cpu = {
        "python": time.process_time() - python0,
        "spark_jvm": proc_cpu(jvm_pid) - jvm0,
        "postgres_backend": TRACE.postgres_cpu,
    }
    # everything else the cores did meanwhile: other processes of the machine, PostgreSQL's
    # WAL writer and checkpointer, the other services of the stack
    cpu["others"] = max(machine_busy() - machine0 - sum(cpu.values()), 0.0)
    return Run(seconds, dict(TRACE.steps), cpu)


# ------------------------------------------------------------------------------ the modes


def timed(step: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            TRACE.add(step, time.perf_counter() - started)

    return wrapper


# The Delta calls publish_table makes before it writes (read_version resolves the snapshot; its
# rows are read later, inside the COPY). Runs before snapshot_identity recorded latest_version
# and table_id (two log reads, one of them a Spark job) instead.
DELTA_CALLS = ("table_exists", "snapshot_identity", "read_version")
DELTA_STEPS = (*DELTA_CALLS, "latest_version", "table_id")


def run_mirror(spark: SparkSession, lake: Config, rows: int) -> None:
    with ExitStack() as patches:
        patches.enter_context(mock.patch.object(clients, "pg_connect", traced_connect))
        patches.enter_context(mock.patch.object(mirror, "_BatchReader", TracedReader))
        for name in DELTA_CALLS:
            timed_call = timed(f"delta: {name}", getattr(io, name))
            patches.enter_context(mock.patch.object(io, name, timed_call))
        published = mirror.publish_table(spark, lake, PLAN_COSTS)
    if not published.written or published.rows != rows:
        raise RuntimeError(f"mirror published {published}, expected {rows:,} new rows")
    TRACE.steps.setdefault("copy: export", 0.0)


def forget_mirrored(lake: Config) -> None:
    """Make the next publish_table write again (same Delta version, previous table in place)."""
    execute(
        lake, f'DELETE FROM "{SCHEMA}".{mirror.STATE_TABLE} WHERE table_name = %s', PLAN_COSTS.name
    )


def run_copy(lake: Config, csv: bytes, read_size: int) -> None:
    """The floor: one COPY of ready CSV into an empty bare table, and its commit."""
    conn = traced_connect(lake)
    try:
        with conn.cursor() as cur:
            cur.copy_expert(
                f"COPY {SCHEMA}.{FLOOR_TABLE} FROM STDIN WITH (FORMAT csv)",
                stdio.BytesIO(csv),
                read_size,
            )
        conn.commit()
    finally:
        conn.close()


def recreate_floor_table(lake: Config) -> None:
    execute(lake, f"DROP TABLE IF EXISTS {SCHEMA}.{FLOOR_TABLE}")
    execute(lake, mirror.create_table_sql(f"{SCHEMA}.{FLOOR_TABLE}", PLAN_COSTS.schema))


def run_copy_index_swap(lake: Config, csv: bytes, read_size: int) -> None:
    """The mirror's transaction (`_load_and_swap`) with the CSV already at hand."""
    target = "copy_index_swap"
    schema, staging, final = (
        sql.Identifier(SCHEMA),
        sql.Identifier(f"_staging_{target}"),
        sql.Identifier(target),
    )
    conn = traced_connect(lake)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}.{}").format(schema, staging))
            cur.execute(mirror.create_table_sql(f"{SCHEMA}._staging_{target}", PLAN_COSTS.schema))
            cur.copy_expert(
                sql.SQL("COPY {}.{} FROM STDIN WITH (FORMAT csv)").format(schema, staging),
                stdio.BytesIO(csv),
                read_size,
            )
            token = uuid.uuid4().hex[:8]
            for columns in mirror.INDEXES[PLAN_COSTS.name]:
                cur.execute(
                    sql.SQL("CREATE INDEX {} ON {}.{} ({})").format(
                        sql.Identifier(mirror.index_name(target, columns, token)),
                        schema,
                        staging,
                        sql.SQL(", ").join(sql.Identifier(c) for c in columns),
                    )
                )
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}.{}").format(schema, final))
            cur.execute(sql.SQL("ALTER TABLE {}.{} RENAME TO {}").format(schema, staging, final))
            cur.execute(
                sql.SQL("GRANT SELECT ON {}.{} TO {}").format(
                    schema, final, sql.Identifier(lake.serving.bi_role)
                )
            )
    finally:
        conn.close()


def run_export(spark: SparkSession, lake: Config, version: int, rows: int) -> None:
    """The Spark side alone, drained the way psycopg2 drains the mirror's reader."""
    reader = export_reader(spark, lake, version)
    while reader.read(COPY_READ_SIZE):
        pass
    if reader.rows != rows:
        raise RuntimeError(f"exported {reader.rows:,} rows, expected {rows:,}")
    TRACE.add("export", 0.0)


# ------------------------------------------------------------------------------ PostgreSQL


def execute(config: Config, statement: str, *args: Any) -> list[tuple]:
    conn = clients.pg_connect(config)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement, args or None)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def postgres_settings(config: Config) -> dict[str, str]:
    names = (
        "server_version",
        "fsync",
        "synchronous_commit",
        "wal_level",
        "full_page_writes",
        "shared_buffers",
        "maintenance_work_mem",
        "max_parallel_maintenance_workers",
    )
    return {n: execute(config, f"SHOW {n}")[0][0] for n in names}


def content_md5(config: Config, table: str) -> tuple[int, str]:
    count, digest = execute(
        config,
        f"SELECT count(*), md5(string_agg(t::text, E'\\n' ORDER BY plan_id)) FROM {table} t",
    )[0]
    return int(count), str(digest)


# ------------------------------------------------------------------------------ main


def summarise(runs: list[Run], rows: int) -> dict[str, Any]:
    """Median and best of the runs; steps and CPU come from the median run itself (the lower
    middle one for an even count) so that they add up to its wall time."""
    seconds = [r.seconds for r in runs]
    middle = sorted(runs, key=lambda r: r.seconds)[(len(runs) - 1) // 2]
    return {
        "runs": [dataclasses.asdict(r) for r in runs],
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "rows_per_s_median": rows / statistics.median(seconds),
        "rows_per_s_best": rows / min(seconds),
        "median_run_s": middle.seconds,
        "median_run_steps_s": middle.steps,
        "median_run_cpu_s": middle.cpu,
    }


def render_run(mode: str, run: Run, rows: int) -> str:
    steps = ", ".join(f"{k} {v:.2f}s" for k, v in sorted(run.steps.items()))
    cpu = ", ".join(f"{k} {v:.1f}" for k, v in run.cpu.items())
    return (
        f"{mode:<16} {run.seconds:7.2f}s {rows / run.seconds:>10,.0f} rows/s  "
        f"[{steps}]  cpu s: {cpu}"
        + ("" if run.busy_before is None else f"  (cores {run.busy_before:.0%} busy before)")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--files", type=int, default=4, help="Delta data files of the table")
    parser.add_argument(
        "--floor-read-size",
        type=int,
        default=1 << 20,
        help="bytes per read of the floor's COPY (the mirror's psycopg2 default is 8192)",
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.3,
        help="before each run, wait until the cores are at most this busy (0: do not wait)",
    )
    parser.add_argument("--max-wait", type=float, default=900, help="seconds, per run")
    parser.add_argument("--tag", default="", help="suffix of the result files")
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument(
        "--render", type=Path, help="only write the .md and .png again from this .json"
    )
    args = parser.parse_args()
    if args.render:
        write(json.loads(args.render.read_text()), args.tag)
        return 0
    if args.rows < 1000 or args.repeats < 1 or args.files < 1:
        parser.error("--rows must be >= 1000, --repeats and --files >= 1")

    base = quiet_spark(load_config("local"), args.driver_memory)
    root = Path(tempfile.mkdtemp(prefix="bench-mirror-"))
    lake = dataclasses.replace(
        base,
        warehouse=str(root / "warehouse"),
        checkpoints="",
        serving=dataclasses.replace(base.serving, schema=SCHEMA),
    )
    load_before = os.getloadavg()
    execute(lake, f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')  # a killed run's leftovers
    # started before the session, so that the JVM's start is in its window
    sampler = ResourceSampler(lake).start()
    spark = build_spark(lake, app_name="bench-mirror")
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    jvm_pid = int(jvm.java.lang.ProcessHandle.current().pid())
    results: dict[str, list[Run]] = {m: [] for m in MODES}
    try:
        print(f"delta: writing {args.rows:,} plan_costs rows in {args.files} files")
        started = time.monotonic()
        io.ensure_table(spark, lake, PLAN_COSTS)
        io.overwrite(plan_costs_frame(spark, args.rows, args.files), lake, PLAN_COSTS, "bench")
        version = io.latest_version(spark, lake, PLAN_COSTS)
        print(f"  v{version} in {time.monotonic() - started:.1f}s")

        print("csv: exporting the same rows once (not timed as a mode)")
        started = time.monotonic()
        reader = export_reader(spark, lake, version)
        csv = b"".join(iter(lambda: reader.read(1 << 20), b""))
        export_once_s = time.monotonic() - started
        print(f"  {len(csv) / 2**20:.1f} MiB in {export_once_s:.1f}s")

        def run(mode: str, counted: bool = True) -> Run:
            busy = wait_for_idle(args.wait_idle, args.max_wait) if args.wait_idle else None
            with sampler.phase(mode if counted else "warm-up"):
                result = measure_mode(mode)
            result.busy_before = busy
            return result

        def measure_mode(mode: str) -> Run:
            if mode == "mirror":
                # to_regclass is null while the schema does not exist either (first run)
                if execute(lake, "SELECT to_regclass(%s)", f"{SCHEMA}.{mirror.STATE_TABLE}")[0][0]:
                    forget_mirrored(lake)
                return measure(lambda: run_mirror(spark, lake, args.rows), jvm_pid)
            if mode == "copy":
                execute(lake, f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"')
                recreate_floor_table(lake)
                return measure(lambda: run_copy(lake, csv, args.floor_read_size), jvm_pid)
            if mode == "copy+index+swap":
                execute(lake, f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"')
                return measure(
                    lambda: run_copy_index_swap(lake, csv, args.floor_read_size), jvm_pid
                )
            return measure(lambda: run_export(spark, lake, version, args.rows), jvm_pid)

        print("warm-up: one run of every mode, not counted")
        for mode in MODES:
            print("  " + render_run(mode, run(mode, counted=False), args.rows))
        for repeat in range(1, args.repeats + 1):
            print(f"repeat {repeat}/{args.repeats}")
            for mode in MODES:
                result = run(mode)
                results[mode].append(result)
                print("  " + render_run(mode, result, args.rows))

        mirrored = content_md5(lake, f"{SCHEMA}.{PLAN_COSTS.name.split('.')[1]}")
        floor = content_md5(lake, f"{SCHEMA}.{FLOOR_TABLE}")
        same = mirrored == floor and mirrored[0] == args.rows
        print(f"mirror table equals the floor's table: {same} ({mirrored[0]:,} rows)")
        pg = postgres_settings(lake)
        sizes = dict(
            execute(
                lake,
                "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relkind IN ('r', 'i')",
                SCHEMA,
            )
        )
    finally:
        stop_spark(spark)
        sampler.stop()
        shutil.rmtree(root, ignore_errors=True)
        execute(lake, f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')

    summary = {m: summarise(r, args.rows) for m, r in results.items()}
    floor_rate = summary["copy"]["rows_per_s_median"]
    for values in summary.values():
        values["ratio_to_floor"] = values["rows_per_s_median"] / floor_rate
    result = {
        "benchmark": "mirror publish vs plain COPY",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_state(),
        "machine": {**machine(), "postgres": pg},
        "wait_idle": args.wait_idle,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "method": __doc__,
        "rows": args.rows,
        "files": args.files,
        "repeats": args.repeats,
        "csv_bytes": len(csv),
        "csv_export_once_s": round(export_once_s, 2),
        "floor_read_size": args.floor_read_size,
        "relation_bytes": sizes,
        "same_content": same,
        "modes": summary,
        "resources": sampler.summary(),
    }
    write(result, args.tag)
    return 0 if same else 1


# ------------------------------------------------------------------------------ output

LABELS = {
    "mirror": "mirror.publish_table (lakehouse)",
    "copy+index+swap": "CSV COPY + indexes + swap",
    "copy": "plain COPY of ready CSV (floor)",
    "export": "Spark export only (no PostgreSQL)",
}


def write(result: dict[str, Any], tag: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name = "mirror" + (f"-{tag}" if tag else "")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    modes, rows = result["modes"], result["rows"]

    fig, (left, right) = plt.subplots(
        1, 2, figsize=(12.5, 4.4), gridspec_kw={"width_ratios": [1.25, 1]}
    )
    names = list(MODES)
    medians = [modes[m]["rows_per_s_median"] for m in names]
    best = [modes[m]["rows_per_s_best"] for m in names]
    left.barh(range(len(names)), medians, color=["C3", "C1", "C2", "C0"])
    left.scatter(best, range(len(names)), color="black", marker="|", s=200, label="best run")
    left.set_yticks(range(len(names)), [LABELS[m] for m in names], fontsize=8)
    left.invert_yaxis()
    for i, (median, top) in enumerate(zip(medians, best, strict=True)):
        # right of the best-run mark, which may lie past the bar
        left.text(max(median, top) + max(best) * 0.02, i, f"{median:,.0f}", va="center", fontsize=8)
    left.set_xlabel("rows/s (bar: median)")
    left.set_xlim(0, max(best) * 1.3)
    left.legend(fontsize=8, loc="lower right")
    left.set_title(f"{rows:,} plan_costs rows, {result['machine']['cores']} cores", fontsize=10)

    steps = mirror_steps(modes["mirror"])
    bottom = 0.0
    for i, (step, seconds) in enumerate(steps.items()):
        right.bar(0, seconds, 0.5, bottom=bottom, label=f"{step} {seconds:.2f}s", color=f"C{i}")
        bottom += seconds
    floor_s = modes["copy"]["median_s"]
    right.bar(1, floor_s, 0.5, color="0.6")
    right.text(1, floor_s, f"{floor_s:.2f}s", ha="center", va="bottom", fontsize=8)
    right.set_xticks([0, 1], ["publish_table", "plain COPY"])
    right.set_ylabel("seconds (median run)")
    right.set_title("where the mirror's time goes", fontsize=10)
    right.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(OUT / f"{name}.png", dpi=110)

    machine_ = result["machine"]
    pg = machine_["postgres"]
    lines = [
        f"# Mirror: `publish_table` vs a plain COPY ({rows:,} plan_costs rows)",
        "",
        f"Run {result['date']} on {machine_['cores']} cores, {machine_['memory_gib']} GiB, "
        f"Python {machine_['python']}, {machine_['java']}; PostgreSQL "
        f"{pg['server_version'].split()[0]} (fsync {pg['fsync']}, synchronous_commit "
        f"{pg['synchronous_commit']}, wal_level {pg['wal_level']}, maintenance_work_mem "
        f"{pg['maintenance_work_mem']}) on the same cores. `bench/mirror_throughput.py` (method "
        f"in its docstring and in the JSON). {result['repeats']} runs per mode after one warm-up "
        f"run, each started once the shared machine's cores were at most "
        f"{result.get('wait_idle', 0.3):.0%} busy (what other processes used during a run is in "
        f"the CPU table). CSV: {result['csv_bytes'] / 2**20:.1f} MiB.",
        "",
        *([result["note"], ""] if result.get("note") else []),
        "| mode | median (s) | best (s) | rows/s (median) | rows/s (best) | vs floor |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for m in names:
        v = modes[m]
        lines.append(
            f"| {LABELS[m]} | {v['median_s']:.2f} | {v['min_s']:.2f} | "
            f"{v['rows_per_s_median']:,.0f} | {v['rows_per_s_best']:,.0f} | "
            f"{v['ratio_to_floor']:.2f}x |"
        )
    lines += [
        "",
        "`vs floor`: rows/s of the mode / rows/s of the plain COPY (medians). `Spark export "
        "only` writes nothing; it is the rate at which the mirror's Spark side can feed COPY.",
        "",
        "Where the mirror's time goes (median of the traced runs):",
        "",
        "| step | seconds | share |",
        "|---|---:|---:|",
    ]
    total = modes["mirror"]["median_run_s"]
    for step, seconds in steps.items():
        lines.append(f"| {step} | {seconds:.2f} | {seconds / total:.0%} |")
    lines += [
        "",
        "CPU seconds per process (median run):",
        "",
        "| mode | wall (s) | Python driver | Spark JVM | PostgreSQL backend | other processes |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for m in names:
        c = modes[m]["median_run_cpu_s"]
        lines.append(
            f"| {LABELS[m]} | {modes[m]['median_run_s']:.2f} | {c['python']:.2f} | "
            f"{c['spark_jvm']:.2f} | {c['postgres_backend']:.2f} | {c['others']:.2f} |"
        )
    lines += [
        "",
        f"Mirrored table equal to the floor's table (row count and md5 over all rows): "
        f"**{result['same_content']}**.",
        "",
        f"![mirror vs COPY]({name}.png)",
        "",
    ]
    if result.get("resources"):  # results recorded before the sampler have none
        lines += [*resource_section(result["resources"]), ""]
    (OUT / f"{name}.md").write_text("\n".join(lines))
    print(f"wrote {OUT / name}.{{json,md,png}}")


def mirror_steps(summary: dict[str, Any]) -> dict[str, float]:
    """The mirror's median run split into steps (what no trace covers is left over)."""
    steps = dict(summary["median_run_steps_s"])
    # runs before as_csv_records (CSV formatted in Python) recorded the step under a longer name
    export = steps.pop("copy: export", 0.0) + steps.pop("copy: export (Spark + CSV in Python)", 0.0)
    copy = steps.pop("copy", 0.0)
    delta = sum(steps.pop(f"delta: {name}", 0.0) for name in DELTA_STEPS)
    ordered = {
        "Delta metadata (exists, version, id, snapshot)": delta,
        "prepare (connect, BI role, state, staging)": steps.pop("prepare", 0.0),
        "Spark: plan the export, start the iterator": steps.pop(
            "spark: plan + start iterator", 0.0
        ),
        "COPY: waiting on the export (Spark, CSV, encoding)": export,
        "COPY: PostgreSQL (send, parse, insert)": max(copy - export, 0.0),
        "CREATE INDEX x3": steps.pop("index", 0.0),
        "swap, grant, state row": steps.pop("swap", 0.0),
        "commit": steps.pop("commit", 0.0),
    }
    untraced = summary["median_run_s"] - sum(ordered.values())
    ordered["untraced (Python between calls)"] = max(untraced, 0.0)
    return ordered


if __name__ == "__main__":
    sys.exit(main())
