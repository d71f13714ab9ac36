"""Round trips through every service Spark talks to, against the real local stack."""

from __future__ import annotations

import json

from lakehouse import smoke
from lakehouse.config import join_uri
from lakehouse.stack.services import all_services


def test_every_service_answers_its_readiness_probe(local_stack, config):
    answered = []
    for service in all_services(config):
        service.probe()  # raises with the reason when the service does not answer
        answered.append((service.name, service.port))
    assert answered == [
        ("postgres", 5432),
        ("kafka", 9092),
        ("ferretdb", 27017),
        ("elasticsearch", 9200),
    ]


def test_delta_write_merge_read(spark, config):
    location = join_uri(config.warehouse, "smoke", "delta_roundtrip")
    assert smoke.delta_roundtrip(spark, location) == [
        (1, "alpha", 10.0),
        (2, "beta", 25.0),
        (3, "gamma", 30.0),
        (4, "delta", 40.0),
    ]
    # A second run overwrites and merges again: same result, not duplicated rows.
    assert smoke.delta_roundtrip(spark, location) == smoke.DELTA_EXPECTED
    history = spark.sql(f"DESCRIBE HISTORY delta.`{location}`").select("operation").collect()
    assert [r.operation for r in history] == ["MERGE", "WRITE", "MERGE", "WRITE"]


def test_pydeequ_suite_passes_on_good_rows_and_fails_on_bad(spark):
    good = smoke.deequ_verification(spark, smoke.smoke_frame(spark))
    assert sorted(good.values()) == ["Success"] * 5
    bad_rows = [(1, "alpha", 10.0), (1, "beta", -5.0), (3, "zeta", 30.0)]
    bad = smoke.deequ_verification(spark, spark.createDataFrame(bad_rows, smoke.SMOKE_SCHEMA))
    failed = sorted(c.split("(")[0] for c, status in bad.items() if status == "Failure")
    assert failed == [
        "ComplianceConstraint",  # amount >= 0 is violated by -5.0
        "ComplianceConstraint",  # name outside the allowed set ("zeta")
        "UniquenessConstraint",  # id 1 twice
    ]


def test_kafka_python_and_spark_read_the_same_messages(spark, config, local_stack):
    consumed, read_by_spark = smoke.kafka_roundtrip(spark, config, topic="lakehouse.test.smoke")
    assert consumed == read_by_spark
    decoded = sorted((key, json.loads(value)["name"]) for key, value in read_by_spark)
    assert decoded == [("1", "alpha"), ("2", "beta"), ("3", "gamma")]
    assert len({json.loads(value)["run"] for _, value in read_by_spark}) == 1


def test_pymongo_insert_spark_mongo_read(spark, config, local_stack):
    assert smoke.mongo_roundtrip(spark, config, collection="test_roundtrip") == smoke.SMOKE_ROWS


def test_es_spark_index_python_search(spark, config, local_stack):
    rows = smoke.elasticsearch_roundtrip(spark, config, index="lakehouse-test-smoke")
    assert rows == [(1, "alpha", 10.0), (2, "beta", 20.0), (3, "gamma", 30.0)]


def test_jdbc_write_psycopg2_read(spark, config, local_stack):
    rows = smoke.postgres_roundtrip(spark, config, table="test_smoke_roundtrip")
    assert rows == [(1, "alpha", 10.0), (2, "beta", 20.0), (3, "gamma", 30.0)]


def test_run_smoke_reports_every_service(config, local_stack, spark):
    results = smoke.run_smoke(spark, config, report=lambda _: None)
    assert [(r.name, r.ok) for r in results] == [
        ("delta", True),
        ("deequ", True),
        ("kafka", True),
        ("mongo", True),
        ("elasticsearch", True),
        ("postgres", True),
    ]
