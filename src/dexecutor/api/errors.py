"""The one error shape: `{"error": code, "message": words}` (plus optional `details`).

Every error leaves through here, FastAPI's and Starlette's own included, so a
client never has to parse two formats.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import compile_path

from dexecutor.api.responses import JSONResponse

log = structlog.get_logger(__name__)


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"error": code, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse(body, status_code=status, headers=headers)


_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "unavailable",
}


# What a lost database looks like from asyncpg: refused or reset connections, a pool
# that cannot connect, a server shutting down.
DATABASE_DOWN: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    # A connection a database restart broke mid-statement (a known asyncpg failure):
    # whether its statement committed is unknown, so the 503 says so.
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)


DATABASE_DOWN_MESSAGE = "PostgreSQL is unreachable; nothing was stored. Retry shortly."
DATABASE_LOST_MESSAGE = (
    "The connection to PostgreSQL broke during the request, possibly after its commit:"
    " the order may have been stored. Retry with the same Idempotency-Key; the retry"
    " returns the stored order instead of making a second one."
)

# Failures that happen before a statement reaches the server: nothing can have been
# committed. Any other lost connection may have dropped after the COMMIT was sent.
_NEVER_SENT: tuple[type[Exception], ...] = (
    ConnectionRefusedError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)


def database_down_message(exc: BaseException) -> str:
    """What a 503 may promise: "nothing was stored" only when that is certain."""
    return DATABASE_DOWN_MESSAGE if isinstance(exc, _NEVER_SENT) else DATABASE_LOST_MESSAGE


def database_down_response(exc: Exception) -> Response:
    log.warning("database unavailable", error=repr(exc))
    return error_response(
        503,
        "database_unavailable",
        database_down_message(exc),
        headers={"Retry-After": "1"},
    )


# What a lost Redis looks like from redis-py. Orders do not need it to be accepted (the
# reconciler queues what was committed), but a request that only Redis can serve (a
# fault to arm, a price to move on every process) cannot be done without it.
REDIS_DOWN: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError)


def redis_down_response(exc: Exception) -> Response:
    log.warning("redis unavailable", error=repr(exc))
    return error_response(
        503,
        "redis_unavailable",
        "Redis is unreachable, so this request could not be carried out. Retry shortly.",
        headers={"Retry-After": "1"},
    )


def api_error_response(exc: ApiError) -> Response:
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


def _allowed_methods(request: Request, starlette_allow: str) -> str:
    """Every method the API serves at this path.

    Starlette's own 405 names only the methods of the first route whose path matched
    (GET of `/api/orders/{id}`, not its DELETE); the Allow header must list them all.
    The document's paths are the public list of routes (FastAPI nests routers).
    """
    app: FastAPI = request.app
    table: list[tuple[re.Pattern[str], set[str]]] | None = getattr(app.state, "allow_table", None)
    if table is None:
        table = [
            (compile_path(path)[0], {method.upper() for method in operations})
            for path, operations in app.openapi().get("paths", {}).items()
        ]
        app.state.allow_table = table
    methods = {m.strip() for m in starlette_allow.split(",") if m.strip()}
    for pattern, served in table:
        if pattern.match(request.url.path):
            methods |= served
    return ", ".join(sorted(methods))


def install(app: FastAPI) -> None:
    async def _database_down(_: Request, exc: Exception) -> Response:
        return database_down_response(exc)

    for exc_type in DATABASE_DOWN:
        app.add_exception_handler(exc_type, _database_down)

    async def _redis_down(_: Request, exc: Exception) -> Response:
        return redis_down_response(exc)

    for exc_type in REDIS_DOWN:
        app.add_exception_handler(exc_type, _redis_down)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> Response:
        return api_error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 404 and message == "Not Found":
            message = "no such resource"
        headers = exc.headers
        if exc.status_code == 405:
            allow = (headers or {}).get("Allow", "")
            headers = {**(headers or {}), "Allow": _allowed_methods(request, allow)}
        return error_response(exc.status_code, code, message, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        details = [
            {
                "field": ".".join(str(p) for p in e["loc"] if p not in ("query", "path", "body")),
                "message": e["msg"],
            }
            for e in exc.errors()
        ]
        first = details[0] if details else {"field": "", "message": "invalid request"}
        return error_response(
            422, "validation_error", f"{first['field']}: {first['message']}", details
        )
