"""The real-time search indexer: a Kafka consumer of the change topic that keeps the plans index
current within seconds of a write, without Spark.

    plans.cdc --(poll)--> parse_event per record --(one bulk request)--> alias `plans`
                                                                      (+ `plans-next` while a
                                                                       reindex builds it)
    documents the index refuses ---------------------------------------> plans.cdc.dead-letters
    offsets committed only after the bulk (and any dead letter) is acknowledged

Guarantees:
- never older over newer: every write carries the plan version as an external version
  (`external_gte`), so Elasticsearch refuses an older version whatever the order or duplication
  of delivery, and a redelivered batch (after a crash before the commit) changes nothing;
- nothing lost: the consumer commits a batch's offsets only after Elasticsearch acknowledged
  every document of it (written, already newer, or refused and dead-lettered);
- one bad document never holds the index back: a per-document 4xx (other than 409, already
  newer, and 429) goes to the dead-letter topic with the reason, the document and the Kafka
  position, and the rest are written; a record that breaks the contract is skipped (the
  lakehouse ingest quarantines it with its reason);
- an unreachable or overloaded Elasticsearch (connection error, 429, 5xx) is retried with
  backoff for `indexer.retry_timeout_s`, then the indexer exits 1 and its supervisor restarts
  it from the committed offsets.

The writes go to aliases only (`require_alias`): a reindex (lakehouse.ingest.reindex) swaps the
alias to a new index atomically, and a write can never auto-create an index with a guessed
mapping.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from lakehouse import clients
from lakehouse.config import Config
from lakehouse.ingest import search
from lakehouse.ingest.contract import CHECK_FAILED
from lakehouse.plans.events import EventContractError, parse_event

log = logging.getLogger(__name__)
T = TypeVar("T")

INDEX = "index"
DELETE = "delete"
# The dead letter's `reason` for a document the index refused for its content.
INDEX_REFUSED = "index-refused"


def dead_letter_topic(config: Config) -> str:
    return config.indexer.dead_letter_topic or f"{config.kafka.topic}.dead-letters"


class IndexerError(RuntimeError):
    """Elasticsearch stayed unreachable (or overloaded) for the whole retry window."""


class KafkaRecord(Protocol):
    """What the indexer reads of a kafka-python ConsumerRecord."""

    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True)
class IndexAction:
    """One write to the index: the newest version of a plan in a batch of records."""

    operation: str  # INDEX or DELETE
    plan_id: str
    version: int
    document: dict[str, Any] | None  # None for a delete
    partition: int
    offset: int


@dataclass(frozen=True)
class DeadLetter:
    """A document an index refused for its content (the dead-letter topic's record value)."""

    reason: str
    index: str  # the alias written to
    operation: str
    plan_id: str
    version: int
    status: int
    error: str
    document: dict[str, Any] | None
    partition: int
    offset: int

    @property
    def key(self) -> bytes:
        # Deterministic: a batch replayed after a crash re-sends the same keys, so a reader can
        # keep one record per key (`lakehouse quarantine` does).
        return f"{self.index}:{self.operation}:{self.plan_id}:{self.version}".encode()

    def value(self) -> bytes:
        return json.dumps(self.__dict__, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class BatchActions:
    actions: tuple[IndexAction, ...]
    # Records that break the contract, by reason: skipped here, quarantined by the ingest.
    skipped: dict[str, int]


@dataclass(frozen=True)
class IndexedBatch:
    """What one indexer batch did (reported as progress)."""

    records: int
    indexed: int
    deleted: int
    dead_letters: int
    skipped: int
    targets: tuple[str, ...]
    seconds: float
    # Source commit (ts_ms) to the bulk acknowledgement, over the batch's newest versions.
    max_freshness_s: float | None


@dataclass
class IndexerTotals:
    """The run's totals (`lakehouse indexer` prints them when it stops)."""

    batches: int = 0
    records: int = 0
    indexed: int = 0
    deleted: int = 0
    dead_letters: int = 0
    skipped: int = 0

    def add(self, batch: IndexedBatch) -> None:
        self.batches += 1
        self.records += batch.records
        self.indexed += batch.indexed
        self.deleted += batch.deleted
        self.dead_letters += batch.dead_letters
        self.skipped += batch.skipped

    def render(self) -> str:
        return (
            f"indexer: {self.records:,} records in {self.batches:,} batches -> "
            f"{self.indexed:,} documents indexed, {self.deleted:,} deleted, "
            f"{self.dead_letters:,} dead-lettered, {self.skipped:,} skipped (contract)"
        )


def to_index_document(
    plan_id: str, version: int, after: dict[str, Any], ts_ms: int, indexed_at_ms: int
) -> dict[str, Any]:
    """A plan document (the event's `after`) -> its search document, field for field what
    `search.to_search_documents` makes of the same plan in silver (null fields left out, as
    elasticsearch-spark leaves them out)."""
    costs = after.get("planCostShares") or {}
    services = [
        _without_nulls(
            {
                "planservice_id": ps.get("objectId"),
                "service_id": (ps.get("linkedService") or {}).get("objectId"),
                "name": (ps.get("linkedService") or {}).get("name"),
                "org": (ps.get("linkedService") or {}).get("_org"),
                "deductible": _money((ps.get("planserviceCostShares") or {}).get("deductible")),
                "copay": _money((ps.get("planserviceCostShares") or {}).get("copay")),
            }
        )
        for ps in after.get("linkedPlanServices") or []
    ]
    return _without_nulls(
        {
            "plan_id": plan_id,
            "version": version,
            "org": after.get("_org"),
            "plan_type": after.get("planType"),
            "creation_date": after.get("creationDate"),
            "deductible": _money(costs.get("deductible")),
            "copay": _money(costs.get("copay")),
            "service_count": len(after.get("linkedPlanServices") or []),
            "services": services,
            "event_ts": ts_ms,
            "indexed_at": indexed_at_ms,
        }
    )


def _money(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _without_nulls(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}


def to_index_actions(records: Iterable[KafkaRecord], indexed_at_ms: int) -> BatchActions:
    """Raw change-topic records -> the newest version of each plan as an index or delete
    action (a duplicate of one version keeps its first delivery), and the records that break
    the contract counted by reason."""
    newest: dict[str, IndexAction] = {}
    skipped: dict[str, int] = {}
    for record in records:
        try:
            event = parse_event(record.key, record.value)
        except EventContractError as exc:
            skipped[exc.reason] = skipped.get(exc.reason, 0) + 1
            continue
        except Exception:  # a validator bug skips the record (as the ingest quarantines it)
            skipped[CHECK_FAILED] = skipped.get(CHECK_FAILED, 0) + 1
            continue
        held = newest.get(event.plan_id)
        if held is not None and held.version >= event.version:
            continue
        document = (
            None
            if event.op == "d" or event.after is None
            else to_index_document(
                event.plan_id, event.version, event.after, event.ts_ms, indexed_at_ms
            )
        )
        newest[event.plan_id] = IndexAction(
            operation=DELETE if document is None else INDEX,
            plan_id=event.plan_id,
            version=event.version,
            document=document,
            partition=record.partition,
            offset=record.offset,
        )
    return BatchActions(tuple(newest.values()), skipped)


def bulk_body(actions: Sequence[IndexAction], targets: Sequence[str]) -> list[dict[str, Any]]:
    """The bulk request for these actions on every target alias, versioned externally."""
    body: list[dict[str, Any]] = []
    for target in targets:
        for action in actions:
            meta = {
                "_index": target,
                "_id": action.plan_id,
                "version": action.version,
                "version_type": "external_gte",
            }
            body.append({action.operation: meta})
            if action.document is not None:
                body.append(action.document)
    return body


@dataclass(frozen=True)
class BulkOutcome:
    dead_letters: tuple[DeadLetter, ...]
    # Why Elasticsearch, not the documents, is the problem (429, 5xx); None when it is not.
    unavailable: str | None


def sort_out(
    actions: Sequence[IndexAction],
    targets: Sequence[str],
    items: Sequence[dict[str, Any]],
    optional_targets: frozenset[str] = frozenset(),
) -> BulkOutcome:
    """A bulk response's items (in `bulk_body` order) -> the documents refused for their
    content, or why the whole batch must be retried. A 404 on an optional target (the alias of
    a reindex that has just finished) is no refusal: that index is no longer written."""
    pairs = [(target, action) for target in targets for action in actions]
    refused: list[DeadLetter] = []
    for (target, action), item in zip(pairs, items, strict=True):
        answer = item[action.operation]
        status = int(answer.get("status", 0))
        if status < 300 or status == 409 or (action.operation == DELETE and status == 404):
            continue  # written, already newer, or already gone
        if status == 404 and target in optional_targets:
            continue
        if status == 429 or status >= 500:
            return BulkOutcome((), f"{action.operation} of {action.plan_id} in {target}: {status}")
        error = answer.get("error")
        refused.append(
            DeadLetter(
                reason=INDEX_REFUSED,
                index=target,
                operation=action.operation,
                plan_id=action.plan_id,
                version=action.version,
                status=status,
                error=(error if isinstance(error, str) else json.dumps(error))[:2000],
                document=action.document,
                partition=action.partition,
                offset=action.offset,
            )
        )
    return BulkOutcome(tuple(refused), None)


Reporter = Callable[[IndexedBatch], None]


@dataclass
class Indexer:
    """The consumer loop. One indexer reads every partition of the topic (assigned, not
    subscribed: a restart after a crash resumes at once instead of waiting out a group
    session); its offsets are committed under `indexer.group_id`."""

    config: Config
    report: Reporter
    clock_ms: Callable[[], int] = field(default=lambda: time.time_ns() // 1_000_000)
    totals: IndexerTotals = field(default_factory=IndexerTotals)

    def run(self, stop: threading.Event, once: bool = False) -> IndexerTotals:
        """Index until `stop` is set (or, with `once`, until the end offsets the topic had when
        it started are committed)."""
        from kafka import KafkaConsumer, KafkaProducer, TopicPartition

        settings = self.config.indexer
        clients.ensure_topic(self.config, self.config.kafka.topic)
        clients.ensure_topic(self.config, dead_letter_topic(self.config))
        self._retry("the alias", lambda: (search.ensure_index(self.config), None), stop)
        consumer = KafkaConsumer(
            bootstrap_servers=self.config.kafka.bootstrap,
            group_id=settings.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.max_batch_records,
            # A record is fetched as soon as it is written: freshness is bounded by the bulk.
            fetch_max_wait_ms=100,
        )
        producer = KafkaProducer(
            bootstrap_servers=self.config.kafka.bootstrap, acks="all", linger_ms=0
        )
        es = clients.es_client(self.config)
        try:
            topic = self.config.kafka.topic
            partitions = [
                TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            consumer.assign(partitions)
            ends = consumer.end_offsets(partitions) if once else {}
            while not stop.is_set():
                if once and all(consumer.position(tp) >= ends[tp] for tp in partitions):
                    break
                polled = consumer.poll(timeout_ms=500)
                records = sorted(
                    (r for batch in polled.values() for r in batch),
                    key=lambda r: (r.partition, r.offset),
                )
                if not records:
                    continue
                batch = self._index(es, producer, records, stop)
                consumer.commit(
                    {
                        TopicPartition(topic, p): _offset_and_metadata(offset + 1)
                        for p, offset in _last_offsets(records).items()
                    }
                )
                self.totals.add(batch)
                self.report(batch)
        finally:
            producer.close(timeout=10)
            consumer.close(autocommit=False)
            es.close()
        return self.totals

    def _index(
        self, es: Any, producer: Any, records: list[Any], stop: threading.Event
    ) -> IndexedBatch:
        started = time.monotonic()
        batch = to_index_actions(records, self.clock_ms())

        def attempt() -> tuple[tuple[BulkOutcome, list[str]], str | None]:
            outcome, targets = self._bulk(es, batch.actions)
            return (outcome, targets), outcome.unavailable

        outcome, targets = self._retry("the batch", attempt, stop)
        for letter in outcome.dead_letters:
            producer.send(dead_letter_topic(self.config), key=letter.key, value=letter.value())
            log.warning("indexer: %s refused %s of %s v%d (%d): %s", letter.index,
                        letter.operation, letter.plan_id, letter.version, letter.status,
                        letter.error[:300])  # fmt: skip
        if outcome.dead_letters:
            producer.flush(timeout=30)  # raises when the broker did not take them: no commit
        now_ms = self.clock_ms()
        newest_ts = [
            a.document["event_ts"] for a in batch.actions if a.document is not None
        ]  # deletes carry no timestamp in the document
        return IndexedBatch(
            records=len(records),
            indexed=sum(a.operation == INDEX for a in batch.actions),
            deleted=sum(a.operation == DELETE for a in batch.actions),
            dead_letters=len(outcome.dead_letters),
            skipped=sum(batch.skipped.values()),
            targets=tuple(targets),
            seconds=time.monotonic() - started,
            max_freshness_s=(now_ms - min(newest_ts)) / 1000 if newest_ts else None,
        )

    def _retry(
        self, what: str, attempt: Callable[[], tuple[T, str | None]], stop: threading.Event
    ) -> T:
        """`attempt()` until it returns no reason for being unavailable; an exception counts as
        one (the client raises many types for one outage). IndexerError after
        `indexer.retry_timeout_s`, or when stopped meanwhile."""
        timeout_s = self.config.indexer.retry_timeout_s
        deadline = time.monotonic() + timeout_s
        delay = 0.5
        while True:
            try:
                result, unavailable = attempt()
                if unavailable is None:
                    return result
                reason = unavailable
            except Exception as exc:
                reason = _first_line(exc)
            if time.monotonic() + delay > deadline or stop.is_set():
                raise IndexerError(
                    f"Elasticsearch at {self.config.elasticsearch.url} did not take {what} "
                    f"for {timeout_s:.0f}s: {reason}"
                )
            log.warning("indexer: writing %s failed, retrying in %.1fs: %s", what, delay, reason)
            stop.wait(delay)
            delay = min(delay * 2, 15.0)

    def _bulk(self, es: Any, actions: Sequence[IndexAction]) -> tuple[BulkOutcome, list[str]]:
        if not actions:
            return BulkOutcome((), None), []
        targets = [self.config.elasticsearch.index]
        building = search.next_alias(self.config)
        # Checked after the records were fetched: a record written after a reindex created its
        # alias always reaches the new index too (lakehouse.ingest.reindex relies on it).
        if es.indices.exists_alias(name=building):
            targets.append(building)
        response = es.bulk(body=bulk_body(actions, targets), params={"require_alias": "true"})
        outcome = sort_out(actions, targets, response["items"], frozenset({building}))
        return outcome, targets


def _last_offsets(records: Iterable[KafkaRecord]) -> dict[int, int]:
    last: dict[int, int] = {}
    for record in records:
        last[record.partition] = max(record.offset, last.get(record.partition, -1))
    return last


def _offset_and_metadata(offset: int) -> Any:
    from kafka.structs import OffsetAndMetadata

    return OffsetAndMetadata(offset, None, -1)  # -1: no leader epoch known


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


@dataclass(frozen=True)
class IndexerLag:
    """Records of the change topic the indexer has not committed, summed over partitions;
    None when it never committed (not started yet)."""

    records: int | None

    def render(self) -> str:
        if self.records is None:
            return "indexer lag: the indexer has committed nothing yet"
        return f"indexer lag: {self.records:,} Kafka records not in the search index"


def measure_lag(config: Config) -> IndexerLag:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=config.kafka.bootstrap,
        group_id=config.indexer.group_id,
        enable_auto_commit=False,
    )
    try:
        topic = config.kafka.topic
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = consumer.end_offsets(partitions)
        committed = {tp: consumer.committed(tp) for tp in partitions}
    finally:
        consumer.close(autocommit=False)
    if not partitions or all(offset is None for offset in committed.values()):
        return IndexerLag(None)
    return IndexerLag(sum(max(0, ends[tp] - (committed[tp] or 0)) for tp in partitions))


def wait_caught_up(
    config: Config,
    timeout_s: float,
    progress: Callable[[str], None] = print,
    poll_s: float = 0.5,
) -> float | None:
    """Poll until the indexer has committed every record of the topic; the seconds that took,
    or None after `timeout_s`."""
    started = time.monotonic()
    while True:
        lag = measure_lag(config)
        waited = time.monotonic() - started
        if lag.records == 0:
            progress(f"indexer: caught up in {waited:.1f}s")
            return waited
        if waited > timeout_s:
            progress(f"{lag.render()} after {waited:.0f}s")
            return None
        time.sleep(poll_s)


def read_dead_letters(config: Config, timeout_ms: int = 2000) -> list[DeadLetter]:
    """Every dead letter the topic holds, one per key (the latest), oldest first."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=config.kafka.bootstrap, group_id=None, enable_auto_commit=False
    )
    try:
        topic = dead_letter_topic(config)
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            return []
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        letters: dict[bytes, DeadLetter] = {}
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            polled = consumer.poll(timeout_ms=timeout_ms)
            if not polled:
                break
            for batch in polled.values():
                for record in batch:
                    letters[record.key] = DeadLetter(**json.loads(record.value))
    finally:
        consumer.close(autocommit=False)
    return list(letters.values())
