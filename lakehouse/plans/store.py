"""The plan store: plan documents in the MongoDB-protocol server, one change event per write.

Consistency strategy (docs/change-events.md, "single-document outbox"): FerretDB has no
multi-document transactions, but a single-document write is atomic. Every write therefore stores
the new plan state *and* its pending change event in the same document (`_lakehouse.outbox`),
then publishes the event (idempotent producer, acks=all) and clears it on acknowledgement.

- If publishing fails, the write is committed and the operation raises `PublishError`: nothing
  is lost, the event waits in the outbox. `drain_outbox()` (`lakehouse outbox drain`) publishes
  every pending event with its original event_id, so consumers see a redelivery, not a new change.
- Before a plan is written again, its own pending event is published first; if that fails the
  new write is refused. Per plan, events therefore reach Kafka complete and in version order.
- A delete leaves a tombstone holding the last version, so a re-create continues the sequence.

Layout of a stored document: the plan's own fields, `_id` = plan objectId, and
`_lakehouse: {version, deleted, updated_ms, outbox?}`. Tombstones hold only `_id` and
`_lakehouse`. Shared services are kept in their own collection and never deleted with a plan.
"""

from __future__ import annotations

import contextlib
import copy
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lakehouse import clients
from lakehouse.config import Config
from lakehouse.plans.events import BAD_NUMBER, ChangeEvent, EventContractError, parse_event
from lakehouse.plans.merge import merge_patch
from lakehouse.plans.schema import validate_plan

if TYPE_CHECKING:
    from kafka import KafkaProducer
    from pymongo import MongoClient
    from pymongo.collection import Collection

META = "_lakehouse"
SERVICES_COLLECTION = "services"
LOCKS_COLLECTION = "plan_locks"
PUBLISH_TIMEOUT_S = 30.0
# How long a write waits for another writer of the same plan, and when a lock is taken to be
# left by a dead writer: well above the longest write (a publish waits PUBLISH_TIMEOUT_S).
LOCK_WAIT_S = 10.0
STALE_LOCK_MS = int(4 * PUBLISH_TIMEOUT_S * 1000)


class PlanStoreError(RuntimeError):
    """Base class of the store's own errors."""


class PlanNotFoundError(PlanStoreError, KeyError):
    pass


class PlanExistsError(PlanStoreError):
    pass


class PlanIdMismatchError(PlanStoreError, ValueError):
    """A replacement document names another plan than the one it replaces."""


class ConcurrentWriteError(PlanStoreError):
    """The plan changed between read and write (optimistic concurrency on the version)."""


class StaleVersionError(ConcurrentWriteError):
    """The write named the version it expects (an HTTP If-Match) and the plan is at another."""

    def __init__(self, plan_id: str, expected: int, current: int) -> None:
        super().__init__(f"plan {plan_id!r} is at version {current}, not {expected}")
        self.plan_id = plan_id
        self.expected = expected
        self.current = current


class PlanRejectedError(PlanStoreError, ValueError):
    """The write would publish a change event that breaks the contract (a control character,
    an over-long string, a number JSON cannot carry, a record over the size limit); nothing was
    written. `reason` is the contract's code (docs/change-events.md)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class PublishError(PlanStoreError):
    """The change event could not be published; see the message for what was committed."""


class EventRefused(PlanStoreError):
    """A pending event that can never be published (see RefusedEvent)."""

    def __init__(self, event: RefusedEvent) -> None:
        super().__init__(f"{event.plan_id} v{event.version}: {event.reason}: {event.detail}")
        self.event = event


@dataclass(frozen=True)
class WriteResult:
    event: ChangeEvent
    published: bool  # False in batch mode: confirmed later by `flush`


@dataclass(frozen=True)
class StoredPlan:
    """A live plan document and its version (what an ETag is made of)."""

    document: dict[str, Any]
    version: int


@dataclass(frozen=True)
class RefusedEvent:
    """A pending event that can never be published as it is: it breaks the contract (stored
    before the store checked it) or the broker refuses the record itself. It stays in the
    outbox until the plan's next write, which supersedes it."""

    plan_id: str
    version: int
    event_id: str
    reason: str
    detail: str


@dataclass(frozen=True)
class DrainResult:
    published: int
    refused: tuple[RefusedEvent, ...]


