"""Benchmark: the reindex bulk path (`search.write_plans`, elasticsearch-spark) against Python's
bulk helper. (The live index is written by the real-time indexer: bench/ingest_throughput.py.)

    .venv/bin/python bench/index_throughput.py --docs 50000 [--repeats 3] [--tag NAME]
    .venv/bin/python bench/index_throughput.py --render docs/benchmarks/index.json  # .md/.png

1. silver.plans gets --docs live plans (bench/silver_fixture.py: generated documents through
   the silver transform) in a temporary warehouse, at versions 1..20 (a pure function of the
   plan number, so that the external versions Elasticsearch keeps are actually checked). It is
   persisted and materialised before any timing, as a reindex reads it.
2. The index documents are exported once, before any timing: `to_search_documents` of that
   frame, collected as dicts (fields es-hadoop would omit, nulls, left out), held in memory.
3. Modes, on the running local Elasticsearch (`lakehouse stack up`), interleaved per repeat;
   each writing mode has a private index (`bench-index-<mode>-<token>`) that is deleted and
   created again with the lakehouse's mapping (`INDEX_BODY`) before each of its runs (not
   timed), so that every run writes N new documents into an empty index:
   - `lakehouse`: `search.write_plans` as `lakehouse reindex` calls it: the live/deleted
     count (a Spark job), the
     elasticsearch-spark write of `to_search_documents` (index operation, `_id` plan_id,
     version external_gte, the connector's defaults otherwise: bulks of at most 1,000
     entries / 1 MiB per task, an index refresh when each task ends). No retry window: a
     failed write fails the run instead of being timed as a retry.
   - `bulk` (the baseline, 1.00x): `elasticsearch.helpers.bulk`, the helper most users reach
     for, over the exported dicts: one index action per document with `_id` plan_id,
     `version` and `version_type: external_gte`, the helper's defaults (chunks of 500
     documents, one request at a time, raise on any error), then one index refresh, so that
     the documents are searchable when the call returns, as they are after the connector's
     per-task refreshes.
   - `parallel_bulk`: `elasticsearch.helpers.parallel_bulk`, same actions and refresh, with
     its defaults (chunks of 500 serialised in one thread, sent by a pool of 4 threads): what
     a user who wants concurrent writes picks. A reference, not the baseline.
   - `spark-docs`: the lakehouse's Spark side alone: the same count job and
     `to_search_documents` written to Spark's `noop` sink. No connector, no Elasticsearch.
   With --es-option, a mode `lakehouse+options` runs beside `lakehouse` in the same session:
   the same call with those connector options overridden (an A/B of writer settings).
   One warm-up run of every mode is not counted. Each mode runs --repeats times; median and
   best run are reported, as docs/s and as a ratio to the baseline's docs/s (medians).
4. Verification after every writing run (not timed): the index counts exactly N documents
   (without a forced refresh: visibility is part of each mode's contract), the sum of the
   indexed `version` fields is the expected one, and --sample documents fetched by id have
   `_version` = the plan's version and `_source` = the exported document (`indexed_at`, the
   time of indexing, aside).
5. Where the time goes, without changing the code path: the count's `first()`
   and `search._write` are wrapped in timers; the Spark stages each ran are read afterwards
   from the session's status store (what the Spark UI shows): when the write's first task
   started and its last ended, task-seconds on CPU (Spark rows, es-hadoop's JSON, HTTP) and
   waiting (mostly on bulk responses and refreshes). The baseline's HTTP requests are timed
   at the client's transport. Elasticsearch's own figures come from its index statistics
   (indexing time, refreshes, merges) and node statistics (process CPU, write thread-pool
   tasks, i.e. bulk requests). CPU seconds per process: this Python, the Spark JVM,
   Elasticsearch, and the rest of the machine. The machine is shared: each run first waits
   (--wait-idle, --max-wait) until the cores are mostly idle, and a run during which other
   processes took more than --max-others of the cores anyway is discarded (kept in the JSON)
   and run again, up to --attempts times.

Results (JSON, markdown with ratios, a plot) go to docs/benchmarks/index[-TAG].*.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

from elasticsearch import Elasticsearch, helpers
from machine_info import git_state, machine
from mirror_throughput import machine_busy, proc_cpu, wait_for_idle
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from quiet_spark import quiet_spark
from silver_fixture import load_plans

from lakehouse import clients, io
from lakehouse.config import PROJECT_ROOT, Config, load_config
from lakehouse.ingest import search
from lakehouse.spark import build_spark, stop_spark
from lakehouse.tables import PLANS

OUT = PROJECT_ROOT / "docs" / "benchmarks"
PREFIX = "bench-index-"
MODES = ("lakehouse", "bulk", "parallel_bulk", "spark-docs")
# with --es-option: the lakehouse with those connector options, beside it in the same session
TUNED = "lakehouse+options"
BASELINE = "bulk"
SEED = 42
MAX_VERSION = 20


def plan_version(index: int) -> int:
    """Version of plan `index`: 1..MAX_VERSION, spread by a hash rather than a stride, so that
    neighbouring plans (same bulk request) carry different versions."""
    return 1 + zlib.crc32(str(index).encode()) % MAX_VERSION


# ------------------------------------------------------------------------------ the data


def current_plans(spark: SparkSession, lake: Config) -> DataFrame:
    """silver.plans as `apply_plan_events` hands it to the index sync for a batch that touched
    every plan: semi-joined with the touched ids, persisted (and materialised here)."""
    plans = io.read_table(spark, lake, PLANS)
    touched = plans.select("plan_id").distinct()
    current = plans.join(touched, "plan_id", "left_semi").persist()
    current.count()
    return current


def export_documents(plans: DataFrame) -> list[dict[str, Any]]:
    """The documents the lakehouse indexes, as dicts. es-hadoop leaves null fields out of what
    it sends (es.spark.dataframe.write.null is false), so they are left out here too."""

    def without_nulls(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: without_nulls(v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [without_nulls(v) for v in value]
        return value

    rows = search.to_search_documents(plans).toLocalIterator()
    return [without_nulls(row.asDict(recursive=True)) for row in rows]


# ------------------------------------------------------------------------------ measuring


class Trace:
    """Seconds per traced step of one run, and the wall-clock windows of the Spark calls (to
    attribute the status store's stages to them afterwards)."""

    def __init__(self) -> None:
        self.steps: dict[str, float] = defaultdict(float)
        self.windows: dict[str, tuple[float, float]] = {}

    def add(self, step: str, seconds: float) -> None:
        self.steps[step] += seconds


TRACE = Trace()
# set in main: Elasticsearch's pid when its /proc entry is readable
ES_PID: int | None = None


def timed(step: str, function: Callable[..., Any], window: bool = False) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started, wall = time.perf_counter(), time.time()
        try:
            return function(*args, **kwargs)
        finally:
            TRACE.add(step, time.perf_counter() - started)
            if window:
                TRACE.windows[step] = (wall, time.time())

    return wrapper


@dataclasses.dataclass
class Stage:
    stage_id: int
    name: str
    tasks: int
    submitted: float | None  # epoch seconds
    first_task: float | None
    completed: float | None
    task_run_s: float  # sum over the stage's tasks
    task_cpu_s: float


class StageLog:
    """The session's status store (what the Spark UI shows, kept with the UI off), over py4j.
    Read only between runs: each stage costs a few py4j calls."""

    def __init__(self, spark: SparkSession) -> None:
        sc = spark.sparkContext
        gateway = sc._gateway
        assert gateway is not None and sc._jsc is not None
        self._store = sc._jsc.sc().statusStore()
        # stageList(statuses, details, withSummaries, quantiles, taskStatuses): all stages
        self._args = (
            None,
            False,
            False,
            gateway.new_array(gateway.jvm.double, 0),
            gateway.jvm.java.util.ArrayList(),
        )

    def _stages(self) -> Any:
        return self._store.stageList(*self._args)

    def last_id(self) -> int:
        stages = self._stages()
        return max((stages.apply(i).stageId() for i in range(stages.length())), default=-1)

    def since(self, after: int, settle_s: float = 15.0) -> list[Stage]:
        """Stages with an id above `after`, once the listener bus (asynchronous) has recorded
        them as finished."""
        deadline = time.monotonic() + settle_s
        while True:
            stages = self._stages()
            found = [stages.apply(i) for i in range(stages.length())]
            found = [s for s in found if s.stageId() > after]
            pending = [s for s in found if s.status().toString() in ("ACTIVE", "PENDING")]
            if not pending or time.monotonic() > deadline:
                return sorted((self._convert(s) for s in found), key=lambda s: s.stage_id)
            time.sleep(0.2)

    @staticmethod
    def _convert(stage: Any) -> Stage:
        def epoch(option: Any) -> float | None:
            return option.get().getTime() / 1000 if option.isDefined() else None

        return Stage(
            stage_id=stage.stageId(),
            name=stage.name(),
            tasks=stage.numTasks(),
            submitted=epoch(stage.submissionTime()),
            first_task=epoch(stage.firstTaskLaunchedTime()),
            completed=epoch(stage.completionTime()),
            task_run_s=stage.executorRunTime() / 1000,
            task_cpu_s=stage.executorCpuTime() / 1e9,
        )


def es_pid(client: Elasticsearch) -> int | None:
    """The Elasticsearch process's pid if this process can read its /proc entry (same pid
    namespace, and that pid really is Elasticsearch)."""
    nodes = client.nodes.info(node_id="_local", metric="process")["nodes"]
    pid = next(iter(nodes.values()))["process"]["id"]
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if b"elasticsearch" in command.lower() else None


def es_node(client: Elasticsearch, pid: int | None) -> tuple[float, int]:
    """CPU seconds of the Elasticsearch process so far, and the tasks its write thread pool has
    completed (one per shard-level bulk request, whichever index). CPU from /proc when it can
    be read: the node stats' figure is refreshed only once a second."""
    nodes = client.nodes.stats(node_id="_local", metric="process,thread_pool")["nodes"]
    node = next(iter(nodes.values()))
    cpu = proc_cpu(pid) if pid else node["process"]["cpu"]["total_in_millis"] / 1000
    return cpu, node["thread_pool"]["write"]["completed"]


def index_stats(client: Elasticsearch, index: str) -> dict[str, float]:
    """What Elasticsearch itself spent on this index (a fresh index per run: totals are the
    run's). 7.10 has no per-index bulk statistics; indexing time is the engine's, summed over
    documents (parsing, Lucene, version lookups), without the request handling around it."""
    stats = client.indices.stats(index=index, metric="indexing,refresh,merge,flush")
    primaries = stats["indices"][index]["primaries"]
    return {
        "indexed_docs": primaries["indexing"]["index_total"],
        "indexing_s": primaries["indexing"]["index_time_in_millis"] / 1000,
        "refreshes": primaries["refresh"]["total"],
        "refresh_s": primaries["refresh"]["total_time_in_millis"] / 1000,
        "merges": primaries["merges"]["total"],
        "merge_s": primaries["merges"]["total_time_in_millis"] / 1000,
        "flushes": primaries["flush"]["total"],
    }


@dataclasses.dataclass
class Run:
    seconds: float
    steps: dict[str, float]
    cpu: dict[str, float]
    stages: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # the write call split by its stages' task times (lakehouse, spark-docs)
    phases: dict[str, float] = dataclasses.field(default_factory=dict)
    elasticsearch: dict[str, float] = dataclasses.field(default_factory=dict)
    checks: dict[str, Any] = dataclasses.field(default_factory=dict)
    # share of all cores busy just before the run (None: not waited for)
    busy_before: float | None = None
    # tasks Elasticsearch's write thread pool completed meanwhile (~ bulk requests, all indexes)
    write_tasks: int = 0


def measure(action: Callable[[], None], jvm_pid: int, client: Elasticsearch) -> Run:
    """Wall time, traced steps and CPU seconds per process of one run of `action`."""
    global TRACE
    TRACE = Trace()
    es_cpu0, es_writes0 = es_node(client, ES_PID)
    python0, jvm0, machine0 = time.process_time(), proc_cpu(jvm_pid), machine_busy()
    started = time.perf_counter()
    action()
    seconds = time.perf_counter() - started
    python1, jvm1, machine1 = time.process_time(), proc_cpu(jvm_pid), machine_busy()
    # read after machine1: a stats request costs Elasticsearch next to nothing
    es_cpu1, es_writes1 = es_node(client, ES_PID)
    cpu = {
        "python": python1 - python0,
        "spark_jvm": jvm1 - jvm0,
        "elasticsearch": es_cpu1 - es_cpu0,
    }
    cpu["others"] = max(machine1 - machine0 - sum(cpu.values()), 0.0)
    return Run(seconds, dict(TRACE.steps), cpu, write_tasks=es_writes1 - es_writes0)


# ------------------------------------------------------------------------------ the modes


def run_lakehouse(plans: DataFrame, lake: Config, overrides: dict[str, str]) -> None:
    with ExitStack() as patches:
        if overrides:
            options = search._write_options
            patches.enter_context(
                mock.patch.object(
                    search,
                    "_write_options",
                    lambda config, op, index: {**options(config, op, index), **overrides},
                )
            )
        # the live/deleted count is the only first() of write_plans
        patches.enter_context(
            mock.patch.object(DataFrame, "first", timed("count", DataFrame.first, window=True))
        )
        patches.enter_context(
            mock.patch.object(search, "_write", timed("write", search._write, window=True))
        )
        search.write_plans(plans, lake, lake.elasticsearch.index)


def run_spark_docs(plans: DataFrame) -> None:
    """write_plans's Spark work without the connector: the count, then the documents
    computed and dropped by the noop sink."""
    count = timed("count", DataFrame.first, window=True)
    count(plans.agg(F.count_if(~F.col("is_deleted")), F.count_if(F.col("is_deleted"))))
    write = timed("write", lambda frame: frame.write.format("noop").mode("overwrite").save(), True)
    write(search.to_search_documents(plans))


def bulk_actions(index: str, documents: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    return (
        {
            "_index": index,
            "_id": doc["plan_id"],
            "version": doc["version"],
            "version_type": "external_gte",
            "_source": doc,
        }
        for doc in documents
    )


def run_bulk(client: Elasticsearch, index: str, documents: list[dict[str, Any]]) -> None:
    transport = client.transport
    perform_request = timed("http", transport.perform_request)
    with mock.patch.object(transport, "perform_request", perform_request):
        helpers.bulk(client, bulk_actions(index, documents))
        timed("refresh", client.indices.refresh)(index=index)


def run_parallel_bulk(client: Elasticsearch, index: str, documents: list[dict[str, Any]]) -> None:
    """The helper for users who want more: chunks serialised in one thread, sent by a pool of 4
    (its defaults). It yields per-document results instead of raising, so failures are counted
    here."""
    failed = sum(not ok for ok, _ in helpers.parallel_bulk(client, bulk_actions(index, documents)))
    if failed:
        raise RuntimeError(f"parallel_bulk: {failed} documents refused")
    timed("refresh", client.indices.refresh)(index=index)


def drop_leftovers(client: Elasticsearch, older_than_s: float = 3600) -> None:
    """Delete indexes a killed run of this benchmark left behind. Only old ones: a run that is
    going on (another session's) recreates its indexes every minute or so."""
    found = client.indices.get_settings(index=f"{PREFIX}*", name="index.creation_date")
    now_ms = time.time() * 1000
    for index, body in found.items():
        created_ms = int(body["settings"]["index"]["creation_date"])
        if now_ms - created_ms > older_than_s * 1000:
            client.indices.delete(index=index)


def recreate_index(client: Elasticsearch, index: str) -> None:
    client.indices.delete(index=index, ignore_unavailable=True)
    client.indices.create(index=index, body=search.INDEX_BODY)


def verify(
    client: Elasticsearch, index: str, documents: list[dict[str, Any]], sample: int, seed: int
) -> dict[str, Any]:
    """Count (no forced refresh), sum of the versions, and a sample compared field by field."""
    count = client.count(index=index)["count"]
    total = client.search(
        index=index, body={"size": 0, "aggs": {"v": {"sum": {"field": "version"}}}}
    )["aggregations"]["v"]["value"]
    picked = random.Random(seed).sample(documents, min(sample, len(documents)))
    fetched = client.mget(index=index, body={"ids": [d["plan_id"] for d in picked]})["docs"]
    wrong = 0
    for expected, got in zip(picked, fetched, strict=True):
        source = {k: v for k, v in got.get("_source", {}).items() if k != "indexed_at"}
        wanted = {k: v for k, v in expected.items() if k != "indexed_at"}
        if not got.get("found") or got["_version"] != expected["version"] or source != wanted:
            wrong += 1
    expected_total = sum(d["version"] for d in documents)
    ok = count == len(documents) and int(total) == expected_total and wrong == 0
    return {"count": count, "version_sum_ok": int(total) == expected_total, "sampled": len(picked),
            "sample_mismatches": wrong, "ok": ok}  # fmt: skip


# ------------------------------------------------------------------------------ main


def summarise(runs: list[Run], docs: int) -> dict[str, Any]:
    """Median and best of the runs; steps, stages and CPU come from the median run itself (the
    lower middle one for an even count) so that they add up to its wall time."""
    seconds = [r.seconds for r in runs]
    middle = sorted(runs, key=lambda r: r.seconds)[(len(runs) - 1) // 2]
    return {
        "runs": [dataclasses.asdict(r) for r in runs],
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "docs_per_s_median": docs / statistics.median(seconds),
        "docs_per_s_best": docs / min(seconds),
        "median_run_s": middle.seconds,
        "median_run_steps_s": middle.steps,
        "median_run_cpu_s": middle.cpu,
        "median_run_stages": middle.stages,
        "median_run_phases": middle.phases,
        "median_run_elasticsearch": middle.elasticsearch,
        "median_run_write_tasks": middle.write_tasks,
        "all_checks_ok": all(r.checks.get("ok", True) for r in runs),
    }


def others_share(run: Run) -> float:
    """Share of all cores that processes other than this benchmark's (Python, Spark JVM,
    Elasticsearch) used during the run."""
    return run.cpu["others"] / run.seconds / (os.cpu_count() or 1)


def render_run(mode: str, run: Run, docs: int) -> str:
    steps = ", ".join(f"{k} {v:.2f}s" for k, v in sorted(run.steps.items()))
    cpu = ", ".join(f"{k} {v:.1f}" for k, v in run.cpu.items())
    check = ""
    if run.checks:
        check = "  ok" if run.checks["ok"] else f"  CHECK FAILED {run.checks}"
    return (
        f"{mode:<17} {run.seconds:7.2f}s {docs / run.seconds:>9,.0f} docs/s  [{steps}]  "
        f"cpu s: {cpu}{check}"
        + ("" if run.busy_before is None else f"  (cores {run.busy_before:.0%} busy before)")
    )


def parse_options(values: list[str]) -> dict[str, str]:
    options = {}
    for value in values:
        key, sep, setting = value.partition("=")
        if not sep or not key.startswith("es."):
            raise ValueError(f"--es-option wants es.KEY=VALUE, got {value!r}")
        options[key] = setting
    return options


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sample", type=int, default=500, help="documents compared per run")
    parser.add_argument(
        "--es-option",
        action="append",
        default=[],
        metavar="es.KEY=VALUE",
        help="override an elasticsearch-spark write option of the lakehouse mode (exploration)",
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.3,
        help="before each run, wait until the cores are at most this busy (0: do not wait)",
    )
    parser.add_argument("--max-wait", type=float, default=900, help="seconds, per run")
    parser.add_argument(
        "--max-others",
        type=float,
        default=0.1,
        help="a run during which other processes used more than this share of the cores is "
        "discarded and run again (at most --attempts runs; the last one is kept)",
    )
    parser.add_argument("--attempts", type=int, default=3, help="runs per counted run, at most")
    parser.add_argument("--tag", default="", help="suffix of the result files")
    parser.add_argument("--note", default="", help="a sentence for the markdown (what changed)")
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument(
        "--render", type=Path, help="only write the .md and .png again from this .json"
    )
    args = parser.parse_args()
    if args.render:
        write(json.loads(args.render.read_text()), args.tag)
        return 0
    if args.docs < 100 or min(args.repeats, args.sample, args.attempts) < 1:
        parser.error("--docs must be >= 100, --repeats, --sample and --attempts >= 1")
    try:
        overrides = parse_options(args.es_option)
    except ValueError as exc:
        parser.error(str(exc))

    # a stop by SIGTERM (e.g. a shared machine's cleanup) still drops the private indexes and
    # the temporary warehouse in the finally below
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    base = quiet_spark(load_config("local"), args.driver_memory)
    token = uuid.uuid4().hex[:8]
    root = Path(tempfile.gettempdir()) / f"bench-index-{token}"
    lake = dataclasses.replace(base, warehouse=str(root / "warehouse"), checkpoints="")
    modes = ["lakehouse", *([TUNED] if overrides else []), *MODES[1:]]
    indexes = {m: f"{PREFIX}{m.replace('+', '-')}-{token}" for m in modes if m != "spark-docs"}
    configs = {
        m: dataclasses.replace(lake, elasticsearch=dataclasses.replace(lake.elasticsearch, index=i))
        for m, i in indexes.items()
    }
    client = clients.es_client(lake)
    try:
        es_info = client.info()
    except Exception as exc:  # the client raises several types for "nothing listens there"
        print(
            f"Elasticsearch at {lake.elasticsearch.url} is not reachable ({exc}); "
            "start the stack: .venv/bin/lakehouse stack up",
            file=sys.stderr,
        )
        return 2
    global ES_PID
    ES_PID = es_pid(client)
    drop_leftovers(client)

    load_before = os.getloadavg()
    spark = build_spark(lake, app_name="bench-index")
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    jvm_pid = int(jvm.java.lang.ProcessHandle.current().pid())
    stage_log = StageLog(spark)
    results: dict[str, list[Run]] = {m: [] for m in modes}
    discarded: dict[str, list[Run]] = {m: [] for m in modes}
    try:
        print(f"silver: writing {args.docs:,} plans (versions 1..{MAX_VERSION})")
        started = time.monotonic()
        load_plans(spark, lake, SEED, args.docs, version=plan_version)
        plans = current_plans(spark, lake)
        partitions = plans.rdd.getNumPartitions()
        print(f"  {time.monotonic() - started:.1f}s, held in {partitions} partitions")

        print("documents: exporting them once (not timed as a mode)")
        started = time.monotonic()
        documents = export_documents(plans)
        export_s = time.monotonic() - started
        doc_bytes = sum(len(json.dumps(d, separators=(",", ":"))) for d in documents)
        if len(documents) != args.docs:
            raise RuntimeError(f"exported {len(documents):,} documents, expected {args.docs:,}")
        mib = doc_bytes / 2**20
        print(f"  {len(documents):,} documents, {mib:.1f} MiB of JSON in {export_s:.1f}s")

        def run(mode: str, repeat: int) -> Run:
            if mode in indexes:
                recreate_index(client, indexes[mode])
            busy = wait_for_idle(args.wait_idle, args.max_wait) if args.wait_idle else None
            last_stage = stage_log.last_id()
            if mode in ("lakehouse", TUNED):
                options = overrides if mode == TUNED else {}
                result = measure(
                    lambda: run_lakehouse(plans, configs[mode], options), jvm_pid, client
                )
            elif mode == "bulk":
                result = measure(
                    lambda: run_bulk(client, indexes["bulk"], documents), jvm_pid, client
                )
            elif mode == "parallel_bulk":
                result = measure(
                    lambda: run_parallel_bulk(client, indexes[mode], documents), jvm_pid, client
                )
            else:
                result = measure(lambda: run_spark_docs(plans), jvm_pid, client)
            windows = dict(TRACE.windows)
            result.busy_before = busy
            stages = stage_log.since(last_stage)
            result.stages = [{**dataclasses.asdict(s), "step": step_of(s, windows)} for s in stages]
            result.phases = write_phases(result.stages, windows)
            if mode in indexes:
                result.elasticsearch = index_stats(client, indexes[mode])
                result.checks = verify(client, indexes[mode], documents, args.sample, repeat)
            return result

        print("warm-up: one run of every mode, not counted")
        for mode in modes:
            print("  " + render_run(mode, run(mode, 0), args.docs))
        for repeat in range(1, args.repeats + 1):
            print(f"repeat {repeat}/{args.repeats}")
            for mode in modes:
                for attempt in range(1, args.attempts + 1):
                    result = run(mode, repeat)
                    others = others_share(result)
                    if others <= args.max_others or attempt == args.attempts:
                        break
                    # idle cores before a run do not keep other agents from starting meanwhile
                    discarded[mode].append(result)
                    print(
                        f"  {render_run(mode, result, args.docs)}\n"
                        f"    discarded: other processes used {others:.0%} of the cores"
                    )
                results[mode].append(result)
                print("  " + render_run(mode, result, args.docs))
    finally:
        # cleanup first: a SIGTERM can leave py4j unusable, and then stopping Spark fails
        try:
            for index in indexes.values():
                client.indices.delete(index=index, ignore_unavailable=True)
        except Exception as exc:  # Elasticsearch gone meanwhile: say so, keep the real error
            print(f"could not delete the benchmark's indexes {list(indexes.values())}: {exc}")
        client.close()
        shutil.rmtree(root, ignore_errors=True)
        stop_spark(spark)

    summary = {m: summarise(r, args.docs) for m, r in results.items()}
    for mode, runs in discarded.items():
        summary[mode]["discarded_runs"] = [dataclasses.asdict(r) for r in runs]
    floor_rate = summary[BASELINE]["docs_per_s_median"]
    for values in summary.values():
        values["ratio_to_baseline"] = values["docs_per_s_median"] / floor_rate
    checks_ok = all(summary[m]["all_checks_ok"] for m in indexes)
    result = {
        "benchmark": "index sync (elasticsearch-spark) vs elasticsearch.helpers.bulk",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_state(),
        "machine": {
            **machine(),
            "elasticsearch_server": es_info["version"]["number"],
            "elasticsearch_cpu_from": "/proc" if ES_PID else "node stats (refreshed each 1 s)",
            "elasticsearch_spark": connector_version(lake),
            "elasticsearch_py": helpers_version(),
        },
        "wait_idle": args.wait_idle,
        "max_others": args.max_others,
        "attempts": args.attempts,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "method": __doc__,
        "note": args.note,
        "docs": args.docs,
        "repeats": args.repeats,
        "partitions": partitions,
        "document_bytes": doc_bytes,
        "export_once_s": round(export_s, 2),
        "es_overrides": overrides,
        "sample": args.sample,
        "checks_ok": checks_ok,
        "modes": summary,
    }
    write(result, args.tag)
    return 0 if checks_ok else 1


def step_of(stage: Stage, windows: dict[str, tuple[float, float]]) -> str:
    """The traced call a stage ran in (its submission time inside the call's window)."""
    for step, (start, end) in windows.items():
        # Date has millisecond precision; the window is taken around the Python call
        if stage.submitted is not None and start - 0.002 <= stage.submitted <= end + 0.002:
            return step
    return "other"


def write_phases(stages: list[dict[str, Any]], windows: dict[str, tuple[float, float]]) -> dict:
    """The write call split at its stages' first task start and last task end: before (Spark
    planning, the connector's driver-side setup, scheduling), tasks (reading the held rows,
    building documents, for the connector JSON + bulk requests + refreshes), after (job end,
    back in Python). Plus the tasks' own seconds, summed over tasks (2 run at a time here)."""
    if "write" not in windows:
        return {}
    start, end = windows["write"]
    ran = [s for s in stages if s["step"] == "write" and s["first_task"] is not None]
    if not ran:
        return {}
    first = min(s["first_task"] for s in ran)
    last = max(s["completed"] or end for s in ran)
    return {
        "before_tasks_s": max(first - start, 0.0),
        "tasks_s": max(last - first, 0.0),
        "after_tasks_s": max(end - last, 0.0),
        "tasks": sum(s["tasks"] for s in ran),
        "task_run_s": sum(s["task_run_s"] for s in ran),
        "task_cpu_s": sum(s["task_cpu_s"] for s in ran),
    }


def connector_version(config: Config) -> str:
    jar = next(Path(config.spark.jars_dir).glob("elasticsearch-spark-30_*.jar"), None)
    return jar.stem.split("-")[-1] if jar else "unknown"


def helpers_version() -> str:
    import elasticsearch

    return ".".join(str(part) for part in elasticsearch.VERSION)


# ------------------------------------------------------------------------------ output

LABELS = {
    "lakehouse": "write_plans (lakehouse, es-spark)",
    TUNED: "write_plans, options overridden",
    "bulk": "helpers.bulk (baseline)",
    "parallel_bulk": "helpers.parallel_bulk (4 threads)",
    "spark-docs": "Spark side only (noop sink, no ES)",
}
COLOURS = {"lakehouse": "C3", TUNED: "C1", "bulk": "C2", "parallel_bulk": "C8", "spark-docs": "C0"}


def discarded_note(result: dict[str, Any]) -> str:
    count = sum(len(v.get("discarded_runs", [])) for v in result["modes"].values())
    if "max_others" not in result:
        return ""
    return (
        f"Runs during which other processes took more than {result['max_others']:.0%} of the "
        f"cores are discarded and run again ({count} discarded, kept in the JSON). "
    )


def spark_steps(summary: dict[str, Any]) -> dict[str, float]:
    """A Spark mode's median run split into steps (what no trace covers is left over)."""
    steps, phases = summary["median_run_steps_s"], summary["median_run_phases"]
    ordered = {
        "live/deleted count (Spark job)": steps.get("count", 0.0),
        "write: before the first task (planning, connector setup)": phases.get(
            "before_tasks_s", 0.0
        ),
        "write: tasks (rows -> documents -> bulk requests)": phases.get("tasks_s", 0.0),
        "write: after the last task": phases.get("after_tasks_s", 0.0),
    }
    if not phases:  # stages not found: the write as one step
        ordered["write: before the first task (planning, connector setup)"] = steps.get(
            "write", 0.0
        )
    ordered["untraced (Python between calls)"] = max(
        summary["median_run_s"] - sum(ordered.values()), 0.0
    )
    return ordered


def bulk_steps(summary: dict[str, Any]) -> dict[str, float]:
    steps = summary["median_run_steps_s"]
    http = steps.get("http", 0.0)
    refresh = steps.get("refresh", 0.0)
    return {
        "HTTP bulk requests (Elasticsearch + transfer + reply parsing)": http - refresh,
        "refresh": refresh,
        "Python: actions, JSON serialisation, chunking": max(summary["median_run_s"] - http, 0.0),
    }


def write(result: dict[str, Any], tag: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name = "index" + (f"-{tag}" if tag else "")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    modes, docs = result["modes"], result["docs"]

    fig, (left, right) = plt.subplots(
        1, 2, figsize=(13, 4.6), gridspec_kw={"width_ratios": [1.1, 1]}
    )
    names = list(modes)
    writing = [m for m in names if m != "spark-docs"]
    medians = [modes[m]["docs_per_s_median"] for m in names]
    best = [modes[m]["docs_per_s_best"] for m in names]
    left.barh(range(len(names)), medians, color=[COLOURS[m] for m in names])
    left.scatter(best, range(len(names)), color="black", marker="|", s=200, label="best run")
    left.set_yticks(range(len(names)), [LABELS[m] for m in names], fontsize=8)
    left.invert_yaxis()
    for i, (median, top) in enumerate(zip(medians, best, strict=True)):
        ratio = modes[names[i]]["ratio_to_baseline"]
        left.text(
            max(median, top) + max(best) * 0.02,
            i,
            f"{median:,.0f} ({ratio:.2f}x)",
            va="center",
            fontsize=8,
        )
    left.set_xlabel("documents/s (bar: median)")
    left.set_xlim(0, max(best) * 1.4)
    left.legend(fontsize=8, loc="lower right")
    left.set_title(
        f"{docs:,} plan documents into an empty index, {result['machine']['cores']} cores",
        fontsize=10,
    )

    columns = [
        ("sync_search\n_index", spark_steps(modes["lakehouse"])),
        *([("+ options", spark_steps(modes[TUNED]))] if TUNED in modes else []),
        ("Spark side\nonly", spark_steps(modes["spark-docs"])),
        ("helpers\n.bulk", bulk_steps(modes["bulk"])),
    ]
    colours: dict[str, int] = {}
    for x, (_, steps) in enumerate(columns):
        bottom = 0.0
        for step, seconds in steps.items():
            first = step not in colours
            colour = colours.setdefault(step, len(colours))
            right.bar(
                x,
                seconds,
                0.55,
                bottom=bottom,
                color=f"C{colour % 10}",
                hatch="//" if colour >= 10 else None,
                label=step if first else None,
            )
            bottom += seconds
        right.text(x, bottom, f"{bottom:.2f}s", ha="center", va="bottom", fontsize=8)
    right.set_xticks(range(len(columns)), [c[0] for c in columns], fontsize=8)
    right.set_ylabel("seconds (median run)")
    right.set_title("where the time goes", fontsize=10)
    right.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(OUT / f"{name}.png", dpi=110)

    machine_ = result["machine"]
    git = result["git"]
    changed = len(git["uncommitted"])
    dirty = f", uncommitted changes in {changed} files" if changed else ""
    overrides = result.get("es_overrides") or {}
    lines = [
        f"# Index: `write_plans` vs `helpers.bulk` ({docs:,} plan documents)",
        "",
        f"Run {result['date']} at commit {git['commit'][:10]}{dirty}, on {machine_['cores']} "
        f"cores, {machine_['memory_gib']} GiB, Python {machine_['python']}, {machine_['java']}; "
        f"Elasticsearch {machine_['elasticsearch_server']} (one node, 1 GiB heap) on the same "
        f"cores, elasticsearch-spark {machine_['elasticsearch_spark']}, elasticsearch-py "
        f"{machine_['elasticsearch_py']}. `bench/index_throughput.py` (method in its docstring "
        f"and in the JSON). {result['repeats']} run(s) per mode after one warm-up run, "
        + (
            f"each started once the shared machine's cores were at most "
            f"{result['wait_idle']:.0%} busy. "
            if result["wait_idle"]
            else "started without waiting for idle cores. "
        )
        + discarded_note(result)
        + f"Documents: {result['document_bytes'] / 2**20:.1f} MiB of JSON, versions "
        f"1..{MAX_VERSION}; the lakehouse reads them from {result['partitions']} partitions.",
        "",
    ]
    if overrides:
        shown = ", ".join(f"`{k}={v}`" for k, v in overrides.items())
        lines += [f"Connector options overridden for this run: {shown}.", ""]
    if result.get("note"):
        lines += [result["note"], ""]
    lines += [
        "| mode | median (s) | best (s) | docs/s (median) | docs/s (best) | vs helpers.bulk |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for m in names:
        v = modes[m]
        lines.append(
            f"| {LABELS[m]} | {v['median_s']:.2f} | {v['min_s']:.2f} | "
            f"{v['docs_per_s_median']:,.0f} | {v['docs_per_s_best']:,.0f} | "
            f"{v['ratio_to_baseline']:.2f}x |"
        )
    lines += [
        "",
        "`vs helpers.bulk`: docs/s of the mode / docs/s of the baseline (medians). The Spark "
        "side alone writes nothing; it is the rate at which the lakehouse can build documents.",
        "",
        "Where the time goes (median runs):",
        "",
        "| step | write_plans (s) | share | "
        + ("+ options (s) | " if TUNED in modes else "")
        + "Spark side only (s) |",
        "|---|---:|---:|" + ("---:|" if TUNED in modes else "") + "---:|",
    ]
    others = [spark_steps(modes[m]) for m in (TUNED, "spark-docs") if m in modes]
    total = modes["lakehouse"]["median_run_s"]
    for step, seconds in spark_steps(modes["lakehouse"]).items():
        rest = " | ".join(f"{steps.get(step, 0):.2f}" for steps in others)
        lines.append(f"| {step} | {seconds:.2f} | {seconds / total:.0%} | {rest} |")
    lines += ["", "| helpers.bulk step | seconds | share |", "|---|---:|---:|"]
    bulk_total = modes["bulk"]["median_run_s"]
    for step, seconds in bulk_steps(modes["bulk"]).items():
        lines.append(f"| {step} | {seconds:.2f} | {seconds / bulk_total:.0%} |")
    lines += [
        "",
        "The write's tasks, summed over tasks (up to 2 run at once), median runs:",
        "",
        "| mode | tasks | task-seconds | on CPU | waiting (bulk replies, refresh, GC, I/O) |",
        "|---|---:|---:|---:|---:|",
    ]
    for m in (m for m in names if m not in ("bulk", "parallel_bulk")):
        ph = modes[m]["median_run_phases"]
        if ph:
            lines.append(
                f"| {LABELS[m]} | {ph['tasks']} | {ph['task_run_s']:.2f} | "
                f"{ph['task_cpu_s']:.2f} | {max(ph['task_run_s'] - ph['task_cpu_s'], 0):.2f} |"
            )
    lines += [
        "",
        "Elasticsearch's own figures (median runs): write thread-pool tasks completed on the "
        "node during the run (one per bulk request; other indexes' writes would count too), "
        "the engine's indexing time summed over documents, refreshes and merges of the index, "
        "the process's CPU:",
        "",
        "| mode | bulk requests (node) | indexing time (s) | refreshes | refresh time (s) | "
        "merges | merge time (s) | ES CPU (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in writing:
        es = modes[m]["median_run_elasticsearch"]
        cpu = modes[m]["median_run_cpu_s"]["elasticsearch"]
        lines.append(
            f"| {LABELS[m]} | {modes[m]['median_run_write_tasks']} | {es['indexing_s']:.2f} | "
            f"{es['refreshes']} | {es['refresh_s']:.2f} | {es['merges']} | "
            f"{es['merge_s']:.2f} | {cpu:.2f} |"
        )
    lines += [
        "",
        "CPU seconds per process (median runs):",
        "",
        "| mode | wall (s) | Python | Spark JVM | Elasticsearch | other processes |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for m in names:
        c = modes[m]["median_run_cpu_s"]
        lines.append(
            f"| {LABELS[m]} | {modes[m]['median_run_s']:.2f} | {c['python']:.2f} | "
            f"{c['spark_jvm']:.2f} | {c['elasticsearch']:.2f} | {c['others']:.2f} |"
        )
    checks = [r["checks"] for m in writing for r in modes[m]["runs"]]
    lines += [
        "",
        f"Verified after each of the {len(checks)} counted writing runs (count = {docs:,} "
        f"without a forced refresh, sum of versions, {result['sample']} documents compared "
        f"with `_version` and `_source`): **{'all ok' if result['checks_ok'] else 'FAILED'}**.",
        "",
        f"![index throughput]({name}.png)",
        "",
    ]
    (OUT / f"{name}.md").write_text("\n".join(lines))
    print(f"wrote {OUT / name}.{{json,md,png}}")


if __name__ == "__main__":
    sys.exit(main())
