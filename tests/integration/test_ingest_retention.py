"""`lakehouse ingest --lag` against a real broker: it warns when the oldest record bronze has not
read nears the topic's retention, and says how many records retention deleted before bronze
read them (there, only a snapshot and reconcile can recover the plans)."""

from __future__ import annotations

import time

import pytest
from support import isolated_source, produce

from lakehouse import clients
from lakehouse.config import Config
from lakehouse.ingest.lag import retention_warnings, topic_retention_ms

pytestmark = pytest.mark.usefixtures("local_stack")

WEEK_MS = 7 * 24 * 3_600_000  # Kafka's default retention.ms


def test_unread_records_near_or_past_retention_are_reported(config: Config) -> None:
    from kafka import TopicPartition

    source = isolated_source(config, "retention")
    clients.ensure_topic(source, source.kafka.topic)
    positions = produce(source, [(b"plan-r", b"{}")] * 6)
    (partition,) = {p for p, _ in positions}
    now_ms = time.time_ns() // 1_000_000

    assert topic_retention_ms(source) == WEEK_MS
    assert retention_warnings(source, {}, now_ms) == ()
    assert retention_warnings(source, {partition: 6}, now_ms + WEEK_MS) == ()  # all read
    (near,) = retention_warnings(source, {partition: 2}, now_ms + 4 * 24 * 3_600_000)
    assert near.startswith(f"partition {partition}: the oldest record bronze has not read")
    assert "(offset 2) is 96.0 h old" in near
    assert "the topic deletes records after 168.0 h" in near

    admin = clients.kafka_admin(source)
    try:
        admin.delete_records({TopicPartition(source.kafka.topic, partition): 4})
    finally:
        admin.close()
    (lost,) = retention_warnings(source, {partition: 1}, now_ms)
    assert lost.startswith(f"partition {partition}: 3 records (offsets 1..3) were deleted")
    assert retention_warnings(source, {partition: 4}, now_ms) == ()
