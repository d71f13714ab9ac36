"""Offered load for the ingest benchmark: sends pre-built change events at a fixed rate.

    python bench/load_producer.py --bootstrap 127.0.0.1:9092 --topic T --events FILE \\
        --rate 2000 --duration 30

A process of its own, so the producer's Python never competes for the consumer's GIL. It loads
FILE (pickled [(key, value)], written by `write_events`), prints `ready`, waits for a line on
stdin, then sends at --rate events/s for --duration seconds (or until the events run out),
stamping each value's ts_ms with the send time, and prints one JSON line: started_ms, sent,
seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pickle
import sys
import time
from pathlib import Path

from kafka import KafkaProducer

from lakehouse.plans.events import ChangeEvent

# A ts_ms placeholder with as many digits as a real one, replaced at send time: re-encoding
# the JSON per event would cost the producer ~40 us of the 100 us a 10,000/s load allows.
_PLACEHOLDER_MS = 9_999_999_999_999
_PLACEHOLDER = f'"ts_ms":{_PLACEHOLDER_MS}'.encode()


def write_events(events: list[ChangeEvent], path: Path) -> None:
    records = [(e.key(), dataclasses.replace(e, ts_ms=_PLACEHOLDER_MS).value()) for e in events]
    path.write_bytes(pickle.dumps(records, protocol=pickle.HIGHEST_PROTOCOL))


def _stamped(value: bytes, now_ms: int) -> bytes:
    return value.replace(_PLACEHOLDER, b'"ts_ms":%d' % now_ms, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--events", type=Path, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    args = parser.parse_args()

    records = pickle.loads(args.events.read_bytes())
    producer = KafkaProducer(
        bootstrap_servers=args.bootstrap, acks="all", linger_ms=5, batch_size=256 * 1024
    )
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.monotonic()
    started_ms = time.time_ns() // 1_000_000
    limit = min(len(records), int(args.rate * args.duration))
    sent = 0
    while sent < limit:
        due = min(limit, int((time.monotonic() - started) * args.rate) + 1)
        now_ms = time.time_ns() // 1_000_000
        for key, value in records[sent:due]:
            producer.send(args.topic, key=key, value=_stamped(value, now_ms))
        sent = max(sent, due)
        pause = started + sent / args.rate - time.monotonic()
        if pause > 0:
            time.sleep(min(pause, 0.01))
    producer.flush()
    seconds = time.monotonic() - started
    producer.close()
    print(json.dumps({"started_ms": started_ms, "sent": sent, "seconds": seconds}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
