"""The plan API's routes (FastAPI): /v1/plan CRUD with ETags, /v1/search, /v1/healthz.

Every write goes through `PlanStore`, so it is validated, stored with its change event in the
outbox and published exactly as `lakehouse simulate` and `lakehouse plans apply` do. The route
table, status codes and error codes are in docs/api.md; the HTTP rules themselves (ETags,
conditions, cursors, strict JSON) are in lakehouse/api/protocol.py.
"""

# No `from __future__ import annotations`: FastAPI reads the dependencies' Annotated hints at
# definition time, and the auth dependencies are closures it could not resolve from strings.
import copy
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from lakehouse.api import protocol as p
from lakehouse.api.auth import SCOPE_READ, SCOPE_WRITE, KeysUnavailable, Principal, TokenError
from lakehouse.api.context import ApiContext
from lakehouse.api.search import SearchFilters, hits_page, search_body
from lakehouse.plans.events import RECORD_TOO_LARGE
from lakehouse.plans.merge import PatchError
from lakehouse.plans.schema import OBJECT_ID_RE, PLAN_SCHEMA, PlanValidationError
from lakehouse.plans.store import (
    ConcurrentWriteError,
    PlanExistsError,
    PlanIdMismatchError,
    PlanNotFoundError,
    PlanRejectedError,
    PlanStore,
    PublishError,
    StaleVersionError,
    WriteResult,
)

API_TITLE = "Lakehouse plan API"
PREFIX = "/v1"
T = TypeVar("T")
_bearer = HTTPBearer(auto_error=False, description="an RS256 JWT (`lakehouse api token`)")


