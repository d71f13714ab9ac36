"""spark-submit entrypoint: stream change events Kafka -> bronze -> silver + Elasticsearch.

    jobs/submit.sh jobs/stream_ingest.py [--env ENV] [--once]

Without --once it runs until SIGINT/SIGTERM, printing one line per micro-batch.
Exit status: 0 done, 1 a query failed (resume by running again), 2 bad configuration.
"""

from __future__ import annotations

import argparse
import sys

from lakehouse.config import ConfigError, load_config
from lakehouse.ingest.operations import ingest
from lakehouse.spark import build_spark, stop_spark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", help="configuration environment (default $LAKEHOUSE_ENV or local)")
    parser.add_argument("--once", action="store_true", help="process what is available, then exit")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.env)
    except ConfigError as exc:
        print(f"stream_ingest: configuration error: {exc}", file=sys.stderr)
        return 2
    spark = build_spark(config, app_name="lakehouse-stream-ingest")
    try:
        return ingest(spark, config, once=args.once)
    finally:
        stop_spark(spark)


if __name__ == "__main__":
    sys.exit(main())
