"""Benchmark: plan writes through the plan API against the plan store called directly, and the
time from a 201 to the plan being found by /v1/search with the real-time indexer running.

    .venv/bin/python bench/api_throughput.py [--plans 200] [--patches 800] [--clients 1,4]
                                             [--visibility 60] [--tag T]

Method (against the running local stack; each mode gets a fresh database, topic and index):
- `store`: `clients` threads, each with its own PlanStore in sync mode (every write waits for
  Kafka's acknowledgement, as one API request does), create `plans` plans, then apply `patches`
  cost-share patches conditioned on the version each thread last wrote;
- `api`: the same writes as HTTP requests (POST, then PATCH with If-Match) from `clients`
  threads with keep-alive connections, to `lakehouse api serve` running as its own process
  (as the stack runs it), token checked on every request;
- `visibility`: with `lakehouse indexer` running as its own process, `visibility` plans are
  POSTed one at a time, each then searched for by id (`/v1/search?q=<id>`) every 20 ms until it
  is found: the delay from the 201 to the first answer that has it (random pauses between
  plans, so the writes fall at every phase of the index's refresh cycle).

Latencies are per write, seen by the client. Both modes run in this one process against the
same services, so the API's cost is the ratio. Results (JSON, a markdown table, a plot) go to
docs/benchmarks/api*.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
from machine_info import git_state, machine
from pymongo import MongoClient
from resources import ResourceSampler, resource_section

from lakehouse import clients
from lakehouse.api.auth import SCOPE_WRITE, local_signing_key, mint_token
from lakehouse.config import Config, load_config
from lakehouse.ingest.search import versioned_indexes
from lakehouse.plans.generator import generate_plan
from lakehouse.plans.store import PlanStore

OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
SEED = 7
POLL_S = 0.02


def fresh_source(config: Config, mode: str) -> Config:
    suffix = uuid.uuid4().hex[:8]
    return dataclasses.replace(
        config,
        kafka=dataclasses.replace(config.kafka, topic=f"bench.api-{mode}.{suffix}"),
        mongo=dataclasses.replace(config.mongo, database=f"bench_api_{mode}_{suffix}"),
        elasticsearch=dataclasses.replace(config.elasticsearch, index=f"bench-api-{mode}-{suffix}"),
    )


def clean_up(source: Config) -> None:
    mongo = clients.mongo_client(source)
    mongo.drop_database(source.mongo.database)
    mongo.close()
    es = clients.es_client(source)
    for index in versioned_indexes(es, source.elasticsearch.index):
        es.indices.delete(index=index)
    es.close()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def latency_figures(latencies_s: list[float], seconds: float) -> dict:
    ms = [1000 * value for value in latencies_s]
    return {
        "writes": len(ms),
        "seconds": seconds,
        "writes_per_s": len(ms) / seconds,
        "p50_ms": statistics.median(ms),
        "p95_ms": percentile(ms, 0.95),
        "max_ms": max(ms),
    }


# ------------------------------------------------------------------------------ workloads
@dataclasses.dataclass
class Writer:
    """One client's writes: create its plans, then patch them round-robin."""

    create: Callable[[dict], int]  # document -> new version
    patch: Callable[[str, dict, int], int]  # plan id, patch, expected version -> new version


def workload(clients_n: int, plans: int, patches: int) -> list[tuple[list[dict], list[int]]]:
    """Per client: its plan documents and the deductibles of its patches."""
    documents = [generate_plan(SEED, index).doc for index in range(plans)]
    return [
        (documents[k::clients_n], [100 + n for n in range(k, patches, clients_n)])
        for k in range(clients_n)
    ]


