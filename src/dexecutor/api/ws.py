"""WebSocket streams: one order's lifecycle, a user's blotter, and submit-then-watch.

A watcher first subscribes to live events, then replays what is stored, then
forwards live events it has not sent yet: no gap, no duplicate. Whenever the live
feed may have missed something (Redis reconnect, a slow consumer, a seq jump, or the
event hub finding the store ahead of it) the watcher re-reads PostgreSQL from its last
seq. A user's stream keeps each order's events in seq order the same way: a jump is
filled from the store before the later event goes out, and nothing goes out twice.

While a watcher's task waits with everything sent, the event hub sends its next events
itself, framed once and written below the ASGI layer (api/wsdirect.py): a user's
watchers that have sent the same events are written in passes, each connection getting
all it has not had in one write, the same bytes for all, and no task wakes for them.
Anything that needs more than sending (a gap that stays open, a resync, a connection
that cannot take the write, an order's terminal event and its close) goes back to the
watcher's task.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable
from typing import Any
from uuid import UUID

import structlog
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from dexecutor import jsoncodec
from dexecutor.api.errors import DATABASE_DOWN, ApiError, database_down_message
from dexecutor.api.guard import Principal
from dexecutor.api.orders import check_backlog, new_order
from dexecutor.api.schemas import USER_ID_PATTERN, parse_order_request
from dexecutor.api.wsdirect import direct_socket, frame_of
from dexecutor.bus.events import RAW, RESYNC, Subscription, event_message, is_preframed
from dexecutor.domain.order import TERMINAL
from dexecutor.engine.intake import Intake, Refused
from dexecutor.metrics import WEBSOCKETS
from dexecutor.runtime import Services
from dexecutor.store.orders import IdempotencyConflict

log = structlog.get_logger(__name__)

router = APIRouter()

CLOSE_NORMAL = 1000
CLOSE_TOO_BIG = 1009
CLOSE_TRY_LATER = 1013  # too many connections on this process, or PostgreSQL unreachable
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_SLOW = 4408  # the client did not read (or, on the submission socket, write) in time
CLOSE_RATE_LIMITED = 4429
_TERMINAL = {s.value for s in TERMINAL}


class TooSlow(Exception):
    """The client stopped reading: it is dropped so it holds nothing up."""


async def _send(ws: WebSocket, *messages: dict[str, Any]) -> None:
    """Send messages in order; TooSlow if the client does not take them in time.

    Where the server offers direct writes, all of them go in one write (a watcher that
    fell behind catches up in one system call, not one per event).
    """
    timeout = ws.app.state.services.settings.ws_send_timeout_s
    direct = direct_socket(ws)
    try:
        # A timeout scope, not wait_for: wait_for wraps every send in a task of its
        # own, and a process feeding thousands of watchers sends a lot.
        async with asyncio.timeout(timeout):
            if direct is not None:
                await direct.send([frame_of(message) for message in messages])
                return
            for message in messages:
                await ws.send_text(message.get(RAW) or jsoncodec.dumps(message).decode())
    except TimeoutError:
        raise TooSlow() from None


@contextlib.asynccontextmanager
async def admitted(ws: WebSocket, kind: str) -> AsyncIterator[Principal | None]:
    """Accept the connection, then apply the process cap, rate limit and authentication.

    Yields the caller, or None when the connection was refused and closed.
    """
    state = ws.app.state
    if state.ws_open >= state.services.settings.ws_max_connections:
        await ws.accept()
        await _close(ws, CLOSE_TRY_LATER, "too many connections on this process")
        yield None
        return
    # Counted before the handshake completes, so a burst of clients cannot slip past.
    state.ws_open += 1
    WEBSOCKETS.labels(kind).inc()
    try:
        await ws.accept()
        try:
            await state.limiter.check(ws.client.host if ws.client else None, None)
            who = state.auth.principal(ws)
        except ApiError as err:
            code = CLOSE_UNAUTHORIZED if err.status == 401 else CLOSE_RATE_LIMITED
            await _close(ws, code, err.code)
            yield None
            return
        yield who
    except TooSlow:
        await _close(ws, CLOSE_TOO_SLOW, "client too slow to read")
    except DATABASE_DOWN as err:
        # The stream cannot replay or fill a gap without PostgreSQL: the client
        # reconnects (with `after`) once it is back, and misses nothing.
        log.warning("watcher closed: database unavailable", kind=kind, error=repr(err))
        await _close(ws, CLOSE_TRY_LATER, "database_unavailable")
    finally:
        state.ws_open -= 1
        WEBSOCKETS.labels(kind).dec()


async def _close(ws: WebSocket, code: int, reason: str = "") -> None:
    direct = direct_socket(ws)
    if direct is not None:
        direct.flush()  # what was queued for the client goes before the close frame
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


async def stream_order(
    ws: WebSocket, svc: Services, order_id: UUID, after: int, who: Principal
) -> None:
    """Send the order's events after `after`, live, and close 1000 after a terminal one."""
    with svc.hub.watch_order(str(order_id)) as sub:
        order = await svc.repo.get(order_id)
        if order is None or not who.may_see(order.user_id):
            await _close(ws, CLOSE_NOT_FOUND, "unknown order")
            return
        user_id = order.user_id
        last = after
        live = False  # the task waits for the next live event, with everything sent
        direct = direct_socket(ws)

        def take(message: dict[str, Any]) -> bool:
            """The next event, sent from the hub's turn; gaps and the end go to the task."""
            nonlocal last
            if not live or message["status"] in _TERMINAL or message["seq"] > last + 1:
                return False
            if message["seq"] <= last:
                return True
            assert direct is not None
            if not direct.put(frame_of(message)):
                return False
            last = sub.last = message["seq"]
            return True

        if direct is not None:
            sub.take = take

        async def replay() -> bool:
            nonlocal last
            for event in await svc.repo.events(order_id, last):
                await _send(ws, event_message(event, user_id))
                last = sub.last = event.seq
                if event.status in TERMINAL:
                    return True
            return False

        async def follow() -> None:
            nonlocal last, live
            if await replay() or (order.is_terminal and last >= order.seq):
                return  # finished, and the client has everything (`after` at or past the end)
            while True:
                live = True
                message = await sub.get()
                live = False
                if message is RESYNC or message["seq"] > last + 1:
                    if await replay():
                        return
                    continue
                if message["seq"] <= last:
                    continue
                await _send(ws, message)
                last = sub.last = message["seq"]
                if message["status"] in _TERMINAL:
                    return

        await _race(ws, follow())
        await _close(ws, CLOSE_NORMAL, "order finished")


