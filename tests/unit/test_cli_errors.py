"""Unit tests for lakehouse.cli error handling and `lakehouse config` (no services, no Spark)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import yaml

from lakehouse.cli import main
from lakehouse.config import load_config


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI reads os.environ: drop every LAKEHOUSE_* variable (conftest sets LAKEHOUSE_ENV)."""
    for var in list(os.environ):
        if var.startswith("LAKEHOUSE_"):
            monkeypatch.delenv(var)


def test_unknown_environment_returns_2_and_names_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--env", "nope", "config"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("lakehouse: configuration error: no configuration for environment 'nope'")
    assert "known environments: local, prod, test" in err


def test_unknown_environment_from_lakehouse_env(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LAKEHOUSE_ENV", "staging")
    assert main(["config"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "environment 'staging'" in err


def test_bad_env_override_returns_2_and_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LAKEHOUSE_SPARK_UI", "maybe")
    assert main(["--env", "test", "config"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "lakehouse: configuration error: "
        "LAKEHOUSE_SPARK_UI='maybe': spark.ui_enabled must be a boolean (true/false)\n"
    )


def test_bad_conf_file_returns_2_and_names_key_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "base.yaml").write_text("")
    (tmp_path / "dev.yaml").write_text("spark:\n  mastr: local[2]\n")
    monkeypatch.setenv("LAKEHOUSE_CONF_DIR", str(tmp_path))
    assert main(["--env", "dev", "config"]) == 2
    _, err = capsys.readouterr()
    assert "unknown key 'spark.mastr'" in err
    assert str(tmp_path / "dev.yaml") in err


def test_scalar_postgres_section_returns_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "dev.yaml").write_text("postgres: oops\n")
    monkeypatch.setenv("LAKEHOUSE_CONF_DIR", str(tmp_path))
    assert main(["--env", "dev", "config"]) == 2
    assert "postgres" in capsys.readouterr().err


@pytest.mark.parametrize("environment", ["local", "test", "prod"])
def test_config_prints_effective_configuration_as_yaml(
    environment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--env", environment, "config"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    printed = yaml.safe_load(out)
    assert isinstance(printed, dict)
    assert printed["kafka"]["topic"] == "plans.cdc"
    assert printed == dataclasses.asdict(load_config(environment, environ={}))


def test_config_defaults_to_local_and_shows_env_overrides(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LAKEHOUSE_KAFKA_TOPIC", "plans.cdc.v2")
    assert main(["config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    expected = dataclasses.asdict(load_config("local", environ={}))
    expected["kafka"]["topic"] = "plans.cdc.v2"
    assert printed == expected


@pytest.mark.parametrize("argv", [["frobnicate"], [], ["--env", "test"], ["stack", "reboot"]])
def test_bad_command_line_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(argv)
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: lakehouse")


@pytest.mark.parametrize("action", ["logs", "restart"])
def test_stack_logs_or_restart_without_a_service_lists_the_services(
    action: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stack", action]) == 2
    assert capsys.readouterr().err == (
        f"lakehouse: `stack {action}` needs a service name: postgres, kafka, ferretdb, "
        "elasticsearch, spark-master, spark-worker-1, spark-worker-2, mlflow, prefect, superset, "
        "jupyter, ingest, indexer, api, nightly\n"
    )


def test_stack_restart_of_an_unknown_service_names_the_known_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["stack", "restart", "kafak"]) == 1
    assert capsys.readouterr().err == (
        "lakehouse: unknown service 'kafak'; one of: postgres, kafka, ferretdb, elasticsearch, "
        "spark-master, spark-worker-1, spark-worker-2, mlflow, prefect, superset, jupyter, "
        "ingest, indexer, api, nightly\n"
    )


def test_stack_logs_prints_the_tail_of_the_service_log(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LAKEHOUSE_STATE_DIR", str(tmp_path))
    (tmp_path / "kafka").mkdir()
    (tmp_path / "kafka" / "kafka.log").write_text("one\ntwo\nthree\n")
    assert main(["stack", "logs", "kafka", "-n", "2"]) == 0
    assert capsys.readouterr().out == f"==> {tmp_path}/kafka/kafka.log <==\n    two\n    three\n"


def test_unreachable_mongo_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Port 9 (discard) on loopback: nothing listens there, the connection is refused at once.
    monkeypatch.setenv("LAKEHOUSE_MONGO_URI", "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=300")
    assert main(["plans", "get", "plan-1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lakehouse: cannot reach the MongoDB-protocol server (")
    assert err.rstrip().endswith("is `lakehouse stack up` running?")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ingest", "--onse"], "unrecognized arguments: --onse"),
        (["quarantine", "--show", "-1"], "argument --show: must be >= 0, got -1"),
        (["snapshot", "--bootstrap", "now"], "unrecognized arguments: now"),
        (["reconcile", "--all"], "unrecognized arguments: --all"),
        (["jobs"], "the following arguments are required: ACTION"),
        (["jobs", "run"], "the following arguments are required: name"),
        (["jobs", "run", "cost_analysis", "--mode", "predict"], "invalid choice: 'predict'"),
        (["jobs", "run", "all", "--fast"], "unrecognized arguments: --fast"),
    ],
)
def test_bad_medallion_and_jobs_arguments_exit_2_with_the_fix(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_ingest_override_exits_2_before_starting_spark(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LAKEHOUSE_INGEST_MAX_OFFSETS", "lots")
    assert main(["--env", "test", "ingest", "--once"]) == 2
    assert capsys.readouterr().err == (
        "lakehouse: configuration error: "
        "LAKEHOUSE_INGEST_MAX_OFFSETS='lots': ingest.max_offsets_per_trigger must be an integer\n"
    )


def test_unknown_job_exits_2_and_lists_the_jobs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["jobs", "run", "cost_analysys"]) == 2
    assert capsys.readouterr().err == (
        "lakehouse: unknown job 'cost_analysys'; known jobs: "
        "cost_analysis, service_patterns, anomaly_detection, all\n"
    )


def test_maintain_of_an_unknown_table_exits_2_and_lists_the_tables(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["maintain", "--table", "silver.plans", "--table", "silver.plan"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lakehouse maintain: unknown table(s) silver.plan; choose from ")
    assert "bronze.plan_events, " in err and "quality.metrics\n" in err


def test_maintain_zorder_flags_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["maintain", "--zorder", "--no-zorder"])
    assert exit_info.value.code == 2
    assert "not allowed with argument --zorder" in capsys.readouterr().err


def test_jobs_list_names_every_job(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["jobs", "list"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == ["cost_analysis", "service_patterns", "anomaly_detection", "all"]
