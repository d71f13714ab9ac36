"""Run a job the way operators do: `jobs/submit.sh` (spark-submit) with the test environment."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from lakehouse.config import PROJECT_ROOT


def submit(*args: str, warehouse: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LAKEHOUSE_ENV": "test", "LAKEHOUSE_WAREHOUSE": str(warehouse)}
    return subprocess.run(
        [str(PROJECT_ROOT / "jobs" / "submit.sh"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=PROJECT_ROOT,
    )
