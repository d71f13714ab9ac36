"""The gold batch jobs by name, as `jobs/*.py`, `jobs/run_all_jobs.sh`, `lakehouse jobs run` and
the nightly flow run them. Each job reports one rendered result per table it refreshed to the
`report` it is given (the CLI prints, the flow logs); `run` adds the exit status."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import SparkSession

from lakehouse.config import Config
from lakehouse.gold import detection, refresh

ANOMALY_MODES = ("train", "score")


@dataclass(frozen=True)
class JobOptions:
    full: bool = False
    # anomaly_detection only: train, score, or both in that order.
    modes: tuple[str, ...] = ("score",)


Report = Callable[[str], None]
Job = Callable[[SparkSession, Config, JobOptions, Report], None]


def print_line(line: str) -> None:
    print(line, flush=True)


def cost_analysis(spark: SparkSession, config: Config, options: JobOptions, report: Report) -> None:
    """gold.plan_costs, then gold.cost_trends (computed from it)."""
    report(refresh.refresh_plan_costs(spark, config, options.full).render())
    report(refresh.refresh_cost_trends(spark, config, options.full).render())


def service_patterns(
    spark: SparkSession, config: Config, options: JobOptions, report: Report
) -> None:
    """gold.service_pair_counts, gold.service_patterns and gold.service_pairs."""
    for table_refresh in refresh.refresh_service_tables(spark, config, options.full):
        report(table_refresh.render())


def anomaly_detection(
    spark: SparkSession, config: Config, options: JobOptions, report: Report
) -> None:
    """Train (and maybe promote) the detector, and/or score gold.plan_anomalies."""
    if "train" in options.modes:
        report(detection.train(spark, config).render(config))
    if "score" in options.modes:
        report(detection.refresh_plan_anomalies(spark, config, options.full).render())


JOBS: dict[str, Job] = {
    "cost_analysis": cost_analysis,
    "service_patterns": service_patterns,
    "anomaly_detection": anomaly_detection,
}

# `all` (and jobs/run_all_jobs.sh): cost analysis first, as scoring reads gold.plan_costs.
ALL: tuple[tuple[str, JobOptions], ...] = (
    ("cost_analysis", JobOptions()),
    ("service_patterns", JobOptions()),
    ("anomaly_detection", JobOptions(modes=("train", "score"))),
)


def run(spark: SparkSession, config: Config, name: str, options: JobOptions) -> int:
    """Run job `name` (or `all`, in order, stopping at the first failure). 0 when done;
    a GoldError (missing input, no model) is printed and gives 1."""
    steps = (
        [(job, JobOptions(full=options.full, modes=o.modes)) for job, o in ALL]
        if name == "all"
        else [(name, options)]
    )
    for job, job_options in steps:
        if job not in JOBS:
            print(f"unknown job {job!r}; known: {', '.join([*JOBS, 'all'])}", file=sys.stderr)
            return 2
        print(f"== {job}", flush=True)
        try:
            JOBS[job](spark, config, job_options, print_line)
        except refresh.GoldError as exc:
            print(f"{job}: {exc}", file=sys.stderr)
            return 1
    return 0


def parse_modes(mode: str) -> tuple[str, ...]:
    """--mode train | score | both -> the modes to run, in order."""
    return ANOMALY_MODES if mode == "both" else (mode,)


def submit_main(name: str, argv: list[str] | None = None) -> int:
    """The body of jobs/<name>.py (spark-submit; `all`: jobs/gold_jobs.py): parse arguments,
    run, exit status (0 done, 1 failed with a message, 2 bad arguments or configuration)."""
    from lakehouse.entrypoint import job_parser, run_spark_job

    script = "gold_jobs" if name == "all" else name
    about = "Every gold job in dependency order." if name == "all" else JOBS[name].__doc__
    parser = job_parser(f"jobs/{script}.py", about)
    parser.add_argument("--full", action="store_true", help="rebuild instead of refreshing")
    if name == "anomaly_detection":
        parser.add_argument(
            "--mode", choices=[*ANOMALY_MODES, "both"], default="score", help="default: score"
        )
    args = parser.parse_args(argv)
    modes = parse_modes(args.mode) if name == "anomaly_detection" else ("score",)
    options = JobOptions(full=args.full, modes=modes)
    return run_spark_job(script, args, lambda spark, config: run(spark, config, name, options))
