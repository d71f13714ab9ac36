"""Keep one long-lived command (the streaming `lakehouse ingest`) running: restart it with a
doubling backoff when it fails, stop it gracefully on SIGTERM/SIGINT, and publish its state in a
JSON status file that the stack's readiness probe and `lakehouse stack status` read.

The stack starts plain processes and only probes them, so a streaming job that dies on a broker
hiccup would stay down until someone noticed. This supervisor is the process the stack starts;
the job is its child.

    python -m lakehouse.stack.supervisor --name ingest --status-file state/ingest/status.json
        --max-backoff-s 60 -- .venv/bin/lakehouse ingest
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

State = Literal["starting", "running", "backoff", "stopping", "stopped", "failed"]


@dataclass(frozen=True)
class SupervisorStatus:
    """The status file's content; `last_exit_code` is negative -N when a signal N killed it."""

    name: str
    supervisor_pid: int
    state: State
    command: list[str] = field(default_factory=list)
    child_pid: int | None = None
    restarts: int = 0
    last_exit_code: int | None = None
    last_start: str | None = None
    next_start: str | None = None


def read_status(path: Path) -> SupervisorStatus | None:
    """The last status written, or None when there is none (or it is not a status file)."""
    try:
        return SupervisorStatus(**json.loads(Path(path).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def write_status(path: Path, status: SupervisorStatus) -> None:
    # Readers poll this file at any moment: they must see the old or the new state, never half.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(status), indent=2) + "\n")
    os.replace(tmp, path)


@dataclass(frozen=True)
class RestartPolicy:
    """When to restart and how long to wait; the CLI options with the same names."""

    initial_backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    # A child that ran this long was healthy: its failure starts a new streak at the first delay.
    stable_after_s: float = 120.0
    max_restarts: int = 10  # quick failures in a row tolerated before giving up


@dataclass(frozen=True)
class Decision:
    action: Literal["done", "restart", "give_up"]
    failures: int  # quick failures in a row, this exit included
    delay_s: float = 0.0


def backoff_delay(failures: int, initial_s: float, max_s: float) -> float:
    """Seconds to wait before restarting after the `failures`-th failure in a row (1-based)."""
    return min(max_s, initial_s * 2 ** (failures - 1))


def decide(exit_code: int, run_s: float, failures: int, policy: RestartPolicy) -> Decision:
    """What to do after the child exits; `failures` counts the quick failures before this one."""
    if exit_code == 0:
        return Decision("done", 0)
    failures = 1 if run_s >= policy.stable_after_s else failures + 1
    if failures > policy.max_restarts:
        return Decision("give_up", failures)
    delay = backoff_delay(failures, policy.initial_backoff_s, policy.max_backoff_s)
    return Decision("restart", failures, delay)


def describe_exit(code: int) -> str:
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


def _utc(after_s: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=after_s)).isoformat(timespec="milliseconds")


class Supervisor:
    def __init__(
        self,
        name: str,
        status_file: Path,
        command: Sequence[str],
        policy: RestartPolicy,
        stop_timeout_s: float = 60.0,
    ) -> None:
        self.name, self.status_file, self.command = name, status_file, list(command)
        self.policy, self.stop_timeout_s = policy, stop_timeout_s
        self.stop_requested = False
        self.status = SupervisorStatus(name, os.getpid(), "starting", self.command)
        status_file.parent.mkdir(parents=True, exist_ok=True)

    def _set(self, **changes: object) -> None:
        self.status = replace(self.status, **changes)
        write_status(self.status_file, self.status)

    def _log(self, message: str) -> None:
        print(f"{_utc()} supervisor[{self.name}]: {message}", flush=True)

    def _on_signal(self, _signum: int, _frame: object) -> None:
        # Only a flag, polled by the loop: a handler that did I/O could interrupt a status write.
        self.stop_requested = True

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        failures = restarts = 0
        while not self.stop_requested:
            self._set(state="starting", restarts=restarts, next_start=None)
            started = time.monotonic()
            code = self._run_child()
            run_s = time.monotonic() - started
            self._log(f"child exited ({describe_exit(code)}) after {run_s:.1f}s")
            # Written with the state that follows, so no reader sees "running" without a child.
            self.status = replace(self.status, child_pid=None, last_exit_code=code)
            if self.stop_requested:
                break
            decision = decide(code, run_s, failures, self.policy)
            failures = decision.failures
            if decision.action == "done":
                break
            if decision.action == "give_up":
                self._log(
                    f"giving up: the child failed {failures} times in a row, each within "
                    f"{self.policy.stable_after_s:g}s of starting; fix it, then restart the service"
                )
                self._set(state="failed")
                return 1
            restarts += 1
            self._log(f"restart in {decision.delay_s:g}s (attempt {restarts})")
            self._set(state="backoff", next_start=_utc(decision.delay_s))
            if not self._sleep(decision.delay_s):
                break
        self._set(state="stopped", child_pid=None, next_start=None)
        self._log("stopped")
        return 0

    def _run_child(self) -> int:
        try:
            # Same process group as the supervisor: the stack's group SIGKILL reaches it too.
            proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL)
        except OSError as exc:
            self._log(f"cannot start {self.command[0]}: {exc}")
            return 127  # as a shell would: a failure, so a bad path ends in "failed", not a crash
        try:
            self._set(state="running", child_pid=proc.pid, last_start=_utc())
            self._log(f"child started (pid {proc.pid}): {' '.join(self.command)}")
            while not self.stop_requested:
                try:
                    return proc.wait(timeout=0.1)
                except subprocess.TimeoutExpired:
                    pass
            return self._stop_child(proc)
        finally:
            if proc.poll() is None:  # an unexpected error above must not orphan the child
                proc.kill()
                proc.wait()

    def _stop_child(self, proc: subprocess.Popen[bytes]) -> int:
        timeout = self.stop_timeout_s
        self._set(state="stopping")
        self._log(f"stopping: SIGTERM to child pid {proc.pid}, SIGKILL after {timeout:g}s")
        proc.terminate()
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._log(f"child pid {proc.pid} still running after {timeout:g}s: SIGKILL")
            proc.kill()
            return proc.wait()

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless a stop arrives first; False when it did."""
        deadline = time.monotonic() + seconds
        while not self.stop_requested and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))
        return not self.stop_requested


def main(argv: Sequence[str] | None = None) -> int:
    d = RestartPolicy()
    p = argparse.ArgumentParser(
        prog="python -m lakehouse.stack.supervisor",
        usage="%(prog)s --name NAME --status-file PATH [options] -- CMD [ARGS ...]",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--name", required=True, help="service name for the log and the status file")
    p.add_argument("--status-file", required=True, type=Path, metavar="PATH")
    for flag, kind, default, meaning in (
        ("--initial-backoff-s", float, d.initial_backoff_s, "delay before the first restart"),
        ("--max-backoff-s", float, d.max_backoff_s, "the delay doubles up to this"),
        ("--stable-after-s", float, d.stable_after_s, "a run this long resets the backoff"),
        ("--max-restarts", int, d.max_restarts, "quick failures in a row before exit status 1"),
        ("--stop-timeout-s", float, 60.0, "on SIGTERM/SIGINT: wait for the child, then SIGKILL"),
    ):
        p.add_argument(flag, type=kind, default=default, help=f"{meaning} (default %(default)s)")
    p.add_argument("command", nargs="+", metavar="CMD", help="after --: the command and its args")
    a = p.parse_args(argv)
    policy = RestartPolicy(a.initial_backoff_s, a.max_backoff_s, a.stable_after_s, a.max_restarts)
    return Supervisor(a.name, a.status_file, a.command, policy, a.stop_timeout_s).run()


if __name__ == "__main__":
    sys.exit(main())