def run_writers(
    make_writer: Callable[[], Writer], clients_n: int, plans: int, patches: int
) -> dict:
    latencies: list[float] = []
    lock = threading.Lock()
    errors: list[BaseException] = []
    done = [0]
    total = plans + patches

    def client(documents: list[dict], deductibles: list[int]) -> None:
        try:
            writer = make_writer()
            versions: dict[str, int] = {}
            mine: list[float] = []

            def timed(call: Callable[[], int]) -> int:
                start = time.perf_counter()
                version = call()
                mine.append(time.perf_counter() - start)
                with lock:
                    done[0] += 1
                    if done[0] % 200 == 0:
                        print(f"   {done[0]}/{total} writes", file=sys.stderr)
                return version

            for document in documents:
                versions[document["objectId"]] = timed(lambda d=document: writer.create(d))
            ids = list(versions)
            for n, deductible in enumerate(deductibles):
                plan_id = ids[n % len(ids)]
                patch = {"planCostShares": {"objectId": f"{plan_id}-mcs", "deductible": deductible}}
                versions[plan_id] = timed(
                    lambda p=plan_id, c=patch: writer.patch(p, c, versions[p])
                )
            with lock:
                latencies.extend(mine)
        except BaseException as exc:  # reported after the join, never swallowed
            errors.append(exc)

    work = workload(clients_n, plans, patches)
    threads = [threading.Thread(target=client, args=share) for share in work]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    if errors:
        raise errors[0]
    return latency_figures(latencies, seconds)


def store_writer(
    source: Config, mongo: MongoClient, cleanup: contextlib.ExitStack
) -> Callable[[], Writer]:
    def make() -> Writer:
        store = PlanStore(source, mongo=mongo)
        cleanup.callback(store.close)
        return Writer(
            create=lambda doc: store.create(doc).event.version,
            patch=lambda plan_id, patch, v: store.patch(plan_id, patch, v).event.version,
        )

    return make


def api_writer(url: str, token: str, cleanup: contextlib.ExitStack) -> Callable[[], Writer]:
    def make() -> Writer:
        http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        cleanup.callback(http.close)

        def version(response: httpx.Response) -> int:
            if response.status_code not in (200, 201):
                raise RuntimeError(f"{response.status_code}: {response.text}")
            return int(response.headers["etag"].strip('"v'))

        return Writer(
            create=lambda doc: version(http.post("/plan", json=doc)),
            patch=lambda plan_id, patch, v: version(
                http.patch(
                    f"/plan/{plan_id}",
                    content=json.dumps(patch),
                    headers={
                        "If-Match": f'"v{v}"',
                        "Content-Type": "application/merge-patch+json",
                    },
                )
            ),
        )

    return make


# ----------------------------------------------------------------------------- processes
def child_env(source: Config, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "LAKEHOUSE_ENV": source.environment,
        "LAKEHOUSE_KAFKA_TOPIC": source.kafka.topic,
        "LAKEHOUSE_MONGO_DATABASE": source.mongo.database,
        "LAKEHOUSE_ES_INDEX": source.elasticsearch.index,
        "LAKEHOUSE_API_PORT": str(port),
        "LAKEHOUSE_STATE_DIR": source.state_dir,
    }


