"""The I/O layer's answers against real Delta tables written by Spark."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from lakehouse import io
from lakehouse.config import Config
from lakehouse.tables import BRONZE_EVENTS


def test_table_exists_sees_a_table_another_process_created_after_it_first_asked(
    spark, config: Config, tmp_path: Path
) -> None:
    # The race the supervised ingest test hit: `ingest --wait` polls while the ingest process
    # is creating bronze, and asks between the `_delta_log` folder and the first commit.
    lake = dataclasses.replace(config, warehouse=str(tmp_path / "lake"), checkpoints="")
    other = dataclasses.replace(config, warehouse=str(tmp_path / "other"), checkpoints="")
    bronze = Path(BRONZE_EVENTS.path(lake))

    assert not io.table_exists(spark, lake, BRONZE_EVENTS)
    (bronze / "_delta_log").mkdir(parents=True)
    assert not io.table_exists(spark, lake, BRONZE_EVENTS)

    # Another writer commits: written elsewhere and moved in, so this session's cached view of
    # `bronze` is not told, as it would not be by a separate process.
    io.ensure_table(spark, other, BRONZE_EVENTS)
    shutil.rmtree(bronze)
    shutil.copytree(BRONZE_EVENTS.path(other), bronze)

    assert io.table_exists(spark, lake, BRONZE_EVENTS)
    assert io.delta_table(spark, lake, BRONZE_EVENTS).history().select("version").collect() == [
        (0,)
    ]
