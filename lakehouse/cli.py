"""The `lakehouse` command. Each sub-command parses its arguments and calls the library."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

import yaml

from lakehouse.config import ConfigError, load_config


def _stack(args: argparse.Namespace) -> int:
    from lakehouse import stack

    config = load_config(args.env)
    if args.action == "logs":
        return _stack_logs(config, args.service, args.lines)
    if args.action == "up":
        rows = stack.up(config)
        print(stack.format_status(rows))
        return 0 if all(r.healthy for r in rows) else 1
    if args.action == "down":
        stack.down(config)
        return 0
    rows = stack.status(config)
    print(stack.format_status(rows))
    return 0 if all(r.healthy for r in rows) else 3


def _stack_logs(config, service: str | None, lines: int) -> int:
    from lakehouse.stack.process import log_tail
    from lakehouse.stack.services import all_services

    services = {s.name: s for s in all_services(config)}
    if service not in services:
        print(
            f"lakehouse: `stack logs` needs a service name: {', '.join(services)}",
            file=sys.stderr,
        )
        return 2
    print(f"==> {services[service].paths.log} <==")
    print(log_tail(services[service].paths, lines))
    return 0


def _config(args: argparse.Namespace) -> int:
    config = load_config(args.env)
    print(yaml.safe_dump(dataclasses.asdict(config), sort_keys=False), end="")
    return 0


def _smoke(args: argparse.Namespace) -> int:
    from lakehouse.smoke import run_smoke
    from lakehouse.spark import build_spark, stop_spark

    config = load_config(args.env)
    spark = build_spark(config, app_name="lakehouse-smoke")
    try:
        results = run_smoke(spark, config)
    finally:
        stop_spark(spark)
    passed = sum(r.ok for r in results)
    print(f"smoke: {passed}/{len(results)} round trips ok")
    return 0 if all(r.ok for r in results) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lakehouse", description=__doc__)
    parser.add_argument(
        "--env", help="configuration environment (conf/<env>.yaml); default $LAKEHOUSE_ENV or local"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p_stack = sub.add_parser("stack", help="start, stop or inspect the local service stack")
    p_stack.add_argument("action", choices=["up", "down", "status", "logs"])
    p_stack.add_argument("service", nargs="?", help="with `logs`: the service whose log to show")
    p_stack.add_argument("-n", "--lines", type=int, default=40, help="with `logs`: lines to show")
    p_stack.set_defaults(func=_stack)

    p_config = sub.add_parser("config", help="print the effective configuration")
    p_config.set_defaults(func=_config)

    p_smoke = sub.add_parser(
        "smoke", help="run the smoke pipeline: Delta, Kafka, Mongo, Elasticsearch, PostgreSQL"
    )
    p_smoke.set_defaults(func=_smoke)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"lakehouse: configuration error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from lakehouse.spark import SparkSetupError
        from lakehouse.stack import StackError

        if isinstance(exc, StackError | SparkSetupError):
            print(f"lakehouse: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
