"""Benchmark: ingest throughput and end-to-end freshness, lakehouse vs a plain-Python consumer.

    .venv/bin/python bench/ingest_throughput.py --plans 2000 --changes 18000 \\
        --rate 50 --duration 120 [--tag NAME]

Runs against the local stack (`lakehouse stack up`), each phase on its own topic, warehouse
and index:

1. throughput, lakehouse: the whole history is on the topic first; `ingest --once` (bronze,
   contract check, silver MERGEs, history, services, Elasticsearch) is timed end to end.
2. throughput, baseline: a kafka-python consumer reads the same records and, per event, checks
   the contract (`parse_event`), upserts PostgreSQL (version-guarded ON CONFLICT, autocommit) and
   indexes/deletes in Elasticsearch (external_gte version): the usual hand-written CDC consumer.
3. freshness: events are produced at --rate per second for --duration seconds with ts_ms = send
   time while each consumer runs continuously. Lakehouse: silver latency = Delta commit time of
   the plan_history row (Change Data Feed `_commit_timestamp`) - ts_ms, index latency =
   `indexed_at` - ts_ms of the documents left in the index. Baseline: time its PostgreSQL commit
   and its index call returned - ts_ms, per event.

Results (JSON, markdown with ratios, a plot) go to docs/benchmarks/ingest[-TAG].*.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from kafka import KafkaConsumer, KafkaProducer
from machine_info import machine
from pyspark.sql import functions as F

from lakehouse import clients, io
from lakehouse.config import PROJECT_ROOT, Config, load_config
from lakehouse.ingest import search
from lakehouse.ingest.operations import format_progress
from lakehouse.ingest.stream import run_continuous, run_once
from lakehouse.plans.events import ChangeEvent, EventContractError, parse_event
from lakehouse.plans.scenario import event_history
from lakehouse.spark import build_spark, stop_spark
from lakehouse.tables import PLAN_HISTORY

OUT = PROJECT_ROOT / "docs" / "benchmarks"
BASELINE_TABLE = "bench_plans_current"


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


def produce(config: Config, events: list[ChangeEvent], rate: float | None = None) -> int:
    """Send events (at most `rate` per second, each stamped ts_ms = its send time if rated)."""
    producer = KafkaProducer(bootstrap_servers=config.kafka.bootstrap, linger_ms=5, acks="all")
    started = time.monotonic()
    for sent, event in enumerate(events):
        if rate:
            pause = started + sent / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            event = dataclasses.replace(event, ts_ms=time.time_ns() // 1_000_000)
        producer.send(config.kafka.topic, key=event.key(), value=event.value())
    producer.flush()
    producer.close()
    return len(events)


# ------------------------------------------------------------------------------------ baseline


class BaselineConsumer:
    """kafka-python + one PostgreSQL upsert and one Elasticsearch write per event."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.pg = clients.pg_connect(config)
        self.pg.autocommit = True
        self.es = clients.es_client(config)
        self.silver_latency_s: list[float] = []
        self.index_latency_s: list[float] = []
        self.applied = 0
        self.quarantined = 0
        with self.pg.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {BASELINE_TABLE}")
            cur.execute(
                f"CREATE TABLE {BASELINE_TABLE} (plan_id text PRIMARY KEY, version bigint NOT NULL,"
                " is_deleted boolean NOT NULL, doc jsonb, event_ts timestamptz NOT NULL,"
                " updated_at timestamptz NOT NULL DEFAULT now())"
            )
        search.ensure_index(config)

    def handle(self, key: bytes | None, value: bytes | None) -> None:
        try:
            event = parse_event(key, value)
        except EventContractError:
            self.quarantined += 1
            return
        with self.pg.cursor() as cur:
            cur.execute(
                f"INSERT INTO {BASELINE_TABLE} (plan_id, version, is_deleted, doc, event_ts)"
                " VALUES (%s, %s, %s, %s, to_timestamp(%s / 1000.0))"
                " ON CONFLICT (plan_id) DO UPDATE SET version = EXCLUDED.version,"
                " is_deleted = EXCLUDED.is_deleted, doc = EXCLUDED.doc,"
                " event_ts = EXCLUDED.event_ts, updated_at = now()"
                f" WHERE {BASELINE_TABLE}.version < EXCLUDED.version",
                (
                    event.plan_id,
                    event.version,
                    event.op == "d",
                    None if event.after is None else json.dumps(event.after),
                    event.ts_ms,
                ),
            )
        self.silver_latency_s.append(time.time() - event.ts_ms / 1000)
        index, options = (
            self.config.elasticsearch.index,
            {
                "version": event.version,
                "version_type": "external_gte",
            },
        )
        try:
            if event.op == "d":
                self.es.delete(index=index, id=event.plan_id, **options)
            else:
                self.es.index(index=index, id=event.plan_id, body=_search_doc(event), **options)
        except Exception as exc:  # an older version (409) or a delete of nothing (404)
            if getattr(exc, "status_code", None) not in (404, 409):
                raise
        self.index_latency_s.append(time.time() - event.ts_ms / 1000)
        self.applied += 1

    def close(self) -> None:
        self.pg.close()
        self.es.close()


