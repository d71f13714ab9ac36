"""The smoke pipeline: one round trip through every service Spark talks to.

Each round trip writes a few known rows, reads them back through a different path, and returns
what it read; `run_smoke` compares that with what was written. Tests call the same functions.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

from lakehouse import clients
from lakehouse.config import Config, join_uri

SMOKE_TOPIC = "lakehouse.smoke"
SMOKE_MONGO_DATABASE = "lakehouse_smoke"
SMOKE_ES_INDEX = "lakehouse-smoke"
SMOKE_PG_TABLE = "smoke_roundtrip"

SMOKE_SCHEMA = StructType(
    [
        StructField("id", LongType(), nullable=False),
        StructField("name", StringType(), nullable=False),
        StructField("amount", DoubleType(), nullable=False),
    ]
)
SMOKE_ROWS: list[tuple[int, str, float]] = [
    (1, "alpha", 10.0),
    (2, "beta", 20.0),
    (3, "gamma", 30.0),
]
# After the MERGE in `delta_roundtrip`: id 2 updated, id 4 inserted.
DELTA_EXPECTED: list[tuple[int, str, float]] = [
    (1, "alpha", 10.0),
    (2, "beta", 25.0),
    (3, "gamma", 30.0),
    (4, "delta", 40.0),
]


@dataclass(frozen=True)
class SmokeResult:
    name: str
    ok: bool
    detail: str


def smoke_frame(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(SMOKE_ROWS, SMOKE_SCHEMA)


def delta_roundtrip(spark: SparkSession, location: str) -> list[tuple[int, str, float]]:
    """Overwrite a Delta table with SMOKE_ROWS, MERGE one update and one insert, read it back."""
    from delta.tables import DeltaTable

    smoke_frame(spark).write.format("delta").mode("overwrite").save(location)
    changes = spark.createDataFrame([(2, "beta", 25.0), (4, "delta", 40.0)], SMOKE_SCHEMA)
    (
        DeltaTable.forPath(spark, location)
        .alias("t")
        .merge(changes.alias("c"), "t.id = c.id")
        .whenMatchedUpdateAll()
        .whenNotMatchedInsertAll()
        .execute()
    )
    rows = spark.read.format("delta").load(location).orderBy("id").collect()
    return [(r.id, r.name, r.amount) for r in rows]


def deequ_verification(spark: SparkSession, frame: DataFrame) -> dict[str, str]:
    """Run a PyDeequ check suite on `frame` (id, name, amount); constraint -> Success/Failure."""
    from pydeequ.checks import Check, CheckLevel
    from pydeequ.verification import VerificationResult, VerificationSuite

    from lakehouse.quality.runner import pydeequ_warnings_ignored

    check = (
        Check(spark, CheckLevel.Error, "smoke")
        .hasSize(lambda n: n == len(SMOKE_ROWS))
        .isComplete("id")
        .isUnique("id")
        .isNonNegative("amount")
        .isContainedIn("name", [name for _, name, _ in SMOKE_ROWS])
    )
    with pydeequ_warnings_ignored():
        result = VerificationSuite(spark).onData(frame).addCheck(check).run()
        rows = VerificationResult.checkResultsAsDataFrame(spark, result).collect()
    return {r.constraint: r.constraint_status for r in rows}


def kafka_roundtrip(
    spark: SparkSession, config: Config, topic: str = SMOKE_TOPIC
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Produce one keyed message per smoke row; read them back with kafka-python and with Spark.

    Returns (consumed by kafka-python, read by Spark), each as sorted (key, value) pairs of the
    messages this call produced (located by the offsets before and after producing).
    """
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    clients.ensure_topic(config, topic)
    consumer = KafkaConsumer(
        bootstrap_servers=config.kafka.bootstrap, enable_auto_commit=False, group_id=None
    )
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        start = consumer.end_offsets(partitions)

        run_id = uuid.uuid4().hex
        producer = KafkaProducer(bootstrap_servers=config.kafka.bootstrap, acks="all")
        for row_id, name, amount in SMOKE_ROWS:
            value = {"run": run_id, "id": row_id, "name": name, "amount": amount}
            producer.send(topic, key=str(row_id).encode(), value=json.dumps(value).encode())
        producer.flush()
        producer.close()
        end = consumer.end_offsets(partitions)

        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, start[tp])
        consumed: list[tuple[str, str]] = []
        deadline = time.monotonic() + 30
        while len(consumed) < sum(end[tp] - start[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"kafka-python read {len(consumed)} smoke messages in 30s")
            for records in consumer.poll(timeout_ms=1000).values():
                consumed += [(r.key.decode(), r.value.decode()) for r in records]
    finally:
        consumer.close()

    def offsets(by_partition: dict) -> str:
        return json.dumps({topic: {str(tp.partition): by_partition[tp] for tp in partitions}})

    spark_rows = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", config.kafka.bootstrap)
        .option("subscribe", topic)
        .option("startingOffsets", offsets(start))
        .option("endingOffsets", offsets(end))
        .load()
        .select(F.col("key").cast("string"), F.col("value").cast("string"))
        .collect()
    )
    read_by_spark = [(r.key, r.value) for r in spark_rows]
    return sorted(consumed), sorted(read_by_spark)


