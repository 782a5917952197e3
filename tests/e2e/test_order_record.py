"""The order record as trading code reads it: the client's own id echoed back, and
CCXT's unified fields (filled, remaining, average, cost, fee, timestamp)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_UP, Decimal
from typing import Any
from uuid import uuid4

import httpx

from dexecutor import jsoncodec
from tests.support import Process, order_body, wait_terminal, watch


async def get(client: httpx.AsyncClient, path: str, **params: str) -> Any:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return jsoncodec.loads(response.content)  # exact decimals


def ms(iso: str) -> int:
    at = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


async def test_the_idempotency_key_comes_back_as_client_order_id(
    client: httpx.AsyncClient, server: Process
) -> None:
    user, key = f"coid-{uuid4().hex[:8]}", f"strategy-7:{uuid4().hex}"
    accepted = await client.post(
        "/api/orders/execute", json=order_body(userId=user), headers={"Idempotency-Key": key}
    )
    assert accepted.status_code == 202, accepted.text
    order_id = accepted.json()["orderId"]
    unkeyed = await client.post("/api/orders/execute", json=order_body(userId=user))
    record = await wait_terminal(client, order_id)
    assert record["clientOrderId"] == key

    # Every event of the order's stored history carries it too, the pending one first.
    events = (await get(client, f"/api/orders/{order_id}/events"))["events"]
    assert events[0]["status"] == "pending" and len(events) >= 5
    assert {e["clientOrderId"] for e in events} == {key}
    # The live stream's pending event carries it (the one event the key is born with).
    stream = await watch(f"{server.ws_url}/ws/orders/{order_id}")
    assert stream.messages[0]["status"] == "pending"
    assert stream.messages[0]["clientOrderId"] == key

    # Found by the client's id alone, among the user's orders.
    found = await get(client, "/api/orders", userId=user, clientOrderId=key)
    assert [o["orderId"] for o in found["orders"]] == [order_id]
    assert found["orders"][0]["clientOrderId"] == key
    assert (await get(client, "/api/orders", userId=user, clientOrderId="other"))["orders"] == []
    assert (await get(client, "/api/orders", userId="someone-else", clientOrderId=key)) == {
        "orders": [],
        "nextBefore": None,
    }

    # An order placed without a key has none, in its record and its events.
    plain = await wait_terminal(client, unkeyed.json()["orderId"])
    assert plain["clientOrderId"] is None
    plain_events = await get(client, f"/api/orders/{plain['orderId']}/events")
    assert all("clientOrderId" not in e for e in plain_events["events"])
    both = await get(client, "/api/orders", userId=user)
    assert {o["clientOrderId"] for o in both["orders"]} == {key, None}


async def test_a_filled_order_has_ccxt_fields(client: httpx.AsyncClient) -> None:
    body = order_body(userId="ccxt", tokenIn="SOL", tokenOut="USDC", amountIn=1.5)
    accepted = await client.post("/api/orders/execute", json=body)
    record = await wait_terminal(client, accepted.json()["orderId"])
    assert record["status"] == "confirmed", record

    # tokenIn is the base (sold), tokenOut the quote: the swap fills whole.
    assert record["filled"] == record["amountIn"] == Decimal("1.5")
    assert record["remaining"] == 0
    assert record["average"] == record["executedPrice"]
    assert record["cost"] == record["amountOut"]
    assert abs(record["cost"] - record["filled"] * record["average"]) < Decimal("1e-6")
    rate = record["quotes"][record["dexUsed"]]["fee"]
    assert record["fee"] == {
        "cost": (Decimal("1.5") * rate).quantize(Decimal("1e-9"), rounding=ROUND_UP),
        "currency": "SOL",
        "rate": rate,
    }
    assert 0 < record["fee"]["cost"] < record["filled"]
    assert record["timestamp"] == ms(record["createdAt"])
    assert record["lastTradeTimestamp"] == ms(record["updatedAt"])
    # The fields the record had before stay as they were.
    assert {"executedPrice", "amountOut", "dexUsed", "txHash", "quotes"} <= set(record)


async def test_an_unfilled_order_has_nothing_filled(client: httpx.AsyncClient) -> None:
    body = order_body(userId="ccxt-open", type="limit", limitPrice=100000, ttlSeconds=300)
    accepted = await client.post("/api/orders/execute", json=body)
    order_id = accepted.json()["orderId"]
    waiting = await get(client, f"/api/orders/{order_id}")
    cancelled = jsoncodec.loads((await client.delete(f"/api/orders/{order_id}")).content)
    for record in (waiting, cancelled):
        assert record["filled"] == 0 and record["remaining"] == record["amountIn"] == 2
        assert record["average"] is None and record["cost"] == 0 and record["fee"] is None
        assert record["lastTradeTimestamp"] is None
        assert record["timestamp"] == ms(record["createdAt"])
    assert cancelled["status"] == "cancelled"
