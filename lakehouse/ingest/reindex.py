"""`lakehouse reindex`: rebuild the search index from silver into a new versioned index, then
swap the alias onto it in one atomic step. Queries always go through the alias, so they see the
old index or the complete new one, never a partial one; a mapping change ships this way.

While the live indexer keeps writing, no change is lost:

1. create `<alias>-v<N+1>` with the mapping;
2. read silver.plans: the highest Kafka offset per partition in it, S, bounds what silver has
   applied (silver applies each partition in order, so every record before S is in it); then
   every live plan and tombstone at its version, written with elasticsearch-spark (the bulk
   path; nothing else writes the new index yet, so it meets no version conflict);
3. put the alias `<alias>-next` on the new index: from then on the live indexer writes every
   batch it fetches to both aliases (it checks for `-next` after fetching), then read the
   topic's end offsets E: every record at or after E reaches the new index through it;
4. replay the records from S to E into the new index with the indexer's own code: the changes
   silver had not applied, and those written while the build ran;
5. swap: one alias request moves the alias from the old index to the new one and drops
   `-next`; keep the previous index for a rollback, delete older ones.

External versions make every overlap harmless: a document already newer in the new index (the
indexer got there first) refuses the older one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse import clients, io
from lakehouse.config import Config
from lakehouse.ingest import indexer, search
from lakehouse.ingest.lag import kafka_end_offsets
from lakehouse.tables import PLANS

log = logging.getLogger(__name__)


class ReindexError(RuntimeError):
    """The new index could not be completed; the alias was left on the old one."""


@dataclass(frozen=True)
class Reindexed:
    index: str
    previous: tuple[str, ...]  # the indexes the alias left
    deleted: tuple[str, ...]  # older versions removed
    documents: int  # live plans written from silver
    tombstones: int
    replayed: int  # topic records replayed after silver's position
    refused: int  # documents refused (quarantine.sink_refusals / dead letters)
    seconds: float

    def render(self, alias: str) -> str:
        previous = ", ".join(self.previous) or "nothing"
        lines = [
            f"reindex: {alias} -> {self.index} (was {previous}) in {self.seconds:.1f}s: "
            f"{self.documents:,} plans and {self.tombstones:,} deletes from silver, "
            f"{self.replayed:,} newer records replayed from the topic, "
            f"{self.refused:,} documents refused"
        ]
        if self.deleted:
            lines.append(f"reindex: deleted older versions {', '.join(self.deleted)}")
        return "\n".join(lines)


def reindex(
    spark: SparkSession, config: Config, progress: Callable[[str], None] = lambda _: None
) -> Reindexed:
    started = time.monotonic()
    alias, building = config.elasticsearch.index, search.next_alias(config)
    search.ensure_index(config)
    es = clients.es_client(config)
    try:
        new = search.new_index_name(es, alias)
        es.indices.create(index=new, body=search.INDEX_BODY)
        progress(f"reindex: building {new} from silver")
        try:
            plans = io.read_table(spark, config, PLANS)
            silver_position = {
                row["kafka_partition"]: row["next"]
                for row in plans.where(F.col("kafka_partition").isNotNull())
                .groupBy("kafka_partition")
                .agg((F.max("kafka_offset") + 1).alias("next"))
                .collect()
            }
            # Only this write touches the new index until `-next` is on it: nothing in it is
            # newer, so the bulk path never meets a version conflict.
            written = search.write_plans(plans, config, new)
            refused = len(written.refused)
            if written.refused:
                search.record_refusals(written.refused, plans, config)
            progress(
                f"reindex: {written.indexed:,} plans and {written.deleted:,} deletes "
                f"written from silver; catching up from the topic"
            )
            # One build at a time: a `-next` left by an interrupted reindex is replaced.
            stale = _indexes_of(es, building)
            es.indices.update_aliases(
                body={
                    "actions": [
                        *({"remove": {"index": name, "alias": building}} for name in stale),
                        {"add": {"index": new, "alias": building}},
                    ]
                }
            )
            for name in stale:
                es.indices.delete(index=name, ignore_unavailable=True)
            progress(f"reindex: {building} -> {new}; the live indexer writes to it too")
            ends = kafka_end_offsets(config)
            replayed, dead = _replay(config, es, new, silver_position, ends)
            es.indices.refresh(index=new)
        except Exception:
            es.indices.delete(index=new, ignore_unavailable=True)
            raise
        previous = _indexes_of(es, alias)
        es.indices.update_aliases(
            body={
                "actions": [
                    *({"remove": {"index": name, "alias": alias}} for name in previous),
                    {"add": {"index": new, "alias": alias}},
                    {"remove": {"index": new, "alias": building}},
                ]
            }
        )
        keep = {new, *previous}
        deleted = tuple(n for n in search.versioned_indexes(es, alias) if n not in keep)
        for name in deleted:
            es.indices.delete(index=name, ignore_unavailable=True)
    finally:
        es.close()
    return Reindexed(
        index=new,
        previous=tuple(previous),
        deleted=deleted,
        documents=written.indexed,
        tombstones=written.deleted,
        replayed=replayed,
        refused=refused + dead,
        seconds=time.monotonic() - started,
    )


def _indexes_of(es: Any, alias: str) -> list[str]:
    if not es.indices.exists_alias(name=alias):
        return []
    return sorted(es.indices.get_alias(name=alias))


def _replay(
    config: Config, es: Any, index: str, start: dict[int, int], ends: dict[int, int]
) -> tuple[int, int]:
    """Index the topic's records from `start` (per partition; the beginning where absent) up to
    `ends` into `index`; returns (records read, documents dead-lettered)."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    topic = config.kafka.topic
    consumer = KafkaConsumer(
        bootstrap_servers=config.kafka.bootstrap, group_id=None, enable_auto_commit=False
    )
    producer = KafkaProducer(bootstrap_servers=config.kafka.bootstrap, acks="all")
    read = dead = 0
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(ends)]
        consumer.assign(partitions)
        first = consumer.beginning_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, max(first[tp], start.get(tp.partition, 0)))
        pending = {tp for tp in partitions if consumer.position(tp) < ends[tp.partition]}
        while pending:
            polled = consumer.poll(timeout_ms=5000, max_records=config.indexer.max_batch_records)
            if not polled:
                raise ReindexError(f"the topic {topic} stopped answering during the replay")
            records = [
                r for tp, batch in polled.items() for r in batch if r.offset < ends[tp.partition]
            ]
            for tp in list(pending):
                if consumer.position(tp) >= ends[tp.partition]:
                    pending.discard(tp)
                    consumer.pause(tp)
            batch = indexer.to_index_actions(records, time.time_ns() // 1_000_000)
            if not batch.actions:
                read += len(records)
                continue
            response = es.bulk(body=indexer.bulk_body(batch.actions, [index]))
            outcome = indexer.sort_out(batch.actions, [index], response["items"])
            if outcome.unavailable:
                raise ReindexError(f"Elasticsearch refused the replay: {outcome.unavailable}")
            for letter in outcome.dead_letters:
                producer.send(
                    indexer.dead_letter_topic(config), key=letter.key, value=letter.value()
                )
            producer.flush(timeout=30)
            read += len(records)
            dead += len(outcome.dead_letters)
    finally:
        producer.close(timeout=10)
        consumer.close(autocommit=False)
    return read, dead
