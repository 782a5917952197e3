"""Limit and sniper orders: waiting, firing on price or launch, expiry, cancel, restarts.

A server of their own: launches and price moves change that server's market.
The market is driven deterministically through the mock controls.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import connect

from dexecutor import jsoncodec
from dexecutor.domain.order import Order, OrderStatus, OrderType, first_event
from dexecutor.engine.triggers import trigger_of
from dexecutor.store.orders import OrderRepository
from tests.support import (
    Process,
    connected,
    free_port,
    isolated,
    order_body,
    serving,
    watch,
)


@pytest.fixture(scope="module")
async def market_server() -> AsyncIterator[Process]:
    async with isolated("dxl") as iso:
        env = iso.env(TRIGGER_INTERVAL_MS="100", MOCK_LAUNCHES="FLUX:raydium:2")
        proc = Process("up", env, port=free_port())
        async with serving(proc):
            yield proc


@pytest.fixture
async def mc(market_server: Process) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=market_server.url, timeout=30) as c:
        yield c


def decoded(response: httpx.Response) -> Any:
    return jsoncodec.loads(response.content)


async def best_price(
    client: httpx.AsyncClient, token_in: str, token_out: str, amount: str
) -> Decimal:
    quote = decoded(
        await client.get(
            "/api/quote", params={"tokenIn": token_in, "tokenOut": token_out, "amountIn": amount}
        )
    )
    return Decimal(str(quote["route"]["price"]))


async def place(client: httpx.AsyncClient, **fields: Any) -> str:
    response = await client.post(
        "/api/orders/execute",
        content=jsoncodec.dumps(order_body(**fields)),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 202, response.text
    return str(response.json()["orderId"])


async def first_events(url: str, count: int) -> list[dict[str, Any]]:
    """The first `count` messages of an order's stream."""
    async with asyncio.timeout(15), connect(url) as ws:
        return [jsoncodec.loads(await ws.recv()) for _ in range(count)]


async def test_marketable_limit_fills_at_once_at_or_better_than_its_limit(
    mc: httpx.AsyncClient, market_server: Process
) -> None:
    limit = (await best_price(mc, "SOL", "USDC", "1") * Decimal("0.97")).quantize(Decimal("0.0001"))
    order_id = await place(mc, type="limit", amountIn=1, limitPrice=limit)
    stream = await watch(f"{market_server.ws_url}/ws/orders/{order_id}")
    assert stream.statuses == [
        "pending",
        "waiting",
        "routing",
        "building",
        "submitted",
        "confirmed",
    ]
    waiting, building, confirmed = stream.messages[1], stream.messages[3], stream.messages[5]
    assert waiting["trigger"]["kind"] == "limit_price"
    assert waiting["trigger"]["limitPrice"] == limit
    assert building["minAmountOut"] >= limit * 1
    assert confirmed["executedPrice"] >= limit


async def test_limit_far_from_the_market_waits_then_fills_when_the_price_gets_there(
    mc: httpx.AsyncClient, market_server: Process
) -> None:
    limit = (await best_price(mc, "RAY", "USDC", "10") * Decimal("1.15")).quantize(
        Decimal("0.000001")
    )
    order_id = await place(
        mc, type="limit", tokenIn="RAY", tokenOut="USDC", amountIn=10, limitPrice=limit
    )
    head = await first_events(f"{market_server.ws_url}/ws/orders/{order_id}", 2)
    assert [m["status"] for m in head] == ["pending", "waiting"]
    assert (await mc.get(f"/api/orders/status/{order_id}")).json()["status"] == "waiting"
    moved_at = datetime.now(UTC)
    assert (
        await mc.post("/api/mock/price", json={"venue": "all", "token": "RAY", "bps": 3000})
    ).status_code == 200
    stream = await watch(f"{market_server.ws_url}/ws/orders/{order_id}")
    assert stream.statuses[-1] == "confirmed"
    routing = next(m for m in stream.messages if m["status"] == "routing")
    assert datetime.fromisoformat(routing["at"].replace("Z", "+00:00")) >= moved_at - timedelta(
        milliseconds=5
    )
    assert stream.messages[-1]["executedPrice"] >= limit


