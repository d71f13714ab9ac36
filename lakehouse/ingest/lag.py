"""How far the running streaming ingest is behind, measured from the outside: Kafka's end offsets
against the offsets bronze holds, and bronze's Delta versions against the last one the silver
stream committed (from its checkpoint). `lakehouse ingest --wait` polls this until both are 0,
so a script can hand over to batch jobs once the supervised ingest has caught up."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse import io
from lakehouse.config import Config, is_uri
from lakehouse.tables import BRONZE_EVENTS, SILVER_CHECKPOINT, checkpoint

# Delta operations that change no rows: a stream has nothing to read in them.
_NO_DATA_OPERATIONS = (
    "OPTIMIZE",
    "VACUUM START",
    "VACUUM END",
    "SET TBLPROPERTIES",
    "CREATE TABLE",
)


@dataclass(frozen=True)
class IngestLag:
    # Records in Kafka beyond the last offset bronze holds, summed over partitions.
    kafka_records: int
    # Bronze versions with new rows that the silver stream has not committed yet.
    bronze_versions: int

    @property
    def caught_up(self) -> bool:
        return self.kafka_records == 0 and self.bronze_versions == 0

    def render(self) -> str:
        return (
            f"ingest lag: {self.kafka_records:,} Kafka records not in bronze, "
            f"{self.bronze_versions} bronze version(s) not in silver"
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


def silver_next_bronze_version(config: Config) -> int | None:
    """The first bronze version the silver stream has not fully processed, from its last
    committed batch (Delta source offset: everything before `reservoirVersion` is done when
    `index` is -1); None before its first batch."""
    folder = checkpoint(config, SILVER_CHECKPOINT)
    if is_uri(folder):
        raise ValueError(f"ingest lag reads local checkpoints only, not {folder}")
    commits = [int(p.name) for p in Path(folder, "commits").glob("[0-9]*")]
    if not commits:
        return None
    lines = Path(folder, "offsets", str(max(commits))).read_text().splitlines()
    offset = json.loads(lines[2])  # line 1: format version, 2: batch metadata, 3: first source
    index_done = offset["index"] == 9223372036854775807  # Delta's END_INDEX: version finished
    return int(offset["reservoirVersion"]) + (1 if index_done else 0)


def measure(spark: SparkSession, config: Config) -> IngestLag:
    ends = kafka_end_offsets(config)
    if not io.table_exists(spark, config, BRONZE_EVENTS):
        return IngestLag(sum(ends.values()), 0)
    held = {
        row["partition"]: row["next"]
        for row in io.read_table(spark, config, BRONZE_EVENTS)
        .where(F.col("topic") == config.kafka.topic)
        .groupBy("partition")
        .agg((F.max("offset") + 1).alias("next"))
        .collect()
    }
    kafka_records = sum(max(0, end - held.get(partition, 0)) for partition, end in ends.items())

    next_version = silver_next_bronze_version(config) or 0
    history = io.delta_table(spark, config, BRONZE_EVENTS).history()
    pending = (
        history.where(F.col("version") >= next_version)
        .where(~F.col("operation").isin(*_NO_DATA_OPERATIONS))
        .count()
    )
    return IngestLag(kafka_records, pending)


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
        lag = measure(spark, config)
        progress(f"{lag.render()} ({time.monotonic() - started:.0f}s)")
        if lag.caught_up:
            return True
        if time.monotonic() - started > timeout_s:
            return False
        time.sleep(poll_s)
