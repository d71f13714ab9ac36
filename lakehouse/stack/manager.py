"""`lakehouse stack up | down | status`: start services in parallel, wait on real probes, stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from lakehouse.config import Config
from lakehouse.stack.process import (
    StackError,
    log_tail,
    port_in_use,
    process_alive,
    read_pid,
    start_detached,
    stop_process,
)
from lakehouse.stack.services import Service, all_services

Reporter = Callable[[str], None]


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    port: int | None  # None: the service serves no port of its own
    pid: int | None
    health: str  # "healthy", "stopped", or "unhealthy: <reason>"
    log: str

    @property
    def healthy(self) -> bool:
        return self.health == "healthy"


def running_pid(service: Service) -> int | None:
    pid = read_pid(service.paths)
    return pid if pid is not None and process_alive(pid, service.marker) else None


def service_status(service: Service) -> ServiceStatus:
    pid = running_pid(service)
    if pid is None:
        health = "stopped"
    else:
        try:
            service.probe()
            health = "healthy"
        except Exception as exc:  # any probe failure is reported, not raised
            health = f"unhealthy: {_one_line(exc)}"
    port = service.port if service.listens else None
    return ServiceStatus(service.name, port, pid, health, str(service.paths.log))


def all_reachable(config: Config) -> bool:
    """True when every configured service answers its probe, whoever started it."""
    for service in all_services(config):
        try:
            service.probe()
        except Exception:  # unreachable or not ready: the caller decides whether to start it
            return False
    return True


def status(config: Config) -> list[ServiceStatus]:
    return [service_status(s) for s in all_services(config, apps=True, cluster=True)]


def stack_ok(rows: list[ServiceStatus]) -> bool:
    """Every data service healthy; app servers and the Spark cluster healthy or not started."""
    from lakehouse.stack.apps import APP_SERVICE_TYPES
    from lakehouse.stack.cluster import is_cluster_service

    apps = {cls.name for cls in APP_SERVICE_TYPES}

    def optional(name: str) -> bool:
        return name in apps or is_cluster_service(name)

    return all(r.healthy or (optional(r.name) and r.health == "stopped") for r in rows)


def format_status(rows: list[ServiceStatus]) -> str:
    header = ("SERVICE", "PORT", "PID", "HEALTH", "LOG")
    table = [header] + [
        (r.name, str(r.port or "-"), str(r.pid or "-"), r.health, r.log) for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) for row in table
    )


def start_service(service: Service, timeout_s: float, report: Reporter) -> str:
    """Start one service (or adopt it if already running) and wait until its probe passes."""
    pid = running_pid(service)
    if pid is not None:
        _wait_ready(service, pid, timeout_s, exit_code=lambda: None)
        where = f", port {service.port}" if service.listens else ""
        report(f"{service.name}: already running (pid {pid}{where})")
        return "already running"

    missing = service.missing_prerequisites()
    if missing:
        raise StackError(f"{service.name}: missing prerequisites: " + "; ".join(missing))
    if service.listens and port_in_use(service.port):
        hint = f" or set {service.port_setting} to a free port" if service.port_setting else ""
        raise StackError(
            f"{service.name}: port {service.port} on 127.0.0.1 is already in use by another "
            f"process (find it with `ss -ltnp 'sport = :{service.port}'`); stop it{hint}"
        )
    service.prepare()
    started = time.monotonic()
    proc = start_detached(
        service.command(), service.paths, env=service.env(), user=service.run_as()
    )
    pid = proc.pid
    where = f" on port {service.port}" if service.listens else ""
    report(f"{service.name}: started pid {pid}, waiting for readiness{where}")
    _wait_ready(service, pid, timeout_s, exit_code=proc.poll)
    service.after_ready()
    report(f"{service.name}: ready in {time.monotonic() - started:.1f}s")
    return "started"


def _wait_ready(
    service: Service, pid: int, timeout_s: float, exit_code: Callable[[], int | None]
) -> None:
    """Poll the probe until it passes; fail early if the process exits.

    `exit_code` is the child's own status when this process started it (definitive), and
    always None for an adopted process, which is then watched through /proc.
    """
    deadline = time.monotonic() + timeout_s
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        alive = process_alive(pid, service.marker)
        code = exit_code()  # after the /proc check, so a process that just died has its status
        if code is not None or not alive:
            status = f" with status {code}" if code is not None else ""
            raise StackError(
                f"{service.name}: process {pid} exited during start-up{status}; "
                f"see {service.paths.log}. Last lines:\n{log_tail(service.paths)}"
            )
        try:
            service.probe()
            return
        except Exception as exc:  # not ready yet: keep polling until the deadline
            last_error = _one_line(exc)
        time.sleep(0.5)
    raise StackError(
        f"{service.name}: not ready after {timeout_s:.0f}s (last probe: {last_error}); "
        f"see {service.paths.log}. Last lines:\n{log_tail(service.paths)}"
    )


def up(
    config: Config, report: Reporter = print, apps: bool = False, cluster: bool = False
) -> list[ServiceStatus]:
    """Start every data service, with `cluster` the local Spark standalone cluster and with
    `apps` every app server too, in parallel (respecting dependencies); idempotent.

    Raises StackError listing every service that failed; services that did start keep running
    so their state can be inspected (`lakehouse stack down` stops them).
    """
    return start_services(config, all_services(config, apps, cluster), report)


def up_cluster(config: Config, report: Reporter = print) -> list[ServiceStatus]:
    """Start only the local Spark standalone cluster (for a benchmark or a test that brings its
    own, next to data services someone else runs); `down(..., cluster_only=True)` stops it."""
    from lakehouse.stack.cluster import cluster_services

    return start_services(config, cluster_services(config), report)


def start_services(
    config: Config, services: list[Service], report: Reporter = print
) -> list[ServiceStatus]:
    """Start `services` in parallel, each after the ones it depends on (listed before it)."""
    by_name = {s.name: s for s in services}
    timeout = float(config.stack.startup_timeout_s)
    futures: dict[str, Future[str]] = {}
    lock = threading.Lock()

    def locked_report(message: str) -> None:
        with lock:
            report(message)

    def run(service: Service) -> str:
        for dependency in service.depends_on:
            try:
                futures[dependency].result()
            except Exception as exc:
                raise StackError(
                    f"{service.name}: not started because {dependency} failed"
                ) from exc
        return start_service(service, timeout, locked_report)

    with ThreadPoolExecutor(max_workers=len(by_name)) as pool:
        # Every service list names dependencies first, so their futures exist before use.
        for name, service in by_name.items():
            futures[name] = pool.submit(run, service)
        errors = [str(exc) for f in futures.values() if (exc := f.exception()) is not None]
    if errors:
        raise StackError("stack up failed:\n- " + "\n- ".join(errors))
    return [service_status(s) for s in by_name.values()]


def stop_service(service: Service, report: Reporter) -> None:
    """Stop one service if it runs (SIGKILL after the grace period) and forget its pid."""
    pid = read_pid(service.paths)
    if pid is not None and stop_process(pid, service.marker, service.stop_signal):
        report(f"{service.name}: stopped (pid {pid})")
    else:
        report(f"{service.name}: not running")
    service.paths.pid.unlink(missing_ok=True)


def restart(config: Config, name: str, report: Reporter = print) -> ServiceStatus:
    """Stop one service (if running) and start it again; its dependencies must be up."""
    services = {s.name: s for s in all_services(config, apps=True, cluster=True)}
    if name not in services:
        raise StackError(f"unknown service {name!r}; one of: {', '.join(services)}")
    service = services[name]
    stop_service(service, report)
    start_service(service, float(config.stack.startup_timeout_s), report)
    return service_status(service)


def down(config: Config, report: Reporter = print, cluster_only: bool = False) -> None:
    """Stop every service, apps and cluster included (dependents first), leaving data and logs
    in place; with `cluster_only`, just the local Spark cluster."""
    from lakehouse.stack.cluster import cluster_services

    services = cluster_services(config) if cluster_only else all_services(config, True, True)
    dependents_first = sorted(services, key=lambda s: len(s.depends_on), reverse=True)
    for service in dependents_first:
        stop_service(service, report)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
