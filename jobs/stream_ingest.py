"""spark-submit entrypoint: stream change events Kafka -> bronze -> silver.

    jobs/submit.sh jobs/stream_ingest.py [--env ENV] [--once]

Without --once it runs until SIGINT/SIGTERM, printing one line per micro-batch.
Exit status: 0 done, 1 a query failed (resume by running again), 2 bad configuration.
"""

from __future__ import annotations

import sys

from lakehouse.entrypoint import job_parser, run_spark_job
from lakehouse.ingest.operations import ingest


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("jobs/stream_ingest.py", __doc__)
    parser.add_argument("--once", action="store_true", help="process what is available, then exit")
    args = parser.parse_args(argv)
    return run_spark_job(
        "stream_ingest", args, lambda spark, config: ingest(spark, config, once=args.once)
    )


if __name__ == "__main__":
    sys.exit(main())