def _search_doc(event: ChangeEvent) -> dict:
    doc = event.after or {}
    return {
        "plan_id": event.plan_id,
        "version": event.version,
        "org": doc["_org"],
        "plan_type": doc["planType"],
        "creation_date": doc["creationDate"],
        "deductible": doc["planCostShares"]["deductible"],
        "copay": doc["planCostShares"]["copay"],
        "service_count": len(doc["linkedPlanServices"]),
        "services": [
            {
                "planservice_id": ps["objectId"],
                "service_id": ps["linkedService"]["objectId"],
                "name": ps["linkedService"]["name"],
                "org": ps["linkedService"]["_org"],
                "deductible": ps["planserviceCostShares"]["deductible"],
                "copay": ps["planserviceCostShares"]["copay"],
            }
            for ps in doc["linkedPlanServices"]
        ],
        "event_ts": event.ts_ms,
        "indexed_at": time.time_ns() // 1_000_000,
    }


def run_baseline(config: Config, expected: int, stop: threading.Event | None = None) -> dict:
    consumer = KafkaConsumer(
        config.kafka.topic,
        bootstrap_servers=config.kafka.bootstrap,
        group_id=f"bench-baseline-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=True,
    )
    baseline = BaselineConsumer(config)
    started = time.monotonic()
    seen = reported = 0
    try:
        while seen < expected and not (stop and stop.is_set()):
            for records in consumer.poll(timeout_ms=500, max_records=500).values():
                for record in records:
                    baseline.handle(record.key, record.value)
                    seen += 1
            if seen - reported >= 2000:
                reported = seen
                print(f"   baseline: {seen:,}/{expected:,} events", file=sys.stderr)
        elapsed = time.monotonic() - started
    finally:
        consumer.close()
        baseline.close()
    return {
        "events": seen,
        "seconds": elapsed,
        "silver_latency_s": baseline.silver_latency_s,
        "index_latency_s": baseline.index_latency_s,
    }


# ----------------------------------------------------------------------------------- lakehouse


def lakehouse_freshness(spark, lake: Config) -> dict:
    history = (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", 0)
        .load(PLAN_HISTORY.path(lake))
        .where("_change_type = 'insert'")
        .select((F.unix_millis("_commit_timestamp") - F.unix_millis("valid_from")).alias("ms"))
    )
    silver = [r["ms"] / 1000 for r in history.collect()]
    es = clients.es_client(lake)
    try:
        es.indices.refresh(index=lake.elasticsearch.index)
        hits = es.search(
            index=lake.elasticsearch.index,
            body={"size": 10_000, "_source": ["event_ts", "indexed_at"]},
        )["hits"]["hits"]
    finally:
        es.close()
    index = [(h["_source"]["indexed_at"] - h["_source"]["event_ts"]) / 1000 for h in hits]
    return {"silver_latency_s": silver, "index_latency_s": index}


