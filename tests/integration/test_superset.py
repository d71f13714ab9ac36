"""Superset as code, end to end: provision the dashboard (twice: the second run must update in
place) over the demo lake's mirror, then log in with headless Chromium, open the dashboard and
check that every chart drew its data without an error panel; a screenshot is saved."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from lakehouse.config import Config
from lakehouse.serving.superset import (
    DEFAULT_SPEC,
    SupersetClient,
    SupersetError,
    load_spec,
    provision,
    remove,
)
from lakehouse.stack.apps import SUPERSET_ADMIN_PASSWORD_VAR, SupersetService
from lakehouse.stack.manager import running_pid, start_service
from lakehouse.stack.process import stop_process
from lakehouse.stack.secrets import local_secret

# xdist_group: servers on fixed ports and the demo lakehouse, on one worker (tests/conftest.py)
pytestmark = [pytest.mark.usefixtures("local_stack"), pytest.mark.xdist_group("serving")]


@pytest.fixture(scope="module")
def superset(config: Config) -> Iterator[SupersetService]:
    """The stack's Superset: reused when running, else started here and stopped afterwards."""
    service = SupersetService(config)
    started_here = running_pid(service) is None
    start_service(service, timeout_s=300, report=print)
    try:
        yield service
    finally:
        pid = running_pid(service)
        if started_here and pid is not None:
            stop_process(pid, service.marker)


def test_provisioned_dashboard_renders_every_chart_with_data(
    superset: SupersetService, demo_lake: Config, output_dir: Path
) -> None:
    from playwright.sync_api import sync_playwright

    # A private copy of every object: the real dashboard of this machine stays untouched.
    suffix = f" (test {uuid.uuid4().hex[:6]})"
    user = demo_lake.apps.superset_admin_user
    password = local_secret(demo_lake, SUPERSET_ADMIN_PASSWORD_VAR)
    spec = load_spec(DEFAULT_SPEC, demo_lake.serving.schema, suffix)

    first = provision(demo_lake, superset.url, user, password, suffix=suffix)
    assert [a.split(":")[1].split("(")[0].strip() for a in first.actions] == ["created"] * (
        1 + len(spec.datasets) + len(spec.charts) + 1
    )
    client = SupersetClient(superset.url, user, password)
    try:
        again = provision(demo_lake, superset.url, user, password, suffix=suffix)
        assert (again.database_id, again.dataset_ids, again.chart_ids) == (
            first.database_id,
            first.dataset_ids,
            first.chart_ids,
        )
        assert all(": updated (id " in a for a in again.actions), again.actions
        board = client.call("GET", f"/api/v1/dashboard/{spec.slug}/charts")["result"]
        assert sorted(c["id"] for c in board) == sorted(first.chart_ids.values())

        chart_answers: list[dict] = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--no-sandbox"]
            )
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 2200})
                page.goto(f"{superset.url}/login/")
                page.fill("#username", user)
                page.fill("#password", password)
                page.keyboard.press("Enter")
                page.wait_for_url("**/superset/welcome/**", timeout=60_000)

                def remember(response) -> None:  # type: ignore[no-untyped-def]
                    if "/api/v1/chart/data" in response.url:
                        chart_answers.append(
                            {
                                "slice_id": _slice_id(response.url),
                                "status": response.status,
                                "body": response.json(),
                            }
                        )

                page.on("response", remember)
                page.goto(first.dashboard_url)
                page.locator('[data-test="chart-grid-component"]').first.wait_for(timeout=60_000)
                # One snapshot of the page, taken when every cell has drawn (an ECharts canvas, a
                # table with body rows, or a big number): Superset re-renders the grid while it
                # rewrites the URL, so cells counted by separate calls may come from two renders.
                seen = page.wait_for_function(
                    """([expected]) => {
                        const cells = [...document.querySelectorAll(
                            '[data-test="chart-grid-component"]')];
                        const drawn = "canvas, table tbody tr, .header-line";
                        if (cells.length !== expected ||
                            !cells.every(cell => cell.querySelector(drawn))) return false;
                        const errors = cells.flatMap(cell => [...cell.querySelectorAll(
                            '[role="alert"], .ant-alert-error')].map(e => e.innerText));
                        return {
                            cells: cells.length,
                            errors: errors,
                            empty: document.body.innerText.includes(
                                "No results were returned for this query"),
                            titles: [...document.querySelectorAll(
                                '[data-test="editable-title"]')].map(t => t.innerText.trim()),
                        };
                    }""",
                    arg=[len(spec.charts)],
                    timeout=120_000,
                ).json_value()
                page.screenshot(path=str(output_dir / "dashboard.png"), full_page=True)
                assert seen["cells"] == len(spec.charts)
                assert seen["errors"] == []
                assert seen["empty"] is False
                assert sorted(seen["titles"]) == sorted(c.name for c in spec.charts)
            finally:
                browser.close()

        # Every chart query Superset ran for the page answered with rows.
        # A re-render may ask again: every chart asked at least once, every answer good.
        assert {a["slice_id"] for a in chart_answers} == set(first.chart_ids.values())
        assert all(a["status"] == 200 for a in chart_answers), chart_answers
        row_counts = [sum(r.get("rowcount", 0) for r in a["body"]["result"]) for a in chart_answers]
        assert all(count > 0 for count in row_counts), row_counts
        assert (output_dir / "dashboard.png").stat().st_size > 50_000
    finally:
        remove(client, first)
    with pytest.raises(SupersetError) as gone:
        client.call("GET", f"/api/v1/dashboard/{spec.slug}")
    assert gone.value.status == 404
    assert client.find("chart", "slice_name", spec.charts[0].name) == []


def _slice_id(url: str) -> int | None:
    """The chart a dashboard's /api/v1/chart/data request is for: its `form_data` query
    parameter names the slice (`{"slice_id": N}`)."""
    form = parse_qs(urlsplit(url).query).get("form_data")
    return json.loads(form[0]).get("slice_id") if form else None
