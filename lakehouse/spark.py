"""The one place a SparkSession is built: Delta, every connector jar, settings from `conf/`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pyspark.java_gateway import ensure_callback_server_started
from pyspark.sql import SparkSession

from lakehouse.config import Config

# pydeequ reads this at import time to pick its Deequ coordinates; we ship the jar ourselves.
os.environ.setdefault("SPARK_VERSION", "3.5")

# The jars every job needs (Delta, Kafka, Mongo, Elasticsearch, Deequ, PostgreSQL JDBC); a missing
# one means `make jars` has not run, which we report instead of failing deep inside a job.
REQUIRED_JAR_PREFIXES = (
    "delta-spark_",
    "delta-storage-",
    "spark-sql-kafka-0-10_",
    "mongo-spark-connector_",
    "elasticsearch-spark-30_",
    "deequ-",
    "postgresql-",
)


class SparkSetupError(RuntimeError):
    """Spark cannot be started as configured (missing jars, bad settings)."""


def connector_jars(jars_dir: str | Path) -> list[str]:
    """Absolute paths of the resolved connector jars, checked for completeness."""
    folder = Path(jars_dir).absolute()
    jars = sorted(str(p) for p in folder.glob("*.jar")) if folder.is_dir() else []
    names = [Path(j).name for j in jars]
    missing = [p for p in REQUIRED_JAR_PREFIXES if not any(n.startswith(p) for n in names)]
    if missing:
        raise SparkSetupError(
            f"connector jars missing from {folder}: {', '.join(p.rstrip('_-') for p in missing)}; "
            "run `make jars` (resolves conf/maven/spark.xml with Maven)"
        )
    return jars


def spark_conf(config: Config, app_name: str | None = None) -> dict[str, str]:
    """Every Spark setting the session gets, as a plain mapping (easy to inspect and test)."""
    spark = config.spark
    settings = {
        "spark.master": spark.master,
        "spark.app.name": app_name or spark.app_name,
        "spark.driver.memory": spark.driver_memory,
        "spark.jars": ",".join(connector_jars(spark.jars_dir)),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.shuffle.partitions": str(spark.shuffle_partitions),
        # Delta rebuilds snapshots with 50 partitions by default: size them like the shuffles.
        "spark.databricks.delta.snapshotPartitions": str(spark.shuffle_partitions),
        "spark.ui.enabled": "true" if spark.ui_enabled else "false",
        "spark.sql.session.timeZone": "UTC",
        # An impossible date (02-30-2020) is null, never an exception that kills a stream.
        "spark.sql.legacy.timeParserPolicy": "CORRECTED",
        "spark.sql.warehouse.dir": config.warehouse,
        # Schemas are declared, never evolved implicitly; new tables get Change Data Feed.
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
        "spark.databricks.delta.properties.defaults.enableChangeDataFeed": "true",
        "spark.sql.streaming.checkpointLocation": config.checkpoint_root,
        # Fail fast instead of hanging when a connector cannot reach its service.
        "spark.network.timeout": "120s",
    }
    settings.update(spark.extra_conf)
    return settings


def build_spark(config: Config, app_name: str | None = None) -> SparkSession:
    """Build (or return the running) SparkSession for `config`.

    Local mode by default; any master (standalone, k8s, yarn) through `spark.master`.
    """
    if config.spark.master.startswith("local"):
        # The driver, its block manager and the UI listen on loopback only in local mode.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # Python workers run this interpreter (the project's virtualenv), not whatever
        # `python3` is first on PATH: UDFs import the same packages as the driver.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder
    for key, value in spark_conf(config, app_name).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel(config.spark.log_level)
    # es-hadoop warns on every write that the 7.x server does not report a build flavour; the
    # version check it asks for passes, so the warning is noise that buries batch progress.
    log4j = session._jvm.org.apache.logging.log4j  # type: ignore[union-attr]
    log4j.core.config.Configurator.setLevel(
        "org.elasticsearch.hadoop.rest.RestClient", log4j.Level.ERROR
    )
    # Start py4j's callback server (foreachBatch, PyDeequ assertions) the way PySpark does, with
    # daemon threads. Left to PyDeequ it starts with non-daemon threads that keep Python alive
    # after stop(), and shutting those down deadlocks once foreachBatch has used them.
    ensure_callback_server_started(session.sparkContext._gateway)
    return session


def stop_spark(session: SparkSession) -> None:
    """Stop the session (the callback server's daemon threads end with the process)."""
    session.stop()


def submit_args(config: Config) -> list[str]:
    """spark-submit arguments carrying the same settings as `build_spark` (one per line)."""
    settings = spark_conf(config)
    args = ["--master", settings.pop("spark.master")]
    for key, value in settings.items():
        args += ["--conf", f"{key}={value}"]
    return args


if __name__ == "__main__":
    import sys

    from lakehouse.config import ConfigError, load_config

    if sys.argv[1:] != ["--submit-args"]:
        print("usage: python -m lakehouse.spark --submit-args", file=sys.stderr)
        sys.exit(2)
    try:
        print("\n".join(submit_args(load_config())))
    except (ConfigError, SparkSetupError) as exc:
        print(f"lakehouse.spark: {exc}", file=sys.stderr)
        sys.exit(2)
