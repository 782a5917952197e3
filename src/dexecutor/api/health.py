"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import PlainTextResponse, Response

from dexecutor.api import examples as ex
from dexecutor.api import views
from dexecutor.api.deps import ServicesDep
from dexecutor.api.responses import JSONResponse
from dexecutor.metrics import QUEUE_DEPTH, exposition

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    summary="The process is up",
    response_model=views.HealthView,
    responses=ex.ok(ex.HEALTH),
)
async def healthz() -> Response:
    return JSONResponse({"status": "ok"})


@router.get(
    "/readyz",
    summary="PostgreSQL, Redis and the chain are reachable and no background loop keeps dying",
    response_model=views.ReadyView,
    responses=ex.ok(ex.READY),
)
async def readyz(svc: ServicesDep) -> Response:
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(svc.pool.fetchval("SELECT 1"), 2)
        checks["postgres"] = "ok"
    except Exception as err:  # any failure means the dependency is down for us
        checks["postgres"] = f"down: {type(err).__name__}: {err}"[:200]
    try:
        await asyncio.wait_for(svc.redis.ping(), 2)
        checks["redis"] = "ok"
    except Exception as err:  # any failure means the dependency is down for us
        checks["redis"] = f"down: {type(err).__name__}: {err}"[:200]
    try:
        answer = await asyncio.wait_for(svc.chain.health(), 2)
        checks["chain"] = "ok" if answer == "ok" else f"unhealthy: {answer[:100]}"
    except Exception as err:  # any failure means the dependency is down for us
        checks["chain"] = f"down: {type(err).__name__}: {err}"[:200]
    # A process whose loop keeps dying is up but deaf (no events, no requeues): not ready.
    for loop, deaths in svc.loops.dying().items():
        checks[f"loop:{loop}"] = f"dying: {deaths} deaths in the last minute"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {
            "status": "ready" if ready else "unavailable",
            "checks": checks,
            "mode": svc.settings.backend_modes or {"postgres": "configured", "redis": "configured"},
            "chain": svc.settings.chain,
        },
        status_code=200 if ready else 503,
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics of this process",
    response_class=PlainTextResponse,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
async def metrics(svc: ServicesDep) -> Response:
    try:
        for state, count in (await asyncio.wait_for(svc.queue.counts(), 2)).items():
            QUEUE_DEPTH.labels(state).set(count)
    except (OSError, TimeoutError):
        pass
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
