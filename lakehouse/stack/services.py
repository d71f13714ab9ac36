"""The four services of the local stack, each a plain process bound to 127.0.0.1.

A service knows how to check its prerequisites, prepare its state folder once, start, answer a
real readiness probe (a query, a metadata request, a ping; not an open port) and stop.
"""

from __future__ import annotations

import base64
import glob
import json
import os
import pwd
import shutil
import signal
import subprocess
import urllib.request
import uuid
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

from lakehouse.config import PROJECT_ROOT, Config, postgres_password
from lakehouse.stack.process import ServicePaths, StackError

BUILD_DIR = PROJECT_ROOT / "build"
JARS_DIR = BUILD_DIR / "jars"
FERRETDB_BINARY = BUILD_DIR / "bin" / "ferretdb"


def host_port(address: str, default_port: int) -> tuple[str, int]:
    """'host:port' or a URL -> (host, port); the first address of a comma-separated list."""
    first = address.split(",")[0].strip()
    parsed = urlsplit(first if "://" in first else f"//{first}")
    return parsed.hostname or "127.0.0.1", parsed.port or default_port


def java_binary() -> str | None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and Path(java_home, "bin", "java").exists():
        return str(Path(java_home, "bin", "java"))
    return shutil.which("java")


class Service(ABC):
    # A class attribute, except for services run several times (Spark workers) that name each
    # instance.
    name: str
    depends_on: ClassVar[tuple[str, ...]] = ()
    stop_signal: ClassVar[int] = signal.SIGTERM
    # False for a process that serves no port of its own (its probe says whether it works).
    listens: ClassVar[bool] = True

    def __init__(self, config: Config) -> None:
        self.config = config
        self.paths = ServicePaths(Path(config.state_dir) / self.name)

    @property
    @abstractmethod
    def port(self) -> int: ...

    @property
    @abstractmethod
    def marker(self) -> str:
        """A fragment of this service's command line that identifies our process."""

    @property
    def port_setting(self) -> str:
        """The config setting (env var) a user changes to move this service to another port."""
        return ""

    def missing_prerequisites(self) -> list[str]:
        return []

    def prepare(self) -> None:
        """One-time initialisation of the state folder (idempotent)."""

    @abstractmethod
    def command(self) -> list[str]: ...

    def env(self) -> dict[str, str]:
        return {}

    def run_as(self) -> str | None:
        return None

    @abstractmethod
    def probe(self) -> None:
        """Return when the service answers a real request; raise otherwise."""

    def after_ready(self) -> None:
        """Idempotent set-up that needs the running service (databases, ...)."""


class PostgresService(Service):
    """PostgreSQL from the Debian package, one throwaway cluster under the state folder."""

    name = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: roll back open transactions, exit cleanly

    @property
    def _dsn(self):
        return urlsplit(self.config.postgres.dsn)

    @property
    def port(self) -> int:
        return self._dsn.port or 5432

    @property
    def port_setting(self) -> str:
        return "LAKEHOUSE_POSTGRES_DSN"

    @property
    def user(self) -> str:
        return self._dsn.username or "lakehouse"

    @property
    def database(self) -> str:
        return self._dsn.path.lstrip("/") or "lakehouse"

    @property
    def marker(self) -> str:
        return f"-D {self.paths.data}"

    @staticmethod
    def bin_dir() -> Path | None:
        versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), reverse=True)
        if versions:
            return Path(versions[0]).parent
        found = shutil.which("postgres")
        return Path(found).resolve().parent if found else None

    def run_as(self) -> str | None:
        # initdb and postgres refuse to run as root; the Debian package provides a `postgres` user.
        return "postgres" if os.geteuid() == 0 else None

    def missing_prerequisites(self) -> list[str]:
        missing = []
        if self.bin_dir() is None:
            missing.append(
                "PostgreSQL server binaries (Debian package postgresql-15): run `make setup`"
            )
        if self.run_as():
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                missing.append("system user 'postgres' (created by the postgresql-15 package)")
        return missing

    def prepare(self) -> None:
        self.paths.root.mkdir(parents=True, exist_ok=True)
        (self.paths.root / "run").mkdir(exist_ok=True)
        user = self.run_as()
        if user:
            _chown_tree(self.paths.root, user)
            _check_reachable_by(self.paths.root, user)
        if (self.paths.data / "PG_VERSION").exists():
            return
        bin_dir = self.bin_dir()
        assert bin_dir is not None
        result = subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(self.paths.data), "-U", self.user,
             "--auth=trust", "-E", "UTF8", "--no-locale"],
            capture_output=True, text=True, user=user,
        )  # fmt: skip
        if result.returncode != 0:
            raise StackError(f"postgres: initdb failed:\n{result.stdout}\n{result.stderr}")

    def command(self) -> list[str]:
        bin_dir = self.bin_dir()
        assert bin_dir is not None
        return [
            str(bin_dir / "postgres"),
            "-D", str(self.paths.data),
            "-p", str(self.port),
            "-k", str(self.paths.root / "run"),
            "-c", "listen_addresses=127.0.0.1",
            "-c", f"fsync={'on' if self.config.stack.postgres_fsync else 'off'}",
            "-c", "max_connections=200",
        ]  # fmt: skip

    def _connect(self, database: str = "postgres"):
        import psycopg2

        return psycopg2.connect(
            host="127.0.0.1", port=self.port, user=self.user, dbname=database,
            password=postgres_password(), connect_timeout=3,
        )  # fmt: skip

    def probe(self) -> None:
        with self._connect() as conn, conn.cursor() as cur:
            cur.execute("select 1")
            cur.fetchone()
        conn.close()

    def after_ready(self) -> None:
        for database in (self.database, self.config.stack.ferretdb_database):
            self.create_database(database)

    def create_database(self, database: str) -> None:
        """Create `database` unless it exists."""
        conn = self._connect()
        conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        try:
            with conn.cursor() as cur:
                cur.execute("select 1 from pg_database where datname = %s", (database,))
                if cur.fetchone() is None:
                    cur.execute(f'create database "{database}"')
        finally:
            conn.close()


