"""`lakehouse api smoke`: one plan's life through a running plan API, each step checked.

Create, conditional read (304), patch with the ETag, a stale patch (412), found by search
(through the real-time indexer), delete, gone (404). It writes and then deletes one plan, so it
can run against a live deployment; the CLI renders the steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Step:
    name: str
    expected: int
    status: int | None  # None: no answer (the detail says why)
    ms: float
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class RoundTrip:
    steps: list[Step]
    complete: bool  # every step ran (a failed step ends the trip)

    @property
    def ok(self) -> bool:
        return self.complete and all(step.ok for step in self.steps)


class _Stop(Exception):
    """A step failed: the trip ends there."""


def round_trip(
    url: str,
    token: str,
    plan: dict[str, Any],
    search_timeout_s: float = 30.0,
    report: Callable[[Step], None] = lambda _: None,
) -> RoundTrip:
    """Run the steps against the API at `url` (ending in /v1) with a plans:write `token`;
    stops at the first failed step. `plan` is a valid plan document whose id is not live."""
    plan_id, path = plan["objectId"], f"/plan/{plan['objectId']}"
    steps: list[Step] = []

    def record(done: Step) -> None:
        steps.append(done)
        report(done)
        if not done.ok:
            raise _Stop

    def step(name: str, expected: int, call: Callable[[], httpx.Response]) -> httpx.Response:
        start = time.perf_counter()
        try:
            response = call()
        except httpx.TransportError as exc:
            ms = 1000 * (time.perf_counter() - start)
            record(Step(name, expected, None, ms, ok=False, detail=f"no answer: {exc}"))
            raise _Stop from None  # record raised already; this tells the type checker
        ms = 1000 * (time.perf_counter() - start)
        ok = response.status_code == expected
        detail = "" if ok else response.text[:300]
        record(Step(name, expected, response.status_code, ms, ok, detail))
        return response

    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:

        def searched() -> httpx.Response:
            deadline = time.monotonic() + search_timeout_s
            while True:
                found = http.get("/search", params={"q": plan_id, "limit": 1})
                if found.status_code == 200 and found.json()["items"]:
                    return found
                if time.monotonic() > deadline:
                    return httpx.Response(504, text=f"not found by search in {search_timeout_s}s")
                time.sleep(0.05)

        costs = plan["planCostShares"]
        patch = {
            "planCostShares": {"objectId": costs["objectId"], "deductible": costs["deductible"] + 1}
        }
        try:
            step("GET /v1/healthz", 200, lambda: http.get("/healthz"))
            first = step("POST /v1/plan", 201, lambda: http.post("/plan", json=plan)).headers[
                "etag"
            ]
            step(
                "GET /v1/plan/{id} If-None-Match",
                304,
                lambda: http.get(path, headers={"If-None-Match": first}),
            )
            stale = {"If-Match": first, "Content-Type": "application/merge-patch+json"}
            patched = step(
                "PATCH /v1/plan/{id} If-Match",
                200,
                lambda: http.patch(path, json=patch, headers=stale),
            )
            step(
                "PATCH with the old ETag", 412, lambda: http.patch(path, json=patch, headers=stale)
            )
            found = step("GET /v1/search?q={id} until found", 200, searched)
            answered = found.json()["items"][0]["planCostShares"]["deductible"]
            wanted = patch["planCostShares"]["deductible"]
            record(
                Step(
                    "search answers the patched plan",
                    200,
                    200,
                    0.0,
                    ok=answered == wanted,
                    detail="" if answered == wanted else f"deductible {answered}, not {wanted}",
                )
            )
            current = patched.headers["etag"]
            step(
                "DELETE /v1/plan/{id} If-Match",
                204,
                lambda: http.delete(path, headers={"If-Match": current}),
            )
            step("GET /v1/plan/{id} after delete", 404, lambda: http.get(path))
        except _Stop:
            return RoundTrip(steps, complete=False)
    return RoundTrip(steps, complete=True)
