"""spark-submit entrypoint: run the data quality suites (every table, one layer or one table),
append the results to quality.results / quality.metrics and print a summary.

    jobs/submit.sh jobs/data_quality.py [--env ENV] [--layer L] [--table T] [--alert]

Exit status: 0 no error-severity check failed (warnings may have), 1 one did, 2 bad arguments or
configuration.
"""

from __future__ import annotations

import sys

from lakehouse.entrypoint import job_parser, run_spark_job
from lakehouse.quality import operations


def main() -> int:
    parser = job_parser("data_quality", __doc__)
    operations.add_run_arguments(parser)
    args = parser.parse_args()
    return run_spark_job(
        "data_quality",
        args,
        lambda spark, config: operations.run(spark, config, args.layer, args.table, args.alert),
    )


if __name__ == "__main__":
    sys.exit(main())
