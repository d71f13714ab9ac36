"""How far the running streaming ingest is behind, measured from the outside: Kafka's end offsets
against the offsets bronze holds (bronze and silver.plans are written in the same batch),
silver.plan_events' Delta versions against the last one the derived query committed (from its
checkpoint), and the end offsets against what the real-time search indexer committed.
`lakehouse ingest --wait` polls this until the first two are 0, so a script can hand over to
batch jobs once the supervised ingest has caught up. It also warns when the oldest record
bronze has not read nears the topic's retention, or is already gone."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse import clients, io
from lakehouse.config import Config, is_uri
from lakehouse.ingest.indexer import IndexerLag
from lakehouse.ingest.indexer import measure_lag as measure_indexer_lag
from lakehouse.tables import BRONZE_EVENTS, DERIVED_CHECKPOINT, PLAN_EVENTS, checkpoint

# Delta operations that change no rows: a stream has nothing to read in them.
_NO_DATA_OPERATIONS = (
    "OPTIMIZE",
    "VACUUM START",
    "VACUUM END",
    "SET TBLPROPERTIES",
    "CREATE TABLE",
)


# Warn once the oldest unread record is this share of the topic's retention old.
RETENTION_WARN_SHARE = 0.5


@dataclass(frozen=True)
class IngestLag:
    # Records in Kafka beyond the last offset bronze holds, summed over partitions.
    kafka_records: int
    # silver.plan_events versions with new rows the derived query has not committed yet.
    derived_versions: int
    # Unread records near the topic's retention, or already deleted by it (one line each).
    retention_warnings: tuple[str, ...] = ()
    # Records the real-time indexer has not committed (None: it has committed nothing yet).
    indexer_records: int | None = None

    @property
    def caught_up(self) -> bool:
        return self.kafka_records == 0 and self.derived_versions == 0

    def render(self) -> str:
        return "\n".join(
            [
                f"ingest lag: {self.kafka_records:,} Kafka records not in bronze/silver.plans, "
                f"{self.derived_versions} silver.plan_events version(s) not in the derived "
                "tables",
                IndexerLag(self.indexer_records).render(),
                *(f"WARNING: {line}" for line in self.retention_warnings),
            ]
        )


def kafka_end_offsets(config: Config) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=config.kafka.bootstrap, group_id=None, enable_auto_commit=False
    )
    try:
        topic = config.kafka.topic
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def retention_warnings(
    config: Config, held: dict[int, int], now_ms: int, share: float = RETENTION_WARN_SHARE
) -> tuple[str, ...]:
    """For each partition of the topic, given the next offset bronze would read (`held`): a
    line when records bronze never read were deleted by retention, or when the oldest unread
    record is more than `share` of the topic's `retention.ms` old."""
    from kafka import KafkaConsumer, TopicPartition

    retention_ms = topic_retention_ms(config)
    consumer = KafkaConsumer(
        bootstrap_servers=config.kafka.bootstrap, group_id=None, enable_auto_commit=False
    )
    warnings = []
    try:
        topic = config.kafka.topic
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        first, ends = consumer.beginning_offsets(partitions), consumer.end_offsets(partitions)
        for tp in sorted(partitions):
            unread = held.get(tp.partition, 0)
            if unread >= ends[tp]:
                continue
            if unread < first[tp]:
                warnings.append(
                    f"partition {tp.partition}: {first[tp] - unread:,} records (offsets "
                    f"{unread}..{first[tp] - 1}) were deleted by the topic's retention before "
                    "bronze read them: take a snapshot and reconcile (`lakehouse snapshot "
                    "--bootstrap`)"
                )
                continue
            if retention_ms is None or retention_ms < 0:
                continue  # kept forever
            consumer.assign([tp])
            consumer.seek(tp, unread)
            batch = consumer.poll(timeout_ms=5000, max_records=1)
            records = batch.get(tp, [])
            if not records or records[0].timestamp is None:
                continue
            age_ms = now_ms - records[0].timestamp
            if age_ms > share * retention_ms:
                warnings.append(
                    f"partition {tp.partition}: the oldest record bronze has not read (offset "
                    f"{unread}) is {age_ms / 3_600_000:,.1f} h old; the topic deletes records "
                    f"after {retention_ms / 3_600_000:,.1f} h"
                )
    finally:
        consumer.close()
    return tuple(warnings)