@contextlib.contextmanager
def lakehouse_process(
    source: Config, port: int, *args: str, ready: Callable[[], bool]
) -> Iterator[None]:
    """`lakehouse <args>` as its own process until the block ends (SIGTERM, then wait)."""
    log = Path(tempfile.mkstemp(prefix=f"bench-api-{args[0]}-", suffix=".log")[1])
    with log.open("w") as output:
        # to a file, not a pipe: a pipe nobody reads fills up with access logs and blocks it
        process = subprocess.Popen(
            [sys.executable, "-m", "lakehouse.cli", *args],
            env=child_env(source, port),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"lakehouse {' '.join(args)} did not start; see {log}")
            time.sleep(0.2)
        yield
    except BaseException:
        print(f"   lakehouse {' '.join(args)}: its output is in {log}", file=sys.stderr)
        raise
    else:
        log.unlink()
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def healthy(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    return check


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def token_for(config: Config) -> str:
    return mint_token(
        local_signing_key(config),
        subject="bench",
        scopes=(SCOPE_WRITE,),
        now_s=int(time.time()),
        ttl_s=3600,
        issuer=config.api.issuer,
        audience=config.api.audience,
    )


def measure_visibility(url: str, token: str, samples: int) -> list[float]:
    """Seconds from each POST's 201 to the first search answer that has the plan."""
    delays = []
    pauses = random.Random(SEED)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        for index in range(samples):
            document = generate_plan(SEED + 1, index).doc
            created = http.post("/plan", json=document)
            if created.status_code != 201:
                raise RuntimeError(f"{created.status_code}: {created.text}")
            written = time.perf_counter()
            deadline = written + 60
            while True:
                found = http.get("/search", params={"q": document["objectId"], "limit": 1})
                if found.status_code == 200 and found.json()["items"]:
                    delays.append(time.perf_counter() - written)
                    break
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"{document['objectId']} not searchable in 60 s")
                time.sleep(POLL_S)
            if (index + 1) % 20 == 0:
                print(f"   {index + 1}/{samples} plans found", file=sys.stderr)
            # A random pause: a fixed one would lock the writes to one phase of the index's
            # 1 s refresh cycle (measured: every delay ~900 ms with a fixed 100 ms pause).
            time.sleep(pauses.uniform(0.05, 1.05))
    return delays


# ---------------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=200)
    parser.add_argument("--patches", type=int, default=800)
    parser.add_argument("--clients", default="1,4", help="comma-separated concurrent clients")
    parser.add_argument("--visibility", type=int, default=60, help="plans searched for")
    parser.add_argument("--env", default=None)
    parser.add_argument("--tag", default="", help="suffix for the result file names")
    args = parser.parse_args()
    client_counts = [int(part) for part in args.clients.split(",")]

    config = load_config(args.env)
    token = token_for(config)
    sampler = ResourceSampler(config).start()
    results = []
    for clients_n in client_counts:
        for mode in ("store", "api"):
            source = fresh_source(config, mode)
            name = f"{mode}, {clients_n} client" + ("s" if clients_n > 1 else "")
            print(f"== {name}: {args.plans} creates + {args.patches} patches", file=sys.stderr)
            try:
                with sampler.phase(name), contextlib.ExitStack() as cleanup:
                    # closed last in, first out: the clients, then their server or Mongo client
                    if mode == "store":
                        clients.ensure_topic(source, source.kafka.topic)
                        mongo = cleanup.enter_context(clients.mongo_client(source))
                        make = store_writer(source, mongo, cleanup)
                    else:
                        port = free_port()
                        url = f"http://127.0.0.1:{port}/v1"
                        cleanup.enter_context(
                            lakehouse_process(source, port, "api", "serve", ready=healthy(url))
                        )
                        make = api_writer(url, token, cleanup)
                    figures = run_writers(make, clients_n, args.plans, args.patches)
            finally:
                clean_up(source)
            figures.update(mode=mode, clients=clients_n)
            results.append(figures)
            print(
                f"   {figures['writes_per_s']:.0f} writes/s, p50 {figures['p50_ms']:.1f} ms, "
                f"p95 {figures['p95_ms']:.1f} ms",
                file=sys.stderr,
            )

    source = fresh_source(config, "search")
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    print(f"== visibility: {args.visibility} plans, indexer running", file=sys.stderr)
    try:
        with (
            sampler.phase("visibility"),
            lakehouse_process(source, port, "api", "serve", ready=healthy(url)),
        ):
            started = time.monotonic()
            # the indexer is ready once it has had a few seconds to join its group
            with lakehouse_process(
                source, port, "indexer", ready=lambda: time.monotonic() - started > 5
            ):
                delays = measure_visibility(url, token, args.visibility)
    finally:
        clean_up(source)
    sampler.stop()
    ms = [1000 * d for d in delays]
    visibility = {
        "samples": len(ms),
        "p50_ms": statistics.median(ms),
        "p95_ms": percentile(ms, 0.95),
        "max_ms": max(ms),
        "delays_ms": ms,
    }
    print(
        f"   p50 {visibility['p50_ms']:.0f} ms, p95 {visibility['p95_ms']:.0f} ms", file=sys.stderr
    )

    single = {r["mode"]: r for r in results if r["clients"] == client_counts[0]}
    workload_text = f"{args.plans} creates + {args.patches} patches, {client_counts[0]} client" + (
        "s" if client_counts[0] > 1 else ""
    )
    report = {
        "benchmark": "plan API",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_state(),
        "workload": {
            "plans": args.plans,
            "patches": args.patches,
            "clients": client_counts,
            "visibility_samples": args.visibility,
        },
        "machine": machine(),
        "results": results,
        "visibility": visibility,
        "headline": {
            "workload": workload_text,
            "label": "p50 per write through the API",
            "value": single["api"]["p50_ms"],
            "unit": "ms",
            "baseline_label": "PlanStore called directly",
            "baseline_value": single["store"]["p50_ms"],
            "higher_is_better": False,
        },
        "resources": sampler.summary(),
    }
    write_report(report, args.tag)
    return 0


