"""Run the benchmarks, then collect their headline figures in docs/benchmarks/summary.md.

    .venv/bin/python bench/run.py [NAME ...] [--quick]   # default: every benchmark
    .venv/bin/python bench/run.py --summary-only          # only rewrite summary.md

Each benchmark is a script of its own (bench/*.py) with its own arguments and result shape; the
registry below says how to run it at its recorded size and at a tiny one (`--quick`, results
tagged `quick` so that the recorded figures are never overwritten), whether it needs the local
stack, and how to read its headline figure and the baseline's from its JSON. Benchmarks whose
script does not exist (yet) are skipped. Each runs as a subprocess with its output streamed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
OUT = ROOT / "docs" / "benchmarks"
SUMMARY = OUT / "summary.md"
QUICK = "quick"


class SummaryError(Exception):
    """A result file the summary cannot read; the message names it."""


@dataclass(frozen=True)
class Headline:
    workload: str
    figure: str  # the lakehouse path's headline figure
    baseline: str  # the same figure for the run's baseline
    ratio: str  # the lakehouse path's speed over the baseline's ("-": no baseline in the run)


def speed(ratio: float) -> str:
    return f"{ratio:.2f}x"


def runs(count: int) -> str:
    return f"{count} run" + ("" if count == 1 else "s")


# ------------------------------------------------------------------------------ extractors
# One per benchmark: the result shapes differ, and a KeyError here means a malformed file.


def extract_simulate(data: Mapping[str, Any]) -> Headline:
    w = data["workload"]
    modes = {r["mode"]: r for r in data["results"]}
    # what `lakehouse simulate` uses, unless the run left it out
    mode = "store-batched" if "store-batched" in modes else data["results"][0]["mode"]
    rate = modes[mode]["events_per_s"]
    floor = modes.get("raw-floor")
    return Headline(
        workload=f"{w['plans']:,} plans + {w['changes']:,} changes",
        figure=f"{rate:,.0f} events/s (`{mode}`)",
        baseline=f"{floor['events_per_s']:,.0f} events/s (`raw-floor`)" if floor else "not run",
        ratio=speed(rate / floor["events_per_s"]) if floor else "-",
    )


def extract_ingest(data: Mapping[str, Any]) -> Headline:
    w, backlog = data["workload"], data["backlog"]
    lake = backlog["lakehouse"]["events_per_s"]
    bases = {name: backlog[name]["events_per_s"] for name in ("deltalake", "per-event")
             if name in backlog}  # fmt: skip
    best = max(bases, key=bases.__getitem__) if bases else None
    return Headline(
        workload=f"backlog of {w['backlog_events']:,} events ({w['plans']:,} plans)",
        figure=f"{lake:,.0f} events/s into silver (`ingest --once`)",
        baseline=", ".join(f"{rate:,.0f} events/s ({name})" for name, rate in bases.items())
        or "not run",
        ratio=speed(lake / bases[best]) + f" of {best}" if best else "-",
    )


def extract_index(data: Mapping[str, Any]) -> Headline:
    modes = data["modes"]
    lake, base = modes["lakehouse"]["docs_per_s_median"], modes["bulk"]["docs_per_s_median"]
    return Headline(
        workload=f"{data['docs']:,} documents, {runs(data['repeats'])}",
        figure=f"{lake:,.0f} docs/s (`write_plans`: the reindex bulk path, median)",
        baseline=f"{base:,.0f} docs/s (`helpers.bulk`)",
        ratio=speed(lake / base),
    )


def extract_gold(data: Mapping[str, Any]) -> Headline:
    incremental, full = data["total_incremental_s"], data["total_full_s"]
    equal = "" if data["incremental_equals_full"] else " (NOT equal to the full rebuild)"
    return Headline(
        workload=f"{data['plans']:,} plans, {data['changed_share']:.0%} changed "
        f"({data.get('pattern', 'uniform')})",
        figure=f"{incremental:,.1f} s incremental refresh{equal}",
        baseline=f"{full:,.1f} s full rebuild",
        ratio=speed(full / incremental),
    )


def extract_mirror(data: Mapping[str, Any]) -> Headline:
    modes = data["modes"]
    mirror, floor = modes["mirror"]["rows_per_s_median"], modes["copy"]["rows_per_s_median"]
    return Headline(
        workload=f"{data['rows']:,} rows, {runs(data['repeats'])}",
        figure=f"{mirror:,.0f} rows/s (`publish_table`, median)",
        baseline=f"{floor:,.0f} rows/s (plain COPY)",
        ratio=speed(mirror / floor),
    )


def extract_declared(data: Mapping[str, Any]) -> Headline:
    """A result that declares its headline (docs/benchmarks/README.md, "Summary"):
    {"headline": {"workload", "label", "value", "unit", "baseline_label", "baseline_value",
    "higher_is_better"}}."""
    h = data["headline"]
    value, base = h["value"], h["baseline_value"]
    ratio = value / base if h["higher_is_better"] else base / value
    return Headline(
        workload=h["workload"],
        figure=f"{value:,.2f} {h['unit']} ({h['label']})",
        baseline=f"{base:,.2f} {h['unit']} ({h['baseline_label']})",
        ratio=speed(ratio),
    )


# ------------------------------------------------------------------------------ the registry


@dataclass(frozen=True)
class Benchmark:
    name: str
    script: str  # under bench/
    args: tuple[str, ...]  # the recorded run
    quick_args: tuple[str, ...]  # tiny sizes; must write with the `quick` tag
    stack: str | None  # None, "data" (`lakehouse stack up`) or "cluster" (`... --cluster`)
    recorded: str  # the result file the recorded run writes
    extract: Callable[[Mapping[str, Any]], Headline]

    @property
    def prefix(self) -> str:
        """Every result file of the benchmark is <prefix>.json or <prefix>-<tag>.json."""
        return self.recorded.removesuffix(".json").split("-")[0]


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in [
        Benchmark(
            "simulate",
            "simulate_throughput.py",
            ("--plans", "500", "--changes", "3000", "--tag", "3k"),
            ("--plans", "20", "--changes", "100", "--tag", QUICK),
            "data",
            "simulate-3k.json",
            extract_simulate,
        ),
        Benchmark(
            "ingest",
            "ingest_throughput.py",
            (),
            (
                "--plans",
                "50",
                "--backlog",
                "500",
                "--loads",
                "50,200",
                "--duration",
                "5",
                "--grace",
                "30",
                "--tag",
                QUICK,
            ),
            "data",
            "ingest.json",
            extract_ingest,
        ),  # fmt: skip
        Benchmark(
            "index",
            "index_throughput.py",
            (),
            (
                "--docs",
                "1000",
                "--repeats",
                "1",
                "--wait-idle",
                "0",
                "--driver-memory",
                "2g",
                "--tag",
                QUICK,
            ),
            "data",
            "index.json",
            extract_index,
        ),  # fmt: skip
        Benchmark(
            "gold",
            "gold_incremental.py",
            ("--plans", "100000", "--changed", "0.01"),
            (
                "--plans",
                "1000",
                "--warm-up-plans",
                "1000",
                "--changed",
                "0.05",
                "--driver-memory",
                "2g",
                "--tag",
                QUICK,
            ),
            None,
            "gold.json",
            extract_gold,
        ),  # fmt: skip
        Benchmark(
            "mirror",
            "mirror_throughput.py",
            ("--rows", "200000", "--repeats", "5"),
            (
                "--rows",
                "2000",
                "--repeats",
                "1",
                "--wait-idle",
                "0",
                "--driver-memory",
                "2g",
                "--tag",
                QUICK,
            ),
            "data",
            "mirror.json",
            extract_mirror,
        ),  # fmt: skip
        Benchmark(
            "publish",
            "mirror_changes.py",
            ("--rows", "1000000", "--repeats", "3"),
            ("--rows", "2000", "--repeats", "1", "--driver-memory", "2g", "--tag", QUICK),
            "data",
            "publish.json",
            extract_declared,
        ),
        Benchmark(
            "quality",
            "quality_changes.py",
            ("--rows", "1000000", "--repeats", "3"),
            ("--rows", "2000", "--repeats", "1", "--driver-memory", "2g", "--tag", QUICK),
            None,
            "quality.json",
            extract_declared,
        ),
        Benchmark(
            "standalone",
            "standalone_gold.py",
            ("--plans", "20000"),
            ("--plans", "1000", "--tag", QUICK),
            None,  # it starts a private cluster of its own
            "standalone.json",
            extract_declared,
        ),
        Benchmark(
            "contract",
            "contract_check.py",
            (),
            ("--events", "3000", "--repeats", "1", "--tag", QUICK),
            None,
            "contract.json",
            extract_declared,
        ),
        Benchmark(
            "layout",
            "table_layout.py",
            ("--plans", "20000,100000", "--batches", "8", "--partitions", "1,2,4,8"),
            (
                "--plans",
                "3000",
                "--batches",
                "2",
                "--batch-plans",
                "100",
                "--partitions",
                "2",
                "--bronze-commits",
                "10",
                "--tag",
                QUICK,
            ),
            None,
            "layout.json",
            extract_declared,
        ),  # fmt: skip
        Benchmark(
            "spark-settings",
            "spark_settings.py",
            (),
            ("--rows", "50", "--repeats", "1", "--values", "10000,8", "--tag", QUICK),
            None,
            "spark-settings.json",
            extract_declared,
        ),
        Benchmark(
            "generator",
            "plan_generator.py",
            (),
            ("--plans", "200", "--repeats", "1", "--tag", QUICK),
            None,
            "generator.json",
            extract_declared,
        ),
        Benchmark(
            "api",
            "api_throughput.py",
            (),
            (
                "--plans",
                "20",
                "--patches",
                "40",
                "--clients",
                "1,2",
                "--visibility",
                "5",
                "--tag",
                QUICK,
            ),
            "data",
            "api.json",
            extract_declared,
        ),  # fmt: skip
        Benchmark(
            "growth",
            "gold_growth.py",
            (),
            ("--tag", QUICK),
            None,
            "growth.json",
            extract_declared,
        ),
    ]
}


# ------------------------------------------------------------------------------ the summary


@dataclass(frozen=True)
class Row:
    benchmark: str
    file: str  # the result file's name
    headline: Headline | None  # None: not run
    date: str = ""
    commit: str = ""


def is_quick(file: str) -> bool:
    return file.removesuffix(".json").endswith(f"-{QUICK}")


def result_files(benchmark: Benchmark, names: list[str], quick: bool) -> list[str]:
    """The benchmark's result files among `names`: the recorded one first, the others sorted;
    only quick ones with `quick`, none of them otherwise."""
    prefix = benchmark.prefix
    mine = [
        n
        for n in names
        if n.endswith(".json")
        and (n == f"{prefix}.json" or n.startswith(f"{prefix}-"))
        and is_quick(n) == quick
    ]
    return sorted(mine, key=lambda n: (n != benchmark.recorded, n))


def recorded_commit(data: Mapping[str, Any]) -> str | None:
    """The commit a run recorded (`*`: its working tree had uncommitted changes), if any."""
    git = data.get("git")
    if not git:
        return None
    return git["commit"][:7] + ("*" if git.get("uncommitted") else "")


def row_for(benchmark: Benchmark, file: str, data: Mapping[str, Any], commit: str) -> Row:
    try:
        headline = benchmark.extract(data)
        date = str(data["date"])[:10]
    except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError) as exc:
        raise SummaryError(
            f"{file}: not a {benchmark.name} result bench/run.py can read "
            f"({type(exc).__name__}: {exc}); fix its extractor or re-run the benchmark"
        ) from exc
    return Row(benchmark.name, file, headline, date, commit)


def file_commit(path: Path) -> str:
    """The last commit that changed a result file, for results that predate the `git` field."""
    done = subprocess.run(
        ["git", "log", "-1", "--format=%h", "--", path.name],
        cwd=path.parent,
        capture_output=True,
        text=True,
    )
    return f"{done.stdout.strip()} (file)" if done.stdout.strip() else "uncommitted"


def collect(folder: Path, benchmarks: Mapping[str, Benchmark], quick: bool = False) -> list[Row]:
    names = sorted(p.name for p in folder.glob("*.json"))
    rows: list[Row] = []
    claimed: set[str] = set()
    for benchmark in benchmarks.values():
        files = result_files(benchmark, names, quick)
        if not quick and benchmark.recorded not in files:
            rows.append(Row(benchmark.name, benchmark.recorded, None))
        for file in files:
            claimed.add(file)
            try:
                data = json.loads((folder / file).read_text())
            except json.JSONDecodeError as exc:
                raise SummaryError(f"{file}: not valid JSON ({exc})") from exc
            commit = recorded_commit(data) or file_commit(folder / file)
            rows.append(row_for(benchmark, file, data, commit))
    strays = [n for n in names if n not in claimed and is_quick(n) == quick]
    if strays:
        raise SummaryError(
            f"no benchmark in bench/run.py writes {', '.join(strays)}: add it to BENCHMARKS "
            "(or give the file a `headline`, docs/benchmarks/README.md) or move the file"
        )
    return rows


def table(rows: list[Row]) -> list[str]:
    lines = [
        "| benchmark | result | workload | headline | baseline | speed vs baseline | date "
        "| commit |",
        "|---|---|---|---|---|---:|---|---|",
    ]
    for r in rows:
        if r.headline is None:
            lines.append(f"| {r.benchmark} | {r.file}: not run | | | | | | |")
            continue
        h, stem = r.headline, r.file.removesuffix(".json")
        lines.append(
            f"| {r.benchmark} | [{stem}]({stem}.md) | {h.workload} | {h.figure} | {h.baseline} "
            f"| {h.ratio} | {r.date} | {r.commit} |"
        )
    return lines


def render(rows: list[Row]) -> str:
    lines = [
        "# Benchmark summary",
        "",
        "Written by `bench/run.py` from the result files in this folder (`make bench` runs "
        "every benchmark at its recorded size and then rewrites it; `.venv/bin/python "
        "bench/run.py --summary-only` only rewrites it). One row per result file: the "
        "lakehouse path's headline figure, the same figure for the run's own baseline, and "
        "the lakehouse path's speed over the baseline's (above 1.00x: faster than the "
        "baseline). Methods, caveats and what limits each path: [README.md](README.md).",
        "",
        *table(rows),
        "",
        "`commit`: the commit the run recorded (`*`: with uncommitted changes in the working "
        "tree); `(file)`: for results that predate that field, the last commit that changed "
        "the result file.",
        "",
    ]
    return "\n".join(lines)


def write_summary() -> list[Row]:
    rows = collect(OUT, BENCHMARKS)
    SUMMARY.write_text(render(rows))
    print(f"wrote {SUMMARY.relative_to(ROOT)} ({len(rows)} rows)")
    return rows


# ------------------------------------------------------------------------------ running


def ensure_stack(cluster: bool) -> None:
    """`lakehouse stack up` (idempotent) unless every data service already answers, whoever
    started it; with `cluster`, always, so that the Spark cluster is started or adopted."""
    if not cluster:
        from lakehouse.config import load_config
        from lakehouse.stack import all_reachable

        if all_reachable(load_config()):
            print("stack: every data service answers")
            return
    lakehouse = Path(sys.executable).parent / "lakehouse"
    command = [str(lakehouse), "stack", "up", *(["--cluster"] if cluster else [])]
    print("stack: " + " ".join(command[1:]), flush=True)
    subprocess.run(command, cwd=ROOT, check=True)


def run_benchmark(benchmark: Benchmark, quick: bool) -> tuple[int, float]:
    args = benchmark.quick_args if quick else benchmark.args
    command = [sys.executable, str(BENCH / benchmark.script), *args]
    print(f"\n== {benchmark.name}: {' '.join(command[1:])}", flush=True)
    started = time.monotonic()
    # unbuffered, so that progress streams through a pipe (`make bench | tee`) as it happens
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    code = subprocess.run(command, cwd=ROOT, env=env).returncode
    return code, time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"default: all of {', '.join(BENCHMARKS)}"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, results tagged quick")
    parser.add_argument(
        "--summary-only", action="store_true", help="only rewrite docs/benchmarks/summary.md"
    )
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    try:
        if args.summary_only:
            write_summary()
            return 0
        return run_all(args.names, args.quick)
    except SummaryError as exc:
        print(f"summary: {exc}", file=sys.stderr)
        return 2


def run_all(names: list[str], quick: bool) -> int:
    selected = [BENCHMARKS[n] for n in dict.fromkeys(names or BENCHMARKS)]
    present = [b for b in selected if (BENCH / b.script).exists()]
    outcome = {b.name: f"skipped: bench/{b.script} does not exist" for b in selected}
    stacks = {b.stack for b in present} - {None}
    if stacks:
        try:
            ensure_stack(cluster="cluster" in stacks)
        except subprocess.CalledProcessError as exc:
            print(f"stack: `lakehouse stack up` failed ({exc.returncode})", file=sys.stderr)
            for b in present:
                if b.stack:
                    outcome[b.name] = "failed: the local stack did not start"
            present = [b for b in present if not b.stack]
    for benchmark in present:
        code, seconds = run_benchmark(benchmark, quick)
        outcome[benchmark.name] = ("ok" if code == 0 else f"failed (exit {code})") + (
            f" in {seconds:.0f} s"
        )

    print("\n== results")
    for name, text in outcome.items():
        print(f"  {name:<11} {text}")
    if quick:
        print("\nquick runs (smoke checks, not figures to quote):")
        wanted = {b.name for b in selected}
        print(
            "\n".join(table([r for r in collect(OUT, BENCHMARKS, True) if r.benchmark in wanted]))
        )
    write_summary()
    return 0 if all(t.startswith(("ok", "skipped")) for t in outcome.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
