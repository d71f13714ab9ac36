"""Superset as code: `lakehouse superset provision` creates or updates, from
`conf/superset/dashboard.yaml`, the warehouse connection (as the read-only BI role), the datasets
over the PostgreSQL mirror, the charts and the dashboard, through Superset's REST API.

Everything is matched by name (connection, dataset table, chart name, dashboard slug), so
provisioning again updates in place and never duplicates. The spec is checked before any call.
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from lakehouse.config import PROJECT_ROOT, Config
from lakehouse.serving.mirror import MIRRORED, target_name

log = logging.getLogger(__name__)

DEFAULT_SPEC = PROJECT_ROOT / "conf" / "superset" / "dashboard.yaml"
ADMIN_PASSWORD_VAR = "LAKEHOUSE_SUPERSET_ADMIN_PASSWORD"
GRID_COLUMNS = 12
# A namespace for chart uuids in the layout: the same chart name gets the same uuid every time.
_LAYOUT_NAMESPACE = uuid.UUID("6f1c4f5e-2d0b-4f7e-9a51-7d8a3f1f6c21")


class SupersetError(RuntimeError):
    """Provisioning failed; the message names the object and Superset's answer."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    table: str = ""  # a mirrored table (physical dataset) ...
    sql: str = ""  # ... or a query over the mirror (virtual dataset)


@dataclass(frozen=True)
class ChartSpec:
    name: str
    dataset: str
    viz_type: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DashboardSpec:
    database_name: str
    datasets: tuple[DatasetSpec, ...]
    charts: tuple[ChartSpec, ...]
    title: str
    slug: str
    # Rows of (chart name, width in grid columns).
    rows: tuple[tuple[tuple[str, int], ...], ...]


