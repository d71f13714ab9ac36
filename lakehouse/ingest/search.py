"""The Elasticsearch index of current plans: mapping, the alias, documents, the Spark write.

The configured index name (`elasticsearch.index`, "plans") is an alias on a versioned index
(`plans-v1`, `plans-v2`, ...): the real-time indexer (lakehouse.ingest.indexer) writes through
it, `lakehouse reindex` (lakehouse.ingest.reindex) builds the next version and swaps it.

Documents are written with the plan version as an external version (`external_gte`), so
Elasticsearch itself refuses an older version over a newer one, and a replayed write (same
version) is accepted without changing anything.

When the elasticsearch-spark bulk write of a reindex fails, the same documents go again through
the Python client, one bulk request whose per-document answers tell a refusal for content (a
4xx other than 409 and 429: the document is returned as a `Refusal`, the rest are written) from
an outage or overload (a connection error, 429 or 5xx: the reindex fails and leaves the alias
where it was). One bad document never holds the index back.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, LongType, StringType, StructField, StructType

from lakehouse import clients, io
from lakehouse.config import Config
from lakehouse.tables import PLAN_DOCUMENT, REFUSED_DOCUMENTS

log = logging.getLogger(__name__)

_money = {"type": "double"}
INDEX_BODY: dict[str, Any] = {
    # One local node: a replica could never be assigned and would keep the index yellow.
    "settings": {
        "number_of_shards": 1,
        "number_of_replicas": 0,
        # How long a delete's version is remembered (Elasticsearch's default: 60 s). The
        # indexer writes from the topic, where an older update can arrive after a delete (a
        # redelivery, an outbox drained late): within this window it is refused instead of
        # bringing the plan back.
        "gc_deletes": "7d",
    },
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


ELASTICSEARCH = "elasticsearch"  # the sink's name in quarantine.sink_refusals


@dataclass(frozen=True)
class Refusal:
    """One document Elasticsearch refused for its content (quarantine.sink_refusals layout)."""

    operation: str  # index or delete
    plan_id: str
    version: int
    status: int
    error: str
    document: str | None  # the JSON sent; None for a delete


@dataclass(frozen=True)
class SearchSync:
    indexed: int
    deleted: int
    refused: tuple[Refusal, ...]


# Refusal as a DataFrame (before `to_refusal_rows` adds the sink, position and time).
REFUSAL = StructType(
    [
        StructField("operation", StringType(), False),
        StructField("plan_id", StringType(), False),
        StructField("version", LongType(), False),
        StructField("status", IntegerType(), True),
        StructField("error", StringType(), False),
        StructField("document", StringType(), True),
    ]
)


def to_refusal_rows(refused: DataFrame, plans: DataFrame) -> DataFrame:
    """Refusals (REFUSAL layout) and the silver.plans rows they were made from -> rows in the
    quarantine.sink_refusals layout: the sink, the refusal, the Kafka position of the plan's
    version (null for a snapshot row) and refused_at."""
    positions = plans.select("plan_id", "version", "kafka_partition", "kafka_offset")
    return refused.join(positions, ["plan_id", "version"], "left").select(
        F.lit(ELASTICSEARCH).alias("sink"),
        "operation",
        "plan_id",
        "version",
        "status",
        "error",
        "document",
        "kafka_partition",
        "kafka_offset",
        F.current_timestamp().alias("refused_at"),
    )


class _Unavailable(RuntimeError):
    """A per-document answer that says Elasticsearch, not the document, is the problem."""


def next_alias(config: Config) -> str:
    """The alias a reindex puts on the index it builds; the live indexer writes there too."""
    return f"{config.elasticsearch.index}-next"


def versioned_indexes(client: Any, alias: str) -> list[str]:
    """The concrete indexes `<alias>-v<N>` that exist, oldest (lowest N) first."""
    found = client.indices.get(index=f"{alias}-v*", allow_no_indices=True, ignore_unavailable=True)
    named = [name for name in found if name[len(alias) + 2 :].isdigit()]
    return sorted(named, key=lambda name: int(name[len(alias) + 2 :]))


def new_index_name(client: Any, alias: str) -> str:
    existing = versioned_indexes(client, alias)
    return f"{alias}-v{int(existing[-1][len(alias) + 2 :]) + 1 if existing else 1}"


@dataclass(frozen=True)
class IndexState:
    alias: str
    indexes: tuple[str, ...]  # behind the alias (one, except in an old concrete-index setup)
    documents: int


def index_state(config: Config) -> IndexState | None:
    """What the alias points at and how many documents it holds; None before it exists."""
    client = clients.es_client(config)
    alias = config.elasticsearch.index
    try:
        if not client.indices.exists(index=alias):
            return None
        behind = (
            tuple(sorted(client.indices.get_alias(name=alias)))
            if client.indices.exists_alias(name=alias)
            else (alias,)
        )
        return IndexState(alias, behind, int(client.count(index=alias)["count"]))
    finally:
        client.close()


def ensure_index(config: Config) -> None:
    """Make the configured index name an alias on a versioned index with the mapping
    (`<name>-v1` the first time). Readers and writers only ever name the alias, so a reindex
    can swap what is behind it atomically. A concrete index of that name (from before aliases)
    is copied into the versioned index and replaced by the alias in one step."""
    client = clients.es_client(config)
    alias = config.elasticsearch.index
    try:
        if client.indices.exists_alias(name=alias):
            return
        first = new_index_name(client, alias)
        if not client.indices.exists(index=alias):
            try:
                client.indices.create(index=first, body={**INDEX_BODY, "aliases": {alias: {}}})
            except Exception:
                if not client.indices.exists_alias(name=alias):  # not a concurrent creation
                    raise
            return
        client.indices.create(index=first, body=INDEX_BODY)
        copied = client.reindex(
            body={
                "source": {"index": alias},
                "dest": {"index": first, "version_type": "external_gte"},
            },
            refresh=True,
            wait_for_completion=True,
        )
        if copied.get("failures"):
            log.warning("%d documents of %s did not fit the mapping of %s and were left out",
                        len(copied["failures"]), alias, first)  # fmt: skip
        client.indices.update_aliases(
            body={
                "actions": [
                    {"remove_index": {"index": alias}},
                    {"add": {"index": first, "alias": alias}},
                ]
            }
        )
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


def _write_options(config: Config, operation: str, index: str) -> dict[str, str]:
    return {
        **clients.es_spark_options(config),
        "es.resource": index,
        "es.write.operation": operation,
        "es.mapping.id": "plan_id",
        "es.mapping.version": "version",
        "es.mapping.version.type": "external_gte",
        # The index is created with its mapping by ensure_index; never let a write invent one.
        "es.index.auto.create": "false",
    }


def write_plans(plans: DataFrame, config: Config, index: str) -> SearchSync:
    """Write these silver.plans rows into `index` with elasticsearch-spark (the bulk path of
    `lakehouse reindex`): live plans indexed at their version, tombstones deleted at theirs.
    Documents refused for their content are returned, not retried; an unreachable
    Elasticsearch raises."""
    live, deleted = plans.agg(
        F.count_if(~F.col("is_deleted")), F.count_if(F.col("is_deleted"))
    ).first()
    refused: list[Refusal] = []
    if live:
        refused += _write_or_sort_out(to_search_documents(plans), config, "index", index)
    if deleted:
        refused += _write_or_sort_out(to_search_deletes(plans), config, "delete", index)
    return SearchSync(live, deleted, tuple(refused))


def _write_or_sort_out(
    documents: DataFrame, config: Config, operation: str, index: str
) -> list[Refusal]:
    """The fast bulk write; when it fails, the same documents one by one through the client."""
    try:
        _write(documents, config, operation, index)
        return []
    except Exception as exc:
        log.warning("elasticsearch bulk %s failed, sorting out per document: %s",
                    operation, _first_line(exc))  # fmt: skip
    # Only after a failure: the batch's documents (bounded by the silver batch size) on the
    # driver, in the JSON Spark would send (null fields left out, as elasticsearch-spark does).
    rows = [json.loads(text) for text in documents.toJSON().collect()]
    return _bulk_per_document(rows, config, operation, index)


def _bulk_per_document(
    rows: list[dict[str, Any]], config: Config, operation: str, index: str
) -> list[Refusal]:
    """One bulk request, versioned as the Spark write is; per document: written (or already
    newer: 409), refused for content (returned), or Elasticsearch unavailable (raises)."""
    client = clients.es_client(config)
    try:
        body: list[dict[str, Any]] = []
        for row in rows:
            action = {
                "_index": index,
                "_id": row["plan_id"],
                "version": row["version"],
                "version_type": "external_gte",
            }
            body.append({operation: action})
            if operation == "index":
                body.append(row)
        response = client.bulk(body=body)
    finally:
        client.close()
    refused = []
    for row, item in zip(rows, response["items"], strict=True):
        answer = item[operation]
        status = int(answer.get("status", 0))
        if status < 300 or status == 409 or (operation == "delete" and status == 404):
            continue  # written, already newer, or already gone
        if status == 429 or status >= 500:
            raise _Unavailable(f"{operation} of {row['plan_id']}: status {status}")
        error = answer.get("error")
        refused.append(
            Refusal(
                operation=operation,
                plan_id=row["plan_id"],
                version=int(row["version"]),
                status=status,
                error=json.dumps(error)[:2000] if not isinstance(error, str) else error[:2000],
                document=json.dumps(row) if operation == "index" else None,
            )
        )
    return refused


def _write(documents: DataFrame, config: Config, operation: str, index: str) -> None:
    (
        documents.write.format("org.elasticsearch.spark.sql")
        .options(**_write_options(config, operation, index))
        .mode("append")
        .save()
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def record_refusals(refused: tuple[Refusal, ...], plans: DataFrame, config: Config) -> int:
    """Insert refusals into quarantine.sink_refusals, once per (sink, operation, plan_id,
    version), with the Kafka position of each version from `plans` (silver.plans rows)."""
    spark = plans.sparkSession
    frame = spark.createDataFrame(
        [(r.operation, r.plan_id, r.version, r.status, r.error, r.document) for r in refused],
        REFUSAL,
    )
    rows = to_refusal_rows(frame, plans)
    keys = ("sink", "operation", "plan_id", "version")
    (
        io.ensure_table(spark, config, REFUSED_DOCUMENTS)
        .alias("t")
        .merge(rows.alias("s"), " AND ".join(f"t.{k} = s.{k}" for k in keys))
        .whenNotMatchedInsertAll()
        .execute()
    )
    for r in refused:
        log.warning("elasticsearch refused %s of %s v%d (%d): %s",
                    r.operation, r.plan_id, r.version, r.status, r.error[:300])  # fmt: skip
    return len(refused)