def _openapi_plan_schema() -> dict[str, Any]:
    """The plan JSON Schema with its $defs moved to OpenAPI components."""
    schema = copy.deepcopy(PLAN_SCHEMA)
    schema.pop("$schema", None)
    schema.pop("$id", None)
    defs = schema.pop("$defs", {})

    def relink(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                key: (
                    value.replace("#/$defs/", "#/components/schemas/")
                    if key == "$ref" and isinstance(value, str)
                    else relink(value)
                )
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [relink(item) for item in node]
        return node

    return {"Plan": relink(schema), **{name: relink(d) for name, d in defs.items()}}


def _json_body(media_types: tuple[str, ...]) -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/Plan"}
    return {
        "requestBody": {
            "required": True,
            "content": {media: {"schema": ref} for media in media_types},
        }
    }


def _error(exc: p.ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def _check_id(plan_id: str) -> None:
    if not OBJECT_ID_RE.fullmatch(plan_id):
        raise p.ApiError(400, p.BAD_PLAN_ID, f"{plan_id!r} is not a plan objectId")


def _write_failure(exc: Exception, conditional: bool) -> p.ApiError:
    """The HTTP answer to a store error (anything else is a bug and propagates)."""
    if isinstance(exc, PlanNotFoundError):
        return p.ApiError(404, p.NOT_FOUND, f"no plan {exc.args[0]!r}")
    if isinstance(exc, PlanExistsError):
        return p.ApiError(409, p.PLAN_EXISTS, str(exc))
    if isinstance(exc, StaleVersionError):
        return p.ApiError(
            412, p.PRECONDITION_FAILED, str(exc), headers={"ETag": p.etag(exc.current)}
        )
    if isinstance(exc, ConcurrentWriteError):
        # Another writer committed between our read and our write.
        if conditional:
            return p.ApiError(412, p.PRECONDITION_FAILED, str(exc))
        return p.ApiError(409, p.CONFLICT, str(exc))
    if isinstance(exc, PlanValidationError):
        issues = [{"path": i.path, "rule": i.rule, "message": i.message} for i in exc.errors]
        return p.ApiError(400, p.INVALID_PLAN, "the plan breaks the schema", issues)
    if isinstance(exc, PatchError):
        return p.ApiError(400, p.INVALID_PATCH, str(exc))
    if isinstance(exc, PlanIdMismatchError):
        return p.ApiError(400, p.PLAN_ID_MISMATCH, str(exc))
    if isinstance(exc, PlanRejectedError):
        status = 413 if exc.reason == RECORD_TOO_LARGE else 400
        issue = {"path": "$", "rule": exc.reason, "message": exc.detail}
        return p.ApiError(status, p.REJECTED_BY_CONTRACT, str(exc), [issue])
    if isinstance(exc, PublishError):
        return p.ApiError(503, p.BROKER_UNAVAILABLE, str(exc), headers={"Retry-After": "5"})
    if _is_store_outage(exc):
        return p.ApiError(
            503,
            p.STORE_UNAVAILABLE,
            f"the plan store is unreachable ({type(exc).__name__}); nothing was written",
            headers={"Retry-After": "5"},
        )
    raise exc


def _is_store_outage(exc: Exception) -> bool:
    from pymongo.errors import ConnectionFailure, ServerSelectionTimeoutError

    return isinstance(exc, ConnectionFailure | ServerSelectionTimeoutError)


async def _read_body(request: Request, media_types: tuple[str, ...]) -> dict[str, Any]:
    p.require_media_type(request.headers.get("content-type"), media_types)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > p.MAX_BODY_BYTES:
        raise p.ApiError(413, p.TOO_LARGE, f"body over {p.MAX_BODY_BYTES} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > p.MAX_BODY_BYTES:  # stop reading: a lying Content-Length or none at all
            raise p.ApiError(413, p.TOO_LARGE, f"body over {p.MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return p.parse_json_object(b"".join(chunks))


def _written(result: WriteResult, status: int) -> JSONResponse:
    event = result.event
    return JSONResponse(
        event.after,
        status_code=status,
        headers={"ETag": p.etag(event.version), "Location": f"{PREFIX}/plan/{event.plan_id}"},
    )


def create_app(context: ApiContext) -> FastAPI:
    """The ASGI app serving `context`'s store, index and keys."""
    app = FastAPI(
        title=API_TITLE,
        version="1",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=f"{PREFIX}/docs",
        redoc_url=None,
        description="Plans in the operational store; every write is one change event on "
        'Kafka. Errors are `{"error": {"code", "message", "issues"?}}` (docs/api.md).',
    )
    api_config = context.config.api

    @app.exception_handler(p.ApiError)
    async def _api_error(_: Request, exc: p.ApiError) -> JSONResponse:
        return _error(exc)

    @app.exception_handler(RequestValidationError)
    async def _bad_query(_: Request, exc: RequestValidationError) -> JSONResponse:
        issues = [
            {
                "path": ".".join(str(part) for part in error["loc"]),
                "rule": error["type"],
                "message": error["msg"],
            }
            for error in exc.errors()
        ]
        return _error(p.ApiError(400, p.BAD_QUERY, "invalid request parameters", issues))

    @app.exception_handler(HTTPException)
    async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
        code = p.NOT_FOUND if exc.status_code == 404 else p.BAD_QUERY
        return _error(p.ApiError(exc.status_code, code, str(exc.detail), headers=exc.headers or {}))

    def caller(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise p.ApiError(
                401,
                p.UNAUTHORIZED,
                "this route needs a bearer token (`lakehouse api token`)",
                headers={"WWW-Authenticate": 'Bearer realm="plans"'},
            )
        try:
            return context.verifier.verify(credentials.credentials)
        except TokenError as exc:
            raise p.ApiError(
                401,
                p.UNAUTHORIZED,
                str(exc),
                headers={"WWW-Authenticate": 'Bearer realm="plans", error="invalid_token"'},
            ) from None
        except KeysUnavailable as exc:
            raise p.ApiError(503, p.AUTH_UNAVAILABLE, str(exc)) from None

    def needs(scope: str) -> Callable[[Principal], Principal]:
        def check(principal: Annotated[Principal, Depends(caller)]) -> Principal:
            if not principal.may(scope):
                raise p.ApiError(
                    403,
                    p.FORBIDDEN,
                    f"this route needs the scope {scope}",
                    headers={
                        "WWW-Authenticate": f'Bearer realm="plans", error="insufficient_scope", '
                        f'scope="{scope}"'
                    },
                )
            return principal

        return check

    reader = Depends(needs(SCOPE_READ))
    writer = Depends(needs(SCOPE_WRITE))

    async def with_store(work: Callable[[PlanStore], T], conditional: bool = False) -> T:
        def run() -> T:
            with context.stores.store() as store:
                return work(store)

        try:
            return await run_in_threadpool(run)
        except p.ApiError:
            raise
        except Exception as exc:
            raise _write_failure(exc, conditional) from exc

    @app.get(f"{PREFIX}/healthz", summary="the store's and the broker's status (no auth)")
    def healthz() -> JSONResponse:
        store, broker = context.store_status(), context.broker_status()
        ok = store == "up" and broker == "up"
        body = {"status": "ok" if ok else "unavailable", "store": store, "broker": broker}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.post(
        f"{PREFIX}/plan",
        status_code=201,
        summary="create a plan (a deleted plan may be created again)",
        openapi_extra=_json_body((p.JSON,)),
        dependencies=[writer],
    )
    async def create_plan(request: Request) -> JSONResponse:
        document = await _read_body(request, (p.JSON,))
        result = await with_store(lambda store: store.create(document))
        return _written(result, 201)

    @app.get(f"{PREFIX}/plan/{{plan_id}}", summary="one plan, with its ETag", dependencies=[reader])
    async def get_plan(plan_id: str, request: Request) -> Response:
        _check_id(plan_id)
        stored = await with_store(lambda store: store.read(plan_id))
        if stored is None:
            raise p.ApiError(404, p.NOT_FOUND, f"no plan {plan_id!r}")
        headers = {"ETag": p.etag(stored.version)}
        if p.none_match(request.headers.get("if-none-match"), stored.version):
            return Response(status_code=304, headers=headers)
        return JSONResponse(stored.document, headers=headers)

    @app.get(f"{PREFIX}/plan", summary="live plans in plan id order", dependencies=[reader])
    async def list_plans(
        limit: Annotated[int, Query(ge=1, le=api_config.max_page_size)] = (
            api_config.default_page_size
        ),
        cursor: str | None = None,
    ) -> JSONResponse:
        after = None
        if cursor is not None:
            position = p.decode_cursor(cursor)
            if not isinstance(position[0], str):
                raise p.ApiError(400, p.BAD_CURSOR, "cursor is not one this API returned")
            after = position[0]
        page = await with_store(lambda store: store.page(after, limit))
        next_cursor = (
            p.encode_cursor([page[-1].document["objectId"]]) if len(page) == limit else None
        )
        return JSONResponse(
            {"items": [stored.document for stored in page], "next_cursor": next_cursor}
        )

    async def conditional_write(
        plan_id: str,
        request: Request,
        required: bool,
        write: Callable[[PlanStore, int | None], WriteResult],
    ) -> WriteResult:
        _check_id(plan_id)
        header = request.headers.get("if-match")

        def work(store: PlanStore) -> WriteResult:
            expected = p.named_version(header)
            if expected is not None:
                # The store refuses a stale version itself (StaleVersionError: 412 with the
                # current ETag), so the usual If-Match costs no read of its own.
                return write(store, expected)
            if required or header is not None:
                stored = store.read(plan_id)
                if stored is None:
                    raise PlanNotFoundError(plan_id)
                expected = p.if_match_version(header, stored.version)
            return write(store, expected)

        return await with_store(work, conditional=True)

    @app.put(
        f"{PREFIX}/plan/{{plan_id}}",
        summary="replace a plan (If-Match required)",
        openapi_extra=_json_body((p.JSON,)),
        dependencies=[writer],
    )
    async def replace_plan(plan_id: str, request: Request) -> JSONResponse:
        _check_id(plan_id)
        document = await _read_body(request, (p.JSON,))
        result = await conditional_write(
            plan_id, request, True, lambda store, v: store.replace(plan_id, document, v)
        )
        return _written(result, 200)

    @app.patch(
        f"{PREFIX}/plan/{{plan_id}}",
        summary="merge a patch into a plan (If-Match required)",
        openapi_extra=_json_body((p.MERGE_PATCH, p.JSON)),
        dependencies=[writer],
    )
    async def patch_plan(plan_id: str, request: Request) -> JSONResponse:
        _check_id(plan_id)
        patch = await _read_body(request, (p.MERGE_PATCH, p.JSON))
        result = await conditional_write(
            plan_id, request, True, lambda store, v: store.patch(plan_id, patch, v)
        )
        return _written(result, 200)

    @app.delete(
        f"{PREFIX}/plan/{{plan_id}}",
        status_code=204,
        summary="delete a plan (If-Match honoured when given)",
        dependencies=[writer],
    )
    async def delete_plan(plan_id: str, request: Request) -> Response:
        await conditional_write(plan_id, request, False, lambda store, v: store.delete(plan_id, v))
        return Response(status_code=204)

    @app.get(
        f"{PREFIX}/search",
        summary="plans by text, type, organisation, service and deductible range",
        dependencies=[reader],
    )
    async def search(
        q: str | None = None,
        # the precursor's parameter names
        plan_type: Annotated[str | None, Query(alias="planType")] = None,
        org: str | None = None,
        service: str | None = None,
        min_deductible: Annotated[float | None, Query(alias="minDeductible", ge=0)] = None,
        max_deductible: Annotated[float | None, Query(alias="maxDeductible", ge=0)] = None,
        limit: Annotated[int, Query(ge=1, le=api_config.max_page_size)] = (
            api_config.default_page_size
        ),
        cursor: str | None = None,
    ) -> JSONResponse:
        filters = SearchFilters(q, plan_type, org, service, min_deductible, max_deductible)
        after = p.decode_cursor(cursor) if cursor is not None else None
        body = search_body(filters, limit, after)

        def find() -> dict[str, Any]:
            return context.search.search(index=context.config.elasticsearch.index, body=body)

        try:
            response = await run_in_threadpool(find)
        except Exception as exc:
            raise _search_failure(exc) from exc
        page = hits_page(response, limit)
        found = await with_store(lambda store: store.read_many(page.plan_ids))
        # Documents from the store, in the index's order; a plan deleted since it was indexed
        # is left out (the indexer removes it within seconds).
        items = [found[plan_id].document for plan_id in page.plan_ids if plan_id in found]
        next_cursor = p.encode_cursor(page.next_position) if page.next_position else None
        return JSONResponse({"items": items, "total": page.total, "next_cursor": next_cursor})

    install_openapi_schemas(app)
    return app


def _search_failure(exc: Exception) -> p.ApiError:
    from elasticsearch import ConnectionError as EsConnectionError
    from elasticsearch import TransportError

    if isinstance(exc, EsConnectionError):
        return p.ApiError(503, p.INDEX_UNAVAILABLE, "the search index is unreachable")
    if isinstance(exc, TransportError) and exc.status_code == 400:
        # e.g. a search_after from a cursor whose values do not fit the sort
        return p.ApiError(400, p.BAD_CURSOR, "cursor is not one this API returned")
    if isinstance(exc, TransportError) and exc.status_code == 404:
        return p.ApiError(503, p.INDEX_UNAVAILABLE, "the search index does not exist yet")
    if isinstance(exc, TransportError):
        return p.ApiError(503, p.INDEX_UNAVAILABLE, f"the search index answered {exc.status_code}")
    raise exc


def install_openapi_schemas(app: FastAPI) -> None:
    """Add the plan schema to the generated OpenAPI document's components."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(
                _openapi_plan_schema()
            )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
