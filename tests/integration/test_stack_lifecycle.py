"""`lakehouse stack` against real processes: a second, isolated stack on free ports.

The shared stack of the test run is left alone; this one gets its own state folder and ports so
that `down` can be checked to leave nothing behind.
"""

from __future__ import annotations

import dataclasses
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import free_port

from lakehouse import stack
from lakehouse.config import Config
from lakehouse.stack import manager, services
from lakehouse.stack.apps import APP_SERVICE_TYPES
from lakehouse.stack.process import StackError, process_alive, read_pid


def isolated_config(config: Config) -> Config:
    # Under the project's state folder: PostgreSQL runs as `postgres` and must reach it.
    state = Path(config.state_dir) / "test-stacks" / uuid.uuid4().hex[:8]
    pg, kafka, mongo = free_port(), free_port(), free_port()
    es = free_port(range(9250, 9300))  # the local Elasticsearch runner's port range
    return dataclasses.replace(
        config,
        state_dir=str(state),
        kafka=dataclasses.replace(config.kafka, bootstrap=f"127.0.0.1:{kafka}"),
        mongo=dataclasses.replace(config.mongo, uri=f"mongodb://127.0.0.1:{mongo}/"),
        postgres=dataclasses.replace(
            config.postgres, dsn=f"postgresql://lakehouse@127.0.0.1:{pg}/lakehouse"
        ),
        elasticsearch=dataclasses.replace(config.elasticsearch, url=f"http://127.0.0.1:{es}"),
        stack=dataclasses.replace(
            config.stack,
            kafka_controller_port=free_port(),
            elasticsearch_transport_port=free_port(),
            elasticsearch_heap="512m",
            kafka_heap="384m",
        ),
    )


@pytest.fixture
def isolated(config: Config) -> Iterator[Config]:
    cfg = isolated_config(config)
    try:
        yield cfg
    finally:
        stack.down(cfg, report=lambda _: None)
        shutil.rmtree(cfg.state_dir, ignore_errors=True)


def test_up_is_idempotent_and_down_leaves_no_process(isolated: Config):
    messages: list[str] = []
    rows = stack.up(isolated, report=messages.append)
    expected_ports = {
        "postgres": services.PostgresService(isolated).port,
        "kafka": services.KafkaService(isolated).port,
        "ferretdb": services.FerretDBService(isolated).port,
        "elasticsearch": services.ElasticsearchService(isolated).port,
    }
    assert {(r.name, r.port, r.health) for r in rows} == {
        (name, port, "healthy") for name, port in expected_ports.items()
    }
    assert all(r.pid for r in rows)
    first_pids = {r.name: r.pid for r in rows}

    messages.clear()
    again = stack.up(isolated, report=messages.append)
    assert {r.name: r.pid for r in again} == first_pids
    assert sorted(m.split(":")[0] for m in messages if "already running" in m) == sorted(
        expected_ports
    )

    stack.down(isolated, report=lambda _: None)
    for service in services.all_services(isolated):
        pid = first_pids[service.name]
        assert not process_alive(pid, service.marker), f"{service.name} pid {pid} survived down"
        assert read_pid(service.paths) is None
        assert not manager.port_in_use(service.port), f"{service.name} port still bound"
    leftovers = subprocess.run(
        ["pgrep", "-f", isolated.state_dir], capture_output=True, text=True
    ).stdout.split()
    assert leftovers == []
    # status lists the Spark cluster and the app servers too (never started here)
    apps = [cls.name for cls in APP_SERVICE_TYPES]
    cluster = ["spark-master", "spark-worker-1", "spark-worker-2"]
    assert {(r.name, r.health) for r in stack.status(isolated)} == {
        (name, "stopped") for name in [*expected_ports, *cluster, *apps]
    }


def test_port_taken_fails_with_a_clear_message(isolated: Config):
    kafka = services.KafkaService(isolated)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", kafka.port))
        squatter.listen()
        with pytest.raises(StackError) as err:
            manager.start_service(kafka, timeout_s=30, report=lambda _: None)
    message = str(err.value)
    assert f"port {kafka.port}" in message
    assert "already in use" in message
    assert "LAKEHOUSE_KAFKA_BOOTSTRAP" in message
    assert read_pid(kafka.paths) is None  # nothing was started


def test_missing_prerequisite_names_the_fix(isolated: Config, monkeypatch, tmp_path):
    monkeypatch.setattr(services, "JARS_DIR", tmp_path / "no-jars")
    with pytest.raises(StackError) as err:
        manager.start_service(services.KafkaService(isolated), timeout_s=5, report=print)
    assert str(err.value) == (
        f"kafka: missing prerequisites: kafka jars in {tmp_path / 'no-jars' / 'kafka'}: "
        "run `make jars` (Maven)"
    )


def test_elasticsearch_port_outside_runner_range_is_refused(isolated: Config):
    cfg = dataclasses.replace(
        isolated,
        elasticsearch=dataclasses.replace(isolated.elasticsearch, url="http://127.0.0.1:19200"),
    )
    with pytest.raises(StackError) as err:
        manager.start_service(services.ElasticsearchService(cfg), timeout_s=5, report=print)
    assert "an HTTP port of at most 9299" in str(err.value)
    assert "LAKEHOUSE_ES_URL asks for 19200" in str(err.value)


class _ShellService(services.Service):
    """A stand-in process (not a stand-in for a real service) to exercise start-up failures."""

    name = "shell"

    def __init__(self, config: Config, script: str) -> None:
        super().__init__(config)
        self.script = script

    @property
    def port(self) -> int:
        return free_port()

    @property
    def marker(self) -> str:
        return f"lakehouse-test-{self.name}"

    def command(self) -> list[str]:
        return ["bash", "-c", self.script, self.marker]

    def probe(self) -> None:
        raise ConnectionRefusedError("nothing listens")


def test_process_that_dies_reports_its_log(isolated: Config):
    service = _ShellService(isolated, "echo 'fatal: bad things'; exit 3")
    with pytest.raises(StackError) as err:
        manager.start_service(service, timeout_s=10, report=lambda _: None)
    assert "exited during start-up with status 3" in str(err.value)
    assert "fatal: bad things" in str(err.value)
    assert str(service.paths.log) in str(err.value)


def test_service_never_ready_times_out_and_names_the_probe(isolated: Config):
    service = _ShellService(isolated, "sleep 60; exit 0")  # bash stays the parent
    try:
        with pytest.raises(StackError) as err:
            manager.start_service(service, timeout_s=2, report=lambda _: None)
        assert "not ready after 2s" in str(err.value)
        assert "nothing listens" in str(err.value)
    finally:
        pid = read_pid(service.paths)
        assert pid is not None
        assert manager.stop_process(pid, service.marker, signal.SIGTERM, grace_s=5)
