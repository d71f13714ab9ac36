"""The nightly publish: gold reaches PostgreSQL only through the quality gate."""

from __future__ import annotations

import sys

from pyspark.sql import SparkSession

from lakehouse.config import Config
from lakehouse.quality import report
from lakehouse.quality.gate import publish_if_clean
from lakehouse.serving.mirror import publish_all


def gated_publish(spark: SparkSession, config: Config) -> int:
    """Run every quality suite; mirror gold to PostgreSQL only if no error check failed (the
    previous mirror stays otherwise, and the alert goes out). Exit status 0 published, 1 held
    back."""

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    outcome = publish_if_clean(
        spark, config, publish=lambda: publish_all(spark, config, say), progress=say
    )
    print(report.render_run(outcome.run))
    if outcome.published:
        print("publish: gold mirrored to PostgreSQL")
        return 0
    assert outcome.alert is not None
    print(f"publish: held back, the previous mirror stays ({outcome.alert.title})")
    print("alert: " + ", ".join(f"{name} {state}" for name, state in outcome.deliveries.items()))
    return 1
