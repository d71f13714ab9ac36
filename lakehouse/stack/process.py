"""Plain-process plumbing for the local stack: pid files, ports, detached starts, clean stops."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


class StackError(RuntimeError):
    """A service could not be started, probed or stopped; the message says which and why."""


@dataclass(frozen=True)
class ServicePaths:
    """Where one service keeps its data, logs and pid under the state folder."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / f"{self.root.name}.log"

    @property
    def pid(self) -> Path:
        return self.root / f"{self.root.name}.pid"


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something already listens on host:port (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def read_pid(paths: ServicePaths) -> int | None:
    try:
        return int(paths.pid.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def process_alive(pid: int, marker: str) -> bool:
    """Alive and still ours: the command line must contain `marker` (guards against pid reuse).

    /proc/<pid>/cmdline reads empty or stale while a process is exec'ing (a JVM launcher may
    re-exec itself), so a live process whose command line does not match is re-read briefly
    before it is declared someone else's.
    """
    for attempt in range(5):
        state = _proc_state(pid)
        if state in {"Z", "X", None}:
            return False
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return False
        if marker in cmdline:
            return True
        time.sleep(0.05 * (attempt + 1))
    return False


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    # The state letter follows the parenthesised command name, which may itself contain spaces.
    return stat.rsplit(")", 1)[1].split()[0]


def start_detached(
    argv: Sequence[str],
    paths: ServicePaths,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` in its own session, output appended to the service log; record its pid."""
    paths.root.mkdir(parents=True, exist_ok=True)
    with open(paths.log, "ab") as log:
        log.write(
            f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode()
        )
        log.flush()
        proc = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            user=user,
            start_new_session=True,
        )
    paths.pid.write_text(f"{proc.pid}\n")
    return proc


def stop_process(
    pid: int, marker: str, stop_signal: int = signal.SIGTERM, grace_s: float = 45.0
) -> bool:
    """Ask the process group to stop; SIGKILL after `grace_s`. True if it was running."""
    if not process_alive(pid, marker):
        return False
    _signal_group(pid, stop_signal)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not process_alive(pid, marker):
            _reap(pid)
            return True
        time.sleep(0.2)
    _signal_group(pid, signal.SIGKILL)
    for _ in range(50):
        if not process_alive(pid, marker):
            break
        time.sleep(0.1)
    _reap(pid)
    return True


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def _reap(pid: int) -> None:
    # When this very process started the service it is our child: collect it, no zombie left.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def log_tail(paths: ServicePaths, lines: int = 15) -> str:
    try:
        text = paths.log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log yet)"
    return "\n".join("    " + line[:300] for line in text[-lines:])
