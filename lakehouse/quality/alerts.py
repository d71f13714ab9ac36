"""Telling someone that a quality gate failed: the alert and the notifiers that carry it.

A notifier is anything with a `name` and a `send(alert)`. The log notifier always runs; a webhook
(JSON over HTTP POST) and a Prefect notification block run when configured. A notifier that
cannot deliver is retried, then reported in the log: a broken alert channel must never hide or
change the gate's verdict.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

from lakehouse.config import AlertConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FailedCheck:
    table: str
    check: str
    severity: str
    value: float | None
    message: str
    table_version: int | None = None
    samples: list[dict[str, str | None]] = field(default_factory=list)


@dataclass(frozen=True)
class Alert:
    title: str
    run_id: str
    run_at: str
    failed: list[FailedCheck]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def to_markdown(self) -> str:
        """The alert as a short markdown message (chat notifications, Prefect blocks)."""
        lines = [f"**{self.title}** (quality run `{self.run_id}`, {self.run_at})", ""]
        for check in self.failed:
            lines.append(
                f"- `{check.table}` {check.check} [{check.severity}]: {check.message}"
                + (f" (e.g. {json.dumps(check.samples[0])})" if check.samples else "")
            )
        return "\n".join(lines)


class Notifier(Protocol):
    name: str

    def send(self, alert: Alert) -> None: ...


class LogNotifier:
    name = "log"

    def send(self, alert: Alert) -> None:
        log.error("ALERT %s", alert.title)
        for check in alert.failed:
            log.error("  %s %s [%s]: %s", check.table, check.check, check.severity, check.message)
            for sample in check.samples:
                log.error("    offending row: %s", json.dumps(sample))


class WebhookNotifier:
    """POSTs the alert as JSON to `url`."""

    name = "webhook"

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url
        self.timeout_s = timeout_s

    def send(self, alert: Alert) -> None:
        request = urllib.request.Request(
            self.url,
            data=alert.to_json().encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            if response.status >= 300:
                raise urllib.error.HTTPError(
                    self.url, response.status, "webhook refused the alert", response.headers, None
                )


class PrefectNotifier:
    """Sends the alert through a saved Prefect notification block ("<type-slug>/<name>", e.g.
    a Slack, Teams, email or custom-webhook block), so channels are managed in Prefect."""

    name = "prefect"

    def __init__(self, block: str) -> None:
        self.block = block

    def send(self, alert: Alert) -> None:
        from prefect.blocks.core import Block

        notification = Block.load(self.block)
        notification.notify(body=alert.to_markdown(), subject=alert.title)  # type: ignore[attr-defined]


def configured_notifiers(alerts: AlertConfig) -> list[Notifier]:
    notifiers: list[Notifier] = [LogNotifier()]
    if alerts.webhook_url:
        notifiers.append(WebhookNotifier(alerts.webhook_url, alerts.timeout_s))
    if alerts.prefect_block:
        notifiers.append(PrefectNotifier(alerts.prefect_block))
    return notifiers


def dispatch(
    alert: Alert, notifiers: Sequence[Notifier], attempts: int = 3, backoff_s: float = 1.0
) -> dict[str, str]:
    """Send `alert` through every notifier, each retried up to `attempts` times. Returns
    notifier name -> "sent" or the last error; never raises."""
    outcome: dict[str, str] = {}
    for notifier in notifiers:
        for attempt in range(1, attempts + 1):
            try:
                notifier.send(alert)
                outcome[notifier.name] = "sent"
                break
            except Exception as exc:  # any failure of a channel is reported, not raised
                outcome[notifier.name] = f"{type(exc).__name__}: {exc}"
                if attempt < attempts:
                    time.sleep(backoff_s * attempt)
        if outcome[notifier.name] != "sent":
            log.error(
                "alert not delivered by %s after %d attempts: %s",
                notifier.name,
                attempts,
                outcome[notifier.name],
            )
    return outcome
