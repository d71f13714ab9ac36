"""The one place a SparkSession is built: Delta, every connector jar, settings from `conf/`."""

from __future__ import annotations

import os
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from pyspark import SparkContext
from pyspark.java_gateway import ensure_callback_server_started
from pyspark.sql import SparkSession

from lakehouse.config import PROJECT_ROOT, Config

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


# Where `package_zip` writes the lakehouse package that a cluster's executors import.
PACKAGE_ZIP = PROJECT_ROOT / "build" / "dist" / "lakehouse.zip"
# Spark's configuration folder for the sessions the project starts: its log4j2.properties.
SPARK_CONF_DIR = PROJECT_ROOT / "conf" / "spark"
# Fixed entry times: the same sources give the same bytes, whoever builds the zip when.
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)


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
        # VACUUM and partition discovery list files with this many tasks (Spark's 10,000 is
        # sized for a cluster and millions of files).
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": str(spark.listing_parallelism),
        "spark.ui.enabled": "true" if spark.ui_enabled else "false",
        # The commands print their own progress; Spark's console bars would garble those lines.
        "spark.ui.showConsoleProgress": "false",
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
        # VACUUM leaves START/END commits in the table's history: who deleted how many files.
        "spark.databricks.delta.vacuum.logging.enabled": "true",
    }
    if spark.jvm_options:
        settings["spark.driver.extraJavaOptions"] = spark.jvm_options
        settings["spark.executor.extraJavaOptions"] = spark.jvm_options
    settings.update(spark.extra_conf)
    return settings


def is_local_master(master: str) -> bool:
    return master.startswith("local")


def on_this_machine(master: str) -> bool:
    """Local mode, or a cluster manager on loopback (the local standalone cluster of
    `lakehouse stack up --cluster`): everything Spark starts runs on this machine."""
    if is_local_master(master):
        return True
    return urlsplit(master).hostname in {"127.0.0.1", "localhost"}


def package_zip(dest: Path = PACKAGE_ZIP) -> Path:
    """The `lakehouse` package (modules and package data) as a zip for the executors.

    Executors import the driver's own code from it, whatever is (or is not) installed where
    they run; on one machine the same virtualenv would do, on a cluster it would not. Written
    to a temporary file and renamed, so a job starting meanwhile never reads half a zip.
    """
    package = PROJECT_ROOT / "lakehouse"
    paths = sorted(p for p in [package, *package.rglob("*")] if "__pycache__" not in p.parts)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.{os.getpid()}")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in paths:
            name = str(path.relative_to(PROJECT_ROOT))
            if path.is_dir():
                # zipimport finds a namespace package (lakehouse.gold) only by its folder entry
                archive.writestr(zipfile.ZipInfo(f"{name}/", _ZIP_TIME), b"")
                continue
            entry = zipfile.ZipInfo(name, _ZIP_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, path.read_bytes())
    partial.replace(dest)
    return dest


def build_spark(config: Config, app_name: str | None = None) -> SparkSession:
    """Build (or return the running) SparkSession for `config`.

    Local mode by default; any master (standalone, k8s, yarn) through `spark.master`.
    """
    master = config.spark.master
    if on_this_machine(master):
        # The driver, its block manager and the UI listen on loopback only; executors of the
        # local standalone cluster reach the driver there.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # Python workers run this interpreter (the project's virtualenv), not whatever
        # `python3` is first on PATH: UDFs import the same packages as the driver. (Elsewhere
        # the operator names the executors' Python: docs/scale-out.md.)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # The JVM's logging before `log_level` applies (conf/spark/log4j2.properties): errors only.
    os.environ.setdefault("SPARK_CONF_DIR", str(SPARK_CONF_DIR))
    builder = SparkSession.builder
    for key, value in spark_conf(config, app_name).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel(config.spark.log_level)
    if not is_local_master(master):
        # Executors import UDFs' modules from this zip. Added here rather than with
        # spark-submit's --py-files, which would put the zip first on the driver's own path too,
        # and a driver importing lakehouse from a zip cannot find conf/ or build/jars/.
        session.sparkContext.addPyFile(str(package_zip()))
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


@contextmanager
def spark_session(config: Config, app_name: str | None = None) -> Iterator[SparkSession]:
    """The session of one command (CLI, spark-submit job): started here and stopped at the end,
    unless this process already runs one (a test session, a notebook, a flow calling the CLI's
    code), which is used and left running for its owner to stop."""
    owned = SparkContext._active_spark_context is None
    session = build_spark(config, app_name)
    try:
        yield session
    finally:
        if owned:
            stop_spark(session)


def submit_args(config: Config) -> list[str]:
    """spark-submit arguments carrying the same settings as `build_spark` (one per line).

    On a cluster the connector jars reach the executors through `spark.jars` (the driver serves
    them), the lakehouse package through `build_spark` (`package_zip`).
    """
    settings = spark_conf(config)
    args = ["--master", settings.pop("spark.master")]
    for key, value in settings.items():
        args += ["--conf", f"{key}={value}"]
    return args


if __name__ == "__main__":
    from lakehouse.config import ConfigError, load_config

    if sys.argv[1:] != ["--submit-args"]:
        print("usage: python -m lakehouse.spark --submit-args", file=sys.stderr)
        sys.exit(2)
    try:
        print("\n".join(submit_args(load_config())))
    except (ConfigError, SparkSetupError) as exc:
        print(f"lakehouse.spark: {exc}", file=sys.stderr)
        sys.exit(2)