def wait_for_history(spark, lake: Config, expected: int, timeout_s: float = 900) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        exists = io.table_exists(spark, lake, PLAN_HISTORY)
        if exists and io.read_table(spark, lake, PLAN_HISTORY).count() >= expected:
            return
        time.sleep(2)
    raise TimeoutError(f"silver did not reach {expected} history rows in {timeout_s}s")


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    array = np.array(values)
    return {
        "n": len(values),
        "p50_s": round(float(np.percentile(array, 50)), 3),
        "p95_s": round(float(np.percentile(array, 95)), 3),
        "max_s": round(float(array.max()), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=2000)
    parser.add_argument("--changes", type=int, default=18000)
    parser.add_argument("--rate", type=float, default=50.0, help="freshness phase: events/s")
    parser.add_argument("--duration", type=float, default=120.0, help="freshness phase: seconds")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--env", default=None)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()

    config = load_config(args.env)
    root = Path(config.state_dir).absolute() / "bench-warehouse"
    events, _ = event_history(args.seed, args.plans, args.changes)
    print(f"== {len(events):,} events ({args.plans} plans)", file=sys.stderr)
    spark = build_spark(config, app_name="bench-ingest")
    report_progress = lambda batch: print("   " + format_progress(batch), file=sys.stderr)  # noqa: E731
    results: dict = {}
    try:
        lake = isolated(config, "throughput", root)
        produce(lake, events)
        print("== throughput: lakehouse ingest --once", file=sys.stderr)
        started = time.monotonic()
        run_once(spark, lake, report_progress)
        seconds = time.monotonic() - started
        results["lakehouse_throughput"] = {"events": len(events), "seconds": round(seconds, 1)}

        print("== throughput: baseline consumer", file=sys.stderr)
        own_index = dataclasses.replace(
            lake.elasticsearch, index=lake.elasticsearch.index + "-baseline"
        )
        run = run_baseline(dataclasses.replace(lake, elasticsearch=own_index), len(events))
        results["baseline_throughput"] = {
            "events": run["events"],
            "seconds": round(run["seconds"], 1),
        }

        fresh_events = events[: int(args.rate * args.duration)]
        print(f"== freshness: lakehouse, {args.rate}/s for {args.duration}s", file=sys.stderr)
        lake = isolated(config, "fresh", root)
        lake = dataclasses.replace(
            lake, ingest=dataclasses.replace(lake.ingest, trigger_interval_s=1.0)
        )
        stop = threading.Event()
        runner = threading.Thread(
            target=run_continuous, args=(spark, lake, report_progress, stop), daemon=True
        )
        runner.start()
        produce(lake, fresh_events, rate=args.rate)
        wait_for_history(spark, lake, len({(e.plan_id, e.version) for e in fresh_events}))
        stop.set()
        runner.join(timeout=120)
        results["lakehouse_freshness"] = lakehouse_freshness(spark, lake)

        print(f"== freshness: baseline, {args.rate}/s for {args.duration}s", file=sys.stderr)
        lake = isolated(config, "fresh-baseline", root)
        stop = threading.Event()
        holder: dict = {}
        consumer = threading.Thread(
            target=lambda: holder.update(run_baseline(lake, len(fresh_events), stop)), daemon=True
        )
        consumer.start()
        produce(lake, fresh_events, rate=args.rate)
        consumer.join(timeout=600)
        stop.set()
        results["baseline_freshness"] = {
            "silver_latency_s": holder.get("silver_latency_s", []),
            "index_latency_s": holder.get("index_latency_s", []),
        }
    finally:
        stop_spark(spark)
        shutil.rmtree(root, ignore_errors=True)

    report = {
        "benchmark": "ingest throughput and freshness",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "workload": {
            "plans": args.plans,
            "changes": args.changes,
            "events": len(events),
            "seed": args.seed,
            "rate": args.rate,
            "duration_s": args.duration,
            "max_offsets_per_trigger": config.ingest.max_offsets_per_trigger,
            "shuffle_partitions": config.spark.shuffle_partitions,
        },  # fmt: skip
        "machine": machine(),
        "throughput": {
            name: {**r, "events_per_s": round(r["events"] / r["seconds"], 1)}
            for name, r in results.items()
            if name.endswith("throughput")
        },
        "freshness": {
            name.removesuffix("_freshness"): {
                "silver": percentiles(r["silver_latency_s"]),
                "index": percentiles(r["index_latency_s"]),
            }
            for name, r in results.items()
            if name.endswith("freshness")
        },
    }
    write_report(report, args.tag)
    print(json.dumps({k: report[k] for k in ("throughput", "freshness")}, indent=2))
    return 0


def write_report(report: dict, tag: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    name = "ingest" + (f"-{tag}" if tag else "")
    (OUT / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    t, f, m, w = report["throughput"], report["freshness"], report["machine"], report["workload"]
    base_rate = t["baseline_throughput"]["events_per_s"]
    lines = [
        f"# ingest throughput and freshness ({report['date']})",
        "",
        f"Machine: {m['cores']} cores, {m['memory_gib']} GiB, {m['platform']}, {m['java']}. "
        f"Kafka {m['kafka']}; Elasticsearch {m['elasticsearch']}.",
        f"Workload: {w['events']:,} events ({w['plans']} plans, seed {w['seed']}); "
        f"Spark local[*], {w['shuffle_partitions']} shuffle partitions, "
        f"max {w['max_offsets_per_trigger']:,} offsets per batch.",
        "",
        "| throughput | events | seconds | events/s | vs baseline |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, key in (("lakehouse `ingest --once`", "lakehouse_throughput"),
                       ("baseline consumer", "baseline_throughput")):  # fmt: skip
        r = t[key]
        lines.append(
            f"| {label} | {r['events']:,} | {r['seconds']} | {r['events_per_s']} | "
            f"{r['events_per_s'] / base_rate:.2f}x |"
        )
    lines += [
        "",
        f"Freshness at {w['rate']} events/s for {w['duration_s']} s (seconds from source ts_ms):",
        "",
        "| consumer | target | n | p50 | p95 | max |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for consumer, targets in f.items():
        for target, p in targets.items():
            lines.append(
                f"| {consumer} | {target} | {p['n']} | {p.get('p50_s', '-')} | "
                f"{p.get('p95_s', '-')} | {p.get('max_s', '-')} |"
            )
    (OUT / f"{name}.md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2))
    labels = ["lakehouse", "baseline"]
    left.bar(labels, [t["lakehouse_throughput"]["events_per_s"], base_rate], color="#4c72b0")
    left.set_ylabel("events/s (higher is better)")
    left.set_title(f"throughput, {w['events']:,} events")
    width = 0.2
    for i, targets in enumerate(f.values()):
        for j, (target, p) in enumerate(targets.items()):
            x = i + (j - 0.5) * 2 * width
            right.bar([x - width / 2, x + width / 2], [p.get("p50_s", 0), p.get("p95_s", 0)],
                      width=width, color=["#55a868", "#c44e52"])  # fmt: skip
            right.text(x, 0, target, ha="center", va="bottom", fontsize=7, rotation=90)
    right.set_xticks(range(len(f)), list(f))
    right.set_ylabel("seconds behind source (p50 green, p95 red)")
    right.set_title(f"freshness at {w['rate']:.0f} events/s")
    fig.tight_layout()
    fig.savefig(OUT / f"{name}.png", dpi=120)


if __name__ == "__main__":
    sys.exit(main())
