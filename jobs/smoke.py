"""spark-submit entrypoint for the smoke pipeline (one round trip through every service).

    jobs/submit.sh jobs/smoke.py [--env ENV]

Exit status: 0 when every round trip matched, 1 when one failed, 2 on bad configuration.
"""

from __future__ import annotations

import argparse
import sys

from lakehouse.config import ConfigError, load_config
from lakehouse.smoke import run_smoke
from lakehouse.spark import build_spark, stop_spark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", help="configuration environment (default $LAKEHOUSE_ENV or local)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.env)
    except ConfigError as exc:
        print(f"smoke: configuration error: {exc}", file=sys.stderr)
        return 2
    spark = build_spark(config, app_name="lakehouse-smoke")
    try:
        results = run_smoke(spark, config)
    finally:
        stop_spark(spark)
    print(f"smoke: {sum(r.ok for r in results)}/{len(results)} round trips ok")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
