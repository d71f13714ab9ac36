"""The two consumers the ingest benchmark compares the lakehouse with: what a user might write
instead of Spark Structured Streaming.

- `PerEventConsumer`: kafka-python, and per event a version-guarded PostgreSQL upsert
  (autocommit) plus an Elasticsearch index/delete with the version as external version: the
  usual hand-written CDC consumer.
- `DeltalakeConsumer`: kafka-python micro-batches written with the `deltalake` package (Rust,
  no JVM): bronze append, quarantine append, a version-guarded MERGE into current plans, one
  Elasticsearch bulk request; Kafka offsets committed after the writes (a replay is harmless).

Both check every record with the lakehouse's own contract (`parse_event`) and record, per
event, the seconds from its source ts_ms to the moment its writes returned.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from elasticsearch import helpers
from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord

from lakehouse import clients
from lakehouse.config import Config
from lakehouse.ingest import search
from lakehouse.plans.events import ChangeEvent, EventContractError, parse_event

PER_EVENT_TABLE = "bench_plans_current"


@dataclass
class Delivery:
    """What a consumer delivered: per-event latencies and when its last write returned."""

    silver_latency_s: list[float] = field(default_factory=list)
    index_latency_s: list[float] = field(default_factory=list)
    quarantined: int = 0
    last_delivered: float = 0.0  # wall clock (time.time())

    @property
    def events(self) -> int:
        return len(self.silver_latency_s) + self.quarantined


class Consumer(Protocol):
    delivery: Delivery

    def handle(self, records: list[ConsumerRecord]) -> None: ...

    def close(self) -> None: ...


def search_doc(event: ChangeEvent) -> dict[str, Any]:
    """The search document of a live plan event, as `lakehouse.ingest.search` builds it."""
    doc = event.after or {}
    return {
        "plan_id": event.plan_id,
        "version": event.version,
        "org": doc["_org"],
        "plan_type": doc["planType"],
        "creation_date": doc["creationDate"],
        "deductible": doc["planCostShares"]["deductible"],
        "copay": doc["planCostShares"]["copay"],
        "service_count": len(doc["linkedPlanServices"]),
        "services": [
            {
                "planservice_id": ps["objectId"],
                "service_id": ps["linkedService"]["objectId"],
                "name": ps["linkedService"]["name"],
                "org": ps["linkedService"]["_org"],
                "deductible": ps["planserviceCostShares"]["deductible"],
                "copay": ps["planserviceCostShares"]["copay"],
            }
            for ps in doc["linkedPlanServices"]
        ],
        "event_ts": event.ts_ms,
        "indexed_at": time.time_ns() // 1_000_000,
    }


class PerEventConsumer:
    def __init__(self, config: Config, root: Path, delivery: Delivery) -> None:
        self.config = config
        self.delivery = delivery
        self.pg = clients.pg_connect(config)
        self.pg.autocommit = True
        self.es = clients.es_client(config)
        with self.pg.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {PER_EVENT_TABLE}")
            cur.execute(
                f"CREATE TABLE {PER_EVENT_TABLE} (plan_id text PRIMARY KEY, version bigint NOT"
                " NULL, is_deleted boolean NOT NULL, doc jsonb, event_ts timestamptz NOT NULL,"
                " updated_at timestamptz NOT NULL DEFAULT now())"
            )
        search.ensure_index(config)

    def handle(self, records: list[ConsumerRecord]) -> None:
        for record in records:
            self._handle_one(record.key, record.value)

    def _handle_one(self, key: bytes | None, value: bytes | None) -> None:
        try:
            event = parse_event(key, value)
        except EventContractError:
            self.delivery.quarantined += 1
            return
        with self.pg.cursor() as cur:
            cur.execute(
                f"INSERT INTO {PER_EVENT_TABLE} (plan_id, version, is_deleted, doc, event_ts)"
                " VALUES (%s, %s, %s, %s, to_timestamp(%s / 1000.0))"
                " ON CONFLICT (plan_id) DO UPDATE SET version = EXCLUDED.version,"
                " is_deleted = EXCLUDED.is_deleted, doc = EXCLUDED.doc,"
                " event_ts = EXCLUDED.event_ts, updated_at = now()"
                f" WHERE {PER_EVENT_TABLE}.version < EXCLUDED.version",
                (
                    event.plan_id,
                    event.version,
                    event.op == "d",
                    None if event.after is None else json.dumps(event.after),
                    event.ts_ms,
                ),
            )
        self.delivery.silver_latency_s.append(time.time() - event.ts_ms / 1000)
        index = self.config.elasticsearch.index
        options = {"version": event.version, "version_type": "external_gte"}
        try:
            if event.op == "d":
                self.es.delete(index=index, id=event.plan_id, **options)
            else:
                self.es.index(index=index, id=event.plan_id, body=search_doc(event), **options)
        except Exception as exc:  # an older version (409) or a delete of nothing (404)
            if getattr(exc, "status_code", None) not in (404, 409):
                raise
        self.delivery.last_delivered = time.time()
        self.delivery.index_latency_s.append(self.delivery.last_delivered - event.ts_ms / 1000)

    def close(self) -> None:
        self.pg.close()
        self.es.close()


_TS = pa.timestamp("us", tz="UTC")
BRONZE_SCHEMA = pa.schema(
    [("key", pa.binary()), ("value", pa.binary()), ("topic", pa.string()),
     ("partition", pa.int32()), ("offset", pa.int64()), ("kafka_ts", _TS),
     ("ingested_at", _TS)]
)  # fmt: skip
QUARANTINE_SCHEMA = pa.schema(
    [("reason", pa.string()), ("detail", pa.string()), ("topic", pa.string()),
     ("partition", pa.int32()), ("offset", pa.int64()), ("value", pa.binary()),
     ("quarantined_at", _TS)]
)  # fmt: skip
PLANS_SCHEMA = pa.schema(
    [("plan_id", pa.string()), ("version", pa.int64()), ("is_deleted", pa.bool_()),
     ("op", pa.string()), ("event_id", pa.string()), ("event_ts", _TS), ("org", pa.string()),
     ("plan_type", pa.string()), ("deductible", pa.float64()), ("copay", pa.float64()),
     ("service_count", pa.int32()), ("doc", pa.string()), ("kafka_partition", pa.int32()),
     ("kafka_offset", pa.int64()), ("updated_at", _TS)]
)  # fmt: skip


class DeltalakeConsumer:
    def __init__(self, config: Config, root: Path, delivery: Delivery) -> None:
        self.config = config
        self.delivery = delivery
        self.es = clients.es_client(config)
        search.ensure_index(config)
        self.bronze, self.quarantine, self.plans = (
            str(root / "bronze"),
            str(root / "quarantine"),
            str(root / "plans"),
        )
        DeltaTable.create(self.bronze, BRONZE_SCHEMA)
        DeltaTable.create(self.quarantine, QUARANTINE_SCHEMA)
        DeltaTable.create(self.plans, PLANS_SCHEMA)

    def handle(self, records: list[ConsumerRecord]) -> None:
        if not records:
            return
        now = datetime.now(UTC)
        write_deltalake(self.bronze, _bronze_rows(records, now), mode="append")
        events: list[tuple[ChangeEvent, ConsumerRecord]] = []
        bad: list[dict[str, Any]] = []
        for record in records:
            try:
                events.append((parse_event(record.key, record.value), record))
            except EventContractError as exc:
                bad.append({"reason": exc.reason, "detail": exc.detail[:2000],
                            "topic": record.topic, "partition": record.partition,
                            "offset": record.offset, "value": record.value,
                            "quarantined_at": now})  # fmt: skip
        if bad:
            write_deltalake(
                self.quarantine, pa.Table.from_pylist(bad, QUARANTINE_SCHEMA), mode="append"
            )
        latest: dict[str, tuple[ChangeEvent, ConsumerRecord]] = {}
        for event, record in events:
            if event.plan_id not in latest or event.version > latest[event.plan_id][0].version:
                latest[event.plan_id] = (event, record)
        if latest:
            rows = pa.Table.from_pylist([_plan_row(e, r, now) for e, r in latest.values()],
                                        PLANS_SCHEMA)  # fmt: skip
            (
                DeltaTable(self.plans)
                .merge(rows, "t.plan_id = s.plan_id", source_alias="s", target_alias="t")
                .when_matched_update_all(predicate="s.version > t.version")
                .when_not_matched_insert_all()
                .execute()
            )
        merged = time.time()
        self._index([e for e, _ in latest.values()])
        indexed = time.time()
        self.delivery.quarantined += len(bad)
        self.delivery.silver_latency_s += [merged - e.ts_ms / 1000 for e, _ in events]
        self.delivery.index_latency_s += [indexed - e.ts_ms / 1000 for e, _ in events]
        self.delivery.last_delivered = indexed

    def _index(self, events: list[ChangeEvent]) -> None:
        index = self.config.elasticsearch.index
        actions = [
            {"_op_type": "delete", "_index": index, "_id": e.plan_id, "version": e.version,
             "version_type": "external_gte"}
            if e.op == "d"
            else {"_op_type": "index", "_index": index, "_id": e.plan_id, "version": e.version,
                  "version_type": "external_gte", "_source": search_doc(e)}
            for e in events
        ]  # fmt: skip
        _, errors = helpers.bulk(self.es, actions, raise_on_error=False, chunk_size=1000)
        failed = [e for e in errors if next(iter(e.values())).get("status") not in (404, 409)]
        if failed:
            raise RuntimeError(f"bulk index failed: {failed[:3]}")

    def close(self) -> None:
        self.es.close()


def _bronze_rows(records: list[ConsumerRecord], now: datetime) -> pa.Table:
    return pa.Table.from_pydict(
        {
            "key": [r.key for r in records],
            "value": [r.value for r in records],
            "topic": [r.topic for r in records],
            "partition": [r.partition for r in records],
            "offset": [r.offset for r in records],
            "kafka_ts": [datetime.fromtimestamp(r.timestamp / 1000, UTC) for r in records],
            "ingested_at": [now] * len(records),
        },
        BRONZE_SCHEMA,
    )


def _plan_row(event: ChangeEvent, record: ConsumerRecord, now: datetime) -> dict[str, Any]:
    doc = event.after
    return {
        "plan_id": event.plan_id,
        "version": event.version,
        "is_deleted": event.op == "d",
        "op": event.op,
        "event_id": event.event_id,
        "event_ts": datetime.fromtimestamp(event.ts_ms / 1000, UTC),
        "org": None if doc is None else doc["_org"],
        "plan_type": None if doc is None else doc["planType"],
        "deductible": None if doc is None else doc["planCostShares"]["deductible"],
        "copay": None if doc is None else doc["planCostShares"]["copay"],
        "service_count": None if doc is None else len(doc["linkedPlanServices"]),
        "doc": None if doc is None else json.dumps(doc, separators=(",", ":")),
        "kafka_partition": record.partition,
        "kafka_offset": record.offset,
        "updated_at": now,
    }


CONSUMERS: dict[str, type[PerEventConsumer] | type[DeltalakeConsumer]] = {
    "per-event": PerEventConsumer,
    "deltalake": DeltalakeConsumer,
}


def consume(
    name: str,
    config: Config,
    root: Path,
    stop: threading.Event,
    expected: int | None = None,
    delivery: Delivery | None = None,
    max_records: int = 5000,
) -> Delivery:
    """Run consumer `name` on config's topic until `expected` events are delivered or `stop`
    is set; polls at most `max_records` per batch (the micro-batch size of `deltalake`). Pass
    `delivery` to watch its progress from another thread."""
    kafka = KafkaConsumer(
        config.kafka.topic,
        bootstrap_servers=config.kafka.bootstrap,
        group_id=f"bench-{name}-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    consumer = CONSUMERS[name](config, root, delivery or Delivery())
    reported = 0
    try:
        while not stop.is_set() and (expected is None or consumer.delivery.events < expected):
            polled = kafka.poll(timeout_ms=1000, max_records=max_records)
            consumer.handle([r for records in polled.values() for r in records])
            if polled:
                kafka.commit()
            if consumer.delivery.events - reported >= 5000:
                reported = consumer.delivery.events
                print(f"   {name}: {reported:,} events", file=sys.stderr)
    finally:
        kafka.close()
        consumer.close()
    return consumer.delivery
