"""A local Spark standalone cluster, started by `lakehouse stack up --cluster`: one master and
`cluster.workers` workers from the Spark inside the pyspark wheel (its `bin/spark-class`), plain
processes on 127.0.0.1 with the same contract as the data services (lakehouse/stack/services.py).

It exists to prove the scale-out path on one machine: the jobs run unchanged with spark-submit
against `spark://127.0.0.1:<cluster.master_port>`, their tasks on executors the workers launch.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pyspark

from lakehouse.config import Config
from lakehouse.stack.process import StackError
from lakehouse.stack.services import Service, java_binary

SPARK_HOME = Path(pyspark.__file__).parent
SPARK_CLASS = SPARK_HOME / "bin" / "spark-class"


def master_state(config: Config, timeout_s: float = 5.0) -> dict[str, Any]:
    """The master's own JSON view: status, workers, running and completed applications."""
    url = f"http://127.0.0.1:{config.cluster.master_web_port}/json/"
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.load(response)


class _SparkDaemon(Service):
    """What the master and the workers share: spark-class, loopback, a properties file."""

    @property
    def properties_file(self) -> Path:
        return self.paths.root / "spark-daemon.conf"

    @property
    def marker(self) -> str:
        # A path under this service's state folder: unique per stack, unlike a port.
        return f"--properties-file {self.properties_file}"

    def properties(self) -> dict[str, str]:
        # Spark silently tries the next 16 ports when one is taken; a daemon on another port
        # than configured would be probed (and used) at the wrong address, so fail instead.
        return {"spark.port.maxRetries": "0"}

    def missing_prerequisites(self) -> list[str]:
        missing = []
        if java_binary() is None:
            missing.append("a Java 17+ runtime (java on PATH or JAVA_HOME)")
        if not SPARK_CLASS.exists():
            missing.append(f"{SPARK_CLASS} (the pyspark package): run `make setup`")
        return missing

    def prepare(self) -> None:
        self.paths.root.mkdir(parents=True, exist_ok=True)
        lines = [f"{key} {value}" for key, value in self.properties().items()]
        self.properties_file.write_text("\n".join(lines) + "\n")

    def env(self) -> dict[str, str]:
        return {
            # Binds the RPC endpoints and the web UI (which otherwise listens on 0.0.0.0) to
            # loopback; executors inherit it from their worker.
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_DAEMON_MEMORY": self.config.cluster.daemon_memory,
            # Not a SPARK_CONF_DIR of the caller's environment: its spark-env.sh or log4j2 file
            # would change the cluster behind the stack's back.
            "SPARK_CONF_DIR": str(self.paths.root),
        }


class SparkMasterService(_SparkDaemon):
    name = "spark-master"

    @property
    def port(self) -> int:
        return self.config.cluster.master_port

    @property
    def port_setting(self) -> str:
        return "cluster.master_port (conf/)"

    def command(self) -> list[str]:
        cluster = self.config.cluster
        return [
            str(SPARK_CLASS), "org.apache.spark.deploy.master.Master",
            "--host", "127.0.0.1", "--port", str(cluster.master_port),
            "--webui-port", str(cluster.master_web_port),
            "--properties-file", str(self.properties_file),
        ]  # fmt: skip

    def probe(self) -> None:
        status = master_state(self.config).get("status")
        if status != "ALIVE":
            raise StackError(f"spark-master: status is {status}")


class SparkWorkerService(_SparkDaemon):
    """Worker `number` (1-based): `cluster.worker_cores` cores and `cluster.worker_memory` for
    executors, its web UI on `cluster.worker_web_port + number - 1`, executors under `work/`."""

    depends_on = ("spark-master",)

    def __init__(self, config: Config, number: int) -> None:
        # Set before the base class derives the state folder from the name.
        self.name = f"spark-worker-{number}"
        self.number = number
        super().__init__(config)

    @property
    def port(self) -> int:
        return self.config.cluster.worker_web_port + self.number - 1

    @property
    def port_setting(self) -> str:
        return "cluster.worker_web_port (conf/)"

    @property
    def work_dir(self) -> Path:
        return self.paths.root / "work"

    def properties(self) -> dict[str, str]:
        return {
            **super().properties(),
            # Each application leaves a copy of every connector jar per executor here; drop
            # the folders of finished applications after a day.
            "spark.worker.cleanup.enabled": "true",
            "spark.worker.cleanup.appDataTtl": str(24 * 3600),
        }

    def command(self) -> list[str]:
        cluster = self.config.cluster
        return [
            str(SPARK_CLASS), "org.apache.spark.deploy.worker.Worker",
            "--host", "127.0.0.1", "--cores", str(cluster.worker_cores),
            "--memory", cluster.worker_memory, "--webui-port", str(self.port),
            "--work-dir", str(self.work_dir),
            "--properties-file", str(self.properties_file),
            cluster.master_url,
        ]  # fmt: skip

    def probe(self) -> None:
        # Ready means registered with the master, not merely running its own web UI.
        address = f"http://127.0.0.1:{self.port}"
        workers = master_state(self.config).get("workers", [])
        if not any(w["webuiaddress"] == address and w["state"] == "ALIVE" for w in workers):
            raise StackError(f"{self.name}: not registered with the master yet")


def is_cluster_service(name: str) -> bool:
    return name == SparkMasterService.name or name.startswith("spark-worker-")


def cluster_services(config: Config) -> list[Service]:
    """The master, then its workers (dependencies first, as `stack up` expects)."""
    workers = [SparkWorkerService(config, n) for n in range(1, config.cluster.workers + 1)]
    return [SparkMasterService(config), *workers]


def cluster_urls(config: Config) -> str:
    """How to use the cluster, printed by `lakehouse stack up --cluster`."""
    cluster = config.cluster
    return "\n".join(
        [
            f"  spark master  {cluster.master_url}  (UI http://127.0.0.1:{cluster.master_web_port})",
            f"  run a job on it: LAKEHOUSE_SPARK_MASTER={cluster.master_url} "
            "jobs/submit.sh jobs/cost_analysis.py",
        ]
    )


def private_cluster(config: Config, state_dir: Path, workers: int = 2) -> Config:
    """`config` with a cluster of its own beside a running stack (tests, benchmarks): state
    under `state_dir`, free loopback ports for the master, its web UI and each worker's web UI
    (worker N at `worker_web_port + N - 1`), workers of 1 core."""
    for _ in range(100):
        master, web, worker = (_free_port() for _ in range(3))
        ports = {master, web, *range(worker, worker + workers)}
        if len(ports) == 2 + workers and all(_bindable(port) for port in ports):
            cluster = dataclasses.replace(
                config.cluster,
                master_port=master,
                master_web_port=web,
                worker_web_port=worker,
                workers=workers,
                worker_cores=1,
            )
            return dataclasses.replace(config, state_dir=str(state_dir), cluster=cluster)
    raise StackError("no free loopback ports for a private cluster")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
