"""The chain service killed with kill -9 mid-run and started again: every order ends
correctly, with exactly one landed swap per confirmed order and none for the others."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest

from tests.faults.conftest import TERMINAL, Deployment, Progress
from tests.support import unrecorded_txs

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]

# What an order may honestly fail with while its chain is away (SPEC §4's reasons).
CHAIN_DOWN_REASONS = {"venue_unavailable", "venue_timeout", "slippage_exceeded"}


async def test_kill_9_of_the_chain_with_orders_in_flight(
    deployment: Deployment, client: httpx.AsyncClient
) -> None:
    user = "chain-crash"
    deployment.start_worker()
    deployment.start_worker()
    async with Progress(f"{deployment.api.ws_url}/ws/orders?userId={user}") as progress:
        ids = await deployment.submit(client, user, 100)
        await progress.reach("submitted", 30)
        deployment.kill(deployment.chain)
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["chain"].startswith("down")
        prices = await client.get("/api/market/prices")
        assert (prices.status_code, prices.json()["error"]) == (503, "chain_unavailable")
        quote = await client.get(
            "/api/quote", params={"tokenIn": "SOL", "tokenOut": "USDC", "amountIn": "1"}
        )
        assert (quote.status_code, quote.json()["error"]) == (503, "venue_unavailable")
        await asyncio.sleep(3)  # the outage itself
        deployment.chain.start()
        await deployment.chain.wait_ready()
        finals = await deployment.all_terminal(ids)
    print(
        f"\nchain kill -9: {finals.count('confirmed')} confirmed, {finals.count('failed')} failed"
    )
    assert len(finals) == 100 and set(finals) <= TERMINAL
    landed = await deployment.landed_per_order(ids)
    confirmed = {i for i, status in zip(ids, finals, strict=True) if status == "confirmed"}
    assert all(landed[i] == (1 if i in confirmed else 0) for i in ids), landed
    conn = await asyncpg.connect(deployment.dsn)
    try:
        rows = await conn.fetch(
            "SELECT o.id::text AS id, o.status, o.fail_reason, o.amount_out,"
            " t.amount_out AS landed_out FROM orders o"
            " LEFT JOIN chain_txs t ON t.signature = o.tx_hash AND t.status = 'landed'"
            " WHERE o.id = ANY($1::uuid[])",
            ids,
        )
        # Nothing reached the chain that the engine had not recorded first: a resumed
        # order sent its recorded transaction again, never a new one.
        unrecorded = await unrecorded_txs(conn)
    finally:
        await conn.close()
    assert unrecorded == [], unrecorded
    for row in rows:
        if row["status"] == "confirmed":  # the order's fill is the chain's landed swap
            assert row["amount_out"] == row["landed_out"], dict(row)
        else:
            assert row["fail_reason"] in CHAIN_DOWN_REASONS, dict(row)
    # Orders already submitted when the chain died were not lost: they confirmed.
    assert len(confirmed) >= 30
    assert (await client.get("/readyz")).status_code == 200
