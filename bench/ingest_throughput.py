"""Benchmark: streaming ingest throughput and freshness, lakehouse vs two lighter consumers.

    .venv/bin/python bench/ingest_throughput.py [--backlog 40000] [--loads 500,2000,10000] \\
        [--duration 30] [--grace 45] [--consumers lakehouse,per-event,deltalake] [--tag NAME]

Against the local stack (`lakehouse stack up`); every run gets its own topic (3 partitions),
warehouse and index. Consumers (bench/ingest_baselines.py for the two baselines):

- `lakehouse`: `lakehouse ingest` (lakehouse.ingest.stream): the hot path, one query from
  Kafka (bronze exactly once, contract check, quarantine, the silver.plans MERGE, the typed
  silver.plan_events), and the derived query after it (history / services / plan_services
  MERGEs); Spark local[*]. Next to it, as the stack runs it, the real-time search indexer
  (`lakehouse indexer`, its own process: kafka-python, one versioned bulk per poll).
- `per-event`: kafka-python; per event a PostgreSQL upsert and an Elasticsearch write.
- `deltalake`: kafka-python micro-batches (up to 5,000 records) written with the `deltalake`
  package: bronze, quarantine, a MERGE into current plans, one Elasticsearch bulk.

Phases:
1. Backlog (capacity): --backlog events (--plans creates, then random changes) are on the topic
   before the consumer starts; the time to deliver all of them gives events/s.
2. Offered load: for each rate in --loads, the consumer runs continuously while
   bench/load_producer.py (its own process) sends events at that rate for --duration seconds,
   each stamped ts_ms = send time. The consumer is stopped once everything is delivered or
   --grace seconds after the producer finished. Sustained events/s = events delivered / (last
   delivery - first send); backlog = sent - delivered. Freshness per event = delivery time -
   ts_ms: for the lakehouse `applied_at` of the event's silver.plan_events row (stamped by the
   hot-path batch after its silver.plans MERGE committed, so at least the plan's freshness in
   silver) and, for the index,
   `indexed_at` of the documents left in it (one per plan, so the latest version's; the
   indexer stamps it when it builds the bulk, so the figure leaves out the bulk's own round
   trip, tens of milliseconds, and Elasticsearch's refresh interval, up to 1 s before a search
   sees it); for the baselines the time their writes
   returned. The backlog phase runs the indexer alone after the ingest (`--once`), so each
   is timed on an idle machine.

Each phase is sampled for memory and CPU (bench/resources.py). Results (JSON, markdown with
ratios, a plot) go to docs/benchmarks/ingest[-TAG].*.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from elasticsearch import helpers
from ingest_baselines import Delivery, consume
from kafka import KafkaProducer
from load_producer import write_events
from machine_info import git_state, machine
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from quiet_spark import quiet_spark
from resources import ResourceSampler, resource_section

from lakehouse import clients, io
from lakehouse.config import PROJECT_ROOT, Config, load_config
from lakehouse.ingest import indexer, search
from lakehouse.ingest.operations import format_progress
from lakehouse.ingest.stream import DerivedBatch, PlansBatch, run_continuous, run_once
from lakehouse.plans.events import ChangeEvent
from lakehouse.plans.scenario import event_history
from lakehouse.spark import build_spark, stop_spark
from lakehouse.tables import PLAN_EVENTS

OUT = PROJECT_ROOT / "docs" / "benchmarks"
HERE = Path(__file__).resolve().parent
CONSUMERS = ("lakehouse", "per-event", "deltalake")


def isolated(config: Config, phase: str, root: Path) -> Config:
    suffix = uuid.uuid4().hex[:8]
    lake = dataclasses.replace(
        config,
        warehouse=str(root / f"{phase}-{suffix}"),
        checkpoints="",
        kafka=dataclasses.replace(config.kafka, topic=f"bench.ingest.{phase}.{suffix}"),
        elasticsearch=dataclasses.replace(config.elasticsearch, index=f"bench-{phase}-{suffix}"),
    )
    clients.ensure_topic(lake, lake.kafka.topic)
    return lake


def produce_backlog(config: Config, events: list[ChangeEvent]) -> None:
    producer = KafkaProducer(
        bootstrap_servers=config.kafka.bootstrap, acks="all", linger_ms=5, batch_size=256 * 1024
    )
    for event in events:
        producer.send(config.kafka.topic, key=event.key(), value=event.value())
    producer.flush()
    producer.close()


def _drop_index(config: Config) -> None:
    es = clients.es_client(config)
    try:
        alias = config.elasticsearch.index
        for name in [*search.versioned_indexes(es, alias), alias]:
            if name != alias or not es.indices.exists_alias(name=alias):
                es.indices.delete(index=name, ignore_unavailable=True)
    finally:
        es.close()


def start_indexer(lake: Config) -> subprocess.Popen:
    """`lakehouse indexer` on the isolated topic and index, in its own process (as the stack
    runs it)."""
    env = {
        **os.environ,
        "LAKEHOUSE_ENV": lake.environment,
        "LAKEHOUSE_KAFKA_TOPIC": lake.kafka.topic,
        "LAKEHOUSE_ES_INDEX": lake.elasticsearch.index,
        "LAKEHOUSE_WAREHOUSE": lake.warehouse,
    }
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("lakehouse")), "indexer"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def run_indexer_backlog(lake: Config, events: int) -> dict[str, Any]:
    started = time.monotonic()
    totals = indexer.Indexer(lake, report=lambda _: None).run(threading.Event(), once=True)
    seconds = time.monotonic() - started
    print(f"   indexer: {totals.records:,} records in {seconds:.1f}s", file=sys.stderr)
    return {"records": totals.records, "seconds": round(seconds, 2),
            "events_per_s": round(events / seconds, 1), "batches": totals.batches}  # fmt: skip


# -------------------------------------------------------------------------------- lakehouse


def lakehouse_delivery(spark: SparkSession, lake: Config) -> Delivery:
    """Per-event freshness from what the lakehouse committed (see the module doc)."""
    delivery = Delivery()
    if not io.table_exists(spark, lake, PLAN_EVENTS):
        return delivery
    rows = (
        io.read_table(spark, lake, PLAN_EVENTS)
        .select(
            (F.unix_millis("applied_at") - F.unix_millis("event_ts")).alias("ms"),
            F.unix_millis("applied_at").alias("committed_ms"),
        )
        .collect()
    )
    delivery.silver_latency_s = [r["ms"] / 1000 for r in rows]
    delivery.last_delivered = max((r["committed_ms"] for r in rows), default=0) / 1000
    es = clients.es_client(lake)
    try:
        es.indices.refresh(index=lake.elasticsearch.index)
        hits = helpers_scan(es, lake.elasticsearch.index)
    finally:
        es.close()
    delivery.index_latency_s = [(h["indexed_at"] - h["event_ts"]) / 1000 for h in hits]
    return delivery


def helpers_scan(es: Any, index: str) -> list[dict[str, Any]]:
    query = {"_source": ["event_ts", "indexed_at"], "query": {"match_all": {}}}
    return [hit["_source"] for hit in helpers.scan(es, index=index, query=query)]


def lakehouse_delivered(spark: SparkSession, lake: Config) -> int:
    if not io.table_exists(spark, lake, PLAN_EVENTS):
        return 0
    return io.read_table(spark, lake, PLAN_EVENTS).count()


# ------------------------------------------------------------------------------------ phases


def run_backlog(
    spark: SparkSession, config: Config, consumer: str, events: list[ChangeEvent], root: Path
) -> dict[str, Any]:
    lake = isolated(config, f"backlog-{consumer}", root)
    produce_backlog(lake, events)
    print(f"== backlog: {consumer}, {len(events):,} events", file=sys.stderr)
    started = time.monotonic()
    silver_batches: list[PlansBatch | DerivedBatch] = []

    def report(batch: PlansBatch | DerivedBatch) -> None:
        print("   " + format_progress(batch), file=sys.stderr)
        silver_batches.append(batch)

    indexed: dict[str, Any] | None = None
    if consumer == "lakehouse":
        run_once(spark, lake, report)
        delivered = lakehouse_delivered(spark, lake)
        seconds = time.monotonic() - started
        indexed = run_indexer_backlog(lake, len(events))
    else:
        folder = Path(lake.warehouse)
        folder.mkdir(parents=True)
        delivery = consume(consumer, lake, folder, threading.Event(), expected=len(events))
        delivered = delivery.events
        seconds = time.monotonic() - started
    _drop_index(lake)
    print(f"   {delivered:,} events in {seconds:.1f}s", file=sys.stderr)
    result: dict[str, Any] = {"events": delivered, "seconds": round(seconds, 2),
                              "events_per_s": round(delivered / seconds, 1)}  # fmt: skip
    if indexed is not None:
        result["indexer"] = indexed
    if silver_batches:
        steps: dict[str, float] = {}
        for batch in silver_batches:
            prefix = "derived: " if isinstance(batch, DerivedBatch) else "plans: "
            for step, step_s in batch.steps.items():
                steps[prefix + step] = steps.get(prefix + step, 0.0) + step_s
        result["silver_batches"] = len(silver_batches)
        result["silver_seconds"] = round(sum(b.seconds for b in silver_batches), 2)
        result["silver_steps_s"] = {step: round(step_s, 2) for step, step_s in steps.items()}
    return result


def run_load(
    spark: SparkSession,
    config: Config,
    consumer: str,
    rate: float,
    events_file: Path,
    duration: float,
    grace: float,
    root: Path,
) -> dict[str, Any]:
    lake = isolated(config, f"load{int(rate)}-{consumer}", root)
    print(f"== offered load {rate:,.0f}/s for {duration:.0f}s: {consumer}", file=sys.stderr)
    stop = threading.Event()
    watched = Delivery()
    if consumer == "lakehouse":
        applied = [0]

        def progress(batch: PlansBatch | DerivedBatch) -> None:
            print("   " + format_progress(batch), file=sys.stderr)
            if isinstance(batch, PlansBatch):
                # counted from the batches' own reports: polling the table would add Spark
                # jobs beside the ingest being measured
                applied[0] += batch.records

        worker = threading.Thread(
            target=run_continuous, args=(spark, lake, progress, stop), daemon=True
        )
        worker.start()
        index_process = start_indexer(lake)
        _until(lambda: len(spark.streams.active) == 2, 120, "the ingest queries to start")
        delivered = lambda: applied[0]  # noqa: E731
    else:
        folder = Path(lake.warehouse)
        folder.mkdir(parents=True)
        worker = threading.Thread(
            target=consume, args=(consumer, lake, folder, stop, None, watched), daemon=True
        )
        worker.start()
        delivered = lambda: watched.events  # noqa: E731
    time.sleep(3)  # the consumer has joined its group / the queries are polling
    producer = subprocess.Popen(
        [sys.executable, str(HERE / "load_producer.py"), "--bootstrap", lake.kafka.bootstrap,
         "--topic", lake.kafka.topic, "--events", str(events_file), "--rate", str(rate),
         "--duration", str(duration)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert producer.stdin is not None and producer.stdout is not None
    if producer.stdout.readline().strip() != "ready":
        raise RuntimeError("the load producer did not start")
    producer.stdin.write("go\n")
    producer.stdin.flush()
    sent = json.loads(producer.stdout.readline())
    producer.wait(timeout=60)
    print(f"   sent {sent['sent']:,} in {sent['seconds']:.1f}s", file=sys.stderr)

    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and worker.is_alive() and delivered() < sent["sent"]:
        time.sleep(2)
    stop.set()
    worker.join(timeout=180)
    if consumer == "lakehouse":
        indexer.wait_caught_up(lake, timeout_s=60, progress=lambda line: None)
        index_process.terminate()
        index_process.wait(timeout=60)
    delivery = lakehouse_delivery(spark, lake) if consumer == "lakehouse" else watched
    _drop_index(lake)
    span = delivery.last_delivered - sent["started_ms"] / 1000
    result = {
        "target_rate": rate,
        "sent": sent["sent"],
        "offered_per_s": round(sent["sent"] / sent["seconds"], 1),
        "delivered": delivery.events,
        "backlog_at_stop": sent["sent"] - delivery.events,
        "sustained_per_s": round(delivery.events / span, 1) if span > 0 else 0.0,
        "silver": percentiles(delivery.silver_latency_s),
        "index": percentiles(delivery.index_latency_s),
    }
    print(f"   delivered {result['delivered']:,}, sustained {result['sustained_per_s']}/s, "
          f"silver p95 {result['silver'].get('p95_s')}s", file=sys.stderr)  # fmt: skip
    return result


def _until(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.5)


def percentiles(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    array = np.array(values)
    return {
        "n": len(values),
        "p50_s": round(float(np.percentile(array, 50)), 3),
        "p95_s": round(float(np.percentile(array, 95)), 3),
        "p99_s": round(float(np.percentile(array, 99)), 3),
        "max_s": round(float(array.max()), 3),
    }


# ------------------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=2000)
    parser.add_argument("--backlog", type=int, default=40_000, help="events in phase 1")
    parser.add_argument("--loads", default="500,2000,10000", help="offered events/s, phase 2")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per offered load")
    parser.add_argument("--grace", type=float, default=45.0, help="seconds to drain after it")
    parser.add_argument("--consumers", default=",".join(CONSUMERS))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--env", default=None)
    parser.add_argument("--tag", default="")
    # Tuning knobs (default: the configuration's), so a before/after is one flag apart.
    parser.add_argument("--shuffle-partitions", type=int, default=None)
    parser.add_argument("--trigger-s", type=float, default=None)
    parser.add_argument("--max-offsets", type=int, default=None)
    args = parser.parse_args()
    consumers = [c.strip() for c in args.consumers.split(",") if c.strip()]
    unknown = sorted(set(consumers) - set(CONSUMERS))
    if unknown:
        parser.error(f"unknown consumer(s) {unknown}; choose from {', '.join(CONSUMERS)}")
    try:
        loads = [float(rate) for rate in args.loads.split(",") if rate.strip()]
    except ValueError:
        parser.error(f"--loads takes comma-separated events/s, e.g. 500,2000; got {args.loads!r}")
    if args.backlog <= args.plans or any(rate <= 0 for rate in loads):
        parser.error("--backlog must exceed --plans, and every load must be positive")

    config = tuned(quiet_spark(load_config(args.env)), args.shuffle_partitions, args.trigger_s,
                   args.max_offsets)  # fmt: skip
    root = Path(config.state_dir).absolute() / "bench-warehouse"
    spark = build_spark(config, app_name="bench-ingest")
    sampler = ResourceSampler(config).start()
    backlog: dict[str, Any] = {}
    offered: list[dict[str, Any]] = []
    try:
        if "lakehouse" in consumers:
            # First use of the session (JIT, Delta and Kafka classes, table creation) is not
            # what a long-running ingest pays per batch.
            print("== warm-up (not counted)", file=sys.stderr)
            warm_up, _ = event_history(args.seed + 1, 100, 400)
            run_backlog(spark, config, "lakehouse", warm_up, root)
        events, _ = event_history(args.seed, args.plans, args.backlog - args.plans)
        for consumer in consumers:
            with sampler.phase(f"backlog {consumer}"):
                backlog[consumer] = run_backlog(spark, config, consumer, events, root)
        del events
        for rate in loads:
            count = int(rate * args.duration)
            load_events, _ = event_history(args.seed + int(rate), args.plans, count - args.plans)
            events_file = root / f"load-{int(rate)}.pickle"
            events_file.parent.mkdir(parents=True, exist_ok=True)
            write_events(load_events, events_file)
            del load_events
            for consumer in consumers:
                with sampler.phase(f"{rate:.0f}/s {consumer}"):
                    run = run_load(spark, config, consumer, rate, events_file, args.duration,
                                   args.grace, root)  # fmt: skip
                offered.append({"consumer": consumer, **run})
    finally:
        sampler.stop()
        stop_spark(spark)
        shutil.rmtree(root, ignore_errors=True)

    report = {
        "benchmark": "ingest throughput and freshness",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_state(),
        "workload": {
            "plans": args.plans,
            "backlog_events": args.backlog,
            "loads": loads,
            "duration_s": args.duration,
            "grace_s": args.grace,
            "seed": args.seed,
            "max_offsets_per_trigger": config.ingest.max_offsets_per_trigger,
            "trigger_interval_s": config.ingest.trigger_interval_s,
            "shuffle_partitions": config.spark.shuffle_partitions,
            "deltalake_max_records": 5000,
        },  # fmt: skip
        "machine": machine(),
        "backlog": backlog,
        "offered": offered,
        "resources": sampler.summary(),
    }
    write_report(report, args.tag)
    print(json.dumps({"backlog": backlog}, indent=2))
    return 0


def tuned(
    config: Config, shuffle_partitions: int | None, trigger_s: float | None, max_offsets: int | None
) -> Config:
    spark = dataclasses.replace(
        config.spark, shuffle_partitions=shuffle_partitions or config.spark.shuffle_partitions
    )
    ingest = dataclasses.replace(
        config.ingest,
        trigger_interval_s=trigger_s or config.ingest.trigger_interval_s,
        max_offsets_per_trigger=max_offsets or config.ingest.max_offsets_per_trigger,
    )
    return dataclasses.replace(config, spark=spark, ingest=ingest)


def _ratio(value: float, base: float | None) -> str:
    return f"{value / base:.2f}x" if base else "-"


def _p(stats: dict[str, Any], key: str) -> str:
    return str(stats.get(key, "-"))


def write_report(report: dict[str, Any], tag: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    name = "ingest" + (f"-{tag}" if tag else "")
    (OUT / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    m, w, backlog = report["machine"], report["workload"], report["backlog"]
    per_event = backlog.get("per-event", {}).get("events_per_s")
    deltalake = backlog.get("deltalake", {}).get("events_per_s")
    lines = [
        f"# Ingest throughput and freshness ({report['date']})",
        "",
        f"Machine: {m['cores']} cores, {m['memory_gib']} GiB, {m['platform']}, {m['java']}; "
        f"Kafka {m['kafka']}, Elasticsearch {m['elasticsearch']}, all on the same cores. "
        f"Commit {report['git']['commit'][:7]}"
        + (" (with uncommitted changes)" if report["git"]["uncommitted"] else "")
        + f". Method: `bench/ingest_throughput.py` (docstring). Spark local[*], "
        f"{w['shuffle_partitions']} shuffle partitions, trigger {w['trigger_interval_s']} s, "
        f"at most {w['max_offsets_per_trigger']:,} offsets per bronze batch; deltalake "
        f"micro-batches of up to {w['deltalake_max_records']:,} records.",
        "",
        f"## Backlog: {w['backlog_events']:,} events ({w['plans']:,} plans) waiting on the topic",
        "",
        "| consumer | events | seconds | events/s | vs per-event | vs deltalake |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for consumer, r in backlog.items():
        lines.append(
            f"| {consumer} | {r['events']:,} | {r['seconds']} | {r['events_per_s']:,} | "
            f"{_ratio(r['events_per_s'], per_event)} | {_ratio(r['events_per_s'], deltalake)} |"
        )
    lake = backlog.get("lakehouse", {})
    if lake.get("indexer"):
        ix = lake["indexer"]
        lines += [
            "",
            f"The real-time indexer alone, after the ingest, over the same backlog: "
            f"{ix['records']:,} records in {ix['seconds']} s ({ix['events_per_s']:,} events/s, "
            f"{_ratio(ix['events_per_s'], deltalake)} the deltalake consumer, which writes "
            f"Delta and the index), {ix['batches']:,} bulk requests.",
        ]
    if lake.get("silver_steps_s"):
        silver = lake["silver_seconds"]
        lines += [
            "",
            f"Where the lakehouse's {lake['seconds']} s went ({lake['silver_batches']} silver "
            f"batch(es), {silver} s; the rest is bronze, query start-up and scheduling):",
            "",
            "| silver step | seconds | share of silver |",
            "|---|---:|---:|",
        ]
        steps = dict(lake["silver_steps_s"])
        steps["other (caching, min event time, reporting)"] = round(silver - sum(steps.values()), 2)
        for step, step_s in steps.items():
            lines.append(f"| {step} | {step_s} | {step_s / silver:.0%} |")
    lines += [
        "",
        f"## Offered load: {w['duration_s']:.0f} s at each rate, then up to {w['grace_s']:.0f} s "
        "to drain",
        "",
        "Freshness in seconds from the event's source timestamp (its send time) to its delivery.",
        "",
        "| offered (target) | consumer | sent | delivered | left at stop | sustained events/s "
        "| silver p50 / p95 / p99 | index p50 / p95 / p99 |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for r in report["offered"]:
        s, i = r["silver"], r["index"]
        lines.append(
            f"| {r['offered_per_s']:,} ({r['target_rate']:,.0f}) | {r['consumer']} | "
            f"{r['sent']:,} | {r['delivered']:,} | {r['backlog_at_stop']:,} | "
            f"{r['sustained_per_s']:,} | {_p(s, 'p50_s')} / {_p(s, 'p95_s')} / {_p(s, 'p99_s')} "
            f"| {_p(i, 'p50_s')} / {_p(i, 'p95_s')} / {_p(i, 'p99_s')} |"
        )
    lines += ["", f"![ingest]({name}.png)", ""]
    if report.get("resources"):
        lines += resource_section(report["resources"])
    (OUT / f"{name}.md").write_text("\n".join(lines) + "\n")
    _plot(report, OUT / f"{name}.png")


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"lakehouse": "#4c72b0", "per-event": "#c44e52", "deltalake": "#55a868"}
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(14, 3.8))
    backlog = report["backlog"]
    left.bar(list(backlog), [r["events_per_s"] for r in backlog.values()],
             color=[colors.get(c, "grey") for c in backlog])  # fmt: skip
    left.set_ylabel("events/s (higher is better)")
    left.set_title(f"backlog of {report['workload']['backlog_events']:,} events")
    for consumer in backlog:
        runs = [r for r in report["offered"] if r["consumer"] == consumer]
        if not runs:
            continue
        offered = [r["offered_per_s"] for r in runs]
        middle.plot(offered, [r["sustained_per_s"] for r in runs], "o-",
                    color=colors.get(consumer), label=consumer)  # fmt: skip
        right.plot(offered, [r["silver"].get("p95_s", float("nan")) for r in runs], "o-",
                   color=colors.get(consumer), label=consumer)  # fmt: skip
    top = max([r["offered_per_s"] for r in report["offered"]] or [1])
    middle.plot([0, top], [0, top], ":", color="grey", label="offered")
    middle.set_xscale("log")
    middle.set_yscale("log")
    middle.set_xlabel("offered events/s")
    middle.set_ylabel("sustained events/s")
    middle.set_title("sustained vs offered")
    middle.legend(fontsize=8)
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("offered events/s")
    right.set_ylabel("silver freshness p95 (s, lower is better)")
    right.set_title("freshness under load")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
