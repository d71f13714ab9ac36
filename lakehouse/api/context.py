"""What the plan API's requests share for the life of one server: a pool of plan stores over
one Mongo client and one Kafka producer, the token verifier, the search client and the health
probes. Built once per server (`ApiContext.open`), closed when it stops; nothing global.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lakehouse import clients
from lakehouse.api.auth import TokenVerifier
from lakehouse.config import Config
from lakehouse.plans.store import PlanStore, make_producer

if TYPE_CHECKING:
    from kafka import KafkaProducer
    from pymongo import MongoClient

# A health check answers within about this long when a service is down.
HEALTH_TIMEOUT_MS = 2000


class StorePool:
    """`size` PlanStores (each is single-threaded) over a shared Mongo client and a shared,
    thread-safe producer made on the first write, so reads work while the broker is down."""

    def __init__(self, config: Config, size: int) -> None:
        self.config = config
        self._mongo: MongoClient = clients.mongo_client(config)
        self._producer: KafkaProducer | None = None
        self._producer_lock = threading.Lock()
        self._idle: queue.LifoQueue[PlanStore] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)
        self._made: list[PlanStore] = []

    def _shared_producer(self) -> KafkaProducer:
        with self._producer_lock:
            if self._producer is None:
                clients.ensure_topic(self.config, self.config.kafka.topic)
                self._producer = make_producer(self.config)
            return self._producer

    @contextlib.contextmanager
    def store(self) -> Iterator[PlanStore]:
        with self._slots:
            try:
                store = self._idle.get_nowait()
            except queue.Empty:
                store = PlanStore(
                    self.config, mongo=self._mongo, producer_factory=self._shared_producer
                )
                self._made.append(store)
            try:
                yield store
            finally:
                self._idle.put(store)

    def close(self) -> None:
        for store in self._made:
            with contextlib.suppress(Exception):
                store.close()
        if self._producer is not None:
            self._producer.close(timeout=10)
        self._mongo.close()


@dataclass
class ApiContext:
    config: Config
    stores: StorePool
    verifier: TokenVerifier
    search: Any  # elasticsearch.Elasticsearch
    _health_mongo: Any
    _admin: Any = None
    _admin_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, config: Config) -> ApiContext:
        return cls(
            config=config,
            stores=StorePool(config, config.api.store_pool_size),
            verifier=TokenVerifier(config),
            search=clients.es_client(config),
            _health_mongo=clients.mongo_client(config, selection_timeout_ms=HEALTH_TIMEOUT_MS),
        )

    def store_status(self) -> str:
        try:
            self._health_mongo.admin.command("ping")
        except Exception as exc:
            return f"down: {type(exc).__name__}"
        return "up"

    def broker_status(self) -> str:
        from kafka import KafkaAdminClient

        with self._admin_lock:
            try:
                if self._admin is None:
                    self._admin = KafkaAdminClient(
                        bootstrap_servers=self.config.kafka.bootstrap,
                        request_timeout_ms=HEALTH_TIMEOUT_MS,
                        bootstrap_timeout_ms=HEALTH_TIMEOUT_MS,
                    )
                self._admin.describe_cluster()
            except Exception as exc:
                if self._admin is not None:
                    with contextlib.suppress(Exception):
                        self._admin.close()
                self._admin = None
                return f"down: {type(exc).__name__}"
        return "up"

    def close(self) -> None:
        self.stores.close()
        self._health_mongo.close()
        with contextlib.suppress(Exception):
            self.search.close()
        if self._admin is not None:
            with contextlib.suppress(Exception):
                self._admin.close()
