"""The local stack: Kafka, PostgreSQL, FerretDB, Elasticsearch (with --cluster a Spark standalone
master and workers; with --apps MLflow, Prefect, Superset, JupyterLab, the supervised ingest and
indexer) as plain processes on 127.0.0.1."""

from lakehouse.stack.manager import (
    ServiceStatus,
    all_reachable,
    down,
    format_status,
    restart,
    stack_ok,
    status,
    up,
    up_cluster,
)
from lakehouse.stack.process import StackError

__all__ = [
    "ServiceStatus",
    "StackError",
    "all_reachable",
    "down",
    "format_status",
    "restart",
    "stack_ok",
    "status",
    "up",
    "up_cluster",
]
