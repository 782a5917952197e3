"""WebSocket streams: one order's lifecycle, a user's blotter, and submit-then-watch.

A watcher first subscribes to live events, then replays what is stored, then
forwards live events it has not sent yet: no gap, no duplicate. Whenever the live
feed may have missed something (Redis reconnect, a slow consumer, a seq jump) the
watcher re-reads PostgreSQL from its last seq.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any
from uuid import UUID

import msgspec
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from dexecutor import jsoncodec
from dexecutor.api.errors import ApiError
from dexecutor.api.orders import MAX_BODY_BYTES, new_order
from dexecutor.api.schemas import USER_ID_PATTERN, validate_order
from dexecutor.bus.events import RESYNC, event_message
from dexecutor.domain.order import TERMINAL, OrderStatus
from dexecutor.engine.intake import Intake, Refused
from dexecutor.metrics import WEBSOCKETS
from dexecutor.runtime import Services
from dexecutor.store.orders import IdempotencyConflict

router = APIRouter()

CLOSE_NORMAL = 1000
CLOSE_TOO_BIG = 1009
CLOSE_BAD_REQUEST = 4400
CLOSE_NOT_FOUND = 4404
_TERMINAL = {s.value for s in TERMINAL}


async def _send(ws: WebSocket, message: dict[str, Any]) -> None:
    await ws.send_text(jsoncodec.dumps(message).decode())


async def _close(ws: WebSocket, code: int, reason: str = "") -> None:
    if ws.application_state != WebSocketState.DISCONNECTED:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await ws.close(code, reason[:120])


async def _until_disconnect(ws: WebSocket) -> None:
    """Drain what the client sends; return when it goes away."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return


async def _race(ws: WebSocket, work: Awaitable[None]) -> None:
    """Run `work` until it ends or the client disconnects, whichever comes first."""
    worker = asyncio.ensure_future(work)
    listener = asyncio.ensure_future(_until_disconnect(ws))
    try:
        await asyncio.wait({worker, listener}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (worker, listener):
            task.cancel()
        for task in (worker, listener):
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
                await task
    if worker.done() and not worker.cancelled() and worker.exception() is not None:
        raise worker.exception()  # type: ignore[misc]


async def stream_order(ws: WebSocket, svc: Services, order_id: UUID, after: int) -> None:
    """Send the order's events after `after`, live, and close 1000 after a terminal one."""
    with svc.hub.watch_order(str(order_id)) as sub:
        order = await svc.repo.get(order_id)
        if order is None:
            await _close(ws, CLOSE_NOT_FOUND, "unknown order")
            return
        user_id = order.user_id
        last = after

        async def replay() -> bool:
            nonlocal last
            for event in await svc.repo.events(order_id, last):
                await _send(ws, event_message(event, user_id))
                last = event.seq
                if event.status in TERMINAL:
                    return True
            return False

        async def follow() -> None:
            nonlocal last
            if await replay():
                return
            while True:
                message = await sub.get()
                if message is RESYNC or message["seq"] > last + 1:
                    if await replay():
                        return
                    continue
                if message["seq"] <= last:
                    continue
                await _send(ws, message)
                last = message["seq"]
                if message["status"] in _TERMINAL:
                    return

        await _race(ws, follow())
        await _close(ws, CLOSE_NORMAL, "order finished")


@router.websocket("/ws/orders/{order_id}")
async def watch_order(ws: WebSocket, order_id: str, after: int = 0) -> None:
    await ws.accept()
    WEBSOCKETS.labels("order").inc()
    try:
        try:
            oid = UUID(order_id)
        except ValueError:
            await _close(ws, CLOSE_NOT_FOUND, "unknown order")
            return
        await stream_order(ws, ws.app.state.services, oid, max(0, after))
    finally:
        WEBSOCKETS.labels("order").dec()


@router.websocket("/ws/orders")
async def watch_user(ws: WebSocket, userId: str | None = None) -> None:
    """Every event of one user's orders, live, for a blotter. Never closed by the server."""
    await ws.accept()
    import re

    if not userId or not re.fullmatch(USER_ID_PATTERN, userId):
        await _close(ws, CLOSE_BAD_REQUEST, "userId query parameter required")
        return
    svc: Services = ws.app.state.services
    WEBSOCKETS.labels("user").inc()
    try:
        with svc.hub.watch_user(userId) as sub:

            async def forward() -> None:
                while True:
                    message = await sub.get()
                    if message is RESYNC:
                        await _send(ws, {"resync": True})
                        continue
                    await _send(ws, message)

            await _race(ws, forward())
    finally:
        WEBSOCKETS.labels("user").dec()


@router.websocket("/api/orders/execute")
async def execute_ws(ws: WebSocket) -> None:
    """Submit an order as the first message, then watch it on the same socket."""
    await ws.accept()
    svc: Services = ws.app.state.services
    intake: Intake = ws.app.state.intake
    WEBSOCKETS.labels("execute").inc()
    try:
        try:
            first = await ws.receive()
        except WebSocketDisconnect:
            return
        if first["type"] == "websocket.disconnect":
            return
        raw = first.get("text")
        if raw is None and first.get("bytes") is not None:
            raw = first["bytes"].decode("utf-8", errors="replace")
        if raw is not None and len(raw.encode()) > MAX_BODY_BYTES:
            await _send(ws, {"error": "payload_too_large", "message": "order message too large"})
            await _close(ws, CLOSE_TOO_BIG, "message too big")
            return
        try:
            if not raw or not raw.strip():
                raise ApiError(400, "invalid_json", "send the order as a JSON object")
            try:
                data = jsoncodec.loads(raw)
            except (msgspec.DecodeError, RecursionError) as err:
                raise ApiError(400, "invalid_json", f"not valid JSON: {err}") from None
            req = validate_order(data, svc.settings.max_amount_in)
            try:
                order, _ = await intake.accept(new_order(req), None, req.fingerprint())
            except (Refused, IdempotencyConflict) as err:
                raise ApiError(422, getattr(err, "code", "conflict"), str(err)) from None
        except ApiError as err:
            body: dict[str, Any] = {"error": err.code, "message": err.message}
            if err.details is not None:
                body["details"] = err.details
            await _send(ws, body)
            await _close(ws, CLOSE_BAD_REQUEST, err.code)
            return
        await _send(ws, {"orderId": str(order.id), "status": OrderStatus.PENDING.value})
        await stream_order(ws, svc, order.id, 0)
    finally:
        WEBSOCKETS.labels("execute").dec()
