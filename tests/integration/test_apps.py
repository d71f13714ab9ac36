"""The app servers of `lakehouse stack up --apps`, started the way the stack starts them: the
Prefect server with the nightly deployment served on its 2 AM cron, the MLflow server over the
registry the gold jobs write, and JupyterLab serving the notebooks behind its token."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest

from lakehouse.config import Config
from lakehouse.gold.detection import tracking_uri
from lakehouse.stack.apps import (
    JUPYTER_TOKEN_VAR,
    JupyterService,
    MlflowService,
    NightlyDeploymentService,
    PrefectService,
)
from lakehouse.stack.manager import running_pid, service_status, start_service
from lakehouse.stack.process import stop_process
from lakehouse.stack.secrets import local_secret
from lakehouse.stack.services import Service

# xdist_group: servers on fixed ports and the demo lakehouse, on one worker (tests/conftest.py)
pytestmark = [pytest.mark.usefixtures("local_stack"), pytest.mark.xdist_group("serving")]


def _json(url: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def apps(config: Config) -> Iterator[dict[str, Service]]:
    """Prefect (then the deployment it serves), MLflow and Jupyter: reused when running, else
    started here and stopped afterwards, dependents first."""
    services: list[Service] = [
        PrefectService(config),
        NightlyDeploymentService(config),
        MlflowService(config),
        JupyterService(config),
    ]
    started = []
    try:
        for service in services:
            if running_pid(service) is None:
                started.append(service)
            start_service(service, timeout_s=300, report=print)
        yield {s.name: s for s in services}
    finally:
        for service in reversed(started):
            pid = running_pid(service)
            if pid is not None:
                stop_process(pid, service.marker)


def test_prefect_serves_the_nightly_deployment_on_the_2am_cron(
    apps: dict[str, Service], config: Config
) -> None:
    api = PrefectService(config).api_url
    deployment = _json(f"{api}/deployments/name/nightly/nightly")
    assert deployment["status"] == "READY"
    assert deployment["entrypoint"].endswith("nightly.py:nightly")
    assert set(deployment["parameters"]) == {"env"}  # the environment its server runs
    assert [(s["schedule"], s["active"]) for s in deployment["schedules"]] == [
        ({"cron": "0 2 * * *", "timezone": config.nightly.timezone, "day_or": True}, True)
    ]
    assert service_status(apps["nightly"]).healthy


def test_mlflow_server_reads_the_registry_the_jobs_write(
    apps: dict[str, Service], config: Config
) -> None:
    import mlflow

    port = config.apps.mlflow_port
    # Written straight to the store, as the gold jobs do; read back through the server.
    client = mlflow.MlflowClient(
        tracking_uri=tracking_uri(config), registry_uri=tracking_uri(config)
    )
    name = "apps-test-model"
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        client.create_registered_model(name)
    found = _json(f"http://127.0.0.1:{port}/api/2.0/mlflow/registered-models/get?name={name}")
    assert found["registered_model"]["name"] == name


def test_jupyter_serves_the_notebooks_behind_its_token(
    apps: dict[str, Service], config: Config
) -> None:
    port = config.apps.jupyter_port
    with pytest.raises(urllib.error.HTTPError) as refused:
        _json(f"http://127.0.0.1:{port}/api/contents")
    assert refused.value.code == 403
    token = local_secret(config, JUPYTER_TOKEN_VAR)
    listing = _json(f"http://127.0.0.1:{port}/api/contents?token={token}")
    notebooks = sorted(c["name"] for c in listing["content"] if c["type"] == "notebook")
    assert notebooks == [
        "01_cost_trends.ipynb",
        "02_service_patterns.ipynb",
        "03_anomalies_and_quality.ipynb",
    ]
