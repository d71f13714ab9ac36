"""spark-submit entrypoint: compact small files, Z-order clustered tables, vacuum old files.

    jobs/submit.sh jobs/maintain_tables.py [--env ENV] [--table NAME ...] [--zorder|--no-zorder]
        [--no-vacuum]

Without --table every table is maintained; without --zorder/--no-zorder, Z-ordering follows
maintenance.zorder_weekday. Exit status: 0 done, 1 failure, 2 bad arguments or configuration.
"""

from __future__ import annotations

import sys

from lakehouse import maintenance
from lakehouse.entrypoint import job_parser, run_spark_job


def main() -> int:
    parser = job_parser("maintain_tables", __doc__)
    maintenance.add_arguments(parser)
    args = parser.parse_args()
    try:
        tables = maintenance.select_tables(args.table)
    except ValueError as exc:
        parser.error(str(exc))
    return run_spark_job(
        "maintain_tables",
        args,
        lambda spark, config: maintenance.run(
            spark, config, tables, args.zorder, vacuum_files=not args.no_vacuum
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