async def test_a_limit_order_is_born_waiting_in_one_commit(
    mc: httpx.AsyncClient, market_server: Process
) -> None:
    """Never a moment `pending` without a trigger: a worker could run it as a market order."""
    limit = (await best_price(mc, "SOL", "USDC", "1") * 3).quantize(Decimal("0.01"))
    order_id = await place(mc, type="limit", amountIn=1, limitPrice=limit)
    sniper_id = await place(mc, type="sniper", tokenOut="NOVA", amountIn=1, slippageBps=500)
    async with connected(market_server.env["DATABASE_URL"]) as db:
        rows = await db.fetch(
            "SELECT order_id, status, xmin::text AS tx FROM order_events"
            " WHERE order_id = ANY($1::uuid[]) ORDER BY order_id, seq",
            [UUID(order_id), UUID(sniper_id)],
        )
    for placed in (order_id, sniper_id):
        mine = [r for r in rows if str(r["order_id"]) == placed]
        assert [r["status"] for r in mine] == ["pending", "waiting"]
        assert len({r["tx"] for r in mine}) == 1, "pending and waiting in separate commits"
    await mc.delete(f"/api/orders/{order_id}")
    await mc.delete(f"/api/orders/{sniper_id}")


async def test_a_waiting_order_whose_event_was_lost_still_fills(
    mc: httpx.AsyncClient, market_server: Process
) -> None:
    """PostgreSQL is the truth: the trigger book finds a waiting order nobody announced."""
    limit = (await best_price(mc, "SOL", "USDC", "1") * Decimal("0.9")).quantize(Decimal("0.01"))
    now = datetime.now(UTC)
    order = Order(
        id=uuid4(), user_id="tester", type=OrderType.LIMIT, token_in="SOL", token_out="USDC",
        amount_in=Decimal(1), slippage_bps=100, created_at=now, updated_at=now, seq=1,
        limit_price=limit,
    )  # fmt: skip
    pool = await asyncpg.create_pool(market_server.env["DATABASE_URL"], min_size=1, max_size=2)
    try:
        # Committed as intake commits it, but its `waiting` event is never published.
        repo = OrderRepository(pool)
        await repo.create(order, first_event(order))
        await repo.append(order, order.event(OrderStatus.WAITING, now, trigger=trigger_of(order)))
    finally:
        await pool.close()
    stream = await watch(f"{market_server.ws_url}/ws/orders/{order.id}", timeout=30)
    assert stream.statuses[-1] == "confirmed"


async def test_waiting_order_expires(mc: httpx.AsyncClient, market_server: Process) -> None:
    limit = await best_price(mc, "SOL", "USDC", "1") * 3
    order_id = await place(
        mc, type="limit", amountIn=1, limitPrice=limit.quantize(Decimal("0.01")), ttlSeconds=1
    )
    stream = await watch(f"{market_server.ws_url}/ws/orders/{order_id}")
    assert stream.statuses == ["pending", "waiting", "expired"]
    assert stream.messages[-1]["reason"] == "expired"
    assert stream.close_code == 1000


async def test_cancel_while_waiting(mc: httpx.AsyncClient, market_server: Process) -> None:
    limit = (await best_price(mc, "SOL", "USDC", "1") * 3).quantize(Decimal("0.01"))
    order_id = await place(mc, type="limit", amountIn=1, limitPrice=limit)
    await first_events(f"{market_server.ws_url}/ws/orders/{order_id}", 2)
    response = await mc.delete(f"/api/orders/{order_id}")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    stream = await watch(f"{market_server.ws_url}/ws/orders/{order_id}")
    assert stream.statuses == ["pending", "waiting", "cancelled"]
    assert (await mc.delete(f"/api/orders/{order_id}")).status_code == 409


