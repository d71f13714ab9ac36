"""spark-submit entrypoint for the smoke pipeline (one round trip through every service).

    jobs/submit.sh jobs/smoke.py [--env ENV]

Exit status: 0 when every round trip matched, 1 when one failed, 2 on bad configuration.
"""

from __future__ import annotations

import sys

from pyspark.sql import SparkSession

from lakehouse.config import Config
from lakehouse.entrypoint import job_parser, run_spark_job
from lakehouse.smoke import run_smoke


def _smoke(spark: SparkSession, config: Config) -> int:
    results = run_smoke(spark, config)
    print(f"smoke: {sum(r.ok for r in results)}/{len(results)} round trips ok")
    return 0 if all(r.ok for r in results) else 1


def main(argv: list[str] | None = None) -> int:
    return run_spark_job("smoke", job_parser("jobs/smoke.py", __doc__).parse_args(argv), _smoke)


if __name__ == "__main__":
    sys.exit(main())