def write_report(report: dict, tag: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    name = "api" + (f"-{tag}" if tag else "")
    (OUT / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    m, w, v = report["machine"], report["workload"], report["visibility"]
    lines = [
        f"# plan API ({report['date']})",
        "",
        f"Workload: {w['plans']} creates + {w['patches']} patches per run; "
        f"{w['visibility_samples']} plans searched for. Machine: {m['cores']} cores, "
        f"{m['memory_gib']} GiB, {m['platform']}, Python {m['python']}, {m['java']}. "
        "Method: bench/api_throughput.py's docstring.",
        "",
        "## Writes: through the API against the store called directly",
        "",
        "| clients | mode | writes/s | p50 ms | p95 ms | max ms | p50 vs store |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for clients_n in w["clients"]:
        rows = {r["mode"]: r for r in report["results"] if r["clients"] == clients_n}
        for mode in ("store", "api"):
            r = rows[mode]
            ratio = r["p50_ms"] / rows["store"]["p50_ms"]
            lines.append(
                f"| {clients_n} | {mode} | {r['writes_per_s']:.0f} | {r['p50_ms']:.1f} | "
                f"{r['p95_ms']:.1f} | {r['max_ms']:.0f} | {ratio:.2f}x |"
            )
    lines += [
        "",
        "## From a 201 to found by /v1/search (indexer running)",
        "",
        "| samples | p50 ms | p95 ms | max ms |",
        "|---:|---:|---:|---:|",
        f"| {v['samples']} | {v['p50_ms']:.0f} | {v['p95_ms']:.0f} | {v['max_ms']:.0f} |",
    ]
    if report.get("resources"):
        lines += ["", *resource_section(report["resources"])]
    (OUT / f"{name}.md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    labels = [f"{r['mode']}\n{r['clients']} cl." for r in report["results"]]
    positions = range(len(labels))
    left.bar([p - 0.2 for p in positions], [r["p50_ms"] for r in report["results"]], 0.4,
             label="p50", color="#4c72b0")  # fmt: skip
    left.bar([p + 0.2 for p in positions], [r["p95_ms"] for r in report["results"]], 0.4,
             label="p95", color="#dd8452")  # fmt: skip
    left.set_xticks(list(positions), labels)
    left.set_ylabel("ms per write (lower is better)")
    left.set_title("writes: API vs store")
    left.legend()
    right.hist(v["delays_ms"], bins=20, color="#55a868")
    right.axvline(v["p95_ms"], color="black", linestyle="--", label=f"p95 {v['p95_ms']:.0f} ms")
    right.set_xlabel("ms from 201 to found by /v1/search")
    right.set_ylabel("plans")
    right.set_title("search visibility")
    right.legend()
    fig.tight_layout()
    fig.savefig(OUT / f"{name}.png", dpi=120)


if __name__ == "__main__":
    sys.exit(main())
