"""The Elasticsearch index of current plans: mapping, documents, and the versioned sync.

Documents are written with elasticsearch-spark using the plan version as an external version
(`external_gte`), so Elasticsearch itself refuses an older version over a newer one, and a
replayed batch (same version) is accepted without changing anything.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse import clients
from lakehouse.config import Config
from lakehouse.tables import PLAN_DOCUMENT

log = logging.getLogger(__name__)

_money = {"type": "double"}
INDEX_BODY: dict[str, Any] = {
    # One local node: a replica could never be assigned and would keep the index yellow.
    "settings": {"number_of_shards": 1, "number_of_replicas": 0},
    "mappings": {
        # A field nobody declared is a bug in the writer, not something to index silently.
        "dynamic": "strict",
        "properties": {
            "plan_id": {"type": "keyword"},
            "version": {"type": "long"},
            "org": {"type": "keyword"},
            "plan_type": {"type": "keyword"},
            "creation_date": {"type": "date", "format": "MM-dd-yyyy"},
            "deductible": _money,
            "copay": _money,
            "service_count": {"type": "integer"},
            "services": {
                "type": "nested",
                "properties": {
                    "planservice_id": {"type": "keyword"},
                    "service_id": {"type": "keyword"},
                    "name": {"type": "text", "fields": {"keyword": {"type": "keyword"}}},
                    "org": {"type": "keyword"},
                    "deductible": _money,
                    "copay": _money,
                },
            },
            "event_ts": {"type": "date", "format": "epoch_millis"},
            "indexed_at": {"type": "date", "format": "epoch_millis"},
        },
    },
}


class SearchSyncError(RuntimeError):
    """Elasticsearch stayed unreachable (or refused the writes) for the whole retry window."""


def ensure_index(config: Config) -> None:
    """Create the plans index with its explicit mapping unless it exists."""
    client = clients.es_client(config)
    try:
        if not client.indices.exists(index=config.elasticsearch.index):
            client.indices.create(index=config.elasticsearch.index, body=INDEX_BODY)
    finally:
        client.close()


def to_search_documents(plans: DataFrame) -> DataFrame:
    """Live silver.plans rows -> index documents: plan_id, version, org, plan_type,
    creation_date (MM-dd-yyyy text, parsed by the mapping), deductible, copay, service_count,
    services (planservice_id, service_id, name, org, deductible, copay), event_ts, indexed_at
    (epoch millis)."""
    services = F.transform(
        F.from_json("doc", PLAN_DOCUMENT)["linkedPlanServices"],
        lambda ps: F.struct(
            ps["objectId"].alias("planservice_id"),
            ps["linkedService"]["objectId"].alias("service_id"),
            ps["linkedService"]["name"].alias("name"),
            ps["linkedService"]["_org"].alias("org"),
            ps["planserviceCostShares"]["deductible"].alias("deductible"),
            ps["planserviceCostShares"]["copay"].alias("copay"),
        ),
    )
    return plans.where(~F.col("is_deleted")).select(
        "plan_id",
        "version",
        "org",
        "plan_type",
        F.date_format("creation_date", "MM-dd-yyyy").alias("creation_date"),
        "deductible",
        "copay",
        "service_count",
        services.alias("services"),
        F.unix_millis("event_ts").alias("event_ts"),
        F.unix_millis(F.current_timestamp()).alias("indexed_at"),
    )


def to_search_deletes(plans: DataFrame) -> DataFrame:
    """Tombstones of silver.plans -> plan_id, version: the documents to remove."""
    return plans.where(F.col("is_deleted")).select("plan_id", "version")


def _write_options(config: Config, operation: str) -> dict[str, str]:
    return {
        **clients.es_spark_options(config),
        "es.resource": config.elasticsearch.index,
        "es.write.operation": operation,
        "es.mapping.id": "plan_id",
        "es.mapping.version": "version",
        "es.mapping.version.type": "external_gte",
        # The index is created with its mapping by ensure_index; never let a write invent one.
        "es.index.auto.create": "false",
    }


def sync_search_index(plans: DataFrame, config: Config, retry_timeout_s: float) -> None:
    """Bring the index in line with these silver.plans rows: live plans indexed at their
    version, tombstones deleted. Retries while Elasticsearch is unreachable, then raises
    SearchSyncError so the streaming query fails and is replayed from its checkpoint."""
    deadline = time.monotonic() + retry_timeout_s
    delay = 1.0
    while True:
        try:
            ensure_index(config)
            live, deleted = plans.agg(
                F.count_if(~F.col("is_deleted")), F.count_if(F.col("is_deleted"))
            ).first()
            if live:
                _write(to_search_documents(plans), config, "index")
            if deleted:
                _write(to_search_deletes(plans), config, "delete")
            return
        except Exception as exc:  # es-hadoop and the client raise many types for one outage
            if time.monotonic() + delay > deadline:
                raise SearchSyncError(
                    f"Elasticsearch at {config.elasticsearch.url} refused the sync for "
                    f"{retry_timeout_s:.0f}s: {_first_line(exc)}"
                ) from exc
            log.warning("elasticsearch sync failed, retrying in %.0fs: %s", delay, _first_line(exc))
            time.sleep(delay)
            delay = min(delay * 2, 15.0)


def _write(documents: DataFrame, config: Config, operation: str) -> None:
    (
        documents.write.format("org.elasticsearch.spark.sql")
        .options(**_write_options(config, operation))
        .mode("append")
        .save()
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
