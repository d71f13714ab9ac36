"""Whole-frame comparison shared by the transform tests."""

from __future__ import annotations

from chispa import assert_basic_rows_equality
from chispa.row_comparer import are_rows_approx_equal
from chispa.rows_comparer import assert_generic_rows_equality
from chispa.schema_comparer import assert_schema_equality
from pyspark.sql import DataFrame


def assert_frames_equal(actual: DataFrame, expected: DataFrame) -> None:
    """Whole-frame equality, chispa-style, rows in any order: the same schema (nullability
    aside: the library leaves it to Spark) and the same rows of all columns, sorted on the
    driver (a Spark sort per frame would cost several jobs on these tiny frames)."""
    assert_schema_equality(actual.schema, expected.schema, ignore_nullable=True)
    assert_basic_rows_equality(
        sorted(actual.collect(), key=repr), sorted(expected.collect(), key=repr)
    )


def assert_frames_close(actual: DataFrame, expected: DataFrame, precision: float = 1e-9) -> None:
    """As `assert_frames_equal`, with doubles compared to `precision` (for values computed by
    the JVM's and Python's maths libraries, which may differ in the last bit)."""
    assert_schema_equality(actual.schema, expected.schema, ignore_nullable=True)
    assert_generic_rows_equality(
        sorted(actual.collect(), key=lambda row: repr(row[0])),
        sorted(expected.collect(), key=lambda row: repr(row[0])),
        are_rows_approx_equal,
        [precision],
    )