class KafkaService(Service):
    """Kafka in KRaft mode, one combined broker+controller, from the Maven jars."""

    name = "kafka"

    @property
    def port(self) -> int:
        return host_port(self.config.kafka.bootstrap, 9092)[1]

    @property
    def port_setting(self) -> str:
        return "LAKEHOUSE_KAFKA_BOOTSTRAP"

    @property
    def properties_file(self) -> Path:
        return self.paths.root / "server.properties"

    @property
    def marker(self) -> str:
        return str(self.properties_file)

    def missing_prerequisites(self) -> list[str]:
        return _java_prerequisites("kafka")

    def _classpath(self) -> str:
        return str(JARS_DIR / "kafka" / "*")

    def prepare(self) -> None:
        self.paths.root.mkdir(parents=True, exist_ok=True)
        controller = self.config.stack.kafka_controller_port
        self.properties_file.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.bootstrap.servers=127.0.0.1:{controller}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    f"log.dirs={self.paths.data}",
                    "num.partitions=3",
                    # Topics are created explicitly by the code that owns them.
                    "auto.create.topics.enable=false",
                    "offsets.topic.replication.factor=1",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "",
                ]
            )
        )
        log4j = self.paths.root / "log4j2.properties"
        log4j.write_text(
            "rootLogger.level=INFO\nrootLogger.appenderRef.stdout.ref=STDOUT\n"
            "appender.stdout.type=Console\nappender.stdout.name=STDOUT\n"
            "appender.stdout.layout.type=PatternLayout\n"
            "appender.stdout.layout.pattern=[%d] %p %m (%c)%n\n"
            "logger.kafka.name=kafka\nlogger.kafka.level=INFO\n"
            "logger.apache.name=org.apache.kafka\nlogger.apache.level=WARN\n"
        )
        if (self.paths.data / "meta.properties").exists():
            return
        # Kafka cluster ids are 16 random bytes, base64url without padding.
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        java = java_binary()
        assert java is not None
        result = subprocess.run(
            [java, "-cp", self._classpath(), "kafka.tools.StorageTool", "format", "--standalone",
             # `=` form: a random id may start with "-", which argparse would take for an option
             f"--cluster-id={cluster_id}", "-c", str(self.properties_file), "--ignore-formatted"],
            capture_output=True, text=True,
        )  # fmt: skip
        if result.returncode != 0:
            raise StackError(f"kafka: storage format failed:\n{result.stdout}\n{result.stderr}")

    def command(self) -> list[str]:
        java = java_binary()
        assert java is not None
        heap = self.config.stack.kafka_heap
        return [
            java, f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={self.paths.root / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.paths.root / 'logs'}",
            "-cp", self._classpath(), "kafka.Kafka", str(self.properties_file),
        ]  # fmt: skip

    def probe(self) -> None:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(
            bootstrap_servers=f"127.0.0.1:{self.port}",
            request_timeout_ms=5000,
        )
        try:
            cluster = admin.describe_cluster()
            if not cluster.get("brokers"):
                raise StackError("kafka: metadata lists no broker yet")
        finally:
            admin.close()


class FerretDBService(Service):
    """FerretDB 1.24: the MongoDB wire protocol over a database of the local PostgreSQL."""

    name = "ferretdb"
    depends_on = ("postgres",)

    @property
    def port(self) -> int:
        return host_port(self.config.mongo.uri, 27017)[1]

    @property
    def port_setting(self) -> str:
        return "LAKEHOUSE_MONGO_URI"

    @property
    def marker(self) -> str:
        return f"-listen-addr 127.0.0.1:{self.port}"

    def missing_prerequisites(self) -> list[str]:
        if not FERRETDB_BINARY.exists():
            return [f"FerretDB binary {FERRETDB_BINARY}: run `make ferretdb` (go build)"]
        return []

    def command(self) -> list[str]:
        return [str(FERRETDB_BINARY), "-listen-addr", f"127.0.0.1:{self.port}"]

    def env(self) -> dict[str, str]:
        pg = urlsplit(self.config.postgres.dsn)
        password = postgres_password()
        auth = f"{pg.username or 'lakehouse'}" + (f":{password}" if password else "")
        url = f"postgres://{auth}@127.0.0.1:{pg.port or 5432}/{self.config.stack.ferretdb_database}"
        return {"FERRETDB_POSTGRESQL_URL": url}

    def probe(self) -> None:
        from pymongo import MongoClient

        client: MongoClient = MongoClient(
            f"mongodb://127.0.0.1:{self.port}/", serverSelectionTimeoutMS=3000
        )
        try:
            client.admin.command("ping")
            client.list_database_names()  # reaches the PostgreSQL backend, not just the listener
        finally:
            client.close()


