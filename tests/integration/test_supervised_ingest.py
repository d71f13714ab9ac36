"""The streaming ingest as the stack runs it: a long-lived `lakehouse ingest` under the
supervisor. A crash (the process tree SIGKILLed) is followed by a restart that resumes from the
checkpoints; `ingest --wait`'s lag measure says when it has caught up; nothing is lost or
doubled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from lake_checks import assert_bronze_exactly_once, assert_lakehouse_matches
from support import drop_database, env_for, isolated_lakehouse, produce

from lakehouse.config import Config
from lakehouse.ingest import lag
from lakehouse.plans.scenario import event_history
from lakehouse.stack.supervisor import SupervisorStatus, read_status

pytestmark = pytest.mark.usefixtures("local_stack")

LAKEHOUSE = str(Path(sys.executable).with_name("lakehouse"))


def _until(condition: Callable[[], bool], timeout_s: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout_s:.0f}s; log:\n" + (
            log.read_text()[-4000:] if log.exists() else "(none)"
        )
        time.sleep(1)


def _process_tree(pid: int) -> list[int]:
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [pid] + [p for c in children.stdout.split() for p in _process_tree(int(c))]


def test_supervised_ingest_restarts_after_a_crash_and_loses_nothing(
    spark, config: Config, tmp_path: Path
) -> None:
    lake = isolated_lakehouse(config, str(tmp_path / "warehouse"), "supervised")
    events, final = event_history(31, plans=25, changes=120)
    half = len(events) // 2
    status_file, log = tmp_path / "supervisor.json", tmp_path / "ingest.log"

    def status() -> SupervisorStatus | None:
        return read_status(status_file)

    positions = produce(lake, [(e.key(), e.value()) for e in events[:half]])
    with open(log, "w") as out:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "lakehouse.stack.supervisor", "--name", "ingest",
             "--status-file", str(status_file), "--initial-backoff-s", "1",
             "--max-backoff-s", "2", "--stop-timeout-s", "40", "--", LAKEHOUSE, "ingest"],
            env=env_for(lake) | {"LAKEHOUSE_INGEST_TRIGGER_S": "1"},
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        _until(
            lambda: lag.measure(spark, lake).caught_up, 300, "the first half was not ingested", log
        )
        first = status()
        assert first is not None and (first.state, first.restarts) == ("running", 0)

        # A crash: the ingest's whole process tree (Python driver and Spark JVM) dies at once.
        assert first.child_pid is not None
        for pid in _process_tree(first.child_pid):
            os.kill(pid, signal.SIGKILL)
        _until(lambda: (s := status()) is not None and s.restarts == 1 and s.state == "running",
               60, "the supervisor did not restart the ingest", log)  # fmt: skip
        restarted = status()
        assert restarted is not None and restarted.child_pid != first.child_pid
        assert restarted.last_exit_code == -signal.SIGKILL

        positions += produce(lake, [(e.key(), e.value()) for e in events[half:]])
        assert lag.wait_caught_up(spark, lake, timeout_s=300, progress=print, poll_s=2)
        assert_bronze_exactly_once(spark, lake, positions)
        assert_lakehouse_matches(spark, lake, final)

        # A stop is passed on: the ingest stops its queries and the supervisor exits cleanly.
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=90) == 0
        stopped = status()
        assert stopped is not None and (stopped.state, stopped.child_pid) == ("stopped", None)
        assert "child started" in log.read_text() and json.loads(status_file.read_text())
    finally:
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)
        drop_database(lake)
