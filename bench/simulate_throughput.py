"""Benchmark: `simulate` throughput (events/s) against the running local stack.

    .venv/bin/python bench/simulate_throughput.py --plans 2000 --changes 10000 [--modes ...]

Each mode runs the same seeded workload into a fresh Mongo database and topic:
- `store-batched`: PlanStore in batch mode (events confirmed every 500 writes): what
  `lakehouse simulate` uses;
- `store-sync`: PlanStore waiting for Kafka's acknowledgement after every write;
- `raw-floor`: the I/O floor without the store's guarantees: the same documents written with one
  pymongo replace_one each and sent with an async producer, no validation, no outbox, no version
  check. It bounds what any implementation on this FerretDB + Kafka pair can reach.

Results (JSON, a markdown table and a bar chart) go to docs/benchmarks/.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from machine_info import git_state, machine
from resources import ResourceSampler, resource_section

from lakehouse import clients
from lakehouse.config import Config, load_config
from lakehouse.plans.generator import iter_plans, random_change
from lakehouse.plans.merge import merge_patch
from lakehouse.plans.simulate import simulate, terminal_progress
from lakehouse.plans.store import PlanStore, make_producer

OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
MODES = ("store-batched", "store-sync", "raw-floor")


def fresh_source(config: Config, mode: str) -> Config:
    suffix = uuid.uuid4().hex[:8]
    return dataclasses.replace(
        config,
        kafka=dataclasses.replace(config.kafka, topic=f"bench.{mode}.{suffix}"),
        mongo=dataclasses.replace(
            config.mongo, database=f"bench_{mode.replace('-', '_')}_{suffix}"
        ),
    )


def run_store(config: Config, plans: int, changes: int, seed: int, batched: bool) -> dict:
    with PlanStore.open(config, batch_size=500 if batched else None) as store:
        summary = simulate(store, plans, changes, seed, progress=terminal_progress())
    return {"events": summary.events_total, "seconds": summary.elapsed_s}


def run_raw_floor(config: Config, plans: int, changes: int, seed: int) -> dict:
    """Same documents, minimum I/O: one replace_one (upsert) and one async send per event."""
    clients.ensure_topic(config, config.kafka.topic)
    mongo = clients.mongo_client(config)
    coll = mongo[config.mongo.database][config.mongo.collection]
    producer = make_producer(config, linger_ms=10)
    rng = random.Random(seed)
    docs: dict[str, dict] = {}
    started = time.monotonic()
    events = 0
    for generated in iter_plans(seed, plans):
        doc = generated.doc
        docs[doc["objectId"]] = doc
        coll.replace_one({"_id": doc["objectId"]}, doc, upsert=True)
        producer.send(
            config.kafka.topic, key=doc["objectId"].encode(), value=json.dumps(doc).encode()
        )
        events += 1
    ids = list(docs)
    for _ in range(changes):
        plan_id = ids[rng.randrange(len(ids))]
        change = random_change(rng, docs[plan_id], weights=(0.75, 0.25, 0.0))
        doc = (
            change.document
            if change.kind == "replace"
            else merge_patch(docs[plan_id], change.patch)
        )
        docs[plan_id] = doc
        coll.replace_one({"_id": plan_id}, doc, upsert=True)
        producer.send(config.kafka.topic, key=plan_id.encode(), value=json.dumps(doc).encode())
        events += 1
    producer.flush()
    elapsed = time.monotonic() - started
    producer.close()
    mongo.close()
    return {"events": events, "seconds": elapsed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=2000)
    parser.add_argument("--changes", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--env", default=None)
    parser.add_argument("--tag", default="", help="suffix for the result file names")
    args = parser.parse_args()

    config = load_config(args.env)
    results = []
    sampler = ResourceSampler(config).start()
    for mode in args.modes:
        source = fresh_source(config, mode)
        print(f"== {mode}: {args.plans} plans + {args.changes} changes", file=sys.stderr)
        try:
            with sampler.phase(mode):
                if mode == "raw-floor":
                    run = run_raw_floor(source, args.plans, args.changes, args.seed)
                else:
                    batched = mode == "store-batched"
                    run = run_store(source, args.plans, args.changes, args.seed, batched)
        finally:
            mongo = clients.mongo_client(source)
            mongo.drop_database(source.mongo.database)
            mongo.close()
        run.update(mode=mode, events_per_s=run["events"] / run["seconds"])
        results.append(run)
        print(f"   {run['events']} events in {run['seconds']:.1f}s = {run['events_per_s']:.0f}/s")
    sampler.stop()

    report = {
        "benchmark": "simulate throughput",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_state(),
        "workload": {"plans": args.plans, "changes": args.changes, "seed": args.seed},
        "machine": machine(),
        "results": results,
        "resources": sampler.summary(),
    }
    write_report(report, args.tag)
    return 0


def write_report(report: dict, tag: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    name = "simulate" + (f"-{tag}" if tag else "")
    (OUT / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    base = next((r for r in report["results"] if r["mode"] == "store-batched"), None)
    lines = [
        f"# simulate throughput ({report['date']})",
        "",
        f"Workload: {report['workload']['plans']} plans loaded + {report['workload']['changes']} "
        f"changes, seed {report['workload']['seed']}. Machine: {report['machine']['cores']} cores, "
        f"{report['machine']['memory_gib']} GiB, {report['machine']['platform']}, "
        f"Python {report['machine']['python']}, {report['machine']['java']}.",
        "",
        "| mode | events | seconds | events/s | vs store-batched |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        ratio = f"{r['events_per_s'] / base['events_per_s']:.2f}x" if base else "-"
        rate = f"{r['events_per_s']:.0f}"
        lines.append(f"| {r['mode']} | {r['events']} | {r['seconds']:.1f} | {rate} | {ratio} |")
    if report.get("resources"):
        lines += ["", *resource_section(report["resources"])]
    (OUT / f"{name}.md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    modes = [r["mode"] for r in report["results"]]
    ax.barh(modes, [r["events_per_s"] for r in report["results"]], color="#4c72b0")
    ax.set_xlabel("events/s (higher is better)")
    ax.set_title(
        f"simulate: {report['workload']['changes']} changes, {report['machine']['cores']} cores"
    )
    fig.tight_layout()
    fig.savefig(OUT / f"{name}.png", dpi=120)


if __name__ == "__main__":
    sys.exit(main())
