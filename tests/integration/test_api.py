"""The plan API over HTTP against the real store (FerretDB), broker (Kafka) and index
(Elasticsearch): every route and status code, one change event per write, optimistic locking
under concurrency, search through the real-time indexer, and the precursor's client flow."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import signal
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from support import drop_database, env_for, free_port, isolated_lakehouse, read_topic

from lakehouse import clients
from lakehouse.api.auth import SCOPE_READ, SCOPE_WRITE, local_signing_key, mint_token
from lakehouse.api.protocol import MAX_BODY_BYTES
from lakehouse.api.round_trip import round_trip
from lakehouse.api.server import running
from lakehouse.config import Config
from lakehouse.ingest.indexer import Indexer
from lakehouse.ingest.search import versioned_indexes
from lakehouse.plans.generator import generate_plan
from lakehouse.plans.store import PlanStore
from lakehouse.stack.apps import ApiService
from lakehouse.stack.manager import running_pid, service_status, start_service
from lakehouse.stack.process import port_in_use, stop_process
from lakehouse.stack.supervisor import read_status


def token(config: Config, *scopes: str, ttl_s: int = 600, now_s: int | None = None) -> str:
    return mint_token(
        local_signing_key(config),
        subject="test",
        scopes=scopes,
        now_s=int(time.time()) if now_s is None else now_s,
        ttl_s=ttl_s,
        issuer=config.api.issuer,
        audience=config.api.audience,
    )


@dataclasses.dataclass
class Api:
    config: Config
    http: httpx.Client  # with a plans:write token
    url: str

    def index(self) -> None:
        """Run the real-time indexer over what the topic holds now, and make it searchable
        (Elasticsearch shows new documents at its next refresh, within a second)."""
        Indexer(self.config, report=lambda _: None).run(threading.Event(), once=True)
        clients.es_client(self.config).indices.refresh(index=self.config.elasticsearch.index)

    def topic(self) -> list[tuple[str, int]]:
        """(op, version) of every change event, in offset order per plan."""
        records = sorted(read_topic(self.config), key=lambda r: (r[0], r[2], r[3]))
        return [(value["op"], value["version"]) for _, value, _, _ in records]


@pytest.fixture
def api(config: Config, local_stack, tmp_path, request) -> Iterator[Api]:
    lake = isolated_lakehouse(config, str(tmp_path / "warehouse"), request.node.name[5:25])
    try:
        with running(lake, free_port()) as url:
            headers = {"Authorization": f"Bearer {token(lake, SCOPE_WRITE)}"}
            with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
                yield Api(lake, http, url)
    finally:
        drop_database(lake)
        es = clients.es_client(lake)
        for index in versioned_indexes(es, lake.elasticsearch.index):
            es.indices.delete(index=index)


def plan(seed: int, index: int = 0) -> dict:
    return generate_plan(seed, index).doc


def error_code(response: httpx.Response) -> str:
    return response.json()["error"]["code"]


def test_create_get_and_list(api: Api):
    first, second, third = plan(21, 2), plan(21, 0), plan(21, 1)
    created = api.http.post("/v1/plan", json=first)
    assert (created.status_code, created.headers["etag"], created.json()) == (201, '"v1"', first)
    assert created.headers["location"] == f"/v1/plan/{first['objectId']}"
    again = api.http.post("/v1/plan", json=first)
    assert (again.status_code, error_code(again)) == (409, "plan-exists")
    for doc in (second, third):
        assert api.http.post("/v1/plan", json=doc).status_code == 201

    got = api.http.get(f"/v1/plan/{first['objectId']}")
    assert (got.status_code, got.headers["etag"], got.json()) == (200, '"v1"', first)
    same = api.http.get(f"/v1/plan/{first['objectId']}", headers={"If-None-Match": '"v1"'})
    assert (same.status_code, same.content, same.headers["etag"]) == (304, b"", '"v1"')
    weak = api.http.get(f"/v1/plan/{first['objectId']}", headers={"If-None-Match": 'W/"v1"'})
    assert weak.status_code == 304
    changed = api.http.get(f"/v1/plan/{first['objectId']}", headers={"If-None-Match": '"v0"'})
    assert changed.status_code == 200
    missing = api.http.get("/v1/plan/plan-404")
    assert (missing.status_code, error_code(missing)) == (404, "not-found")
    bad_id = api.http.get("/v1/plan/has space")
    assert (bad_id.status_code, error_code(bad_id)) == (400, "bad-plan-id")

    # Pages in plan id order, a cursor to the next page, none after the last.
    page1 = api.http.get("/v1/plan", params={"limit": 2}).json()
    page2 = api.http.get("/v1/plan", params={"limit": 2, "cursor": page1["next_cursor"]}).json()
    assert page1["items"] == [second, third]
    assert page2 == {"items": [first], "next_cursor": None}
    everything = api.http.get("/v1/plan").json()
    assert everything == {"items": [second, third, first], "next_cursor": None}
    for params, code in (
        ({"limit": 0}, "bad-query"),
        ({"limit": api.config.api.max_page_size + 1}, "bad-query"),
        ({"cursor": "not-a-cursor"}, "bad-cursor"),
    ):
        refused = api.http.get("/v1/plan", params=params)
        assert (refused.status_code, error_code(refused)) == (400, code), params


def test_update_patch_delete_need_the_current_etag(api: Api):
    doc = plan(22)
    plan_id = doc["objectId"]
    url = f"/v1/plan/{plan_id}"
    api.http.post("/v1/plan", json=doc)
    replacement = {**doc, "planType": "EPO" if doc["planType"] != "EPO" else "HMO"}

    no_etag = api.http.put(url, json=replacement)
    assert (no_etag.status_code, error_code(no_etag)) == (428, "precondition-required")
    stale = api.http.put(url, json=replacement, headers={"If-Match": '"v7"'})
    assert (stale.status_code, error_code(stale), stale.headers["etag"]) == (
        412,
        "precondition-failed",
        '"v1"',
    )
    weak = api.http.put(url, json=replacement, headers={"If-Match": 'W/"v1"'})
    assert weak.status_code == 412  # If-Match compares strongly
    put = api.http.put(url, json=replacement, headers={"If-Match": '"v0", "v1"'})
    assert (put.status_code, put.headers["etag"], put.json()) == (200, '"v2"', replacement)
    other_id = {**replacement, "objectId": "plan-other"}
    other = api.http.put(url, json=other_id, headers={"If-Match": '"v2"'})
    assert (other.status_code, error_code(other)) == (400, "plan-id-mismatch")

    patch = {"planCostShares": {"deductible": 4321}}
    merge = {"Content-Type": "application/merge-patch+json"}
    no_etag = api.http.patch(url, content=json.dumps(patch), headers=merge)
    assert no_etag.status_code == 428
    patched = api.http.patch(url, content=json.dumps(patch), headers={**merge, "If-Match": '"v2"'})
    expected = copy.deepcopy(replacement)
    expected["planCostShares"]["deductible"] = 4321
    assert (patched.status_code, patched.headers["etag"], patched.json()) == (200, '"v3"', expected)
    as_json = api.http.patch(url, json={"planType": "HMO"}, headers={"If-Match": "*"})
    assert (as_json.status_code, as_json.headers["etag"]) == (200, '"v4"')
    bad_patch = api.http.patch(url, json={"planType": None}, headers={"If-Match": '"v4"'})
    assert (bad_patch.status_code, error_code(bad_patch)) == (400, "invalid-patch")
    bad_value = api.http.patch(
        url, json={"planCostShares": {"deductible": -1}}, headers={"If-Match": '"v4"'}
    )
    assert (bad_value.status_code, error_code(bad_value)) == (400, "invalid-plan")
    assert bad_value.json()["error"]["issues"] == [
        {
            "path": "planCostShares.deductible",
            "rule": "minimum",
            "message": "-1 is less than the minimum of 0",
        }
    ]

    stale_delete = api.http.delete(url, headers={"If-Match": '"v3"'})
    assert (stale_delete.status_code, error_code(stale_delete)) == (412, "precondition-failed")
    deleted = api.http.delete(url, headers={"If-Match": '"v4"'})
    assert (deleted.status_code, deleted.content) == (204, b"")
    for response in (
        api.http.get(url),
        api.http.delete(url),
        api.http.patch(url, json=patch, headers={"If-Match": "*"}),
        api.http.put(url, json=doc, headers={"If-Match": "*"}),
    ):
        assert (response.status_code, error_code(response)) == (404, "not-found")
    # A deleted plan may be created again; its versions go on.
    recreated = api.http.post("/v1/plan", json=doc)
    assert (recreated.status_code, recreated.headers["etag"]) == (201, '"v6"')
    unconditional = api.http.delete(url)
    assert unconditional.status_code == 204

    assert api.topic() == [("c", 1), ("u", 2), ("u", 3), ("u", 4), ("d", 5), ("c", 6), ("d", 7)]


def test_bad_input_is_refused_and_writes_nothing(api: Api):
    doc = plan(23)
    raw = json.dumps(doc)
    costs = {**doc["planCostShares"], "copay": math.nan}
    not_a_number = json.dumps({**doc, "planCostShares": costs})
    assert "NaN" in not_a_number
    hostile = copy.deepcopy(doc)  # valid to the schema, but no consumer could parse its event
    hostile["linkedPlanServices"][0]["linkedService"]["name"] = "Well\u0000child visit"
    cases = [
        # (body, content type, status, code)
        (json.dumps(hostile).encode(), "application/json", 400, "rejected-by-contract"),
        (raw.encode(), "text/plain", 415, "unsupported-media-type"),
        (raw.encode(), None, 415, "unsupported-media-type"),
        (raw.encode(), "application/merge-patch+json", 415, "unsupported-media-type"),
        (raw[:-1].encode(), "application/json", 400, "malformed-json"),
        (b"[1, 2]", "application/json", 400, "malformed-json"),
        (b"\xff\xfe{}", "application/json", 400, "malformed-json"),
        (raw[:-1].encode() + b', "planType": "HMO"}', "application/json", 400, "malformed-json"),
        (not_a_number.encode(), "application/json", 400, "malformed-json"),
        (not_a_number.replace("NaN", "1e999").encode(), "application/json", 400, "malformed-json"),
        (json.dumps({**doc, "surprise": 1}).encode(), "application/json", 400, "invalid-plan"),
        (json.dumps({**doc, "objectId": "a b"}).encode(), "application/json", 400, "invalid-plan"),
        (
            json.dumps({**doc, "planType": "x\u0000"}).encode(),
            "application/json",
            400,
            "invalid-plan",
        ),
        (b"{" + b" " * MAX_BODY_BYTES + b"}", "application/json", 413, "too-large"),
    ]
    for body, content_type, status, code in cases:
        headers = {"Content-Type": content_type} if content_type else {}
        response = api.http.post("/v1/plan", content=body, headers=headers)
        assert response.status_code == status, (body[:80], response.text[:300])
        assert code is None or error_code(response) == code, (body[:80], response.text[:300])
        assert response.json()["error"]["message"]

    # A body that says it is small and is not: refused while being read.
    def chunks() -> Iterator[bytes]:
        yield b'{"a": "'
        for _ in range(MAX_BODY_BYTES // 65536 + 1):
            yield b"x" * 65536
        yield b'"}'

    streamed = api.http.post(
        "/v1/plan", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert (streamed.status_code, error_code(streamed)) == (413, "too-large")
    listed = api.http.get("/v1/plan").json()
    assert listed == {"items": [], "next_cursor": None}
    assert api.topic() == []


def test_tokens_and_scopes(api: Api):
    doc = plan(24)
    anonymous = httpx.post(f"{api.url}/v1/plan", json=doc)
    assert (anonymous.status_code, error_code(anonymous)) == (401, "unauthorized")
    assert anonymous.headers["www-authenticate"] == 'Bearer realm="plans"'
    assert httpx.get(f"{api.url}/v1/plan").status_code == 401
    assert httpx.get(f"{api.url}/v1/search").status_code == 401

    def call(bearer: str, method: str = "GET", path: str = "/v1/plan") -> httpx.Response:
        headers = {"Authorization": f"Bearer {bearer}"}
        return httpx.request(method, f"{api.url}{path}", headers=headers, json=doc)

    reader = token(api.config, SCOPE_READ)
    assert call(reader).status_code == 200
    forbidden = call(reader, "POST")
    assert (forbidden.status_code, error_code(forbidden)) == (403, "forbidden")
    assert 'error="insufficient_scope"' in forbidden.headers["www-authenticate"]

    expired = token(api.config, SCOPE_WRITE, ttl_s=60, now_s=int(time.time()) - 3600)
    other_key_config = dataclasses.replace(api.config, state_dir=str(api.config.warehouse))
    foreign = token(other_key_config, SCOPE_WRITE)  # a key pair this server never saw
    wrong_audience = mint_token(
        local_signing_key(api.config), "test", (SCOPE_WRITE,), int(time.time()), 600,
        api.config.api.issuer, "someone-else",
    )  # fmt: skip
    header, payload, _ = token(api.config, SCOPE_WRITE).split(".")
    unsigned = f"{header}.{payload}."
    for bad in (expired, foreign, wrong_audience, unsigned, "not.a.jwt", "garbage"):
        refused = call(bad, "POST")
        assert (refused.status_code, error_code(refused)) == (401, "unauthorized"), bad
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]

    health = httpx.get(f"{api.url}/v1/healthz")
    assert (health.status_code, health.json()) == (
        200,
        {"status": "ok", "store": "up", "broker": "up"},
    )
    assert api.topic() == []
    openapi = httpx.get(f"{api.url}/v1/openapi.json").json()
    assert {"/v1/plan", "/v1/plan/{plan_id}", "/v1/search", "/v1/healthz"} <= set(openapi["paths"])
    assert openapi["components"]["schemas"]["Plan"]["required"]
    assert httpx.get(f"{api.url}/v1/docs").status_code == 200


def test_concurrent_writers_with_the_same_etag_one_wins(api: Api):
    doc = plan(25)
    url = f"/v1/plan/{doc['objectId']}"
    api.http.post("/v1/plan", json=doc)
    winners = []
    for version in range(1, 6):
        barrier = threading.Barrier(2)
        statuses: list[int] = []

        def write(
            deductible: int,
            expected: int = version,
            barrier: threading.Barrier = barrier,
            statuses: list[int] = statuses,
        ) -> None:
            patch = {"planCostShares": {"deductible": deductible}}
            barrier.wait()
            response = api.http.patch(url, json=patch, headers={"If-Match": f'"v{expected}"'})
            statuses.append(response.status_code)
            if response.status_code == 200:
                winners.append(deductible)

        threads = [threading.Thread(target=write, args=(version * 100 + i,)) for i in (1, 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(statuses) == [200, 412], statuses
    final = api.http.get(url)
    assert (final.headers["etag"], final.json()["planCostShares"]["deductible"]) == (
        '"v6"',
        winners[-1],
    )
    assert api.topic() == [("c", 1)] + [("u", v) for v in range(2, 7)]


def test_patch_then_search_finds_the_new_service(api: Api):
    docs = [plan(26, i) for i in range(6)]
    for doc in docs:
        assert api.http.post("/v1/plan", json=doc).status_code == 201
    api.index()
    target = docs[3]
    service = copy.deepcopy(target["linkedPlanServices"][0])
    service["objectId"] = f"{target['objectId']}-ps-new"
    service["linkedService"] = {
        **service["linkedService"], "objectId": "svc-new-9", "name": "Hyperbaric Oxygen Therapy",
    }  # fmt: skip
    service["planserviceCostShares"]["objectId"] = f"{target['objectId']}-ps-new-mcs"
    etag = api.http.get(f"/v1/plan/{target['objectId']}").headers["etag"]
    patched = api.http.patch(
        f"/v1/plan/{target['objectId']}",
        json={"linkedPlanServices": [service]},
        headers={"If-Match": etag},
    )
    assert patched.status_code == 200
    api.index()

    found = api.http.get("/v1/search", params={"service": "hyperbaric oxygen"}).json()
    assert found == {"items": [patched.json()], "total": 1, "next_cursor": None}
    assert api.http.get("/v1/search", params={"q": "Hyperbaric"}).json()["items"] == [
        patched.json()
    ]
    current = {doc["objectId"]: doc for doc in docs} | {target["objectId"]: patched.json()}
    by_id = sorted(current)

    def ids(params: dict) -> list[str]:
        items = api.http.get("/v1/search", params=params).json()["items"]
        return [doc["objectId"] for doc in items]

    assert ids({}) == by_id
    plan_type = docs[0]["planType"]
    assert ids({"planType": plan_type}) == [i for i in by_id if current[i]["planType"] == plan_type]
    org = docs[1]["_org"]
    assert ids({"org": org}) == [i for i in by_id if current[i]["_org"] == org]
    low, high = 1000, 4000
    in_range = [i for i in by_id if low <= current[i]["planCostShares"]["deductible"] <= high]
    assert ids({"minDeductible": low, "maxDeductible": high}) == in_range
    # Pages through the whole result set, in order, with the total on every page.
    page = api.http.get("/v1/search", params={"limit": 4}).json()
    rest = api.http.get("/v1/search", params={"limit": 4, "cursor": page["next_cursor"]}).json()
    assert (page["total"], rest["total"], rest["next_cursor"]) == (6, 6, None)
    assert [d["objectId"] for d in page["items"] + rest["items"]] == by_id
    refused = api.http.get("/v1/search", params={"minDeductible": -5})
    assert (refused.status_code, error_code(refused)) == (400, "bad-query")

    # A deleted plan leaves the results once the indexer saw the delete.
    api.http.delete(f"/v1/plan/{target['objectId']}")
    api.index()
    assert api.http.get("/v1/search", params={"service": "hyperbaric"}).json()["total"] == 0


def test_the_precursor_collection_flow(api: Api):
    """create, get, 304, list, update with the ETag, update without it, patch, search, delete,
    404: the order its Postman collection runs in."""
    doc = plan(27)
    doc["planType"] = "HMO"
    url = f"/v1/plan/{doc['objectId']}"
    assert api.http.post("/v1/plan", json=doc).status_code == 201
    got = api.http.get(url)
    assert got.status_code == 200
    assert api.http.get(url, headers={"If-None-Match": got.headers["etag"]}).status_code == 304
    assert api.http.get("/v1/plan").json()["items"] == [doc]
    updated = {**doc, "planType": "POS"}
    put = api.http.put(url, json=updated, headers={"If-Match": got.headers["etag"]})
    assert put.status_code == 200
    assert api.http.put(url, json=updated).status_code == 428
    patched = api.http.patch(
        url, json={"planCostShares": {"copay": 45}}, headers={"If-Match": put.headers["etag"]}
    )
    assert patched.status_code == 200
    api.index()
    hits = api.http.get("/v1/search", params={"planType": "POS"}).json()
    assert hits["items"] == [patched.json()]
    assert api.http.delete(url, headers={"If-Match": patched.headers["etag"]}).status_code == 204
    assert api.http.get(url).status_code == 404
    assert api.topic() == [("c", 1), ("u", 2), ("u", 3), ("d", 4)]


def test_unreachable_broker_answers_503_and_keeps_the_write(config: Config, local_stack, tmp_path):
    """The store is up, the broker is not: reads work, a write is committed with its event in
    the outbox and answered 503, and the health check says which one is down."""
    lake = isolated_lakehouse(config, str(tmp_path / "warehouse"), "api-no-broker")
    no_broker = dataclasses.replace(lake.kafka, bootstrap=f"127.0.0.1:{free_port()}")
    dead = dataclasses.replace(lake, kafka=no_broker)
    doc = plan(28)
    try:
        with (
            running(dead, free_port()) as url,
            httpx.Client(
                base_url=url,
                headers={"Authorization": f"Bearer {token(dead, SCOPE_WRITE)}"},
                timeout=60,
            ) as http,
        ):
            health = http.get("/v1/healthz")
            assert health.status_code == 503
            assert (health.json()["store"], health.json()["broker"][:4]) == ("up", "down")
            refused = http.post("/v1/plan", json=doc)
            assert (refused.status_code, error_code(refused)) == (503, "broker-unavailable")
            assert "stays in the outbox" in refused.json()["error"]["message"]
            assert refused.headers["retry-after"] == "5"
            assert http.get(f"/v1/plan/{doc['objectId']}").json() == doc
        with PlanStore(lake) as store:
            assert store.count_pending() == 1
            assert store.drain_outbox().published == 1
        assert [(v["op"], v["version"]) for _, v, _, _ in read_topic(lake)] == [("c", 1)]
    finally:
        drop_database(lake)


def test_the_stack_supervises_the_api_and_restarts_it_after_a_crash(
    config: Config, local_stack, tmp_path, monkeypatch: pytest.MonkeyPatch
):
    port = free_port()
    lake = dataclasses.replace(
        isolated_lakehouse(config, str(tmp_path / "warehouse"), "apistack"),
        state_dir=str(tmp_path / "state"),
        api=dataclasses.replace(config.api, port=port),
    )
    for name, value in {
        **env_for(lake),
        "LAKEHOUSE_API_PORT": str(port),
        "LAKEHOUSE_STATE_DIR": lake.state_dir,  # where the signing key is
    }.items():
        monkeypatch.setenv(name, value)  # the supervised process inherits them
    service = ApiService(lake)
    start_service(service, timeout_s=120, report=print)
    try:
        assert service_status(service).healthy
        headers = {"Authorization": f"Bearer {token(lake, SCOPE_WRITE)}"}
        with httpx.Client(base_url=service.url, headers=headers, timeout=30) as http:
            created = http.post("/plan", json=plan(21))
            assert created.status_code == 201, created.text
            first = read_status(service.status_file)
            assert first is not None and first.child_pid is not None
            os.kill(first.child_pid, signal.SIGKILL)
            deadline = time.monotonic() + 60
            while True:  # the supervisor starts a new server after its back-off
                status = read_status(service.status_file)
                if status and status.restarts == 1 and status.state == "running":
                    try:
                        if http.get("/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                assert time.monotonic() < deadline, f"not restarted: {status}"
                time.sleep(0.5)
            again = http.get(f"/plan/{created.json()['objectId']}")
            assert (again.status_code, again.json()) == (200, created.json())
    finally:
        pid = running_pid(service)
        if pid is not None:
            stop_process(pid, service.marker)
        drop_database(lake)
    assert not port_in_use(port)
    log = service.paths.log.read_text()
    assert "restart in" in log and "Uvicorn running on http://127.0.0.1:" in log


def test_the_smoke_round_trip_passes_with_the_indexer_running(api: Api):
    stop = threading.Event()
    indexer = threading.Thread(
        target=Indexer(api.config, report=lambda _: None).run, args=(stop,), daemon=True
    )
    indexer.start()
    try:
        trip = round_trip(f"{api.url}/v1", token(api.config, SCOPE_WRITE), plan(31))
    finally:
        stop.set()
        indexer.join(30)
    assert [(s.name, s.status, s.ok) for s in trip.steps] == [
        ("GET /v1/healthz", 200, True),
        ("POST /v1/plan", 201, True),
        ("GET /v1/plan/{id} If-None-Match", 304, True),
        ("PATCH /v1/plan/{id} If-Match", 200, True),
        ("PATCH with the old ETag", 412, True),
        ("GET /v1/search?q={id} until found", 200, True),
        ("search answers the patched plan", 200, True),
        ("DELETE /v1/plan/{id} If-Match", 204, True),
        ("GET /v1/plan/{id} after delete", 404, True),
    ]
    assert trip.ok
    assert api.topic() == [("c", 1), ("u", 2), ("d", 3)]


def test_the_smoke_round_trip_stops_at_the_first_failure(api: Api):
    # No indexer: the plan is never found, so the trip ends there and says so.
    trip = round_trip(f"{api.url}/v1", token(api.config, SCOPE_WRITE), plan(32), search_timeout_s=1)
    assert [(s.name, s.status, s.ok) for s in trip.steps][-2:] == [
        ("PATCH with the old ETag", 412, True),
        ("GET /v1/search?q={id} until found", 504, False),
    ]
    assert "not found by search in 1s" in trip.steps[-1].detail
    assert (trip.complete, trip.ok) == (False, False)
    # and a token without the write scope fails at the first write
    reader = round_trip(f"{api.url}/v1", token(api.config, SCOPE_READ), plan(33))
    assert [(s.name, s.status, s.ok) for s in reader.steps] == [
        ("GET /v1/healthz", 200, True),
        ("POST /v1/plan", 403, False),
    ]
    assert '"forbidden"' in reader.steps[-1].detail
