"""The ingest supervisor, driven as a real process with tiny Python children."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lakehouse.stack.supervisor import (
    Decision,
    RestartPolicy,
    SupervisorStatus,
    backoff_delay,
    decide,
    read_status,
)

# Counts its runs in `runs`; the first FAIL_RUNS runs exit with FAIL_CODE. A run that stays
# writes its pid to `ready` once its SIGTERM handler is in place, so a test never signals a child
# that could still die of the default action instead.
CHILD = """
import os, pathlib, signal, sys
folder, fail_runs, fail_code, on_term = pathlib.Path(sys.argv[1]), *sys.argv[2:]
runs_file = folder / "runs"
runs = int(runs_file.read_text()) + 1 if runs_file.exists() else 1
runs_file.write_text(str(runs))
if runs <= int(fail_runs):
    sys.exit(int(fail_code))
def on_sigterm(signum, frame):
    (folder / "got_sigterm").write_text(str(signum))
    sys.exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN if on_term == "ignore" else on_sigterm)
(folder / "ready.tmp").write_text(str(os.getpid()))
os.replace(folder / "ready.tmp", folder / "ready")  # whole or absent: the test reads it at once
while True:
    signal.pause()
"""


class Run:
    """One supervisor process, its status file and its log."""

    def __init__(self, folder: Path, proc: subprocess.Popen[bytes]) -> None:
        self.folder, self.proc = folder, proc
        self.status_file, self.log = folder / "status.json", folder / "supervisor.log"

    def status(self) -> SupervisorStatus:
        status = read_status(self.status_file)
        assert status is not None, f"no status file; log:\n{self.log.read_text()}"
        return status

    def state(self) -> str | None:
        """None until the supervisor has written its first status."""
        status = read_status(self.status_file)
        return status.state if status else None

    def runs(self) -> int:
        return int((self.folder / "runs").read_text())

    def stop(self) -> tuple[int, float]:
        """SIGTERM to the supervisor only (not its group): exit status and seconds it took."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=15), time.monotonic() - started


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s}s waiting for {what}"
        time.sleep(0.02)


def gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


@pytest.fixture
def supervise(tmp_path: Path) -> Iterator[Callable[..., Run]]:
    runs: list[Run] = []

    def start(fail_runs: int, fail_code: int = 3, on_term: str = "exit", *options: str) -> Run:
        script = tmp_path / "child.py"
        script.write_text(CHILD)
        child = [sys.executable, str(script), str(tmp_path), str(fail_runs), str(fail_code)]
        argv = [sys.executable, "-m", "lakehouse.stack.supervisor", "--name", "ingest"]
        argv += ["--status-file", str(tmp_path / "status.json"), "--initial-backoff-s", "0.05"]
        argv += ["--max-backoff-s", "0.2", *options, "--", *child, on_term]
        with open(tmp_path / "supervisor.log", "wb") as log:
            # Own session, like under the stack: the cleanup below can kill the whole group.
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        runs.append(Run(tmp_path, proc))
        return runs[-1]

    yield start
    for run in runs:  # a failed test must not leave a supervisor or a child behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.proc.pid, signal.SIGKILL)
        run.proc.wait(timeout=10)


def test_restarts_a_failing_child_then_stops_it_gracefully(supervise: Callable[..., Run]) -> None:
    run = supervise(2)
    ready = run.folder / "ready"
    wait_until(lambda: ready.exists() and run.state() == "running", "the third run")
    child_pid = int(ready.read_text())
    status = run.status()
    assert (status.child_pid, status.restarts, status.last_exit_code) == (child_pid, 2, 3)
    assert (status.name, status.supervisor_pid, status.next_start) == ("ingest", run.proc.pid, None)
    assert status.command[-4:] == [str(run.folder), "2", "3", "exit"]

    code, _ = run.stop()

    assert code == 0
    assert (run.folder / "got_sigterm").read_text() == str(int(signal.SIGTERM))
    final = run.status()
    assert (final.state, final.child_pid, final.restarts, final.last_exit_code) == (
        "stopped",
        None,
        2,
        0,
    )
    assert run.runs() == 3
    assert gone(child_pid)
    log = run.log.read_text()
    assert log.count("child started") == 3
    assert "restart in 0.05s (attempt 1)" in log and "restart in 0.1s (attempt 2)" in log
    assert "stopping: SIGTERM to child" in log and log.rstrip().endswith("stopped")


