"""The spark-submit entrypoints where no service is involved: argument and configuration errors
exit 2 naming what is wrong, and jobs on an empty lake say so instead of crashing."""

from __future__ import annotations

import subprocess

from submit_job import submit

from lakehouse.config import PROJECT_ROOT
from lakehouse.tables import MAINTAINED_TABLES


def test_spark_submit_with_bad_environment_exits_2_naming_it(tmp_path):
    result = submit("jobs/smoke.py", "--env", "staging", warehouse=tmp_path / "wh")
    assert result.returncode == 2
    # spark-submit forwards the Python driver's stderr on its own stdout
    assert "no configuration for environment 'staging'" in result.stdout + result.stderr


def test_submit_without_a_job_prints_usage():
    result = subprocess.run(
        [str(PROJECT_ROOT / "jobs" / "submit.sh")], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "usage: jobs/submit.sh JOB.py [job args...]"


def test_spark_submit_quality_job_fails_on_missing_gold(tmp_path):
    result = submit("jobs/data_quality.py", "--layer", "gold", warehouse=tmp_path / "wh")
    assert result.returncode == 1, result.stdout[-2000:]
    assert "quality FAILED: 6 tables, 6 checks, 0 passed, 6 error(s), 0 warning(s)" in result.stdout
    missing = [line for line in result.stdout.splitlines() if "table exists" in line]
    assert len(missing) == 6 and all(" FAIL " in line for line in missing)


def test_spark_submit_maintenance_job_names_an_unknown_table_and_runs_on_an_empty_lake(tmp_path):
    bad = submit("jobs/maintain_tables.py", "--table", "silver.plan", warehouse=tmp_path / "wh")
    assert bad.returncode == 2
    assert "unknown table(s) silver.plan; choose from bronze.plan_events" in bad.stdout + bad.stderr

    empty = submit("jobs/maintain_tables.py", "--no-zorder", warehouse=tmp_path / "wh")
    assert empty.returncode == 0, empty.stdout[-2000:] + empty.stderr[-2000:]
    tables = len(MAINTAINED_TABLES)
    assert f"maintain: {tables} tables under {tmp_path / 'wh'} (compact, vacuum keeping 168 h)" in (
        empty.stdout
    )
    assert "maintain: 0 tables, 0 files compacted away" in empty.stdout