async def test_sniper_fires_on_launch_on_the_launched_venue(
    mc: httpx.AsyncClient, market_server: Process
) -> None:
    tokens = {t["symbol"]: t for t in (await mc.get("/api/tokens")).json()}
    assert tokens["NOVA"]["launched"] is False
    order_id = await place(mc, type="sniper", tokenOut="NOVA", amountIn=1, slippageBps=500)
    head = await first_events(f"{market_server.ws_url}/ws/orders/{order_id}", 2)
    assert head[1]["status"] == "waiting" and head[1]["trigger"]["kind"] == "pool_launch"
    launched = await mc.post("/api/mock/launch", json={"token": "nova", "venue": "meteora"})
    assert launched.status_code == 200
    stream = await watch(f"{market_server.ws_url}/ws/orders/{order_id}")
    assert stream.statuses[-1] == "confirmed"
    record = (await mc.get(f"/api/orders/{order_id}")).json()
    assert record["dexUsed"] == "meteora"
    assert record["route"] == ["wSOL", "NOVA"]
    assert {t["symbol"]: t for t in (await mc.get("/api/tokens")).json()}["NOVA"][
        "launched"
    ] is True


async def test_waiting_orders_survive_a_restart(
    mc: httpx.AsyncClient, market_server: Process
) -> None:
    limit = (await best_price(mc, "JUP", "SOL", "100") * Decimal("1.15")).quantize(
        Decimal("0.00000001")
    )
    funded = await mc.post(
        "/api/mock/airdrop", json={"userId": "tester", "token": "JUP", "amount": 100}
    )
    assert funded.status_code == 200, funded.text
    order_id = await place(
        mc, type="limit", tokenIn="JUP", tokenOut="SOL", amountIn=100, limitPrice=limit
    )
    sniper_id = await place(mc, type="sniper", tokenOut="WARP", amountIn=1, slippageBps=500)
    await first_events(f"{market_server.ws_url}/ws/orders/{sniper_id}", 2)
    assert await market_server.terminate() is not None
    market_server.start()
    await market_server.wait_ready()
    assert (await mc.get(f"/api/orders/status/{order_id}")).json()["status"] == "waiting"
    await mc.post("/api/mock/price", json={"venue": "all", "token": "JUP", "bps": 3000})
    await mc.post("/api/mock/launch", json={"token": "WARP", "venue": "raydium"})
    limit_stream, sniper_stream = await asyncio.gather(
        watch(f"{market_server.ws_url}/ws/orders/{order_id}"),
        watch(f"{market_server.ws_url}/ws/orders/{sniper_id}"),
    )
    assert limit_stream.statuses[-1] == "confirmed"
    assert sniper_stream.statuses[-1] == "confirmed"


async def test_scheduled_launch_fires_a_sniper(
    mc: httpx.AsyncClient, market_server: Process
) -> None:
    """MOCK_LAUNCHES opens FLUX on Raydium 2 s after the worker starts; no one calls launch."""
    order_id = await place(mc, type="sniper", tokenOut="FLUX", amountIn=1, slippageBps=500)
    stream = await watch(f"{market_server.ws_url}/ws/orders/{order_id}")
    assert stream.statuses[-1] == "confirmed"
    assert stream.messages[-1]["dex"] == "raydium"


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"type": "limit"}, "limitPrice is required"),
        ({"type": "limit", "limitPrice": 0}, "limitPrice must be > 0"),
        (
            {
                "type": "limit",
                "limitPrice": 1,
                "ttlSeconds": 5,
                "expiresAt": "2099-01-01T00:00:00Z",
            },
            "not both",
        ),
        ({"type": "limit", "limitPrice": 1, "expiresAt": "2020-01-01T00:00:00Z"}, "in the past"),
        ({"type": "sniper", "tokenOut": "USDC"}, "already tradable"),
        ({"type": "sniper", "tokenOut": "FLUX", "limitPrice": 1}, "limit orders only"),
    ],
)
async def test_limit_and_sniper_validation(
    mc: httpx.AsyncClient, fields: dict[str, Any], fragment: str
) -> None:
    response = await mc.post("/api/orders/execute", json=order_body(**fields))
    assert response.status_code == 422
    assert fragment in response.json()["message"]
