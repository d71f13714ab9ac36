"""Helpers for integration tests: free ports, a private topic and Mongo database per test."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import time
import uuid

from kafka import KafkaConsumer, TopicPartition

from lakehouse import clients
from lakehouse.config import Config

# Prefect's test server (a uvicorn subprocess) waits 30 s by default; on 2 cores shared with a
# Spark JVM and the stack it has taken longer, and a slow start is not what these tests test.
PREFECT_STARTUP_S = 180


def prefect_test_server() -> contextlib.AbstractContextManager[None]:
    """Prefect's test harness (a temporary API server and database), patient on a busy machine."""
    from prefect.testing.utilities import prefect_test_harness

    return prefect_test_harness(server_startup_timeout=PREFECT_STARTUP_S)


def isolated_source(config: Config, name: str) -> Config:
    """`config` with a fresh change-event topic and Mongo database for one test."""
    suffix = uuid.uuid4().hex[:8]
    return dataclasses.replace(
        config,
        kafka=dataclasses.replace(config.kafka, topic=f"test.{name}.{suffix}"),
        mongo=dataclasses.replace(config.mongo, database=f"test_{name}_{suffix}"),
    )


def end_offsets(config: Config) -> dict[int, int]:
    from lakehouse.ingest.lag import kafka_end_offsets

    return kafka_end_offsets(config)


def read_topic(config: Config, timeout_s: float = 30.0) -> list[tuple[str, dict, int, int]]:
    """Every record of the topic from the beginning: (key, value, partition, offset)."""
    consumer = KafkaConsumer(
        bootstrap_servers=config.kafka.bootstrap, group_id=None, enable_auto_commit=False
    )
    try:
        topic = config.kafka.topic
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        end = consumer.end_offsets(partitions)
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[tuple[str, dict, int, int]] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"read {len(records)} records of {topic} in {timeout_s}s")
            for batch in consumer.poll(timeout_ms=500).values():
                records += [
                    (r.key.decode(), json.loads(r.value), r.partition, r.offset) for r in batch
                ]
        return records
    finally:
        consumer.close()


def drop_database(config: Config) -> None:
    client = clients.mongo_client(config)
    try:
        client.drop_database(config.mongo.database)
    finally:
        client.close()


def drop_schema(config: Config, schema: str) -> None:
    """Drop a PostgreSQL schema a test mirrored into, with everything in it."""
    from lakehouse import clients

    conn = clients.pg_connect(config)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        conn.close()


def free_port(candidates: range | None = None) -> int:
    for port in candidates or [0]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError(f"no free port in {candidates}")


def isolated_lakehouse(config: Config, warehouse: str, name: str) -> Config:
    """`isolated_source` plus a private warehouse and Elasticsearch index, with the topic
    created (3 partitions)."""
    isolated = isolated_source(config, name)
    suffix = isolated.kafka.topic.rsplit(".", 1)[-1]
    isolated = dataclasses.replace(
        isolated,
        warehouse=warehouse,
        checkpoints="",
        elasticsearch=dataclasses.replace(config.elasticsearch, index=f"test-{name}-{suffix}"),
    )
    clients.ensure_topic(isolated, isolated.kafka.topic)
    return isolated


def produce(
    config: Config, records: list[tuple[bytes | None, bytes | None]]
) -> list[tuple[int, int]]:
    """Send raw (key, value) records in order; returns each one's (partition, offset)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=config.kafka.bootstrap, acks="all", enable_idempotence=True
    )
    try:
        futures = [producer.send(config.kafka.topic, key=k, value=v) for k, v in records]
        producer.flush()
        return [(m.partition, m.offset) for m in (f.get(timeout=30) for f in futures)]
    finally:
        producer.close()


def env_for(config: Config) -> dict[str, str]:
    """Environment variables that point a `lakehouse` subprocess at `config`'s isolated parts."""
    import os

    return {
        **os.environ,
        "LAKEHOUSE_ENV": config.environment,
        "LAKEHOUSE_WAREHOUSE": config.warehouse,
        "LAKEHOUSE_KAFKA_TOPIC": config.kafka.topic,
        "LAKEHOUSE_MONGO_DATABASE": config.mongo.database,
        "LAKEHOUSE_ES_INDEX": config.elasticsearch.index,
    }


class TcpProxy:
    """A loopback TCP forwarder the test can cut and restore: a real service behind it looks
    down (connection refused) while `down()` is in effect."""

    def __init__(self, target_port: int) -> None:
        import threading

        self.target_port = target_port
        self.port = free_port()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._connections: list[socket.socket] = []

    def up(self) -> None:
        import threading

        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            connections, self._connections = self._connections, []
        for sock in [s for s in [listener] if s is not None] + connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        import threading

        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by down()
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class WebhookReceiver:
    """A real HTTP endpoint on loopback that records every JSON body POSTed to it."""

    def __init__(self) -> None:
        import http.server
        import threading

        received: list[dict] = []
        self.received = received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length) or b"null"))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/alerts"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def write_plan_costs(spark, config: Config, rows: list[tuple]) -> None:
    """Replace gold.plan_costs with `rows`, stamped with a watermark of the current silver
    versions, as a refresh would (silver tables are created empty if missing)."""
    from lakehouse import io, tables
    from lakehouse.gold.refresh import Watermark, overwrite

    silver = (tables.PLANS, tables.PLAN_SERVICES)
    for source in silver:
        io.ensure_table(spark, config, source)
    sources = {t.name: io.latest_version(spark, config, t) for t in silver}
    io.ensure_table(spark, config, tables.PLAN_COSTS)
    frame = spark.createDataFrame(rows, tables.GOLD_PLAN_COSTS)
    overwrite(frame, config, tables.PLAN_COSTS, Watermark(sources))
