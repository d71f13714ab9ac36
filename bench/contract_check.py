"""Benchmark: the per-event contract check (`parse_event`), compiled schema check vs jsonschema.

    .venv/bin/python bench/contract_check.py [--events 20000] [--repeats 5] [--tag NAME]

The silver batch checks every record with `lakehouse.plans.events.parse_event` (in a Python UDF),
and a valid plan used to cost a full jsonschema validation. Now a compiled check
(fastjsonschema, `passes_schema_fast`) answers first and jsonschema only describes the rare
invalid document. Both paths run here in one process, interleaved, on the same generated events
(--events: creates and changes of 2,000 plans, as `event_history` makes them): `compiled` is the
code as it is, `jsonschema` forces the old path by making the compiled check say "invalid". No
services, no Spark. Writes docs/benchmarks/contract[-TAG].{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from machine_info import git_state, machine

from lakehouse.plans import schema
from lakehouse.plans.events import parse_event
from lakehouse.plans.scenario import event_history

OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"


def _always_invalid(doc: object) -> None:
    raise schema.fastjsonschema.JsonSchemaValueException("forced: measure the jsonschema path")


def time_path(records: list[tuple[bytes, bytes]], compiled: bool) -> float:
    original = schema._FAST_CHECK
    schema._FAST_CHECK = original if compiled else _always_invalid
    try:
        started = time.perf_counter()
        for key, value in records:
            parse_event(key, value)
        return time.perf_counter() - started
    finally:
        schema._FAST_CHECK = original


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    if args.events <= 2000 or args.repeats < 1:
        parser.error("--events must exceed 2000 (the plans created first), --repeats >= 1")
    events, _ = event_history(7, 2000, args.events - 2000)
    records = [(e.key(), e.value()) for e in events]
    runs: dict[str, list[float]] = {"compiled": [], "jsonschema": []}
    for compiled in (True, False):  # warm-up
        time_path(records[:500], compiled)
    for repeat in range(args.repeats):
        for path in runs:
            runs[path].append(time_path(records, path == "compiled"))
        print(f"run {repeat + 1}: " + ", ".join(f"{p} {r[-1]:.2f}s" for p, r in runs.items()),
              file=sys.stderr)  # fmt: skip
    results = {
        path: {
            "median_s": round(statistics.median(seconds), 3),
            "best_s": round(min(seconds), 3),
            "us_per_event": round(statistics.median(seconds) / len(records) * 1e6, 1),
            "events_per_s": round(len(records) / statistics.median(seconds)),
        }
        for path, seconds in runs.items()
    }
    report = {
        "benchmark": "contract check per event",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_state(),
        "machine": machine(),
        "events": len(records),
        "repeats": args.repeats,
        "results": results,
        "headline": {
            "workload": f"{len(records):,} change events, parse_event, {args.repeats} runs",
            "label": "compiled schema check",
            "value": results["compiled"]["events_per_s"],
            "unit": "events/s",
            "baseline_label": "jsonschema only",
            "baseline_value": results["jsonschema"]["events_per_s"],
            "higher_is_better": True,
        },
    }
    write_report(report, args.tag)
    print(json.dumps(results, indent=2))
    return 0


def write_report(report: dict[str, Any], tag: str) -> None:
    name = "contract" + (f"-{tag}" if tag else "")
    (OUT / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    m, r = report["machine"], report["results"]
    base = r["jsonschema"]["events_per_s"]
    lines = [
        f"# Contract check per event ({report['date']})",
        "",
        f"Machine: {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}; commit "
        f"{report['git']['commit'][:7]}. Method: `bench/contract_check.py` (docstring); "
        f"{report['events']:,} events, {report['repeats']} interleaved runs per path, one core.",
        "",
        "| path | median (s) | best (s) | µs per event | events/s | vs jsonschema |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for path, row in r.items():
        lines.append(
            f"| {path} | {row['median_s']} | {row['best_s']} | {row['us_per_event']} | "
            f"{row['events_per_s']:,} | {row['events_per_s'] / base:.2f}x |"
        )
    (OUT / f"{name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
