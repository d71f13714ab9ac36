"""The Spark settings every benchmark runs with: no UI, errors only, no console progress bars
(they garble the per-run lines that bench/run.py streams)."""

from __future__ import annotations

import dataclasses

from lakehouse.config import Config


def quiet_spark(config: Config, driver_memory: str | None = None) -> Config:
    spark = dataclasses.replace(
        config.spark,
        driver_memory=driver_memory or config.spark.driver_memory,
        ui_enabled=False,
        log_level="ERROR",
        extra_conf={**config.spark.extra_conf, "spark.ui.showConsoleProgress": "false"},
    )
    return dataclasses.replace(config, spark=spark)
