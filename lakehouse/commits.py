"""What the Delta commits after a version did, from their commitInfo (`io.commit_info`, no Spark
job): whether the change feed over them is exactly what changed, and how many rows they touched.
The mirror publishes, and the quality suites check, only what changed when it is."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyspark.sql import SparkSession

from lakehouse import io
from lakehouse.config import Config
from lakehouse.tables import Table

Commit = tuple[int, dict[str, Any] | None]

# Operations whose change feed is exactly what changed; anything else (an overwrite, a replace,
# a restore, a schema or property change) calls for a whole-table pass. WRITE and STREAMING
# UPDATE count only when they append.
_ROW_CHANGES = frozenset({"MERGE", "DELETE", "UPDATE"})
_APPENDS = frozenset({"WRITE", "STREAMING UPDATE"})
_NO_DATA_CHANGE = frozenset({"OPTIMIZE", "VACUUM START", "VACUUM END", "REORG"})
# The rows each operation reports changing in its operationMetrics: their sum bounds the rows in
# the change feed, known before any Spark job.
_CHANGE_METRICS = (
    "numTargetRowsInserted",
    "numTargetRowsUpdated",
    "numTargetRowsDeleted",
    "numOutputRows",
    "numDeletedRows",
    "numUpdatedRows",
)


def since(spark: SparkSession, config: Config, table: Table, after: int, upto: int) -> list[Commit]:
    """(version, commitInfo) of each commit after `after` up to `upto`; None where the log no
    longer holds it."""
    return [(v, io.commit_info(spark, config, table, v)) for v in range(after + 1, upto + 1)]


def describe(info: dict[str, Any]) -> str:
    """WRITE (Overwrite), MERGE, ...: the commit's operation as history() shows it."""
    parameters = info.get("operationParameters") or {}
    mode = parameters.get("mode") or parameters.get("outputMode")
    return f"{info.get('operation')}" + (f" ({mode})" if mode else "")


def rows_changed(info: dict[str, Any]) -> int:
    metrics = info.get("operationMetrics") or {}
    return sum(int(metrics.get(name, 0)) for name in _CHANGE_METRICS)


def is_row_change(info: dict[str, Any]) -> bool:
    """The commit changed rows one by one (or none): its change feed is the whole change."""
    operation = info.get("operation")
    if operation in _ROW_CHANGES or operation in _NO_DATA_CHANGE:
        return True
    parameters = info.get("operationParameters") or {}
    mode = parameters.get("mode") or parameters.get("outputMode")
    return operation in _APPENDS and mode == "Append"


def first_rebuild(history: Sequence[Commit]) -> str | None:
    """Why the change feed over `history` is not the whole change (the first commit that is not
    a row change, or is gone from the log); None when it is."""
    for number, info in history:
        if info is None:
            return f"commit v{number} is no longer in the log"
        if not is_row_change(info):
            return f"v{number} is a {describe(info)}"
    return None
