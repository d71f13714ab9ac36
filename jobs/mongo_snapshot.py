"""spark-submit entrypoint: snapshot the Mongo plans collection into bronze/plan_snapshots.

    jobs/submit.sh jobs/mongo_snapshot.py [--env ENV] [--bootstrap] [--reconcile]

--bootstrap loads the snapshot into silver (initial load); --reconcile then compares it with
silver and writes reports/reconciliation.
Exit status: 0 done (and no differences), 3 differences found, 1 failure, 2 bad configuration.
"""

from __future__ import annotations

import argparse
import sys

from lakehouse.config import ConfigError, load_config
from lakehouse.ingest.operations import reconcile, snapshot
from lakehouse.spark import build_spark, stop_spark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", help="configuration environment (default $LAKEHOUSE_ENV or local)")
    parser.add_argument("--bootstrap", action="store_true", help="load the snapshot into silver")
    parser.add_argument("--reconcile", action="store_true", help="compare it with silver")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.env)
    except ConfigError as exc:
        print(f"mongo_snapshot: configuration error: {exc}", file=sys.stderr)
        return 2
    spark = build_spark(config, app_name="lakehouse-mongo-snapshot")
    try:
        status = snapshot(spark, config, bootstrap=args.bootstrap)
        if status == 0 and args.reconcile:
            status = reconcile(spark, config)
        return status
    finally:
        stop_spark(spark)


if __name__ == "__main__":
    sys.exit(main())
