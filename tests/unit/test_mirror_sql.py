"""The mirror's pure parts: type mapping, DDL, index names, COPY text and CSV records."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from frames import assert_frames_equal
from pyspark.sql.types import ArrayType, StringType, StructField, StructType

from lakehouse import tables
from lakehouse.serving import mirror


def test_every_mirrored_column_has_an_explicit_type() -> None:
    for table in mirror.MIRRORED:
        for field in table.schema.fields:
            assert mirror.pg_type(field.dataType)  # raises for an unmapped type
    with pytest.raises(mirror.MirrorError, match="no PostgreSQL type is mapped"):
        mirror.pg_type(ArrayType(StringType()))


def test_create_table_keeps_nullability() -> None:
    schema = StructType(
        [StructField("plan_id", StringType(), False), StructField("org", StringType(), True)]
    )
    assert mirror.create_table_sql('"gold"."x"', schema) == (
        'CREATE TABLE "gold"."x" (\n  "plan_id" text NOT NULL,\n  "org" text\n)'
    )


def test_target_names_and_index_names() -> None:
    assert mirror.target_name(tables.PLAN_COSTS) == "plan_costs"
    assert mirror.target_name(tables.QUALITY_RESULTS_TABLE) == "quality_results"
    assert (
        mirror.index_name("plan_costs", ("plan_id",), "a1b2c3d4")
        == "ix_plan_costs_plan_id_a1b2c3d4"
    )
    long_columns = ("table_name", "run_at", "x" * 40)
    long_name = mirror.index_name("quality_results", long_columns, "a1b2c3d4")
    assert len(long_name) == 63 and long_name.startswith("ix_quality_results_table_name")
    assert long_name != mirror.index_name("quality_results", long_columns, "e5f6a7b8")


def test_csv_line_quotes_values_and_leaves_null_bare() -> None:
    line = mirror.csv_line(("a", None, "", 'say "hi", then\nleave'))
    assert line == '"a",,"","say ""hi"", then\nleave"\n'


def test_csv_records_built_by_spark_match_csv_line(spark) -> None:
    rows = [("a", None, "", 'say "hi", then\nleave'), (None, "x,y", '""', "é ü\r\n")]
    frame = spark.createDataFrame(rows, "a string, b string, c string, d string")
    records = [(r[0], r[1]) for r in mirror.as_csv_records(frame).collect()]
    assert records == [(mirror.csv_line(row), True) for row in rows]


def test_csv_records_flag_text_postgresql_cannot_hold(spark) -> None:
    rows = [("ok", None), ("nul\u0000inside", "x"), (None, "\u0000"), ("tab\tand bell\u0007", "")]
    frame = spark.createDataFrame(rows, "a string, b string")
    flags = [r["storable"] for r in mirror.as_csv_records(frame).collect()]
    assert flags == [True, False, False, True]


def test_copy_text_formats_timestamps_with_offset(spark) -> None:
    frame = spark.createDataFrame(
        [
            (
                "p1",
                3,
                1.5e7,
                True,
                date(2024, 2, 29),
                datetime(2026, 11, 26, 2, 0, 1, 500, tzinfo=UTC),
            )
        ],
        "plan_id string, n int, cost double, flag boolean, day date, at timestamp",
    )
    expected = spark.createDataFrame(
        [("p1", "3", "1.5E7", "true", "2024-02-29", "2026-11-26 02:00:01.000500Z")],
        "plan_id string, n string, cost string, flag string, day string, at string",
    )
    assert_frames_equal(mirror.as_copy_text(frame), expected)