def load_spec(path: Path, schema: str, suffix: str = "") -> DashboardSpec:
    """Read and check the spec; `{schema}` in dataset SQL becomes the mirror schema.

    `suffix` is appended to every object's name (tests provision a private copy with it)."""
    try:
        raw = yaml.safe_load(path.read_text())
        datasets = tuple(
            DatasetSpec(
                name=d["name"] + suffix,
                table=d.get("table", ""),
                sql=d.get("sql", "").replace("{schema}", schema).strip(),
            )
            for d in raw["datasets"]
        )
        charts = tuple(
            ChartSpec(
                name=c["name"] + suffix,
                dataset=c["dataset"] + suffix,
                viz_type=c["viz_type"],
                params=dict(c.get("params") or {}),
            )
            for c in raw["charts"]
        )
        board = raw["dashboard"]
        rows = tuple(
            tuple((str(name) + suffix, int(width)) for name, width in row) for row in board["rows"]
        )
        slug = board["slug"] + re.sub(r"[^a-z0-9]+", "-", suffix.lower()).rstrip("-")
        spec = DashboardSpec(
            raw["database"]["name"] + suffix, datasets, charts, board["title"] + suffix, slug, rows
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SupersetError(
            f"{path}: malformed dashboard spec ({type(exc).__name__}: {exc})"
        ) from exc
    problems = spec_problems(spec)
    if problems:
        raise SupersetError(f"{path}: " + "; ".join(problems))
    return spec


def spec_problems(spec: DashboardSpec) -> list[str]:
    """Everything wrong with a spec, checked before Superset is called."""
    problems = []
    mirrored = {target_name(t) for t in MIRRORED}
    dataset_names = [d.name for d in spec.datasets]
    chart_names = [c.name for c in spec.charts]
    for kind, names in (("dataset", dataset_names), ("chart", chart_names)):
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            problems.append(f"{kind} names repeat: {', '.join(repeated)}")
    for d in spec.datasets:
        if bool(d.table) == bool(d.sql):
            problems.append(f"dataset {d.name!r} needs exactly one of `table` and `sql`")
        elif d.table and d.table not in mirrored:
            problems.append(
                f"dataset {d.name!r}: {d.table!r} is not a mirrored table "
                f"({', '.join(sorted(mirrored))})"
            )
    for c in spec.charts:
        if c.dataset not in dataset_names:
            problems.append(f"chart {c.name!r} uses unknown dataset {c.dataset!r}")
    placed = [name for row in spec.rows for name, _ in row]
    for name in sorted(set(placed) - set(chart_names)):
        problems.append(f"dashboard row names unknown chart {name!r}")
    for name in chart_names:
        if placed.count(name) != 1:
            problems.append(
                f"chart {name!r} must be placed exactly once (placed {placed.count(name)})"
            )
    for i, row in enumerate(spec.rows, start=1):
        width = sum(w for _, w in row)
        if width > GRID_COLUMNS or any(w < 1 for _, w in row):
            problems.append(f"dashboard row {i} is {width} columns wide (1..{GRID_COLUMNS} each)")
    return problems


def chart_uuid(name: str) -> str:
    return str(uuid.uuid5(_LAYOUT_NAMESPACE, name))


def position_json(
    rows: tuple[tuple[tuple[str, int], ...], ...], chart_ids: dict[str, int]
) -> dict[str, Any]:
    """Superset's dashboard layout: ROOT -> GRID -> one ROW per spec row -> CHART per cell."""
    layout: dict[str, Any] = {
        "DASHBOARD_VERSION_KEY": "v2",
        "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]},
        "GRID_ID": {"type": "GRID", "id": "GRID_ID", "children": [], "parents": ["ROOT_ID"]},
    }
    for r, row in enumerate(rows, start=1):
        row_id = f"ROW-{r}"
        layout["GRID_ID"]["children"].append(row_id)
        layout[row_id] = {
            "type": "ROW",
            "id": row_id,
            "children": [],
            "parents": ["ROOT_ID", "GRID_ID"],
            "meta": {"background": "BACKGROUND_TRANSPARENT"},
        }
        for name, width in row:
            chart_key = f"CHART-{chart_ids[name]}"
            layout[row_id]["children"].append(chart_key)
            layout[chart_key] = {
                "type": "CHART",
                "id": chart_key,
                "children": [],
                "parents": ["ROOT_ID", "GRID_ID", row_id],
                "meta": {
                    "chartId": chart_ids[name],
                    "width": width,
                    "height": 50,
                    "sliceName": name,
                    "uuid": chart_uuid(name),
                },
            }
    return layout


def warehouse_uri(config: Config) -> str:
    """The BI role's connection to the warehouse database (password: LAKEHOUSE_BI_PASSWORD)."""
    from urllib.parse import urlsplit

    dsn = urlsplit(config.postgres.dsn)
    password = os.environ.get("LAKEHOUSE_BI_PASSWORD")
    auth = config.serving.bi_role + (f":{quote(password, safe='')}" if password else "")
    return (
        f"postgresql+psycopg2://{auth}@{dsn.hostname or '127.0.0.1'}:{dsn.port or 5432}"
        f"{dsn.path or '/lakehouse'}"
    )


def _rison_string(value: str) -> str:
    return "'" + value.replace("!", "!!").replace("'", "!'") + "'"


class SupersetClient:
    """The few REST calls provisioning needs, logged in as the admin."""

    def __init__(self, base_url: str, user: str, password: str, timeout_s: float = 60.0) -> None:
        import requests

        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = requests.Session()
        answer = self._request(
            "POST",
            "/api/v1/security/login",
            {"username": user, "password": password, "provider": "db", "refresh": False},
        )
        if answer.status_code != 200:
            raise SupersetError(
                f"Superset at {self.base_url} refused the login of {user!r} "
                f"(HTTP {answer.status_code}); check {ADMIN_PASSWORD_VAR}"
            )
        self.session.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
        # Superset's CSRF protection covers API writes made with a session cookie.
        csrf = self.call("GET", "/api/v1/security/csrf_token/")["result"]
        self.session.headers.update({"X-CSRFToken": csrf, "Referer": self.base_url})

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
        import requests

        try:
            return self.session.request(
                method, f"{self.base_url}{path}", json=body, timeout=self.timeout_s
            )
        except requests.RequestException as exc:
            raise SupersetError(
                f"cannot reach Superset at {self.base_url} ({type(exc).__name__}); "
                "start it with `lakehouse stack up --apps`"
            ) from exc

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = self._request(method, path, body)
        if answer.status_code >= 400:
            raise SupersetError(
                f"{method} {path}: HTTP {answer.status_code}: {answer.text[:500]}",
                answer.status_code,
            )
        return answer.json() if answer.content else {}

    def save(self, resource: str, object_id: int | None, body: dict[str, Any]) -> int:
        """PUT `body` onto an existing object, or POST a new one (`object_id` None); its id."""
        if object_id is None:
            return int(self.call("POST", f"/api/v1/{resource}/", body)["id"])
        self.call("PUT", f"/api/v1/{resource}/{object_id}", body)
        return object_id

    def find(self, resource: str, column: str, value: str) -> list[dict[str, Any]]:
        query = f"(filters:!((col:{column},opr:eq,value:{_rison_string(value)})),page_size:100)"
        return self.call("GET", f"/api/v1/{resource}/?q={quote(query)}")["result"]


@dataclass(frozen=True)
class Provisioned:
    dashboard_url: str
    dashboard_id: int
    database_id: int
    dataset_ids: dict[str, int]
    chart_ids: dict[str, int]
    # "created" or "updated" per object, in order
    actions: tuple[str, ...]


def provision(
    config: Config,
    base_url: str,
    user: str,
    password: str,
    spec_path: Path = DEFAULT_SPEC,
    progress: Callable[[str], None] = print,
    suffix: str = "",
) -> Provisioned:
    """Create or update the connection, datasets, charts and dashboard of the spec."""
    schema = config.serving.schema
    spec = load_spec(spec_path, schema, suffix)
    client = SupersetClient(base_url, user, password)
    actions: list[str] = []

    def done(kind: str, name: str, created: bool, object_id: int) -> None:
        action = f"{kind} {name!r}: {'created' if created else 'updated'} (id {object_id})"
        actions.append(action)
        progress(action)

    database = {
        "database_name": spec.database_name,
        "sqlalchemy_uri": warehouse_uri(config),
        "expose_in_sqllab": True,
        "allow_dml": False,
    }
    found = client.find("database", "database_name", spec.database_name)
    database_id = client.save("database", found[0]["id"] if found else None, database)
    done("database", spec.database_name, not found, database_id)

    dataset_ids = {}
    for d in spec.datasets:
        table_name = d.table or d.name
        existing = [
            row
            for row in client.find("dataset", "table_name", table_name)
            if row.get("schema") == schema and row["database"]["id"] == database_id
        ]
        if existing:
            dataset_id = client.save("dataset", existing[0]["id"], {"sql": d.sql or None})
        else:
            body = {"database": database_id, "schema": schema, "table_name": table_name}
            dataset_id = client.save("dataset", None, body | ({"sql": d.sql} if d.sql else {}))
        # Columns come from the database: a changed mirror table or query is picked up here.
        client.call("PUT", f"/api/v1/dataset/{dataset_id}/refresh")
        dataset_ids[d.name] = dataset_id
        done("dataset", d.name, not existing, dataset_id)

    dashboard_id, dashboard_created = _ensure_dashboard(client, spec)
    chart_ids = {}
    for c in spec.charts:
        dataset_id = dataset_ids[c.dataset]
        params = {**c.params, "viz_type": c.viz_type, "datasource": f"{dataset_id}__table"}
        body = {
            "slice_name": c.name,
            "viz_type": c.viz_type,
            "datasource_id": dataset_id,
            "datasource_type": "table",
            "params": json.dumps(params),
            "dashboards": [dashboard_id],
        }
        existing = client.find("chart", "slice_name", c.name)
        chart_id = client.save("chart", existing[0]["id"] if existing else None, body)
        chart_ids[c.name] = chart_id
        done("chart", c.name, not existing, chart_id)
    _detach_other_charts(client, dashboard_id, set(chart_ids.values()), progress)
    layout = {
        "dashboard_title": spec.title,
        "slug": spec.slug,
        "published": True,
        "position_json": json.dumps(position_json(spec.rows, chart_ids)),
        "json_metadata": json.dumps({"refresh_frequency": 0}),
    }
    client.call("PUT", f"/api/v1/dashboard/{dashboard_id}", layout)
    done("dashboard", spec.title, dashboard_created, dashboard_id)
    return Provisioned(
        dashboard_url=f"{client.base_url}/superset/dashboard/{spec.slug}/",
        dashboard_id=dashboard_id,
        database_id=database_id,
        dataset_ids=dataset_ids,
        chart_ids=chart_ids,
        actions=tuple(actions),
    )


def remove(client: SupersetClient, provisioned: Provisioned) -> None:
    """Delete what `provision` made: the dashboard, its charts, datasets and connection (in
    that order: each is still referenced by the next)."""
    client.call("DELETE", f"/api/v1/dashboard/{provisioned.dashboard_id}")
    for chart_id in provisioned.chart_ids.values():
        client.call("DELETE", f"/api/v1/chart/{chart_id}")
    for dataset_id in provisioned.dataset_ids.values():
        client.call("DELETE", f"/api/v1/dataset/{dataset_id}")
    client.call("DELETE", f"/api/v1/database/{provisioned.database_id}")


def _detach_other_charts(
    client: SupersetClient, dashboard_id: int, keep: set[int], progress: Callable[[str], None]
) -> None:
    """Charts dropped from (or renamed in) the spec leave the dashboard: Superset would show a
    chart that is linked but not in the layout at the bottom."""
    for chart in client.call("GET", f"/api/v1/dashboard/{dashboard_id}/charts")["result"]:
        if chart["id"] in keep:
            continue
        detail = client.call("GET", f"/api/v1/chart/{chart['id']}")["result"]
        others = [d["id"] for d in detail.get("dashboards", []) if d["id"] != dashboard_id]
        client.call("PUT", f"/api/v1/chart/{chart['id']}", {"dashboards": others})
        progress(f"chart {chart['slice_name']!r}: removed from the dashboard (not in the spec)")


def _ensure_dashboard(client: SupersetClient, spec: DashboardSpec) -> tuple[int, bool]:
    """The dashboard's id, creating it empty when missing; True when created."""
    try:
        return client.call("GET", f"/api/v1/dashboard/{spec.slug}")["result"]["id"], False
    except SupersetError as exc:
        if exc.status != 404:
            raise
    body = {"dashboard_title": spec.title, "slug": spec.slug, "published": True}
    return client.save("dashboard", None, body), True