def mongo_roundtrip(
    spark: SparkSession, config: Config, collection: str = "roundtrip"
) -> list[tuple[int, str, float]]:
    """Insert SMOKE_ROWS with pymongo; read them with the Spark Mongo connector and a schema."""
    client = clients.mongo_client(config)
    try:
        coll = client[SMOKE_MONGO_DATABASE][collection]
        coll.delete_many({})
        coll.insert_many([{"_id": i, "id": i, "name": n, "amount": a} for i, n, a in SMOKE_ROWS])
    finally:
        client.close()
    rows = (
        spark.read.format("mongodb")
        .options(**clients.mongo_spark_options(config, SMOKE_MONGO_DATABASE, collection))
        .schema(SMOKE_SCHEMA)
        .load()
        .orderBy("id")
        .collect()
    )
    return [(r.id, r.name, r.amount) for r in rows]


def elasticsearch_roundtrip(
    spark: SparkSession, config: Config, index: str = SMOKE_ES_INDEX
) -> list[tuple[int, str, float]]:
    """Index SMOKE_ROWS with elasticsearch-spark (id = row id); search with the Python client."""
    es = clients.es_client(config)
    try:
        if es.indices.exists(index=index):
            es.indices.delete(index=index)
        (
            smoke_frame(spark)
            .write.format("org.elasticsearch.spark.sql")
            .options(**clients.es_spark_options(config))
            .option("es.mapping.id", "id")
            .mode("append")
            .save(index)
        )
        es.indices.refresh(index=index)
        hits = es.search(index=index, body={"query": {"match_all": {}}, "size": 100})["hits"][
            "hits"
        ]
    finally:
        es.close()
    found = [(h["_source"]["id"], h["_source"]["name"], h["_source"]["amount"]) for h in hits]
    return sorted(found)


def postgres_roundtrip(
    spark: SparkSession, config: Config, table: str = SMOKE_PG_TABLE
) -> list[tuple[int, str, float]]:
    """Write SMOKE_ROWS through Spark JDBC (overwrite); read them back with psycopg2."""
    smoke_frame(spark).write.jdbc(
        clients.jdbc_url(config),
        table,
        mode="overwrite",
        properties=clients.jdbc_properties(config),
    )
    conn = clients.pg_connect(config)
    try:
        with conn.cursor() as cur:
            cur.execute(f"select id, name, amount from {table} order by id")
            return [tuple(row) for row in cur.fetchall()]
    finally:
        conn.close()


def run_smoke(
    spark: SparkSession, config: Config, report: Callable[[str], None] = print
) -> list[SmokeResult]:
    """Run every round trip against the configured services; one result per service."""
    expected_kafka = sorted((str(i), n) for i, n, _ in SMOKE_ROWS)

    def check_kafka() -> tuple[bool, str]:
        consumed, read = kafka_roundtrip(spark, config)
        keys_names = sorted((k, json.loads(v)["name"]) for k, v in read)
        ok = consumed == read and keys_names == expected_kafka
        return ok, f"{len(read)} messages via kafka-python and Spark's Kafka source"

    def check_deequ() -> tuple[bool, str]:
        statuses = deequ_verification(spark, smoke_frame(spark))
        passed = [c for c, status in statuses.items() if status == "Success"]
        return len(passed) == len(statuses) == 5, f"{len(passed)}/{len(statuses)} constraints pass"

    checks: dict[str, Callable[[], tuple[bool, str]]] = {
        "delta": lambda: _compare(
            delta_roundtrip(spark, join_uri(config.warehouse, "smoke", "delta_roundtrip")),
            DELTA_EXPECTED,
            "Delta write + MERGE + read",
        ),
        "deequ": check_deequ,
        "kafka": check_kafka,
        "mongo": lambda: _compare(
            mongo_roundtrip(spark, config), SMOKE_ROWS, "pymongo insert, Spark Mongo read"
        ),
        "elasticsearch": lambda: _compare(
            elasticsearch_roundtrip(spark, config), SMOKE_ROWS, "es-spark index, client search"
        ),
        "postgres": lambda: _compare(
            postgres_roundtrip(spark, config), SMOKE_ROWS, "Spark JDBC write, psycopg2 read"
        ),
    }
    results = []
    for name, check in checks.items():
        started = time.monotonic()
        try:
            ok, detail = check()
        except Exception as exc:  # reported per service; the other round trips still run
            ok, detail = False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        detail = f"{detail} ({time.monotonic() - started:.1f}s)"
        report(f"smoke {name}: {'ok' if ok else 'FAILED'} - {detail}")
        results.append(SmokeResult(name, ok, detail))
    return results


def _compare(actual: list, expected: list, what: str) -> tuple[bool, str]:
    if actual == expected:
        return True, f"{what}: {len(actual)} rows match"
    return False, f"{what}: expected {expected}, got {actual}"
