"""Connections to the external services, built from `Config` in one place.

Python clients (kafka-python, pymongo, elasticsearch, psycopg2) and the option maps the Spark
connectors need. Nothing here reads or writes data; callers do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from lakehouse.config import Config, postgres_password

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch
    from kafka import KafkaAdminClient
    from pymongo import MongoClient

# FerretDB lacks $sample, which the connector's default partitioners use: read in one partition.
MONGO_PARTITIONER = "com.mongodb.spark.sql.connector.read.partitioner.SinglePartitionPartitioner"
# Largest record batch a topic we create accepts: one record of the contract's maximum size
# (events.MAX_RECORD_BYTES) plus batch overhead, and no more, whatever the broker's own default;
# the broker refuses anything larger at produce time, so it never reaches a consumer.
TOPIC_MAX_MESSAGE_BYTES = 1_048_588


BOOTSTRAP_TIMEOUT_MS = 10_000


def kafka_admin(config: Config) -> KafkaAdminClient:
    from kafka import KafkaAdminClient

    return KafkaAdminClient(
        bootstrap_servers=config.kafka.bootstrap,
        request_timeout_ms=15000,
        # an unreachable broker fails the call in 10 s (kafka-python waits 30 s by default)
        bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
    )


def ensure_topic(config: Config, topic: str, partitions: int = 3) -> None:
    """Create `topic` if it does not exist (the broker does not auto-create topics)."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = kafka_admin(config)
    try:
        if topic not in admin.list_topics():
            new = NewTopic(
                topic,
                num_partitions=partitions,
                replication_factor=1,
                topic_configs={"max.message.bytes": str(TOPIC_MAX_MESSAGE_BYTES)},
            )
            admin.create_topics([new])
    except TopicAlreadyExistsError:
        pass  # created concurrently by another process: that is what we wanted
    finally:
        admin.close()


def mongo_client(config: Config, selection_timeout_ms: int = 10000) -> MongoClient:
    from pymongo import MongoClient

    # 10 s to find the server unless the URI sets its own timeout (keyword args would win)
    uri = config.mongo.uri
    if "serverselectiontimeoutms" in uri.lower():
        return MongoClient(uri)
    return MongoClient(uri, serverSelectionTimeoutMS=selection_timeout_ms)


def mongo_spark_options(config: Config, database: str, collection: str) -> dict[str, str]:
    return {
        "connection.uri": config.mongo.uri,
        "database": database,
        "collection": collection,
        "partitioner": MONGO_PARTITIONER,
    }


def es_client(config: Config) -> Elasticsearch:
    from elasticsearch import Elasticsearch

    return Elasticsearch([config.elasticsearch.url], timeout=30)


def es_spark_options(config: Config) -> dict[str, str]:
    url = urlsplit(config.elasticsearch.url)
    return {
        "es.nodes": url.hostname or "127.0.0.1",
        "es.port": str(url.port or 9200),
        "es.net.ssl": "true" if url.scheme == "https" else "false",
        # One node behind a fixed address: do not discover or sniff cluster-internal addresses.
        "es.nodes.wan.only": "true",
    }


def pg_connect(config: Config, **overrides: Any):
    """A psycopg2 connection to the warehouse database (password from the environment)."""
    import psycopg2

    return psycopg2.connect(config.postgres.dsn, password=postgres_password(), **overrides)


def jdbc_url(config: Config) -> str:
    dsn = urlsplit(config.postgres.dsn)
    return f"jdbc:postgresql://{dsn.hostname}:{dsn.port or 5432}{dsn.path}"


def jdbc_properties(config: Config) -> dict[str, str]:
    props = {
        "user": urlsplit(config.postgres.dsn).username or "",
        "driver": "org.postgresql.Driver",
    }
    password = postgres_password()
    if password:
        props["password"] = password
    return props
