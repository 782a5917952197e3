"""An order the engine cannot process ends `failed / internal_error` after a bounded count.

A server of its own, with a quick reconciler: the order here is a row written straight
into its database, as a bug or a bad migration would leave one, and only the
reconciler finds it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest

from dexecutor import jsoncodec
from dexecutor.domain.order import Order, OrderStatus, OrderType, first_event
from dexecutor.store.orders import OrderRepository
from tests.support import Isolated, Process, connected, free_port, isolated, serving

LIMIT = 3


@pytest.fixture(scope="module")
async def iso() -> AsyncIterator[Isolated]:
    async with isolated("dxi") as env:
        yield env


@pytest.fixture(scope="module")
async def server(iso: Isolated) -> AsyncIterator[Process]:
    env = iso.env(INTERNAL_ERROR_LIMIT=str(LIMIT), RECONCILE_INTERVAL_MS="300")
    proc = Process("up", env, port=free_port())
    async with serving(proc):
        yield proc


async def unprocessable_order(dsn: str) -> Order:
    """An order built for a venue this deployment does not run."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    assert pool is not None
    try:
        repo = OrderRepository(pool)
        now = datetime.now(UTC)
        order = Order(
            id=uuid4(), user_id="internal", type=OrderType.MARKET, token_in="SOL",
            token_out="USDC", amount_in=Decimal(2), slippage_bps=100, created_at=now,
            updated_at=now, seq=1,
        )  # fmt: skip
        await repo.create(order, first_event(order))
        order = await repo.append(order, order.event(OrderStatus.ROUTING, now))
        return await repo.append(
            order,
            order.event(
                OrderStatus.BUILDING, now, dex="orca", route=["SOL", "USDC"], quotes={},
                expectedAmountOut=Decimal(190), minAmountOut=Decimal(180),
            ),
        )  # fmt: skip
    finally:
        await pool.close()


async def until_terminal(client: httpx.AsyncClient, order_id: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = jsoncodec.loads((await client.get(f"/api/orders/{order_id}")).content)
        if record["status"] in ("confirmed", "failed", "cancelled", "expired"):
            return record
        await asyncio.sleep(0.2)
    raise AssertionError(f"order {order_id} still {record['status']} after {timeout}s")


def counted(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith("dexecutor_internal_errors_total "):
            return float(line.split()[1])
    raise AssertionError("dexecutor_internal_errors_total is not exported")


async def test_a_row_the_engine_cannot_process_fails_after_the_bound(
    iso: Isolated, server: Process
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        before = counted((await client.get("/metrics")).text)
        order = await unprocessable_order(iso.dsn)
        record = await until_terminal(client, str(order.id), timeout=30)
        assert (record["status"], record["failReason"]) == ("failed", "internal_error")
        assert counted((await client.get("/metrics")).text) - before == LIMIT
    async with connected(iso.dsn) as conn:
        count = await conn.fetchval("SELECT internal_errors FROM orders WHERE id = $1", order.id)
        statuses = await conn.fetch(
            "SELECT status FROM order_events WHERE order_id = $1 ORDER BY seq", order.id
        )
    assert count == LIMIT
    assert [r["status"] for r in statuses][-2:] == ["building", "failed"]
    # Each error is in the log with its order id and its traceback.
    lines = [
        jsoncodec.loads(line)
        for line in server.log_path.read_text().splitlines()
        if line.startswith("{") and "internal error while executing" in line
    ]
    assert len(lines) == LIMIT
    assert all(x["order_id"] == str(order.id) and "KeyError" in x["exception"] for x in lines)
