"""The versioned prefect.yaml deploys what the local stack serves: the nightly flow at the
configured 2 AM cron and time zone."""

from __future__ import annotations

from pathlib import Path

import yaml

from lakehouse.config import PROJECT_ROOT, load_config


def test_prefect_yaml_deploys_the_nightly_flow_on_the_configured_schedule() -> None:
    spec = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())
    (deployment,) = spec["deployments"]
    config = load_config("local", environ={})
    assert (deployment["name"], deployment["entrypoint"]) == ("nightly", "flows/nightly.py:nightly")
    assert deployment["schedules"] == [
        {"cron": config.nightly.cron, "timezone": config.nightly.timezone, "active": True}
    ]
    assert (config.nightly.cron, config.nightly.timezone) == ("0 2 * * *", "UTC")
    path, function = deployment["entrypoint"].split(":")
    assert f"def {function}(" in Path(PROJECT_ROOT, path).read_text()
