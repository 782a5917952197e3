"""Events Redis never carried, or carried out of order, still reach every watcher once.

A writer that crashes between its commit and its publish leaves an event only in
PostgreSQL. These tests leave exactly that behind (a real repository append, no
publish) and check that order and user watchers still get it; and that events
published out of commit order reach a user's stream in seq order, each once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect

from dexecutor import jsoncodec
from dexecutor.bus.events import EventPublisher
from dexecutor.bus.redis import Keys
from dexecutor.domain.order import Order, OrderStatus, OrderType, first_event
from dexecutor.engine.triggers import trigger_of
from dexecutor.store.orders import OrderRepository
from tests.e2e.test_lifecycle import HAPPY
from tests.support import Process, order_body, redis_url, watch

# A limit to sell SOL at a million USDC: it waits for as long as the test needs.
FAR_LIMIT = 1_000_000


@pytest.fixture
async def repo(database: str) -> AsyncIterator[OrderRepository]:
    pool = await asyncpg.create_pool(database, min_size=1, max_size=2)
    assert pool is not None
    yield OrderRepository(pool)
    await pool.close()


async def place_waiting(client: httpx.AsyncClient, user: str) -> str:
    response = await client.post(
        "/api/orders/execute",
        json=order_body(userId=user, type="limit", amountIn=1, limitPrice=FAR_LIMIT),
    )
    assert response.status_code == 202, response.text
    return str(response.json()["orderId"])


async def cancel_unpublished(repo: OrderRepository, order_id: str) -> None:
    """Commit a terminal event and publish nothing: what a crashed writer leaves behind."""
    order = await repo.get(UUID(order_id))
    assert order is not None and order.status is OrderStatus.WAITING
    event = order.event(OrderStatus.CANCELLED, datetime.now(UTC), reason="cancelled_by_user")
    await repo.append(order, event)


async def until(ws: ClientConnection, order_id: str, status: str) -> list[dict[str, Any]]:
    """The order's messages on `ws` up to and including the first with `status`."""
    seen: list[dict[str, Any]] = []
    while not seen or seen[-1]["status"] != status:
        message = jsoncodec.loads(await ws.recv())
        if message.get("orderId") == order_id:
            seen.append(message)
    return seen


async def test_order_watcher_gets_an_unpublished_terminal_event_and_closes(
    server: Process, client: httpx.AsyncClient, repo: OrderRepository
) -> None:
    order_id = await place_waiting(client, f"lost-{uuid4().hex[:8]}")
    async with asyncio.timeout(20), connect(f"{server.ws_url}/ws/orders/{order_id}") as ws:
        seen = await until(ws, order_id, "waiting")
        await cancel_unpublished(repo, order_id)
        seen += [jsoncodec.loads(raw) async for raw in ws]
    assert [(m["seq"], m["status"]) for m in seen] == [
        (1, "pending"),
        (2, "waiting"),
        (3, "cancelled"),
    ]
    assert ws.close_code == 1000


async def test_user_stream_gets_an_unpublished_terminal_event(
    server: Process, client: httpx.AsyncClient, repo: OrderRepository
) -> None:
    user = f"lost-{uuid4().hex[:8]}"
    async with asyncio.timeout(20), connect(f"{server.ws_url}/ws/orders?userId={user}") as ws:
        order_id = await place_waiting(client, user)
        await until(ws, order_id, "waiting")
        await cancel_unpublished(repo, order_id)
        last = (await until(ws, order_id, "cancelled"))[-1]
    assert (last["seq"], last["userId"]) == (3, user)


async def test_user_stream_keeps_each_orders_events_in_seq_order_once(
    server: Process, namespace: str, repo: OrderRepository
) -> None:
    """`waiting` published before `pending` still reaches the stream after it, and once."""
    user = f"order-{uuid4().hex[:8]}"
    async with (
        asyncio.timeout(20),
        connect(f"{server.ws_url}/ws/orders?userId={user}") as ws,
        Redis.from_url(redis_url()) as redis,
    ):
        publisher = EventPublisher(redis, Keys(namespace).events)
        now = datetime.now(UTC)
        order = Order(
            id=uuid4(),
            user_id=user,
            type=OrderType.LIMIT,
            token_in="SOL",
            token_out="USDC",
            amount_in=Decimal(1),
            slippage_bps=50,
            created_at=now,
            updated_at=now,
            seq=1,
            limit_price=Decimal(FAR_LIMIT),
        )
        pending = first_event(order)
        await repo.create(order, pending)
        waiting = order.event(OrderStatus.WAITING, datetime.now(UTC), trigger=trigger_of(order))
        stored = await repo.append(order, waiting)
        await publisher.publish(waiting, user)  # overtakes the earlier event
        await publisher.publish(pending, user)
        cancelled = stored.event(OrderStatus.CANCELLED, datetime.now(UTC), reason="test")
        await repo.append(stored, cancelled)
        await publisher.publish(cancelled, user)
        seen = await until(ws, str(order.id), "cancelled")
    assert [(m["seq"], m["status"]) for m in seen] == [
        (1, "pending"),
        (2, "waiting"),
        (3, "cancelled"),
    ]


async def test_submit_and_watch_socket_sends_every_status_once(server: Process) -> None:
    result = await watch(f"{server.ws_url}/api/orders/execute", send=order_body())
    assert result.close_code == 1000
    assert result.messages[0] == {"orderId": result.messages[1]["orderId"]}
    assert [m["status"] for m in result.messages if "status" in m] == HAPPY
    assert [m["seq"] for m in result.messages[1:]] == list(range(1, len(HAPPY) + 1))
