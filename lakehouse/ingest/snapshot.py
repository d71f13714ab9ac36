"""Mongo snapshots: the plans collection read with the MongoDB Spark connector, a silver
bootstrap from it, and the reconciliation of a snapshot against silver.

The store is read without trusting a single type (every top-level field as text), then every
document is checked against the same contract as a change event: a document written around the
store (a wrong type, a control character, broken bookkeeping) is quarantined in
quarantine.plan_snapshots with its reason, and the rest of the snapshot goes through.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, LongType, StringType, StructField, StructType

from lakehouse import clients, io
from lakehouse.config import Config
from lakehouse.ingest.apply import ApplyResult, apply_plan_events, ensure_silver_tables
from lakehouse.ingest.contract import CHECK_FAILED, spark_reading_verdict, with_plan_columns
from lakehouse.plans.events import (
    BAD_NUMBER,
    MAX_TS_MS,
    MAX_VERSION,
    ChangeEvent,
    EventContractError,
    parse_event,
)
from lakehouse.tables import (
    PLAN_DOCUMENT,
    PLANS,
    RECONCILIATION,
    RECONCILIATION_REPORT,
    SNAPSHOT_QUARANTINE,
    SNAPSHOTS,
)

# A stored plan (see docs/change-events.md): the plan's fields, `_id`, and the store's own
# bookkeeping. A tombstone holds only `_id` and `_lakehouse`.
_OUTBOX = StructType([StructField("event_id", StringType()), StructField("version", LongType())])
_BOOKKEEPING = StructType(
    [
        StructField("version", LongType()),
        StructField("deleted", BooleanType()),
        StructField("updated_ms", LongType()),
        StructField("outbox", _OUTBOX),
    ]
)
STORED_PLAN = StructType(
    [
        StructField("_id", StringType()),
        *PLAN_DOCUMENT.fields,
        StructField("_lakehouse", _BOOKKEEPING),
    ]
)


# The same collection read as text: the connector gives a string as itself and any other
# value (number, object, array) as its JSON, so no stored value can fail the read itself
# (a typed read fails the whole job on one document whose field has another type).
STORED_TEXT = StructType([StructField(f.name, StringType()) for f in STORED_PLAN.fields])
# The reason for a stored document whose `_lakehouse` bookkeeping is missing or malformed.
BAD_BOOKKEEPING = "bad-bookkeeping"

_STORED_VERDICT = StructType(
    [
        StructField("reason", StringType()),
        StructField("detail", StringType()),
        StructField("doc", StringType()),  # canonical JSON of the checked document
        StructField("_lakehouse", _BOOKKEEPING),
    ]
)
_TEXT_FIELDS = {f.name for f in PLAN_DOCUMENT.fields if isinstance(f.dataType, StringType)}


@dataclass(frozen=True)
class SnapshotResult:
    snapshot_id: str
    plans: int
    live: int
    quarantined: int = 0  # stored documents that break the contract (quarantine.plan_snapshots)

    def render(self, config: Config) -> str:
        line = (
            f"snapshot {self.snapshot_id}: {self.plans:,} plans read from "
            f"{config.mongo.database}.{config.mongo.collection} ({self.live:,} live)"
        )
        if self.quarantined:
            line += (
                f"; {self.quarantined:,} stored documents break the contract and were "
                "quarantined (`lakehouse quarantine`)"
            )
        return line


def read_store(spark: SparkSession, config: Config) -> DataFrame:
    """The plans collection as stored, every field as text (STORED_TEXT layout)."""
    options = clients.mongo_spark_options(config, config.mongo.database, config.mongo.collection)
    return spark.read.format("mongodb").options(**options).schema(STORED_TEXT).load()


def stored_verdict(*texts: str | None) -> tuple[Any, ...]:
    """One stored document (STORED_TEXT values, in order) -> (reason, detail, canonical JSON of
    the document, bookkeeping): reason and detail null for a valid document, which is checked
    as the change event of its version would be."""
    fields = dict(zip(STORED_TEXT.fieldNames(), texts, strict=True))
    plan_id = fields.pop("_id")
    try:
        bookkeeping = _bookkeeping(fields.pop("_lakehouse"))
        if bookkeeping["deleted"]:
            return None, None, None, bookkeeping
        document = {
            name: text if name in _TEXT_FIELDS else _json_or_text(text)
            for name, text in fields.items()
            if text is not None
        }
        event = ChangeEvent(
            "c",
            plan_id or "",
            bookkeeping["version"],
            document,
            "snapshot",
            bookkeeping["updated_ms"],
        )
        try:
            value = event.value()
        except ValueError as exc:  # NaN or infinity
            return BAD_NUMBER, str(exc), None, None
        checked = parse_event(event.key(), value)
    except EventContractError as exc:
        return exc.reason, exc.detail[:2000], None, None
    except Exception as exc:  # a bug in the check quarantines the document, not the snapshot
        return CHECK_FAILED, f"{type(exc).__name__}: {exc}"[:2000], None, None
    canonical = json.dumps(checked.after, separators=(",", ":"), ensure_ascii=False)
    return None, None, canonical, bookkeeping


def _bookkeeping(text: str | None) -> dict[str, Any]:
    try:
        meta = json.loads(text) if text is not None else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise EventContractError(BAD_BOOKKEEPING, f"_lakehouse is not an object: {text!r:.100}")
    version, deleted, updated_ms = meta.get("version"), meta.get("deleted"), meta.get("updated_ms")
    outbox = meta.get("outbox")
    if type(version) is not int or not 1 <= version <= MAX_VERSION:
        raise EventContractError(BAD_BOOKKEEPING, f"_lakehouse.version {version!r:.100}")
    if type(deleted) is not bool or type(updated_ms) is not int or not 0 <= updated_ms <= MAX_TS_MS:
        raise EventContractError(
            BAD_BOOKKEEPING, f"_lakehouse.deleted {deleted!r:.50}, updated_ms {updated_ms!r:.50}"
        )
    if outbox is not None and not isinstance(outbox, dict):
        raise EventContractError(BAD_BOOKKEEPING, f"_lakehouse.outbox {outbox!r:.100}")
    pending = None
    if outbox is not None:
        pending = {"event_id": str(outbox.get("event_id")), "version": outbox.get("version")}
        if type(pending["version"]) is not int:
            pending["version"] = None
    return {"version": version, "deleted": deleted, "updated_ms": updated_ms, "outbox": pending}


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text  # a string where the schema wants another type: the schema says so


_stored_udf = F.udf(stored_verdict, _STORED_VERDICT)


def check_stored(stored: DataFrame) -> DataFrame:
    """Stored documents as text (STORED_TEXT) -> the STORED_PLAN columns typed from the checked
    document, plus reason and detail (null for a valid document) and `stored` (the fields as
    read, as a JSON object, for the quarantine). Persist the result: the check is a UDF."""
    verdict = _stored_udf(*(F.col(name) for name in STORED_TEXT.fieldNames()))
    checked = stored.select(
        F.col("_id"),
        F.to_json(F.struct(*STORED_TEXT.fieldNames())).alias("stored"),
        verdict.alias("_verdict"),
    ).withColumn("_plan", F.from_json("_verdict.doc", PLAN_DOCUMENT))
    live = F.col("_verdict.reason").isNull() & ~F.col("_verdict._lakehouse.deleted")
    reason, detail = spark_reading_verdict(
        F.col("_verdict.reason"), F.col("_verdict.detail"), live, F.col("_plan"), F.col("_id")
    )
    return checked.select(
        "_id",
        *(F.col("_plan")[name].alias(name) for name in PLAN_DOCUMENT.fieldNames()),
        F.col("_verdict._lakehouse").alias("_lakehouse"),
        reason.alias("reason"),
        detail.alias("detail"),
        "stored",
    )


def to_snapshot_quarantine(
    checked: DataFrame, snapshot_id: str, snapshot_ts: datetime
) -> DataFrame:
    """Rows of `check_stored` that break the contract -> quarantine.plan_snapshots rows:
    snapshot_id, snapshot_ts, plan_id, reason, detail, stored."""
    return checked.where(F.col("reason").isNotNull()).select(
        F.lit(snapshot_id).alias("snapshot_id"),
        F.lit(snapshot_ts).cast("timestamp").alias("snapshot_ts"),
        F.col("_id").alias("plan_id"),
        "reason",
        "detail",
        "stored",
    )


def to_snapshot_rows(stored: DataFrame, snapshot_id: str, snapshot_ts: datetime) -> DataFrame:
    """Stored plans (STORED_PLAN) -> bronze.plan_snapshots rows: snapshot_id, snapshot_ts,
    plan_id, version, is_deleted, has_pending_event, updated_ms, doc (canonical JSON, the same
    form silver.plans.doc has; null for a tombstone)."""
    deleted = F.coalesce(F.col("_lakehouse.deleted"), F.lit(False))
    plan = F.struct(*(F.col(f.name).cast(f.dataType).alias(f.name) for f in PLAN_DOCUMENT.fields))
    return stored.select(
        F.lit(snapshot_id).alias("snapshot_id"),
        F.lit(snapshot_ts).cast("timestamp").alias("snapshot_ts"),
        F.col("_id").alias("plan_id"),
        F.col("_lakehouse.version").alias("version"),
        deleted.alias("is_deleted"),
        F.col("_lakehouse.outbox").isNotNull().alias("has_pending_event"),
        F.col("_lakehouse.updated_ms").alias("updated_ms"),
        F.when(~deleted, F.to_json(plan)).alias("doc"),
    )


def snapshot_events(snapshot: DataFrame) -> DataFrame:
    """bronze.plan_snapshots rows -> plan events (contract.to_plan_events layout) with op "r"
    for a live plan and "d" for a tombstone, so a snapshot bootstraps silver through the same
    version-guarded merge as the stream."""
    return with_plan_columns(
        snapshot.select(
            "plan_id",
            "version",
            F.when(F.col("is_deleted"), F.lit("d")).otherwise(F.lit("r")).alias("op"),
            F.lit(None).cast("string").alias("event_id"),
            F.timestamp_millis(F.col("updated_ms")).alias("event_ts"),
            F.from_json("doc", PLAN_DOCUMENT).alias("plan"),
            F.lit(None).cast("int").alias("kafka_partition"),
            F.lit(None).cast("long").alias("kafka_offset"),
        )
    )


def take_snapshot(spark: SparkSession, config: Config) -> SnapshotResult:
    """Append the whole plans collection to bronze.plan_snapshots under a new snapshot id."""
    io.ensure_table(spark, config, SNAPSHOTS)
    taken = datetime.now(UTC)
    snapshot_id = f"{taken:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    checked = check_stored(read_store(spark, config)).persist()
    try:
        refused = to_snapshot_quarantine(checked, snapshot_id, taken)
        quarantined = refused.count()
        if quarantined:
            io.ensure_table(spark, config, SNAPSHOT_QUARANTINE)
            io.append(refused, config, SNAPSHOT_QUARANTINE)
        valid = checked.where(F.col("reason").isNull())
        rows = to_snapshot_rows(valid, snapshot_id, taken).persist()
        try:
            io.append(rows, config, SNAPSHOTS)
            live = F.sum(F.when(~F.col("is_deleted"), 1).otherwise(0))
            counts = rows.agg(F.count("*"), live).first()
        finally:
            rows.unpersist()
    finally:
        checked.unpersist()
    return SnapshotResult(snapshot_id, int(counts[0]), int(counts[1] or 0), quarantined)


def latest_snapshot(spark: SparkSession, config: Config) -> DataFrame:
    """Rows of the most recent snapshot; SnapshotMissing if none was taken yet."""
    if not io.table_exists(spark, config, SNAPSHOTS):
        raise SnapshotMissing(f"no snapshot at {SNAPSHOTS.path(config)}: run `lakehouse snapshot`")
    snapshots = io.read_table(spark, config, SNAPSHOTS)
    newest = snapshots.agg(F.max_by("snapshot_id", "snapshot_ts")).first()
    if newest is None or newest[0] is None:
        raise SnapshotMissing(f"{SNAPSHOTS.path(config)} is empty: run `lakehouse snapshot`")
    return snapshots.where(F.col("snapshot_id") == newest[0])


class SnapshotMissing(RuntimeError):
    pass


def bootstrap_silver(spark: SparkSession, config: Config) -> ApplyResult:
    """Load the latest snapshot into silver (and the search index). Plans silver already holds
    at an equal or higher version are left alone, so this is safe on a running lakehouse."""
    ensure_silver_tables(spark, config)
    events = snapshot_events(latest_snapshot(spark, config)).persist()
    try:
        return apply_plan_events(events, config)
    finally:
        events.unpersist()


def reconcile(snapshot: DataFrame, plans: DataFrame, snapshot_id: str | None = None) -> DataFrame:
    """A snapshot (bronze.plan_snapshots rows of one snapshot_id) and silver.plans -> one row per
    difference: snapshot_id, plan_id, kind, source_version, silver_version, detail.

    kind: missing (live in the store, absent or deleted in silver), extra (live in silver,
    absent or deleted in the store), version-mismatch (both live, versions differ),
    content-mismatch (same version, different document). Tombstones agree if both are deleted.
    """
    s = snapshot.alias("s")
    t = plans.alias("t")
    joined = s.join(t, F.col("s.plan_id") == F.col("t.plan_id"), "full_outer")
    source_live = F.col("s.plan_id").isNotNull() & ~F.col("s.is_deleted")
    silver_live = F.col("t.plan_id").isNotNull() & ~F.col("t.is_deleted")
    pending = F.when(
        F.col("s.has_pending_event"), F.lit("; the store still has an unpublished event")
    ).otherwise(F.lit(""))
    kind = (
        F.when(source_live & ~silver_live, F.lit("missing"))
        .when(~source_live & silver_live, F.lit("extra"))
        .when(source_live & (F.col("s.version") != F.col("t.version")), F.lit("version-mismatch"))
        .when(source_live & ~F.col("s.doc").eqNullSafe(F.col("t.doc")), F.lit("content-mismatch"))
    )
    detail = (
        F.when(kind == "missing", F.lit("live in the store, not live in silver"))
        .when(kind == "extra", F.lit("live in silver, not live in the store"))
        .when(kind == "version-mismatch", F.lit("silver is at another version"))
        .otherwise(F.lit("same version, different document"))
    )
    ids = snapshot.select("snapshot_id").limit(1)
    if snapshot_id is not None:
        ids = snapshot.sparkSession.range(1).select(F.lit(snapshot_id).alias("snapshot_id"))
    return (
        joined.select(
            F.coalesce("s.plan_id", "t.plan_id").alias("plan_id"),
            kind.alias("kind"),
            F.col("s.version").alias("source_version"),
            F.col("t.version").alias("silver_version"),
            F.concat(detail, pending).alias("detail"),
        )
        .where(F.col("kind").isNotNull())
        .crossJoin(ids)
    )


@dataclass(frozen=True)
class ReconcileResult:
    run_id: str
    snapshot_id: str
    differences: dict[str, int]
    plans_compared: int

    @property
    def total(self) -> int:
        return sum(self.differences.values())

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.differences.items())) or "none"
        return (
            f"reconcile {self.run_id}: snapshot {self.snapshot_id} vs silver, "
            f"{self.plans_compared} plans compared, {self.total} differences ({kinds})"
        )


def run_reconciliation(spark: SparkSession, config: Config) -> ReconcileResult:
    """Compare the latest snapshot with silver.plans and append the differences to
    reports/reconciliation under a new run id."""
    io.ensure_table(spark, config, RECONCILIATION)
    ensure_silver_tables(spark, config)
    snapshot = latest_snapshot(spark, config).persist()
    try:
        snapshot_id = snapshot.select("snapshot_id").first()[0]
        run_id = uuid.uuid4().hex[:12]
        report = (
            reconcile(snapshot, io.read_table(spark, config, PLANS), snapshot_id)
            .withColumn("run_id", F.lit(run_id))
            .withColumn("checked_at", F.current_timestamp())
            .select(*RECONCILIATION_REPORT.fieldNames())
            .persist()
        )
        try:
            io.append(report, config, RECONCILIATION)
            counts = {r["kind"]: int(r["count"]) for r in report.groupBy("kind").count().collect()}
        finally:
            report.unpersist()
        compared = snapshot.count()
    finally:
        snapshot.unpersist()
    return ReconcileResult(run_id, snapshot_id, counts, compared)
