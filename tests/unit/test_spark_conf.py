"""Unit tests for lakehouse.spark without a SparkSession: jar discovery and the settings map."""

from __future__ import annotations

import random
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from lakehouse.config import PROJECT_ROOT, Config, load_config
from lakehouse.spark import REQUIRED_JAR_PREFIXES, SparkSetupError, connector_jars, spark_conf

# One fake jar per required connector (names as `make jars` resolves them), plus a helper jar.
CONNECTOR_JARS = {
    "delta-spark": "delta-spark_2.12-3.3.3.jar",
    "delta-storage": "delta-storage-3.3.3.jar",
    "spark-sql-kafka-0-10": "spark-sql-kafka-0-10_2.12-3.5.7.jar",
    "mongo-spark-connector": "mongo-spark-connector_2.12-10.5.0.jar",
    "elasticsearch-spark-30": "elasticsearch-spark-30_2.12-8.13.2.jar",
    "deequ": "deequ-2.0.7-spark-3.5.jar",
    "postgresql": "postgresql-42.7.14.jar",
}
HELPER_JARS = ["kafka-clients-3.4.1.jar", "bson-5.1.4.jar"]
ALL_CONNECTORS = list(CONNECTOR_JARS)  # in REQUIRED_JAR_PREFIXES order


def make_jars(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shuffled = list(names)
    random.Random(7).shuffle(shuffled)  # creation order must not matter
    for name in shuffled:
        (folder / name).touch()
    return folder


def full_jar_dir(folder: Path) -> tuple[Path, list[str]]:
    names = [*CONNECTOR_JARS.values(), *HELPER_JARS]
    make_jars(folder, names)
    return folder, sorted(str(folder / n) for n in names)


def missing_message(folder: Path, missing: list[str]) -> str:
    return (
        f"connector jars missing from {folder}: {', '.join(missing)}; "
        "run `make jars` (resolves conf/maven/spark.xml with Maven)"
    )


def root(*parts: str) -> str:
    return str(PROJECT_ROOT.joinpath(*parts))


# ---------------------------------------------------------------------------------------------
# connector_jars


def test_fake_jar_table_covers_every_required_prefix() -> None:
    assert [p.rstrip("_-") for p in REQUIRED_JAR_PREFIXES] == ALL_CONNECTORS
    for prefix, name in zip(REQUIRED_JAR_PREFIXES, CONNECTOR_JARS.values(), strict=True):
        assert name.startswith(prefix)


def test_empty_folder_names_every_connector_and_make_jars(tmp_path: Path) -> None:
    with pytest.raises(SparkSetupError) as excinfo:
        connector_jars(tmp_path)
    assert str(excinfo.value) == missing_message(tmp_path, ALL_CONNECTORS)


def test_missing_folder_names_every_connector(tmp_path: Path) -> None:
    folder = tmp_path / "not-built"
    with pytest.raises(SparkSetupError) as excinfo:
        connector_jars(folder)
    assert str(excinfo.value) == missing_message(folder, ALL_CONNECTORS)


def test_partial_folder_names_only_the_missing_connectors(tmp_path: Path) -> None:
    present = ["delta-spark", "delta-storage", "postgresql"]
    make_jars(tmp_path, [CONNECTOR_JARS[c] for c in present] + HELPER_JARS)
    with pytest.raises(SparkSetupError) as excinfo:
        connector_jars(tmp_path)
    expected_missing = [c for c in ALL_CONNECTORS if c not in present]
    assert str(excinfo.value) == missing_message(tmp_path, expected_missing)


@pytest.mark.parametrize("absent", ALL_CONNECTORS)
def test_each_connector_is_required(tmp_path: Path, absent: str) -> None:
    make_jars(tmp_path, [jar for c, jar in CONNECTOR_JARS.items() if c != absent] + HELPER_JARS)
    with pytest.raises(SparkSetupError) as excinfo:
        connector_jars(tmp_path)
    assert str(excinfo.value) == missing_message(tmp_path, [absent])


def test_non_jar_files_do_not_count(tmp_path: Path) -> None:
    jars = [jar for c, jar in CONNECTOR_JARS.items() if c != "deequ"]
    make_jars(tmp_path, [*jars, "deequ-2.0.7-spark-3.5.pom", "deequ-2.0.7-spark-3.5.jar.sha1"])
    with pytest.raises(SparkSetupError) as excinfo:
        connector_jars(tmp_path)
    assert str(excinfo.value) == missing_message(tmp_path, ["deequ"])


def test_complete_folder_returns_sorted_absolute_paths(tmp_path: Path) -> None:
    folder, expected = full_jar_dir(tmp_path / "jars")
    (folder / "README.txt").touch()  # not a jar: ignored
    jars = connector_jars(folder)
    assert jars == expected
    assert all(Path(j).is_absolute() for j in jars)
    assert connector_jars(str(folder)) == expected  # str and Path both accepted


def test_relative_folder_still_returns_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, expected = full_jar_dir(tmp_path / "jars")
    monkeypatch.chdir(tmp_path)
    assert connector_jars("jars") == expected


# ---------------------------------------------------------------------------------------------
# spark_conf


@pytest.fixture
def jar_dir(tmp_path: Path) -> tuple[Path, list[str]]:
    return full_jar_dir(tmp_path / "jars")


def with_jars(config: Config, folder: Path) -> Config:
    return replace(config, spark=replace(config.spark, jars_dir=str(folder)))


def test_spark_conf_for_test_environment(jar_dir: tuple[Path, list[str]]) -> None:
    folder, jars = jar_dir
    config = with_jars(load_config("test", environ={}), folder)
    assert spark_conf(config) == {
        "spark.master": "local[*]",
        "spark.app.name": "lakehouse-tests",
        "spark.driver.memory": "2g",
        "spark.jars": ",".join(jars),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.shuffle.partitions": "2",
        "spark.databricks.delta.snapshotPartitions": "2",
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": "8",
        "spark.ui.enabled": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.legacy.timeParserPolicy": "CORRECTED",
        "spark.sql.warehouse.dir": root("state", "test-warehouse"),
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
        "spark.databricks.delta.properties.defaults.enableChangeDataFeed": "true",
        "spark.sql.streaming.checkpointLocation": root("state", "test-warehouse", "_checkpoints"),
        "spark.network.timeout": "120s",
        "spark.databricks.delta.vacuum.logging.enabled": "true",
        # from conf/test.yaml spark.extra_conf, stringified
        "spark.sql.streaming.minBatchesToRetain": "5",
        "spark.ui.showConsoleProgress": "false",
        "spark.ui.retainedJobs": "2000",
        "spark.ui.retainedStages": "4000",
    }


def test_spark_conf_values_are_all_strings(jar_dir: tuple[Path, list[str]]) -> None:
    folder, _ = jar_dir
    for environment in ("local", "test", "prod"):
        settings = spark_conf(with_jars(load_config(environment, environ={}), folder))
        assert {k: type(v) for k, v in settings.items()} == dict.fromkeys(settings, str)


def test_spark_conf_for_prod_environment(jar_dir: tuple[Path, list[str]]) -> None:
    folder, jars = jar_dir
    config = with_jars(load_config("prod", environ={}), folder)
    assert spark_conf(config) == {
        "spark.master": "spark://spark-master:7077",
        "spark.app.name": "lakehouse",
        "spark.driver.memory": "4g",
        "spark.jars": ",".join(jars),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.shuffle.partitions": "64",
        "spark.databricks.delta.snapshotPartitions": "64",
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": "64",
        "spark.ui.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.legacy.timeParserPolicy": "CORRECTED",
        "spark.sql.warehouse.dir": "/data/warehouse",
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
        "spark.databricks.delta.properties.defaults.enableChangeDataFeed": "true",
        "spark.sql.streaming.checkpointLocation": "/data/warehouse/_checkpoints",
        "spark.network.timeout": "120s",
        "spark.databricks.delta.vacuum.logging.enabled": "true",
    }


def test_app_name_argument_and_object_store_warehouse(jar_dir: tuple[Path, list[str]]) -> None:
    folder, _ = jar_dir
    config = with_jars(
        load_config("test", environ={"LAKEHOUSE_WAREHOUSE": "s3a://bucket/wh"}), folder
    )
    expected = spark_conf(config) | {
        "spark.app.name": "nightly-job",
        "spark.sql.warehouse.dir": "s3a://bucket/wh",
        "spark.sql.streaming.checkpointLocation": "s3a://bucket/wh/_checkpoints",
    }
    assert spark_conf(config, app_name="nightly-job") == expected


def test_extra_conf_overrides_defaults(tmp_path: Path, jar_dir: tuple[Path, list[str]]) -> None:
    folder, jars = jar_dir
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "base.yaml").write_text(f"warehouse: /lake\nspark:\n  jars_dir: {folder}\n")
    (conf / "dev.yaml").write_text(
        textwrap.dedent(
            """\
            spark:
              shuffle_partitions: 4
              ui_enabled: false
              extra_conf:
                spark.sql.shuffle.partitions: 16
                spark.network.timeout: 300s
                spark.ui.enabled: true
                spark.hadoop.fs.s3a.path.style.access: true
            """
        )
    )
    config = load_config("dev", conf_dir=conf, environ={})
    assert spark_conf(config) == {
        "spark.master": "local[*]",
        "spark.app.name": "lakehouse",
        "spark.driver.memory": "2g",
        "spark.jars": ",".join(jars),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.shuffle.partitions": "16",  # extra_conf beats shuffle_partitions: 4
        "spark.databricks.delta.snapshotPartitions": "4",
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": "8",
        "spark.ui.enabled": "true",  # extra_conf beats ui_enabled: false
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.legacy.timeParserPolicy": "CORRECTED",
        "spark.sql.warehouse.dir": "/lake",
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
        "spark.databricks.delta.properties.defaults.enableChangeDataFeed": "true",
        "spark.sql.streaming.checkpointLocation": "/lake/_checkpoints",
        "spark.network.timeout": "300s",
        "spark.databricks.delta.vacuum.logging.enabled": "true",
        "spark.hadoop.fs.s3a.path.style.access": "true",
    }


def test_spark_conf_reports_missing_jars(tmp_path: Path) -> None:
    config = with_jars(load_config("test", environ={}), tmp_path)
    with pytest.raises(SparkSetupError) as excinfo:
        spark_conf(config)
    assert str(excinfo.value) == missing_message(tmp_path, ALL_CONNECTORS)


def test_jvm_options_go_to_the_driver_and_the_executors(jar_dir: tuple[Path, list[str]]) -> None:
    folder, _ = jar_dir
    plain = with_jars(load_config("test", environ={}), folder)
    tuned = with_jars(
        load_config("test", environ={"LAKEHOUSE_SPARK_JVM_OPTIONS": "-XX:TieredStopAtLevel=1"}),
        folder,
    )
    assert spark_conf(tuned) == spark_conf(plain) | {
        "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1",
        "spark.executor.extraJavaOptions": "-XX:TieredStopAtLevel=1",
    }
    assert not {"spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions"} & set(
        spark_conf(plain)
    )