@router.websocket("/ws/orders/{order_id}")
async def watch_order(ws: WebSocket, order_id: str, after: int = 0) -> None:
    async with admitted(ws, "order") as who:
        if who is None:
            return
        try:
            oid = UUID(order_id)
        except ValueError:
            await _close(ws, CLOSE_NOT_FOUND, "unknown order")
            return
        await stream_order(ws, ws.app.state.services, oid, max(0, after), who)


@router.websocket("/ws/orders")
async def watch_user(ws: WebSocket, userId: str | None = None) -> None:
    """Every event of one user's orders, live, for a blotter. Never closed by the server."""
    async with admitted(ws, "user") as who:
        if who is None:
            return
        if not userId or not re.fullmatch(USER_ID_PATTERN, userId):
            await _close(ws, CLOSE_BAD_REQUEST, "userId query parameter required")
            return
        if not who.may_see(userId):
            await _close(ws, CLOSE_FORBIDDEN, "you can watch only your own orders")
            return
        svc: Services = ws.app.state.services
        with svc.hub.watch_user(userId) as sub:
            # While this watcher's task waits with everything sent, the hub writes its
            # events to the connection itself, with the other watchers of the user that
            # have sent the same: a broadcast wakes no task per watcher.
            sub.sink = direct_socket(ws)

            async def forward() -> None:
                while True:
                    # Everything queued since the last wake-up, sent in one go: a burst
                    # of events costs this task one wake-up, not one per event.
                    queued = await sub.get_many()
                    await _send(ws, *[m for q in queued for m in await _in_order(svc, sub, q)])

            await _race(ws, forward())


