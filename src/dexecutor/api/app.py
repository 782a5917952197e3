"""The FastAPI application: lifespan wiring, routers, error envelope, the start page."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from dexecutor import __version__
from dexecutor.api import errors, health, market, orders, wallets, ws
from dexecutor.api.guard import Authenticator, BodySizeLimit, RateLimiter
from dexecutor.api.httpdirect import SUBMITTER, DirectSubmitter
from dexecutor.api.responses import JSONResponse
from dexecutor.config import Settings, load_settings, parse_api_keys
from dexecutor.engine.intake import Intake
from dexecutor.runtime import Services

DESCRIPTION = """Order execution engine for Solana DEX swaps (simulated Raydium and Meteora).

Submit with `POST /api/orders/execute`, watch with `ws://host/ws/orders/{orderId}`.
Every error has the shape `{"error": "<code>", "message": "<words>"}`."""


def create_app(
    settings: Settings, *, run_worker: bool = False, on_shutdown: Callable[[], None] | None = None
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        services = await Services.open(settings, worker=run_worker)
        app.state.services = services
        app.state.intake = Intake(
            services.repo,
            services.queue,
            services.publisher,
            services.quotes,
            services.funds,
        )
        app.state.limiter = RateLimiter(
            services.redis,
            settings.namespace,
            settings.rate_limit_per_user,
            settings.rate_limit_per_address,
        )
        # The lifespan state reaches the HTTP protocol: with CORS off (CORS must answer
        # first), plain submissions are served below the ASGI layer (api/httpdirect.py).
        state: dict[str, Any] = {}
        if not settings.cors_origin_list:
            state[SUBMITTER] = DirectSubmitter(app.state, app.state.auth, settings.max_body_bytes)
        try:
            yield state
        finally:
            await app.state.intake.close()
            await services.close()
            if on_shutdown is not None:
                on_shutdown()

    app = FastAPI(
        title="dexecutor",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        default_response_class=JSONResponse,
        # Metrics are Prometheus (`/metrics`); FastAPI's own OpenTelemetry hooks, with
        # no provider configured, still looked up the environment on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.auth = Authenticator(parse_api_keys(settings.api_keys.get_secret_value()))
    app.state.ws_open = 0
    app.add_middleware(orders.SubmissionFastPath)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origin_list:
        # The outermost layer: a preflight is answered before the submission fast path
        # (which would refuse OPTIONS), and every answer, refusals included, carries
        # the headers a browser needs to read it.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Content-Type", "X-API-Key", "Authorization", "Idempotency-Key"],
            expose_headers=["Idempotent-Replayed", "Retry-After"],
            max_age=600,
        )
    errors.install(app)
    app.include_router(orders.submission)
    app.include_router(orders.router)
    app.include_router(market.router)
    app.include_router(wallets.router)
    app.include_router(ws.router)
    app.include_router(health.router)
    # The blotter's scripts and styles; mounts stay out of the OpenAPI schema.
    app.mount("/static", StaticFiles(packages=[("dexecutor.api", "static")]), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        page = resources.files("dexecutor.api").joinpath("static/index.html")
        return HTMLResponse(page.read_text(encoding="utf-8"))

    _document_security(app)
    if not settings.cors_origin_list:
        _submissions_first(app, settings.max_body_bytes)
    return app


def _submissions_first(app: FastAPI, max_body_bytes: int) -> None:
    """Submissions enter below FastAPI's own outer layers.

    Its telemetry and body-limit layers wrap every request, and under submission load
    they cost more than the route needs: a submission passes the server-error layer
    (a 500 for anything unexpected), the body limit (413) and the fast path only. With
    CORS configured, nothing changes: CORS must answer first (see `create_app`).
    """
    build = app.build_middleware_stack

    def build_stack() -> ASGIApp:
        rest = build()
        fast = ServerErrorMiddleware(
            BodySizeLimit(orders.SubmissionFastPath(rest), max_bytes=max_body_bytes)
        )

        async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and scope["path"] == orders.SUBMIT_PATH:
                await fast(scope, receive, send)
            else:
                await rest(scope, receive, send)

        return dispatch

    app.build_middleware_stack = build_stack  # type: ignore[method-assign]


def _document_security(app: FastAPI) -> None:
    """A server without API_KEYS authenticates nobody: its document says the schemes
    are optional (an empty requirement), so clients and fuzzers need not send a key."""
    if app.state.auth.enabled:
        return
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()  # FastAPI keeps it as app.openapi_schema: changed once, in place
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                if isinstance(operation, dict) and operation.get("security"):
                    operation["security"] = [*operation["security"], {}]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def app_from_environment() -> FastAPI:
    """The app of one of several API processes (API_PROCESSES > 1), built from the
    environment the parent process resolved."""
    from dexecutor.logs import configure

    settings = load_settings()
    configure(settings.log_level, settings.log_json)
    return create_app(settings, run_worker=os.environ.get("DEXECUTOR_RUN_WORKER") == "1")