def topic_retention_ms(config: Config) -> int | None:
    """The topic's `retention.ms` (its own or the broker's default); None if not reported."""
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = clients.kafka_admin(config)
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, config.kafka.topic)
        found = admin.describe_configs([resource], config_filter="all")
    finally:
        admin.close()
    entry = found.get("topic", {}).get(config.kafka.topic, {}).get("retention.ms")
    return None if entry is None else int(entry["value"])


def derived_next_version(config: Config) -> int | None:
    """The first silver.plan_events version the derived query has not fully processed, from
    its last committed batch (Delta source offset: everything before `reservoirVersion` is done
    when `index` is -1); None before its first batch."""
    folder = checkpoint(config, DERIVED_CHECKPOINT)
    if is_uri(folder):
        raise ValueError(f"ingest lag reads local checkpoints only, not {folder}")
    commits = [int(p.name) for p in Path(folder, "commits").glob("[0-9]*")]
    if not commits:
        return None
    lines = Path(folder, "offsets", str(max(commits))).read_text().splitlines()
    offset = json.loads(lines[2])  # line 1: format version, 2: batch metadata, 3: first source
    index_done = offset["index"] == 9223372036854775807  # Delta's END_INDEX: version finished
    return int(offset["reservoirVersion"]) + (1 if index_done else 0)


def bronze_next_offsets(spark: SparkSession, config: Config) -> dict[int, int]:
    """Per partition of the topic, the offset after the last record bronze holds."""
    return {
        row["partition"]: row["next"]
        for row in io.read_table(spark, config, BRONZE_EVENTS)
        .where(F.col("topic") == config.kafka.topic)
        .groupBy("partition")
        .agg((F.max("offset") + 1).alias("next"))
        .collect()
    }


def measure(spark: SparkSession, config: Config, retention: bool = True) -> IngestLag:
    """The lag now; `retention` also checks unread records against the topic's retention."""
    ends = kafka_end_offsets(config)
    indexer = measure_indexer_lag(config).records
    now_ms = time.time_ns() // 1_000_000
    if not io.table_exists(spark, config, BRONZE_EVENTS):
        warnings = retention_warnings(config, {}, now_ms) if retention else ()
        return IngestLag(sum(ends.values()), 0, warnings, indexer)
    held = bronze_next_offsets(spark, config)
    kafka_records = sum(max(0, end - held.get(partition, 0)) for partition, end in ends.items())

    next_version = derived_next_version(config) or 0
    if not io.table_exists(spark, config, PLAN_EVENTS):
        return IngestLag(kafka_records, 0, (), indexer)
    history = io.delta_table(spark, config, PLAN_EVENTS).history()
    pending = (
        history.where(F.col("version") >= next_version)
        .where(~F.col("operation").isin(*_NO_DATA_OPERATIONS))
        .count()
    )
    warnings = retention_warnings(config, held, now_ms) if retention else ()
    return IngestLag(kafka_records, pending, warnings, indexer)


def wait_caught_up(
    spark: SparkSession,
    config: Config,
    timeout_s: float,
    progress: Callable[[str], None] = print,
    poll_s: float = 5.0,
) -> bool:
    """Poll until the ingest has caught up (True) or `timeout_s` passed (False)."""
    started = time.monotonic()
    while True:
        lag = measure(spark, config, retention=False)
        progress(f"{lag.render()} ({time.monotonic() - started:.0f}s)")
        if lag.caught_up:
            return True
        if time.monotonic() - started > timeout_s:
            return False
        time.sleep(poll_s)
