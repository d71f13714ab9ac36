"""The machine a benchmark ran on and the code it ran, recorded beside its figures."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def machine() -> dict:
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kb = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "java": java.splitlines()[0],
        "mongo_server": "FerretDB 1.24.2 over PostgreSQL 15 (fsync as configured)",
        "kafka": "4.3.1 single KRaft node",
        "elasticsearch": "7.10.2 single node (codelibs cluster runner)",
    }


def git_state() -> dict:
    """The commit the benchmark ran on and the files that differed from it (the summary marks
    such runs: the figures may come from code that was never committed)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True)
        return done.stdout.rstrip("\n")

    dirty = [line[3:] for line in git("status", "--porcelain").splitlines()]
    return {"commit": git("rev-parse", "HEAD"), "uncommitted": dirty}
