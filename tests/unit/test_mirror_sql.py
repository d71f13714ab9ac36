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


def test_row_keys_are_non_null_text_columns_of_mirrored_tables() -> None:
    mirrored = {t.name: t for t in mirror.MIRRORED}
    for name, key in mirror.ROW_KEYS.items():
        fields = [mirrored[name].schema[c] for c in key.columns]
        assert [(f.dataType, f.nullable) for f in fields] == [(StringType(), False)] * len(fields)
    # the aggregates are rewritten whole by each refresh: no key, always a full swap
    assert set(mirror.ROW_KEYS) == {
        tables.PLAN_COSTS.name,
        tables.PLAN_ANOMALIES.name,
        tables.QUALITY_RESULTS_TABLE.name,
    }


def test_expected_columns_spell_types_as_postgresql_reports_them() -> None:
    schema = StructType(
        [StructField("plan_id", StringType(), False), StructField("org", StringType(), True)]
    )
    assert mirror.expected_columns(schema) == [("plan_id", "text", True), ("org", "text", False)]
    assert mirror.pg_type(tables.QUALITY_RESULTS["run_at"].dataType) == "timestamp with time zone"


_MERGE = {
    "operation": "MERGE",
    "operationParameters": {"predicate": "[]"},
    "operationMetrics": {"numTargetRowsUpdated": "20", "numTargetRowsDeleted": "5"},
}
_LARGE_MERGE = {**_MERGE, "operationMetrics": {"numTargetRowsInserted": "51"}}
_APPEND = {"operation": "WRITE", "operationParameters": {"mode": "Append"}}
_OVERWRITE = {"operation": "WRITE", "operationParameters": {"mode": "Overwrite"}}
_OPTIMIZE = {"operation": "OPTIMIZE", "operationParameters": {"zOrderBy": "[]"}}
_STREAM = {"operation": "STREAMING UPDATE", "operationParameters": {"outputMode": "Append"}}
_PROPERTIES = {"operation": "SET TBLPROPERTIES", "operationParameters": {}}
_AT_3 = mirror.MirrorState("id-1", 3, 100)
COSTS = tables.PLAN_COSTS.name


@pytest.mark.parametrize(
    ("table", "mirrored", "current", "columns_match", "commits", "expected"),
    [
        (COSTS, _AT_3, ("id-1", 3), True, [], ("unchanged", "that version is mirrored")),
        # the aggregates, even after a MERGE
        (
            tables.COST_TRENDS.name, _AT_3, ("id-1", 4), True, [(4, _MERGE)],
            ("full", "the table is rewritten whole by each refresh"),
        ),
        (COSTS, None, ("id-1", 0), False, [], ("full", "first publish")),
        (
            COSTS, _AT_3, ("id-2", 5), True, [(4, _MERGE), (5, _MERGE)],
            ("full", "the Delta table was re-created"),
        ),
        (
            COSTS, _AT_3, ("id-1", 2), True, [],
            ("full", "the mirror is at v3, ahead"),
        ),
        (
            COSTS, _AT_3, ("id-1", 4), False, [(4, _MERGE)],
            ("full", "the mirrored columns differ from the schema"),
        ),
        (
            COSTS, _AT_3, ("id-1", 5), True, [(4, _MERGE), (5, None)],
            ("full", "commit v5 is no longer in the log"),
        ),
        (
            COSTS, _AT_3, ("id-1", 6), True, [(4, _MERGE), (5, _OVERWRITE), (6, _MERGE)],
            ("full", "v5 is a WRITE (Overwrite)"),
        ),
        (
            COSTS, _AT_3, ("id-1", 4), True, [(4, _PROPERTIES)],
            ("full", "v4 is a SET TBLPROPERTIES"),
        ),
        (
            COSTS, _AT_3, ("id-1", 5), True, [(4, _MERGE), (5, _LARGE_MERGE)],
            ("full", "76 rows changed, more than 50% of the 100 mirrored"),
        ),
        (
            COSTS, _AT_3, ("id-1", 7), True,
            [(4, _MERGE), (5, _APPEND), (6, _OPTIMIZE), (7, _STREAM)],
            ("changes", "v4..v7 change rows by key"),
        ),
    ],
)  # fmt: skip
def test_choose_publish_applies_changes_only_when_the_feed_is_the_whole_change(
    table: str,
    mirrored: mirror.MirrorState | None,
    current: tuple[str, int],
    columns_match: bool,
    commits: list,
    expected: tuple[str, str],
) -> None:
    choice = mirror.choose_publish(table, mirrored, *current, columns_match, commits)
    assert (choice.mode.value, choice.reason) == expected


def test_batch_reader_streams_the_storable_records_of_every_partition(spark) -> None:
    rows = [(f"p{n}", None if n % 5 == 0 else f'v "{n}",\n') for n in range(40)]
    rows[7] = ("p7", "nul\u0000here")
    rows[31] = ("p31\u0000", None)
    # four partitions, and more than one Arrow batch per partition
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "3")
    try:
        frame = spark.createDataFrame(rows, "a string, b string").repartition(4)
        reader = mirror._BatchReader(mirror.arrow_batches(mirror.as_csv_records(frame)))
        chunks = []
        while chunk := reader.read(50):  # small reads cut records across chunks
            chunks.append(chunk)
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    expected = [mirror.csv_line(r) for i, r in enumerate(rows) if i not in (7, 31)]
    assert sorted(_records(b"".join(chunks).decode())) == sorted(expected)
    assert (reader.rows, reader.left_out) == (38, 2)


def _records(text: str) -> list[str]:
    """CSV records of `csv_line` (every value quoted, so a record starts at a line that opens
    with a quote after a line ending outside quotes)."""
    records, current, quoted = [], "", False
    for char in text:
        current += char
        if char == '"':
            quoted = not quoted
        elif char == "\n" and not quoted:
            records.append(current)
            current = ""
    assert current == ""
    return records
