"""The Spark settings every benchmark runs with: no UI, errors only (Spark's console progress
bars, which would garble the per-run lines bench/run.py streams, are off for every session:
lakehouse.spark.spark_conf)."""

from __future__ import annotations

import dataclasses

from lakehouse.config import Config


def quiet_spark(config: Config, driver_memory: str | None = None) -> Config:
    spark = dataclasses.replace(
        config.spark,
        driver_memory=driver_memory or config.spark.driver_memory,
        ui_enabled=False,
        log_level="ERROR",
    )
    return dataclasses.replace(config, spark=spark)
