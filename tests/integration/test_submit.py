"""Operators run jobs with spark-submit: the wrapper must hand Spark every jar and setting, so
that the smoke job reaches every real service. (The jobs' argument errors and runs that need no
service are in tests/unit/test_job_entrypoints.py.)"""

from __future__ import annotations

from submit_job import submit


def test_spark_submit_runs_the_smoke_job(local_stack, tmp_path):
    result = submit("jobs/smoke.py", warehouse=tmp_path / "wh")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    verdicts = [
        line.split(" - ")[0] for line in result.stdout.splitlines() if line.startswith("smoke ")
    ]
    assert verdicts == [
        "smoke delta: ok",
        "smoke deequ: ok",
        "smoke kafka: ok",
        "smoke mongo: ok",
        "smoke elasticsearch: ok",
        "smoke postgres: ok",
    ]
    assert (tmp_path / "wh" / "smoke" / "delta_roundtrip" / "_delta_log").is_dir()
