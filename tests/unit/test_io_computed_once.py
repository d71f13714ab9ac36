"""`io.computed_once`: the frame's rows, computed on entry, its blocks released on exit (that
a MERGE then does not re-run the lineage is tested on the hot path itself, in
tests/integration/test_ingest.py, where Delta's bypass of a persisted source shows)."""

from __future__ import annotations

from pyspark.sql import functions as F
from pyspark.sql.types import LongType

from lakehouse import io


def test_the_frame_is_computed_on_entry_and_released_on_exit(spark) -> None:
    runs = spark.sparkContext.accumulator(0)

    def doubled(value: int) -> int:
        runs.add(1)
        return value * 2

    udf = F.udf(doubled, LongType())
    source = spark.createDataFrame([(1,), (2,), (3,)], "id long").select("id", udf("id").alias("x"))
    persistent_before = len(spark.sparkContext._jsc.getPersistentRDDs())

    with io.computed_once(source) as held:
        computed_on_entry = runs.value
        rows = [tuple(r) for r in held.orderBy("id").collect()]
        held_blocks = len(spark.sparkContext._jsc.getPersistentRDDs())

    assert (computed_on_entry, runs.value) == (3, 3)
    assert rows == [(1, 2), (2, 4), (3, 6)]
    assert held_blocks == persistent_before + 1
    assert len(spark.sparkContext._jsc.getPersistentRDDs()) == persistent_before
