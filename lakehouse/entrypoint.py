"""What every spark-submit entrypoint in jobs/ does around its work: arguments, configuration,
one SparkSession, an exit status (0 done, 1 failed, 2 bad arguments or configuration)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from pyspark.sql import SparkSession

from lakehouse.config import Config, ConfigError, load_config


def job_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """An argument parser with the `--env` option every job takes."""
    parser = argparse.ArgumentParser(
        prog=prog, description=(description or "").strip().splitlines()[0] or None
    )
    parser.add_argument("--env", help="configuration environment (default $LAKEHOUSE_ENV or local)")
    return parser


def run_spark_job(
    name: str, args: argparse.Namespace, work: Callable[[SparkSession, Config], int]
) -> int:
    """Load the configuration (exit 2 with the key to fix if it is bad), build the session, run
    `work` and stop the session whatever happens; `work`'s status is the exit status."""
    from lakehouse.spark import spark_session

    try:
        config = load_config(args.env)
    except ConfigError as exc:
        print(f"{name}: configuration error: {exc}", file=sys.stderr)
        return 2
    with spark_session(config, app_name=f"lakehouse-{name.replace('_', '-')}") as spark:
        return int(work(spark, config))
