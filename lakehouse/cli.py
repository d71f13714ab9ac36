"""The `lakehouse` command. Each sub-command parses its arguments and calls the library."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

import yaml

from lakehouse.config import Config, ConfigError, load_config


def _stack(args: argparse.Namespace) -> int:
    from lakehouse import stack
    from lakehouse.stack.apps import app_urls
    from lakehouse.stack.cluster import cluster_urls

    config = load_config(args.env)
    if args.action == "logs":
        return _stack_logs(config, args.service, args.lines)
    if args.action == "restart":
        if not args.service:
            return _needs_service(config, "restart")
        row = stack.restart(config, args.service)
        print(stack.format_status([row]))
        return 0 if row.healthy else 1
    if args.action == "up":
        rows = stack.up(config, apps=args.apps, cluster=args.cluster)
        print(stack.format_status(rows))
        if args.cluster:
            print(cluster_urls(config))
        if args.apps:
            print(app_urls(config))
        return 0 if all(r.healthy for r in rows) else 1
    if args.action == "down":
        stack.down(config, cluster_only=args.cluster)
        return 0
    rows = stack.status(config)
    print(stack.format_status(rows))
    if any(r.name == "indexer" and r.healthy for r in rows):
        from lakehouse.ingest.indexer import measure_lag

        print(measure_lag(config).render())
    return 0 if stack.stack_ok(rows) else 3


def _needs_service(config, action: str) -> int:  # type: ignore[no-untyped-def]
    from lakehouse.stack.services import all_services

    names = ", ".join(s.name for s in all_services(config, apps=True, cluster=True))
    print(f"lakehouse: `stack {action}` needs a service name: {names}", file=sys.stderr)
    return 2


def _stack_logs(config, service: str | None, lines: int) -> int:
    from lakehouse.stack.process import log_tail
    from lakehouse.stack.services import all_services

    services = {s.name: s for s in all_services(config, apps=True, cluster=True)}
    if service not in services:
        return _needs_service(config, "logs")
    print(f"==> {services[service].paths.log} <==")
    print(log_tail(services[service].paths, lines))
    return 0


def _config(args: argparse.Namespace) -> int:
    config = load_config(args.env)
    print(yaml.safe_dump(dataclasses.asdict(config), sort_keys=False), end="")
    return 0


def _smoke(args: argparse.Namespace) -> int:
    from lakehouse.smoke import run_smoke
    from lakehouse.spark import spark_session

    config = load_config(args.env)
    with spark_session(config, app_name="lakehouse-smoke") as spark:
        results = run_smoke(spark, config)
    passed = sum(r.ok for r in results)
    print(f"smoke: {passed}/{len(results)} round trips ok")
    return 0 if all(r.ok for r in results) else 1


def _simulate(args: argparse.Namespace) -> int:
    from lakehouse.plans.simulate import simulate, terminal_progress
    from lakehouse.plans.store import PlanStore

    # batch mode: events confirmed every 500 writes instead of one round trip each
    with PlanStore.open(load_config(args.env), batch_size=500) as store:
        summary = simulate(
            store,
            plans=args.plans,
            changes=args.changes,
            seed=args.seed,
            rate=args.rate,
            delete_fraction=args.delete_fraction,
            progress=terminal_progress(),
        )
    print(summary.render())
    return 0


def _plans(args: argparse.Namespace) -> int:
    import json

    from lakehouse.plans.schema import PlanValidationError
    from lakehouse.plans.store import PlanRejectedError, PlanStore

    config = load_config(args.env)
    if args.action == "get":
        with PlanStore(config) as store:
            doc = store.get(args.target)
        if doc is None:
            print(f"lakehouse: plan {args.target!r} not found", file=sys.stderr)
            return 1
        print(json.dumps(doc, indent=2))
        return 0
    try:
        with open(args.target) as handle:
            document = json.load(handle)
    except (OSError, json.JSONDecodeError) as exc:
        print(f"lakehouse: cannot read {args.target}: {exc}", file=sys.stderr)
        return 1
    try:
        with PlanStore.open(config) as store:
            result = store.upsert(document)
    except PlanValidationError as exc:
        print(f"lakehouse: {args.target} is not a valid plan; nothing was written:\n{exc}",
              file=sys.stderr)  # fmt: skip
        return 1
    except PlanRejectedError as exc:
        print(f"lakehouse: {args.target} cannot go on the change stream ({exc}); nothing was "
              "written", file=sys.stderr)  # fmt: skip
        return 1
    event = result.event
    print(f"plan {event.plan_id}: op={event.op} version={event.version} event_id={event.event_id}")
    return 0


def _outbox(args: argparse.Namespace) -> int:
    from lakehouse.plans.store import PlanStore

    code = 0
    with PlanStore.open(load_config(args.env)) as store:
        if args.action == "drain":
            result = store.drain_outbox()
            print(f"outbox: published {result.published} pending events")
            for refused in result.refused:
                print(f"outbox: refused {refused.plan_id} v{refused.version} "
                      f"(event {refused.event_id}): {refused.reason}: {refused.detail}; the "
                      "plan's next write supersedes it", file=sys.stderr)  # fmt: skip
            code = 1 if result.refused else 0
        print(f"outbox: {store.count_pending()} events pending")
    return code


def _with_spark(args: argparse.Namespace, app_name: str, work) -> int:
    from lakehouse.spark import spark_session

    config = load_config(args.env)
    with spark_session(config, app_name=app_name) as spark:
        return int(work(spark, config))


def _ingest(args: argparse.Namespace) -> int:
    from lakehouse.ingest import lag, operations

    if args.lag or args.wait:

        def measure(spark, config) -> int:  # type: ignore[no-untyped-def]
            if args.lag:
                print(lag.measure(spark, config).render())
                return 0
            if lag.wait_caught_up(spark, config, args.timeout_s):
                return 0
            print(
                f"ingest: not caught up after {args.timeout_s:.0f}s; is it running? "
                "(`lakehouse stack status`, `lakehouse stack logs ingest`)",
                file=sys.stderr,
            )
            return 1

        return _with_spark(args, "lakehouse-ingest-lag", measure)
    return _with_spark(
        args, "lakehouse-ingest", lambda spark, config: operations.ingest(spark, config, args.once)
    )


def _indexer(args: argparse.Namespace) -> int:
    from lakehouse.ingest import operations

    if args.wait:
        return operations.wait_for_indexer(load_config(args.env), args.timeout_s)
    return operations.run_indexer(load_config(args.env), args.once)


def _api(args: argparse.Namespace) -> int:
    config = load_config(args.env)
    if args.action == "serve":
        from lakehouse.api.server import serve

        serve(config)
        return 0
    from lakehouse.api.auth import SCOPE_READ, SCOPE_WRITE

    if config.api.public_key_file or config.api.jwks_url:
        print(
            "lakehouse: this environment verifies tokens from an identity provider "
            "(api.public_key_file / api.jwks_url): ask it for a token",
            file=sys.stderr,
        )
        return 2
    if args.action == "token":
        scopes = tuple(args.scope or [SCOPE_READ])
        print(_local_token(config, args.subject, scopes, args.ttl_s or config.api.token_ttl_s))
        return 0
    # smoke: a short-lived writer's token for its own plan
    return _api_smoke(config, _local_token(config, args.subject, (SCOPE_WRITE,), 300), args)


def _local_token(config: Config, subject: str, scopes: tuple[str, ...], ttl_s: int) -> str:
    import time

    from lakehouse.api.auth import local_signing_key, mint_token

    return mint_token(
        local_signing_key(config),
        subject=subject,
        scopes=scopes,
        now_s=int(time.time()),
        ttl_s=ttl_s,
        issuer=config.api.issuer,
        audience=config.api.audience,
    )


def _api_smoke(config: Config, token: str, args: argparse.Namespace) -> int:
    import time

    from lakehouse.api.round_trip import Step, round_trip
    from lakehouse.plans.generator import generate_plan

    def show(step: Step) -> None:
        answer = step.status if step.status is not None else "no answer"
        verdict = "ok" if step.ok else f"FAILED (expected {step.expected})"
        detail = f": {step.detail}" if step.detail and not step.ok else ""
        print(f"api {step.name}: {answer} {verdict} ({step.ms:.0f} ms){detail}", flush=True)

    # a plan id of its own per run (seconds since the epoch), deleted again at the end
    plan = generate_plan(seed=9, index=int(time.time()) % 10_000_000).doc
    url = f"http://127.0.0.1:{config.api.port}/v1"
    trip = round_trip(url, token, plan, search_timeout_s=args.timeout_s, report=show)
    passed = sum(step.ok for step in trip.steps)
    print(f"api smoke: {passed} steps ok" + ("" if trip.ok else ", then a failure"))
    return 0 if trip.ok else 1


def _reindex(args: argparse.Namespace) -> int:
    from lakehouse.ingest import operations

    return _with_spark(args, "lakehouse-reindex", operations.reindex)


def _quarantine(args: argparse.Namespace) -> int:
    from lakehouse.ingest import operations

    return _with_spark(
        args,
        "lakehouse-quarantine",
        lambda spark, config: operations.show_quarantine(spark, config, args.reason, args.show),
    )


def _snapshot(args: argparse.Namespace) -> int:
    from lakehouse.ingest import operations

    return _with_spark(
        args,
        "lakehouse-snapshot",
        lambda spark, config: operations.snapshot(spark, config, args.bootstrap),
    )


def _reconcile(args: argparse.Namespace) -> int:
    from lakehouse.ingest import operations

    return _with_spark(args, "lakehouse-reconcile", operations.reconcile)


def _maintain(args: argparse.Namespace) -> int:
    from lakehouse import maintenance

    try:
        tables = maintenance.select_tables(args.table)
    except ValueError as exc:
        print(f"lakehouse maintain: {exc}", file=sys.stderr)
        return 2
    return _with_spark(
        args,
        "lakehouse-maintain",
        lambda spark, config: maintenance.run(
            spark, config, tables, args.zorder, vacuum_files=not args.no_vacuum
        ),
    )


def _jobs(args: argparse.Namespace) -> int:
    from lakehouse.gold import jobs

    if args.jobs_command == "list":
        for name, job in jobs.JOBS.items():
            summary = (job.__doc__ or "").strip().splitlines()[0]
            print(f"{name:<18} {summary}")
        print(f"{'all':<18} every job in order (anomaly_detection trains, then scores)")
        return 0
    if args.name != "all" and args.name not in jobs.JOBS:
        known = ", ".join([*jobs.JOBS, "all"])
        print(f"lakehouse: unknown job {args.name!r}; known jobs: {known}", file=sys.stderr)
        return 2
    options = jobs.JobOptions(full=args.full, modes=jobs.parse_modes(args.mode))
    return _with_spark(
        args,
        f"lakehouse-{args.name.replace('_', '-')}",
        lambda spark, config: jobs.run(spark, config, args.name, options),
    )


def _quality(args: argparse.Namespace) -> int:
    from lakehouse.quality import operations

    if args.quality_command == "run":
        return _with_spark(
            args,
            "lakehouse-quality",
            lambda spark, config: operations.run(spark, config, args.layer, args.table, args.alert),
        )
    if args.quality_command == "report":
        return _with_spark(
            args,
            "lakehouse-quality-report",
            lambda spark, config: operations.show_report(spark, config, args.runs, args.html),
        )
    return _with_spark(
        args,
        "lakehouse-quality-profile",
        lambda spark, config: operations.profile(spark, config, args.table),
    )


def _publish(args: argparse.Namespace) -> int:
    from lakehouse.serving.publish import gated_publish

    return _with_spark(args, "lakehouse-publish", gated_publish)


def _summary(args: argparse.Namespace) -> int:
    from lakehouse.stack.apps import app_urls
    from lakehouse.summary import summarise

    def work(spark, config) -> int:  # type: ignore[no-untyped-def]
        print(summarise(spark, config))
        print("\nServers")
        print(app_urls(config))
        return 0

    return _with_spark(args, "lakehouse-summary", work)


def _superset(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lakehouse.serving.superset import provision
    from lakehouse.stack.apps import SUPERSET_ADMIN_PASSWORD_VAR, SupersetService
    from lakehouse.stack.secrets import local_secret

    config = load_config(args.env)
    result = provision(
        config,
        base_url=args.url or SupersetService(config).url,
        user=config.apps.superset_admin_user,
        password=local_secret(config, SUPERSET_ADMIN_PASSWORD_VAR),
        spec_path=Path(args.spec),
    )
    print(f"dashboard: {result.dashboard_url}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from lakehouse.quality import operations as quality_operations

    parser = argparse.ArgumentParser(prog="lakehouse", description=__doc__)
    parser.add_argument(
        "--env", help="configuration environment (conf/<env>.yaml); default $LAKEHOUSE_ENV or local"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p_stack = sub.add_parser("stack", help="start, stop or inspect the local service stack")
    p_stack.add_argument("action", choices=["up", "down", "status", "logs", "restart"])
    p_stack.add_argument(
        "service", nargs="?", help="with `logs` / `restart`: the service to show / restart"
    )
    p_stack.add_argument(
        "--apps",
        action="store_true",
        help="with `up`: also start MLflow, Prefect (+ the nightly deployment), Superset, "
        "JupyterLab and the supervised streaming ingest",
    )
    p_stack.add_argument(
        "--cluster",
        action="store_true",
        help="with `up`: also start a local Spark standalone cluster (a master and "
        "cluster.workers workers on 127.0.0.1; docs/scale-out.md); with `down`: stop only that "
        "cluster",
    )
    p_stack.add_argument("-n", "--lines", type=int, default=40, help="with `logs`: lines to show")
    p_stack.set_defaults(func=_stack)

    p_config = sub.add_parser("config", help="print the effective configuration")
    p_config.set_defaults(func=_config)

    p_smoke = sub.add_parser(
        "smoke", help="run the smoke pipeline: Delta, Kafka, Mongo, Elasticsearch, PostgreSQL"
    )
    p_smoke.set_defaults(func=_smoke)

    p_sim = sub.add_parser(
        "simulate", help="load generated plans, then apply random changes (each one an event)"
    )
    p_sim.add_argument("--plans", type=_positive_int, required=True, help="plans to load")
    p_sim.add_argument("--changes", type=_non_negative_int, default=0, help="changes to apply")
    p_sim.add_argument("--seed", type=int, default=42, help="generator seed (default 42)")
    p_sim.add_argument("--rate", type=_positive_float, help="max writes per second")
    p_sim.add_argument(
        "--delete-fraction", type=_fraction, default=0.1, help="share of changes that delete"
    )
    p_sim.set_defaults(func=_simulate)

    p_plans = sub.add_parser("plans", help="read or write one plan by hand")
    p_plans.add_argument("action", choices=["get", "apply"])
    p_plans.add_argument("target", help="plan id (get) or a JSON file (apply)")
    p_plans.set_defaults(func=_plans)

    p_outbox = sub.add_parser("outbox", help="change events not yet published to Kafka")
    p_outbox.add_argument("action", choices=["status", "drain"])
    p_outbox.set_defaults(func=_outbox)

    p_ingest = sub.add_parser("ingest", help="stream change events: Kafka -> bronze -> silver")
    ingest_mode = p_ingest.add_mutually_exclusive_group()
    ingest_mode.add_argument(
        "--once", action="store_true", help="process everything available, then exit"
    )
    ingest_mode.add_argument(
        "--lag", action="store_true", help="print how far a running ingest is behind, then exit"
    )
    ingest_mode.add_argument(
        "--wait",
        action="store_true",
        help="wait until a running ingest (e.g. the stack's supervised one) has caught up",
    )
    p_ingest.add_argument(
        "--timeout-s", type=_positive_float, default=900.0, help="with --wait (default 900)"
    )
    p_ingest.set_defaults(func=_ingest)

    p_indexer = sub.add_parser(
        "indexer", help="keep the search index current: Kafka -> Elasticsearch in real time"
    )
    indexer_mode = p_indexer.add_mutually_exclusive_group()
    indexer_mode.add_argument(
        "--once", action="store_true", help="index what the topic holds now, then exit"
    )
    indexer_mode.add_argument(
        "--wait",
        action="store_true",
        help="wait until a running indexer (e.g. the stack's) has caught up with the topic",
    )
    p_indexer.add_argument(
        "--timeout-s", type=_positive_float, default=300.0, help="with --wait (default 300)"
    )
    p_indexer.set_defaults(func=_indexer)

    from lakehouse.api.auth import SCOPES

    p_api = sub.add_parser(
        "api",
        help="the plan API: serve it, mint a local token, or smoke-test a running one "
        "(one plan created, read, patched, searched for, deleted)",
    )
    p_api.add_argument("action", choices=["serve", "token", "smoke"])
    p_api.add_argument("--subject", default="local-user", help="with `token`: who it is for")
    p_api.add_argument(
        "--scope",
        action="append",
        choices=SCOPES,
        help="with `token`: a scope to grant (repeatable; default plans:read)",
    )
    p_api.add_argument(
        "--ttl-s", type=_positive_int, help="with `token`: lifetime (default api.token_ttl_s)"
    )
    p_api.add_argument(
        "--timeout-s",
        type=_positive_float,
        default=30.0,
        help="with `smoke`: how long search may take to find the plan (default 30)",
    )
    p_api.set_defaults(func=_api)

    p_reindex = sub.add_parser(
        "reindex",
        help="rebuild the search index from silver into a new index and swap the alias onto it",
    )
    p_reindex.set_defaults(func=_reindex)

    p_quarantine = sub.add_parser("quarantine", help="count and show quarantined records")
    p_quarantine.add_argument("--reason", help="with --show: only records with this reason")
    p_quarantine.add_argument(
        "--show", type=_non_negative_int, default=5, help="latest records to print (default 5)"
    )
    p_quarantine.set_defaults(func=_quarantine)

    p_snapshot = sub.add_parser("snapshot", help="copy the Mongo plans collection into bronze")
    p_snapshot.add_argument(
        "--bootstrap", action="store_true", help="then load the snapshot into silver"
    )
    p_snapshot.set_defaults(func=_snapshot)

    p_reconcile = sub.add_parser(
        "reconcile", help="compare the latest snapshot with silver (exit 3 on differences)"
    )
    p_reconcile.set_defaults(func=_reconcile)

    p_jobs = sub.add_parser("jobs", help="the gold batch jobs (what jobs/*.py run)")
    jobs_sub = p_jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    jobs_sub.add_parser("list", help="the jobs and what they build")
    p_run = jobs_sub.add_parser("run", help="run one job, or `all` in order")
    p_run.add_argument("name", help="cost_analysis, service_patterns, anomaly_detection or all")
    p_run.add_argument("--full", action="store_true", help="rebuild instead of refreshing")
    p_run.add_argument(
        "--mode",
        choices=["train", "score", "both"],
        default="score",
        help="anomaly_detection: train, score (default) or both",
    )
    p_jobs.set_defaults(func=_jobs)

    p_quality = sub.add_parser(
        "quality", help="data quality suites, their history and table profiles"
    )
    quality_sub = p_quality.add_subparsers(dest="quality_command", required=True, metavar="ACTION")
    p_qrun = quality_sub.add_parser(
        "run", help="run the suites (exit 1 when an error-severity check fails)"
    )
    quality_operations.add_run_arguments(p_qrun)
    p_qreport = quality_sub.add_parser("report", help="latest results per check and run history")
    p_qreport.add_argument(
        "--runs", type=_positive_int, default=10, help="runs of history to list (default 10)"
    )
    p_qreport.add_argument(
        "--html", action="store_true", help="also write the history page with charts"
    )
    p_qprofile = quality_sub.add_parser(
        "profile", help="profile a table into an HTML report with charts"
    )
    p_qprofile.add_argument("table", help="table name, e.g. gold.plan_costs")
    p_quality.set_defaults(func=_quality)

    p_publish = sub.add_parser(
        "publish",
        help="run the quality suites, then mirror gold to PostgreSQL unless an error check failed",
    )
    p_publish.set_defaults(func=_publish)

    p_maintain = sub.add_parser(
        "maintain",
        help="compact small files (OPTIMIZE), Z-order clustered tables, VACUUM old files",
    )
    from lakehouse import maintenance

    maintenance.add_arguments(p_maintain)
    p_maintain.set_defaults(func=_maintain)

    p_summary = sub.add_parser(
        "summary", help="tables and row counts, latest quality run, anomalies, server URLs"
    )
    p_summary.set_defaults(func=_summary)

    from lakehouse.serving.superset import DEFAULT_SPEC

    p_superset = sub.add_parser("superset", help="Superset as code")
    p_superset.add_argument(
        "action",
        choices=["provision"],
        help="provision: create or update the warehouse connection, datasets, charts and "
        "dashboard of the spec (idempotent)",
    )
    p_superset.add_argument("--spec", default=str(DEFAULT_SPEC), help="dashboard spec (YAML)")
    p_superset.add_argument("--url", help="Superset's address (default: the local stack's)")
    p_superset.set_defaults(func=_superset)
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"lakehouse: configuration error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        message = _known_failure(exc)
        if message is None:
            raise
        print(f"lakehouse: {message}", file=sys.stderr)
        return 1


def _known_failure(exc: Exception) -> str | None:
    """A one-line explanation for failures a user can fix; None for genuine bugs."""
    from kafka.errors import KafkaError
    from pymongo.errors import ServerSelectionTimeoutError

    from lakehouse.ingest.indexer import IndexerError
    from lakehouse.ingest.reindex import ReindexError
    from lakehouse.ingest.snapshot import SnapshotMissing
    from lakehouse.plans.store import PlanStoreError
    from lakehouse.serving.mirror import MirrorError
    from lakehouse.serving.superset import SupersetError
    from lakehouse.spark import SparkSetupError
    from lakehouse.stack import StackError

    known = (
        StackError
        | SparkSetupError
        | PlanStoreError
        | SnapshotMissing
        | IndexerError
        | ReindexError
        | MirrorError
        | SupersetError
    )
    if isinstance(exc, known):
        return str(exc)
    if isinstance(exc, ServerSelectionTimeoutError):
        return f"cannot reach the MongoDB-protocol server ({exc}); is `lakehouse stack up` running?"
    if isinstance(exc, KafkaError):
        return f"Kafka: {type(exc).__name__}: {exc}; is `lakehouse stack up` running?"
    return None


if __name__ == "__main__":
    sys.exit(main())