class ElasticsearchService(Service):
    """Elasticsearch 7.10.2 in one JVM via codelibs' cluster runner (see conf/maven)."""

    name = "elasticsearch"

    @property
    def port(self) -> int:
        return host_port(self.config.elasticsearch.url, 9200)[1]

    @property
    def port_setting(self) -> str:
        return "LAKEHOUSE_ES_URL"

    @property
    def marker(self) -> str:
        return f"-basePath {self.paths.root / 'base'}"

    # The cluster runner gives node 1 the port base+1 and refuses any HTTP port above 9299.
    MAX_HTTP_PORT: ClassVar[int] = 9299

    def missing_prerequisites(self) -> list[str]:
        problems = _java_prerequisites("elasticsearch")
        if self.port > self.MAX_HTTP_PORT:
            problems.append(
                f"an HTTP port of at most {self.MAX_HTTP_PORT} (the local Elasticsearch runner's "
                f"limit); LAKEHOUSE_ES_URL asks for {self.port}"
            )
        return problems

    def prepare(self) -> None:
        conf = self.paths.root / "conf"
        for sub in ("base", "conf", "data", "logs"):
            (self.paths.root / sub).mkdir(parents=True, exist_ok=True)
        (conf / "elasticsearch.yml").write_text(
            "network.host: 127.0.0.1\n"
            "discovery.type: single-node\n"
            f"transport.port: {self.config.stack.elasticsearch_transport_port}\n"
            "action.destructive_requires_name: true\n"
        )

    def command(self) -> list[str]:
        java = java_binary()
        assert java is not None
        heap = self.config.stack.elasticsearch_heap
        root = self.paths.root
        return [
            java, f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC",
            "-Dlog4j2.formatMsgNoLookups=true",
            "-cp", str(JARS_DIR / "elasticsearch" / "*"),
            "org.codelibs.elasticsearch.runner.ElasticsearchClusterRunner",
            "-basePath", str(root / "base"),
            "-confPath", str(root / "conf"),
            "-dataPath", str(root / "data"),
            "-logsPath", str(root / "logs"),
            "-numOfNode", "1",
            # The runner numbers nodes from 1 and gives node N the HTTP port base + N.
            "-baseHttpPort", str(self.port - 1),
            "-clusterName", "lakehouse-local",
        ]  # fmt: skip

    def probe(self) -> None:
        url = f"http://127.0.0.1:{self.port}/_cluster/health"
        with urllib.request.urlopen(url, timeout=5) as response:
            health = json.load(response)
        if health.get("status") not in {"green", "yellow"}:
            raise StackError(f"elasticsearch: cluster status is {health.get('status')}")


SERVICE_TYPES: tuple[type[Service], ...] = (
    PostgresService,
    KafkaService,
    FerretDBService,
    ElasticsearchService,
)


def all_services(config: Config, apps: bool = False, cluster: bool = False) -> list[Service]:
    """The data services; with `cluster`, the local Spark standalone cluster of
    lakehouse/stack/cluster.py; with `apps`, the servers of lakehouse/stack/apps.py."""
    from lakehouse.stack.apps import APP_SERVICE_TYPES
    from lakehouse.stack.cluster import cluster_services

    services = [cls(config) for cls in SERVICE_TYPES]
    if cluster:
        services += cluster_services(config)
    return services + ([cls(config) for cls in APP_SERVICE_TYPES] if apps else [])


def _java_prerequisites(service: str) -> list[str]:
    missing = []
    if java_binary() is None:
        missing.append("a Java 17+ runtime (java on PATH or JAVA_HOME)")
    jars = JARS_DIR / service
    if not any(jars.glob("*.jar")):
        missing.append(f"{service} jars in {jars}: run `make jars` (Maven)")
    return missing


def _chown_tree(root: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        st = path.stat()
        if (st.st_uid, st.st_gid) != (entry.pw_uid, entry.pw_gid):
            os.chown(path, entry.pw_uid, entry.pw_gid)


def _check_reachable_by(folder: Path, user: str) -> None:
    result = subprocess.run(["test", "-w", str(folder)], user=user, capture_output=True)
    if result.returncode != 0:
        raise StackError(
            f"postgres: user {user!r} cannot reach {folder}; PostgreSQL refuses to run as root, so "
            f"every parent folder needs o+x (or set LAKEHOUSE_STATE_DIR to e.g. /var/tmp/lakehouse)"
        )
