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


def round_trip(
    url: str,
    token: str,
    plan: dict[str, Any],
    search_timeout_s: float = 30.0,
    report: Callable[[Step], None] = lambda _: None,
) -> RoundTrip:
    """Run the steps against the API at `url` (ending in /v1) with a plans:write `token`;
    stops at the first failed step. `plan` is a valid plan document whose id is not live."""
    plan_id = plan["objectId"]
    steps: list[Step] = []
    headers = {"Authorization": f"Bearer {token}"}

    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:

        def step(
            name: str, expected: int, call: Callable[[], httpx.Response], detail: str = ""
        ) -> httpx.Response | None:
            start = time.perf_counter()
            try:
                response: httpx.Response | None = call()
                status: int | None = response.status_code if response is not None else None
            except httpx.TransportError as exc:
                response, status, detail = None, None, f"no answer: {exc}"
            ms = 1000 * (time.perf_counter() - start)
            if response is not None and status != expected:
                detail = response.text[:300]
            done = Step(name, expected, status, ms, status == expected, detail)
            steps.append(done)
            report(done)
            return response if done.ok else None

        if step("GET /v1/healthz", 200, lambda: http.get("/healthz")) is None:
            return RoundTrip(steps, complete=False)
        created = step("POST /v1/plan", 201, lambda: http.post("/plan", json=plan))
        if created is None:
            return RoundTrip(steps, complete=False)
        first = created.headers["etag"]
        path = f"/plan/{plan_id}"
        if (
            step(
                "GET /v1/plan/{id} If-None-Match",
                304,
                lambda: http.get(path, headers={"If-None-Match": first}),
            )
            is None
        ):
            return RoundTrip(steps, complete=False)
        deductible = plan["planCostShares"]["deductible"] + 1
        patch = {"planCostShares": {"objectId": plan["planCostShares"]["objectId"],
                                    "deductible": deductible}}  # fmt: skip
        merge_patch = {"If-Match": first, "Content-Type": "application/merge-patch+json"}
        patched = step(
            "PATCH /v1/plan/{id} If-Match",
            200,
            lambda: http.patch(path, json=patch, headers=merge_patch),
        )
        if patched is None:
            return RoundTrip(steps, complete=False)
        if (
            step(
                "PATCH with the old ETag",
                412,
                lambda: http.patch(path, json=patch, headers=merge_patch),
            )
            is None
        ):
            return RoundTrip(steps, complete=False)

        def searched() -> httpx.Response | None:
            deadline = time.monotonic() + search_timeout_s
            while True:
                found = http.get("/search", params={"q": plan_id, "limit": 1})
                items = found.json().get("items") if found.status_code == 200 else None
                if items:
                    return found
                if time.monotonic() > deadline:
                    # An answer without the plan: the step fails with what search said.
                    return httpx.Response(504, text=f"not found by search in {search_timeout_s}s")
                time.sleep(0.05)

        found = step("GET /v1/search?q={id} until found", 200, searched)
        if found is None:
            return RoundTrip(steps, complete=False)
        answered = found.json()["items"][0]["planCostShares"]["deductible"]
        if answered != deductible:
            wrong = Step(
                "search answers the patched plan",
                200,
                200,
                0.0,
                ok=False,
                detail=f"deductible {answered}, not {deductible}",
            )
            steps.append(wrong)
            report(wrong)
            return RoundTrip(steps, complete=False)
        current = patched.headers["etag"]
        if (
            step(
                "DELETE /v1/plan/{id} If-Match",
                204,
                lambda: http.delete(path, headers={"If-Match": current}),
            )
            is None
        ):
            return RoundTrip(steps, complete=False)
        step("GET /v1/plan/{id} after delete", 404, lambda: http.get(path))
    return RoundTrip(steps, complete=True)
