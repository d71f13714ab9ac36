"""spark-submit entrypoint: snapshot the Mongo plans collection into bronze/plan_snapshots.

    jobs/submit.sh jobs/mongo_snapshot.py [--env ENV] [--bootstrap] [--reconcile]

--bootstrap loads the snapshot into silver (initial load); --reconcile then compares it with
silver and writes reports/reconciliation.
Exit status: 0 done (and no differences), 3 differences found, 1 failure, 2 bad configuration.
"""

from __future__ import annotations

import sys

from pyspark.sql import SparkSession

from lakehouse.config import Config
from lakehouse.entrypoint import job_parser, run_spark_job
from lakehouse.ingest.operations import reconcile, snapshot


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("jobs/mongo_snapshot.py", __doc__)
    parser.add_argument("--bootstrap", action="store_true", help="load the snapshot into silver")
    parser.add_argument("--reconcile", action="store_true", help="compare it with silver")
    args = parser.parse_args(argv)

    def work(spark: SparkSession, config: Config) -> int:
        status = snapshot(spark, config, bootstrap=args.bootstrap)
        if status == 0 and args.reconcile:
            status = reconcile(spark, config)
        return status

    return run_spark_job("mongo_snapshot", args, work)


if __name__ == "__main__":
    sys.exit(main())