def test_a_clean_exit_ends_supervision_without_restart(supervise: Callable[..., Run]) -> None:
    run = supervise(1, 0)

    assert run.proc.wait(timeout=10) == 0
    status = run.status()
    assert (status.state, status.child_pid, status.restarts, status.last_exit_code) == (
        "stopped",
        None,
        0,
        0,
    )
    assert run.runs() == 1


def test_a_child_ignoring_sigterm_is_killed_after_the_stop_timeout(
    supervise: Callable[..., Run],
) -> None:
    run = supervise(0, 3, "ignore", "--stop-timeout-s", "0.5")
    ready = run.folder / "ready"
    wait_until(lambda: ready.exists() and run.state() == "running", "the child")
    child_pid = int(ready.read_text())

    code, took_s = run.stop()

    assert code == 0
    assert took_s >= 0.5
    status = run.status()
    assert (status.state, status.child_pid, status.last_exit_code) == (
        "stopped",
        None,
        -signal.SIGKILL,
    )
    assert gone(child_pid)
    assert f"child pid {child_pid} still running after 0.5s: SIGKILL" in run.log.read_text()


def test_a_permanently_failing_child_is_given_up(supervise: Callable[..., Run]) -> None:
    run = supervise(1000, 7, "exit", "--max-restarts", "3")

    assert run.proc.wait(timeout=10) == 1
    status = run.status()
    assert (status.state, status.child_pid, status.restarts, status.last_exit_code) == (
        "failed",
        None,
        3,
        7,
    )
    assert run.runs() == 4
    assert "giving up: the child failed 4 times in a row" in run.log.read_text()


def test_a_stop_during_the_backoff_exits_at_once(supervise: Callable[..., Run]) -> None:
    run = supervise(1000, 5, "exit", "--initial-backoff-s", "30", "--max-backoff-s", "30")
    wait_until(lambda: run.state() == "backoff", "the backoff")
    assert run.status().next_start is not None

    code, took_s = run.stop()

    assert code == 0
    assert took_s < 5, "waited for the 30 s backoff"
    status = run.status()
    assert (status.state, status.restarts, status.next_start) == ("stopped", 0, None)
    assert run.runs() == 1


def test_backoff_doubles_from_the_initial_delay_up_to_the_cap() -> None:
    assert [backoff_delay(n, 1.0, 60.0) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert [backoff_delay(n, 0.05, 0.2) for n in range(1, 5)] == [0.05, 0.1, 0.2, 0.2]


def test_restart_decision() -> None:
    policy = RestartPolicy(
        initial_backoff_s=1, max_backoff_s=60, stable_after_s=120, max_restarts=3
    )
    assert decide(0, 5.0, 2, policy) == Decision("done", 0)
    assert decide(1, 5.0, 0, policy) == Decision("restart", 1, 1)
    assert decide(-9, 5.0, 2, policy) == Decision("restart", 3, 4)
    assert decide(1, 5.0, 3, policy) == Decision("give_up", 4)
    # A long healthy run resets both the streak and the delay.
    assert decide(1, 120.0, 3, policy) == Decision("restart", 1, 1)


def test_read_status_tolerates_a_missing_or_foreign_file(tmp_path: Path) -> None:
    assert read_status(tmp_path / "missing.json") is None
    (tmp_path / "other.json").write_text('{"unrelated": true}')
    assert read_status(tmp_path / "other.json") is None
    (tmp_path / "torn.json").write_text('{"name": "ing')
    assert read_status(tmp_path / "torn.json") is None