async def _in_order(svc: Services, sub: Subscription, message: dict[str, Any]) -> list[Any]:
    """What a user stream sends for `message`: nothing if sent before, else what it skips.

    Events of one order reach this process in seq order only as long as their writers
    publish in commit order; when an event overtakes an earlier one (or the earlier one
    was never published) the earlier ones are read from the store and sent first. For
    an order first heard of here, only events since the stream opened are filled in.
    """
    if message is RESYNC:
        return [{"resync": True}]
    if is_preframed(message):
        return [message]  # due while the hub sent for this watcher; already in order
    order_id, seq = message["orderId"], message["seq"]
    known = sub.seqs.get(order_id)
    if known is not None and seq <= known:
        return []
    out: list[Any] = []
    if seq > (known or 0) + 1:
        try:
            stored = await svc.repo.events(UUID(order_id), known or 0)
        except DATABASE_DOWN as err:
            log.warning("user stream could not fill a gap", order_id=order_id, error=str(err))
            stored = []
        user_id = message.get("userId")
        out = [
            event_message(e, user_id)
            for e in stored
            if e.seq < seq and (known is not None or e.at >= sub.since)
        ]
    sub.seqs[order_id] = seq
    return [*out, message]


@router.websocket("/api/orders/execute")
async def execute_ws(ws: WebSocket) -> None:
    """Submit an order as the first message, then watch it on the same socket."""
    async with admitted(ws, "execute") as who:
        if who is None:
            return
        svc: Services = ws.app.state.services
        intake: Intake = ws.app.state.intake
        try:
            first = await asyncio.wait_for(ws.receive(), svc.settings.ws_first_message_timeout_s)
        except TimeoutError:
            await _close(ws, CLOSE_TOO_SLOW, "no order received")
            return
        except WebSocketDisconnect:
            return
        if first["type"] == "websocket.disconnect":
            return
        raw = first.get("text")
        if raw is None and first.get("bytes") is not None:
            raw = first["bytes"].decode("utf-8", errors="replace")
        if raw is not None and len(raw.encode()) > svc.settings.max_body_bytes:
            await _send(ws, {"error": "payload_too_large", "message": "order message too large"})
            await _close(ws, CLOSE_TOO_BIG, "message too big")
            return
        try:
            # With an API key, the key's user fills in userId; another userId is a 403.
            req = parse_order_request((raw or "").encode(), svc.settings.max_amount_in, who.user_id)
            await ws.app.state.limiter.check(None, req.user)
            await check_backlog(svc)
            try:
                order, _ = await intake.accept(await new_order(req, svc), None, req.fingerprint())
            except (Refused, IdempotencyConflict) as err:
                raise ApiError(422, getattr(err, "code", "conflict"), str(err)) from None
            except DATABASE_DOWN as err:
                raise ApiError(503, "database_unavailable", database_down_message(err)) from None
        except ApiError as err:
            body: dict[str, Any] = {"error": err.code, "message": err.message}
            if err.details is not None:
                body["details"] = err.details
            await _send(ws, body)
            code = {
                403: CLOSE_FORBIDDEN,
                429: CLOSE_RATE_LIMITED,
                503: CLOSE_TRY_LATER,
            }.get(err.status, CLOSE_BAD_REQUEST)
            await _close(ws, code, err.code)
            return
        # The acknowledgement names the order; its `pending` event follows in the stream
        # with everything else, so every status arrives once.
        await _send(ws, {"orderId": str(order.id)})
        await stream_order(ws, svc, order.id, 0, who)