def make_producer(config: Config, linger_ms: int = 0) -> KafkaProducer:
    from kafka import KafkaProducer

    return KafkaProducer(
        bootstrap_servers=config.kafka.bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        # Fail a send within a bounded time when the broker is gone instead of blocking forever:
        # a request may take half the delivery timeout, so one retry fits in it.
        max_block_ms=10_000,
        bootstrap_timeout_ms=clients.BOOTSTRAP_TIMEOUT_MS,
        request_timeout_ms=int(config.kafka.delivery_timeout_s * 500),
        delivery_timeout_ms=int(config.kafka.delivery_timeout_s * 1000),
    )


class PlanStore:
    """CRUD on plan documents with a change event per write. Not thread-safe: one per thread.

    `batch_size=None` (default): each write returns only after Kafka acknowledged its event.
    `batch_size=N`: events are sent asynchronously and confirmed every N writes (and on `flush`
    or close); a failed batch raises PublishError and its events stay in the outbox. Per plan
    the order is still kept: one idempotent producer, one partition per key.
    """

    def __init__(
        self,
        config: Config,
        producer: KafkaProducer | None = None,
        batch_size: int | None = None,
        mongo: MongoClient | None = None,
        producer_factory: Callable[[], KafkaProducer] | None = None,
    ) -> None:
        self.config = config
        self.batch_size = batch_size
        # event_id -> (plan_id, send future) of events sent but not yet confirmed and cleared
        self._in_flight: dict[str, tuple[str, Any]] = {}
        # the document last returned by `get`, reused by the write that usually follows it;
        # a stale copy is caught by the version check of the write
        self._read_cache: dict[str, dict[str, Any]] = {}
        self.topic = config.kafka.topic
        # A shared producer or client (the plan API's pool) is the caller's to close.
        self._mongo = mongo or clients.mongo_client(config)
        self._own_mongo = mongo is None
        database = self._mongo[config.mongo.database]
        self.plans: Collection = database[config.mongo.collection]
        self.services: Collection = database[SERVICES_COLLECTION]
        self.locks: Collection = database[LOCKS_COLLECTION]
        self.lock_wait_s = LOCK_WAIT_S
        self._producer = producer
        # a shared producer made on the first write (the plan API's pool: reads need no broker)
        self._producer_factory = producer_factory
        self._own_producer = producer is None and producer_factory is None
        self._known_services: set[str] = set()
        self.source = {
            "system": "lakehouse.plans",
            "db": config.mongo.database,
            "collection": config.mongo.collection,
        }

    @classmethod
    def open(cls, config: Config, batch_size: int | None = None) -> PlanStore:
        """A store whose topic exists (the broker does not auto-create topics)."""
        clients.ensure_topic(config, config.kafka.topic)
        return cls(config, batch_size=batch_size)

    @property
    def producer(self) -> KafkaProducer:
        if self._producer is None:
            if self._producer_factory is not None:
                self._producer = self._producer_factory()
            else:
                self._producer = make_producer(self.config, linger_ms=10 if self.batch_size else 0)
        return self._producer

    def flush(self) -> None:
        """Confirm every event in flight and clear it from the outbox (batch mode)."""
        if not self._in_flight:
            return
        from kafka.errors import KafkaTimeoutError

        with contextlib.suppress(KafkaTimeoutError):  # unsent events are reported below
            self.producer.flush(timeout=PUBLISH_TIMEOUT_S)
        confirmed: list[tuple[str, str]] = []
        failed: list[str] = []
        for event_id, (plan_id, future) in self._in_flight.items():
            if future.succeeded():
                confirmed.append((plan_id, event_id))
            else:
                failed.append(f"{plan_id} ({future.exception or 'not sent in time'})")
        self._in_flight.clear()
        self._read_cache.clear()
        self._clear_outboxes(confirmed)
        if failed:
            raise PublishError(
                f"{len(failed)} change events are committed but could not be published, e.g. "
                f"{failed[0]}; they stay in the outbox for `lakehouse outbox drain`"
            )

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._producer is not None and self._own_producer:
                self._producer.close(timeout=10)
            if self._own_mongo:
                self._mongo.close()

    def __enter__(self) -> PlanStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------- reads
    def get(self, plan_id: str) -> dict[str, Any] | None:
        """The current plan document, or None if it never existed or was deleted."""
        raw = self.plans.find_one({"_id": plan_id})
        if raw is not None:
            self._read_cache = {plan_id: raw}
        return None if raw is None or raw[META]["deleted"] else _plan_of(raw)

    def read(self, plan_id: str) -> StoredPlan | None:
        """The live plan and its version; None if it never existed or was deleted."""
        raw = self.plans.find_one({"_id": plan_id})
        if raw is None or raw[META]["deleted"]:
            return None
        return StoredPlan(_plan_of(raw), raw[META]["version"])

    def page(self, after: str | None, limit: int) -> list[StoredPlan]:
        """Up to `limit` live plans in plan id order, after the id `after` (keyset paging: a
        page never repeats or skips a plan that exists throughout the listing)."""
        query: dict[str, Any] = {f"{META}.deleted": False}
        if after is not None:
            query["_id"] = {"$gt": after}
        found = self.plans.find(query).sort("_id", 1).limit(limit)
        return [StoredPlan(_plan_of(raw), raw[META]["version"]) for raw in found]

    def read_many(self, plan_ids: list[str]) -> dict[str, StoredPlan]:
        """The live plans among `plan_ids`, by id (deleted and unknown ids are left out)."""
        if not plan_ids:
            return {}
        found = self.plans.find({"_id": {"$in": plan_ids}, f"{META}.deleted": False})
        return {raw["_id"]: StoredPlan(_plan_of(raw), raw[META]["version"]) for raw in found}

    def version(self, plan_id: str) -> int:
        """The plan's last version (deleted plans keep theirs); 0 if it never existed."""
        raw = self.plans.find_one({"_id": plan_id}, {META: 1})
        return 0 if raw is None else raw[META]["version"]

    def iter_live(self) -> Iterator[dict[str, Any]]:
        for raw in self.plans.find({f"{META}.deleted": False}).sort("_id", 1):
            yield _plan_of(raw)

    def count_pending(self) -> int:
        return self.plans.count_documents({f"{META}.outbox": {"$exists": True}})

    # ---------------------------------------------------------------------------- writes
    def create(self, document: dict[str, Any]) -> WriteResult:
        validate_plan(document)
        plan_id = document["objectId"]
        with self._locked(plan_id):
            raw = self._current(plan_id)
            if raw is not None and not raw[META]["deleted"]:
                raise PlanExistsError(f"plan {plan_id!r} already exists; use replace or patch")
            return self._commit(plan_id, raw, "c", document)

    def upsert(self, document: dict[str, Any]) -> WriteResult:
        """Create the plan, or replace it when it is live (a re-create after a delete is `c`)."""
        validate_plan(document)
        plan_id = document["objectId"]
        with self._locked(plan_id):
            raw = self._current(plan_id)
            op = "u" if raw is not None and not raw[META]["deleted"] else "c"
            return self._commit(plan_id, raw, op, document)

    # `expected_version`: the write happens only if the plan is at that version (else
    # StaleVersionError), checked again by the commit itself, so two writers that expect the
    # same version cannot both succeed.
    def replace(
        self, plan_id: str, document: dict[str, Any], expected_version: int | None = None
    ) -> WriteResult:
        validate_plan(document)
        if document["objectId"] != plan_id:
            raise PlanIdMismatchError(
                f"objectId {document['objectId']!r} does not match {plan_id!r}"
            )
        with self._locked(plan_id):
            return self._commit(plan_id, self._live(plan_id, expected_version), "u", document)

    def patch(
        self, plan_id: str, patch: dict[str, Any], expected_version: int | None = None
    ) -> WriteResult:
        """PATCH-merge (nested objects merged, linkedPlanServices merged by objectId)."""
        with self._locked(plan_id):
            raw = self._live(plan_id, expected_version)
            merged = merge_patch(_plan_of(raw), patch)
            validate_plan(merged)
            return self._commit(plan_id, raw, "u", merged)

    def delete(self, plan_id: str, expected_version: int | None = None) -> WriteResult:
        """Delete the plan and its own children; shared services stay in `services`."""
        with self._locked(plan_id):
            return self._commit(plan_id, self._live(plan_id, expected_version), "d", None)

    def drain_outbox(self, limit: int | None = None) -> DrainResult:
        """Publish every pending event (oldest first) and clear it. An event that can never be
        published is reported and passed over, so one bad event does not hold back the rest;
        an unreachable broker raises PublishError (nothing pending is lost)."""
        query = self.plans.find({f"{META}.outbox": {"$exists": True}}).sort(f"{META}.updated_ms")
        published, refused = 0, []
        for listed in query.limit(limit or 0):
            with self._locked(listed["_id"]):
                # read again under the lock: a writer may have published it meanwhile
                raw = self.plans.find_one({"_id": listed["_id"]})
                if raw is None or raw[META].get("outbox") is None:
                    continue
                try:
                    self._publish_pending(raw)
                except EventRefused as exc:
                    refused.append(exc.event)
                else:
                    published += 1
        return DrainResult(published, tuple(refused))

    # ---------------------------------------------------------------------------- the lock
    @contextlib.contextmanager
    def _locked(self, plan_id: str) -> Iterator[None]:
        """One writer per plan at a time, across processes.

        FerretDB evaluates an update's filter in a read of its own and then writes by `_id`
        (FerretDB v1's UpdateAll), so a version filter alone lets two writers that read the
        same version both succeed (measured: two concurrent PATCHes, both "won"). Inserting a
        document whose `_id` is the plan id is atomic (the primary key), so it is the lock.
        A writer that died holding it leaves a lock older than STALE_LOCK_MS, which the next
        writer removes.
        """
        from pymongo.errors import DuplicateKeyError

        token = uuid.uuid4().hex
        deadline = time.monotonic() + self.lock_wait_s
        pause = 0.002
        while True:
            now_ms = int(time.time() * 1000)
            try:
                self.locks.insert_one({"_id": plan_id, "token": token, "locked_ms": now_ms})
                break
            except DuplicateKeyError:
                held = self.locks.find_one({"_id": plan_id})
            if held is not None and now_ms - held["locked_ms"] > STALE_LOCK_MS:
                self.locks.delete_one({"_id": plan_id, "token": held["token"]})
                continue
            if time.monotonic() > deadline:
                raise ConcurrentWriteError(
                    f"plan {plan_id!r} is being written by another writer; try again"
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
        try:
            yield
        finally:
            self.locks.delete_one({"_id": plan_id, "token": token})

    # -------------------------------------------------------------------------- internals
    def _current(self, plan_id: str) -> dict[str, Any] | None:
        raw = self._read_cache.pop(plan_id, None) or self.plans.find_one({"_id": plan_id})
        outbox = raw[META].get("outbox") if raw is not None else None
        if outbox is not None and outbox["event_id"] not in self._in_flight:
            # Publish this plan's earlier change first, so its events stay complete and ordered.
            try:
                self._publish_pending(raw)
            except EventRefused:
                # Never publishable: this write supersedes it (consumers see a version gap,
                # which the version guard allows), instead of the plan being stuck for good.
                return raw
            raw = self.plans.find_one({"_id": plan_id})
        return raw

    def _live(self, plan_id: str, expected_version: int | None = None) -> dict[str, Any]:
        raw = self._current(plan_id)
        if raw is None or raw[META]["deleted"]:
            raise PlanNotFoundError(plan_id)
        if expected_version is not None and raw[META]["version"] != expected_version:
            raise StaleVersionError(plan_id, expected_version, raw[META]["version"])
        return raw

    def _commit(
        self, plan_id: str, raw: dict[str, Any] | None, op: str, document: dict[str, Any] | None
    ) -> WriteResult:
        version = (raw[META]["version"] if raw else 0) + 1
        event = ChangeEvent(
            op=op,
            plan_id=plan_id,
            version=version,
            after=copy.deepcopy(document),
            source=self.source,
        )
        # Checked before anything is stored: a committed event no consumer accepts would wait
        # in the outbox forever and block every later write of the plan.
        _refuse_unpublishable(event)
        stored: dict[str, Any] = {"_id": plan_id, **(document or {})}
        stored[META] = {
            "version": version,
            "deleted": op == "d",
            "updated_ms": event.ts_ms,
            "outbox": event.to_dict(),
        }
        if raw is None:
            from pymongo.errors import DuplicateKeyError

            try:
                self.plans.insert_one(stored)
            except DuplicateKeyError:
                raise ConcurrentWriteError(f"plan {plan_id!r} was created concurrently") from None
        else:
            result = self.plans.replace_one(
                {"_id": plan_id, f"{META}.version": raw[META]["version"]}, stored
            )
            if result.matched_count != 1:
                raise ConcurrentWriteError(f"plan {plan_id!r} changed while version {version}")
        if document is not None:
            self._remember_services(document)
        if self.batch_size:
            future = self.producer.send(self.topic, key=event.key(), value=event.value())
            self._in_flight[event.event_id] = (plan_id, future)
            if len(self._in_flight) >= self.batch_size:
                self.flush()
            return WriteResult(event, published=False)
        try:
            self._publish(event)
        except Exception as exc:
            raise PublishError(
                f"plan {plan_id!r} version {version} ({op}) is committed but its change event "
                f"could not be published ({type(exc).__name__}: {exc}); it stays in the outbox "
                "and is published by `lakehouse outbox drain` or the plan's next write"
            ) from exc
        self._clear_outbox(plan_id, event.event_id)
        return WriteResult(event, published=True)

    def _publish(self, event: ChangeEvent) -> None:
        self.producer.send(self.topic, key=event.key(), value=event.value()).get(
            timeout=PUBLISH_TIMEOUT_S
        )

    def _publish_pending(self, raw: dict[str, Any]) -> None:
        """Publish a stored pending event; EventRefused when it can never be published."""
        event = ChangeEvent.from_dict(raw[META]["outbox"])
        try:
            _refuse_unpublishable(event)
        except PlanRejectedError as exc:
            raise EventRefused(_refused(event, exc.reason, exc.detail)) from None
        from kafka.errors import CorruptRecordError, InvalidRecordError, MessageSizeTooLargeError

        try:
            self._publish(event)
        # The broker's verdict on this record itself (too large, invalid): retrying cannot help.
        except (MessageSizeTooLargeError, InvalidRecordError, CorruptRecordError) as exc:
            # kafka-python 3.0 fails every later send of a producer whose record the broker
            # refused (measured): start afresh, so the events after this one still go out.
            if self._own_producer:
                self._producer.close(timeout=5)
                self._producer = None
            raise EventRefused(_refused(event, "refused-by-broker", repr(exc))) from None
        except Exception as exc:
            raise PublishError(
                f"plan {event.plan_id!r} has an unpublished change (version {event.version}) "
                f"and the broker is unreachable ({type(exc).__name__}: {exc}); nothing new was "
                "written"
            ) from exc
        self._clear_outbox(event.plan_id, event.event_id)

    def _clear_outbox(self, plan_id: str, event_id: str) -> None:
        # _id equality: FerretDB answers it from the primary key instead of a collection scan
        self.plans.update_one(
            {"_id": plan_id, f"{META}.outbox.event_id": event_id},
            {"$unset": {f"{META}.outbox": ""}},
        )

    def _clear_outboxes(self, published: list[tuple[str, str]]) -> None:
        """Remove confirmed events; matching on event_id never clears a newer pending event.

        One update_many per chunk: FerretDB 1.x holds a PostgreSQL connection per statement of
        a bulk write, and a bulk of more statements than its pool deadlocks it.
        """
        for start in range(0, len(published), 500):
            chunk = published[start : start + 500]
            # Each plan holds at most one pending event, so matching the plan ids and the
            # confirmed event ids as two sets clears exactly the confirmed events.
            self.plans.update_many(
                {
                    "_id": {"$in": [plan_id for plan_id, _ in chunk]},
                    f"{META}.outbox.event_id": {"$in": [event_id for _, event_id in chunk]},
                },
                {"$unset": {f"{META}.outbox": ""}},
            )

    def _remember_services(self, document: dict[str, Any]) -> None:
        from pymongo.errors import DuplicateKeyError

        for item in document.get("linkedPlanServices", []):
            service = item["linkedService"]
            if service["objectId"] in self._known_services:
                continue
            selector = {"_id": service["objectId"]}
            fields = {"$set": {k: v for k, v in service.items() if k != "objectId"}}
            try:
                self.services.update_one(selector, fields, upsert=True)
            except DuplicateKeyError:
                # Another writer inserted the same new service between this upsert's read and
                # its insert (FerretDB, like MongoDB, does not serialise upserts): it exists now.
                self.services.update_one(selector, fields)
            self._known_services.add(service["objectId"])


def _refused(event: ChangeEvent, reason: str, detail: str) -> RefusedEvent:
    return RefusedEvent(event.plan_id, event.version, event.event_id, reason, detail)


def _refuse_unpublishable(event: ChangeEvent) -> None:
    """Raise PlanRejectedError unless consumers would accept `event` as it goes on the topic."""
    try:
        value = event.value()
    except ValueError as exc:  # NaN or infinity
        raise PlanRejectedError(BAD_NUMBER, f"plan {event.plan_id!r}: {exc}") from None
    try:
        parse_event(event.key(), value)
    except EventContractError as exc:
        raise PlanRejectedError(exc.reason, f"plan {event.plan_id!r}: {exc.detail}") from None


def _plan_of(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if k not in ("_id", META)}
