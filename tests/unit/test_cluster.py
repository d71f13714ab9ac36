"""The local Spark standalone cluster without starting it: configuration, command lines, status
rules, and what a cluster driver ships to its executors (lakehouse.spark)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from lakehouse.config import PROJECT_ROOT, ConfigError, load_config
from lakehouse.spark import on_this_machine, package_zip
from lakehouse.stack.cluster import (
    SparkMasterService,
    SparkWorkerService,
    cluster_services,
    is_cluster_service,
    private_cluster,
)
from lakehouse.stack.manager import ServiceStatus, stack_ok
from lakehouse.stack.services import all_services


def test_defaults_give_a_master_and_two_one_core_workers_on_loopback() -> None:
    config = load_config("local", environ={})
    assert config.cluster.master_url == "spark://127.0.0.1:7077"
    services = cluster_services(config)
    assert [(s.name, s.port) for s in services] == [
        ("spark-master", 7077),
        ("spark-worker-1", 8081),
        ("spark-worker-2", 8082),
    ]
    master, worker, _ = services
    assert master.command()[1:] == [
        "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", "7077",
        "--webui-port", "8080", "--properties-file", str(master.properties_file),
    ]  # fmt: skip
    assert worker.command()[1:] == [
        "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "1",
        "--memory", "2g", "--webui-port", "8081", "--work-dir", str(worker.work_dir),
        "--properties-file", str(worker.properties_file), "spark://127.0.0.1:7077",
    ]  # fmt: skip
    assert worker.depends_on == ("spark-master",)
    # the web UIs bind 0.0.0.0 unless told otherwise
    assert all(s.env()["SPARK_LOCAL_IP"] == "127.0.0.1" for s in services)
    assert Path(worker.paths.root).name == "spark-worker-1"
    assert master.marker != worker.marker


def test_daemons_never_drift_to_another_port(tmp_path: Path) -> None:
    config = load_config("local", environ={"LAKEHOUSE_STATE_DIR": str(tmp_path)})
    for service in cluster_services(config):
        service.prepare()
        assert "spark.port.maxRetries 0" in service.properties_file.read_text().splitlines()


def test_the_cluster_is_listed_only_when_asked_for() -> None:
    config = load_config("local", environ={})
    assert not any(is_cluster_service(s.name) for s in all_services(config, apps=True))
    names = [s.name for s in all_services(config, cluster=True)]
    assert names[-3:] == ["spark-master", "spark-worker-1", "spark-worker-2"]


def _row(name: str, health: str) -> ServiceStatus:
    return ServiceStatus(name, 1, None, health, "log")


def test_a_stopped_cluster_is_fine_an_unhealthy_one_is_not() -> None:
    data = [_row("kafka", "healthy")]
    assert stack_ok([*data, _row("spark-master", "stopped"), _row("spark-worker-2", "stopped")])
    assert not stack_ok([*data, _row("spark-worker-1", "unhealthy: not registered")])
    assert not stack_ok([_row("kafka", "stopped"), _row("spark-master", "healthy")])


def _conf(tmp_path: Path, cluster_yaml: str) -> Path:
    (tmp_path / "base.yaml").write_text("")
    (tmp_path / "dev.yaml").write_text(textwrap.dedent(cluster_yaml))
    return tmp_path


@pytest.mark.parametrize(
    ("cluster_yaml", "message"),
    [
        ("cluster:\n  workers: 0\n", "cluster.workers and cluster.worker_cores must be >= 1"),
        ("cluster:\n  worker_cores: 0\n", "cluster.workers and cluster.worker_cores must be >= 1"),
        ("cluster:\n  master_web_port: 70000\n", "cluster.*_port must be TCP ports"),
        ("cluster:\n  worker_web_port: 65535\n", "cluster.*_port must be TCP ports"),
        ("cluster:\n  master_web_port: 8082\n", "overlap cluster.master_port or"),
        ("cluster:\n  master_port: 8080\n", "master_port and master_web_port must differ"),
    ],
)
def test_bad_cluster_settings_are_refused(tmp_path: Path, cluster_yaml: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("*", r"\*")):
        load_config("dev", conf_dir=_conf(tmp_path, cluster_yaml), environ={})


def test_a_worker_number_picks_its_own_port_and_folder() -> None:
    config = load_config("local", environ={})
    third = SparkWorkerService(config, 3)
    assert (third.name, third.port, third.paths.root.name) == ("spark-worker-3", 8083, third.name)
    assert SparkMasterService(config).name == "spark-master"


@pytest.mark.parametrize(
    ("master", "here"),
    [
        ("local[*]", True),
        ("local[2]", True),
        ("spark://127.0.0.1:7077", True),
        ("spark://localhost:17077", True),
        ("spark://spark-master:7077", False),
        ("k8s://https://10.0.0.1:443", False),
        ("yarn", False),
    ],
)
def test_which_masters_run_everything_on_this_machine(master: str, here: bool) -> None:
    assert on_this_machine(master) is here


def test_package_zip_is_importable_with_its_package_data(tmp_path: Path) -> None:
    archive = package_zip(tmp_path / "lakehouse.zip")
    names = zipfile.ZipFile(archive).namelist()
    assert "lakehouse/__init__.py" in names
    assert "lakehouse/schemas/plan.schema.json" in names
    assert "lakehouse/gold/jobs.py" in names  # lakehouse.gold is a namespace package
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert package_zip(tmp_path / "again.zip").read_bytes() == archive.read_bytes()

    # What an executor does: the zip first on sys.path, then import the contract's modules
    # (the schema is package data, read through importlib.resources).
    probe = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(1, {str(archive)!r})
        import lakehouse.gold.jobs
        from lakehouse.plans import schema
        assert schema.PLAN_SCHEMA["type"] == "object"
        print(lakehouse.__file__)
        print(lakehouse.gold.jobs.__file__)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        f"{archive}/lakehouse/__init__.py",
        f"{archive}/lakehouse/gold/jobs.py",
    ]
    assert str(PROJECT_ROOT / "lakehouse") not in result.stdout


def test_a_private_cluster_gets_its_own_state_and_free_distinct_ports(tmp_path: Path) -> None:
    base = load_config("local")
    private = private_cluster(base, tmp_path / "state", workers=3)
    c = private.cluster
    ports = [c.master_port, c.master_web_port, *range(c.worker_web_port, c.worker_web_port + 3)]
    assert (private.state_dir, c.workers, c.worker_cores, len(set(ports))) == (
        str(tmp_path / "state"),
        3,
        1,
        5,
    )
    assert base.cluster.master_port not in ports
    # everything else is the base configuration's
    assert private.kafka == base.kafka and c.worker_memory == base.cluster.worker_memory
