"""One market for every process: two API processes and two workers against one chain.

Each process used to simulate a market of its own; reads alternated between them, and a
quote from one process could be filled against another's market. Now the chain is the
only market: every process reads the same prices, honours the same quotes, and sees
the same fills.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest

from dexecutor import jsoncodec
from tests.support import Process, chained, free_port, isolated, order_body, serving, wait_terminal


@dataclass
class TwoByTwo:
    apis: list[httpx.AsyncClient]


@pytest.fixture(scope="module")
async def deployment() -> AsyncIterator[TwoByTwo]:
    async with isolated("dxo") as iso:
        chain, env = chained(iso.env(MOCK_MARKET="calm"))
        apis = [Process("api", env, port=free_port()) for _ in range(2)]
        workers = [Process("worker", env) for _ in range(2)]
        async with serving(chain, *apis, *workers):
            clients = [httpx.AsyncClient(base_url=a.url, timeout=30) for a in apis]
            try:
                yield TwoByTwo(clients)
            finally:
                for c in clients:
                    await c.aclose()


def _decoded(response: httpx.Response) -> dict[str, Any]:
    """The body with its numbers as exact decimals."""
    body: dict[str, Any] = jsoncodec.loads(response.content)
    return body


async def prices(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/api/market/prices", params={"tokenIn": "SOL", "tokenOut": "USDC"})
    assert response.status_code == 200
    return _decoded(response)


async def test_fifty_reads_across_processes_never_see_two_markets(deployment: TwoByTwo) -> None:
    reads = []
    for i in range(50):  # consecutive, alternating between the two API processes
        reads.append((i % 2, await prices(deployment.apis[i % 2])))
    by_slot: dict[int, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for process, read in reads:
        by_slot[read["slot"]].append((process, read))
    shared = 0
    for same_slot in by_slot.values():
        views = {(str(r["venues"]), str(r["reference"])) for _, r in same_slot}
        assert len(views) == 1, same_slot  # one slot, one market, whichever process answers
        shared += len({p for p, _ in same_slot}) == 2
    assert shared >= 1  # both processes did answer within the same slot
    slots = [r["slot"] for _, r in reads]
    assert slots == sorted(slots)  # one clock: time never runs back between processes


async def test_a_quote_from_one_process_is_honoured_by_whichever_worker_fills_it(
    deployment: TwoByTwo,
) -> None:
    quoting, placing = deployment.apis

    async def one(amount: int) -> tuple[dict[str, Any], dict[str, Any]]:
        params = {"tokenIn": "SOL", "tokenOut": "USDC", "amountIn": str(amount)}
        quote = _decoded(await quoting.get("/api/quote", params=params))
        body = order_body(amountIn=amount, quoteId=quote["quoteId"], slippageBps=50)
        accepted = await placing.post("/api/orders/execute", json=body)
        assert accepted.status_code == 202
        return quote, await wait_terminal(placing, accepted.json()["orderId"])

    results = await asyncio.gather(*(one(amount) for amount in (1, 2, 3, 1, 2, 3)))
    for quote, record in results:
        assert record["status"] == "confirmed", record
        assert Decimal(str(record["amountOut"])) >= Decimal(str(quote["minAmountOut"]))


async def test_a_fill_moves_the_price_every_process_sees(deployment: TwoByTwo) -> None:
    first, second = deployment.apis
    before = await prices(first)
    body = order_body(userId="whale", amountIn=1000, slippageBps=5000)
    accepted = await second.post("/api/orders/execute", json=body)
    record = await wait_terminal(second, accepted.json()["orderId"])
    assert record["status"] == "confirmed", record
    venue = record["dexUsed"]
    after = await asyncio.gather(prices(first), prices(second))
    impact = Decimal(str(record["quotes"][venue]["priceImpact"]))
    for read in after:
        moved = 1 - Decimal(str(read["venues"][venue])) / Decimal(str(before["venues"][venue]))
        # Selling 1000 SOL made SOL cheaper on that venue, for every process.
        assert moved > impact / 4, (before, read, impact)
    if after[0]["slot"] == after[1]["slot"]:
        assert after[0]["venues"] == after[1]["venues"]
