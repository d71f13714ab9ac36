"""The nightly deployment's schedule, built as `flows/nightly.py --serve` builds it (no server)."""

from __future__ import annotations

import dataclasses

from flows import nightly as flows
from lakehouse.config import Config, load_config


def test_schedule_is_2am_cron_in_the_configured_zone() -> None:
    config: Config = load_config("test")
    berlin = dataclasses.replace(
        config, nightly=dataclasses.replace(config.nightly, timezone="Europe/Berlin")
    )
    deployment = flows.nightly.to_deployment(name="nightly", schedules=[flows.schedule(berlin)])
    (scheduled,) = deployment.schedules
    assert (scheduled.schedule.cron, scheduled.schedule.timezone) == ("0 2 * * *", "Europe/Berlin")
