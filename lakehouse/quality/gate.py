"""The publish gate: quality suites decide whether gold may be published.

A failed `error` check stops the publish (the previous published copy stays as it is) and raises
an alert with the failing checks and sample offending rows; failed warnings are recorded and
logged but do not block.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pyspark.sql import SparkSession

from lakehouse.config import Config
from lakehouse.quality import suites as suite_catalog
from lakehouse.quality.alerts import Alert, FailedCheck, Notifier, configured_notifiers, dispatch
from lakehouse.quality.runner import QualityRun, run_quality
from lakehouse.quality.suites import Suite

log = logging.getLogger(__name__)


@dataclass
class GateOutcome:
    run: QualityRun
    published: bool
    alert: Alert | None = None
    # notifier name -> "sent" or why it could not deliver
    deliveries: dict[str, str] = field(default_factory=dict)


def alert_for(run: QualityRun) -> Alert:
    blocking = run.blocking
    tables = sorted({r.table for r in blocking})
    return Alert(
        title=f"quality gate failed: {len(blocking)} error check(s) on {', '.join(tables)}",
        run_id=run.run_id,
        run_at=run.run_at.isoformat(),
        failed=[
            FailedCheck(
                table=r.table,
                check=r.check,
                severity=r.severity,
                value=r.value,
                message=r.message,
                table_version=r.table_version,
                samples=r.samples,
            )
            for r in blocking
        ],
    )


def publish_if_clean(
    spark: SparkSession,
    config: Config,
    publish: Callable[[], object],
    suites: Sequence[Suite] | None = None,
    notifiers: Sequence[Notifier] | None = None,
    now: datetime | None = None,
    progress: Callable[[str], None] = log.info,
) -> GateOutcome:
    """Run `suites` (default: every suite) and call `publish` only if no error check failed;
    otherwise skip it and send an alert through `notifiers` (default: the configured ones).
    `progress` gets a line per table checked."""
    chosen = suite_catalog.suites(config) if suites is None else suites
    run = run_quality(spark, config, chosen, now=now, progress=progress)
    for warning in run.warnings:
        log.warning("quality warning: %s %s: %s", warning.table, warning.check, warning.message)
    if run.ok:
        publish()
        return GateOutcome(run, published=True)
    alert, deliveries = raise_alert(config, run, notifiers)
    log.error("publish skipped: %s", alert.title)
    return GateOutcome(run, published=False, alert=alert, deliveries=deliveries)


def raise_alert(
    config: Config, run: QualityRun, notifiers: Sequence[Notifier] | None = None
) -> tuple[Alert, dict[str, str]]:
    """Send the run's blocking failures through `notifiers` (default: the configured ones);
    returns the alert and how each notifier fared."""
    alert = alert_for(run)
    channels = configured_notifiers(config.quality.alerts) if notifiers is None else notifiers
    return alert, dispatch(alert, channels, attempts=config.quality.alerts.attempts)
