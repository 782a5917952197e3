"""A market order's life over HTTP and WebSocket against a running `dexecutor up`."""

from __future__ import annotations

import asyncio
from datetime import datetime
from decimal import Decimal

import httpx

from dexecutor import jsoncodec
from tests.support import Process, order_body, wait_terminal, watch

HAPPY = ["pending", "routing", "building", "submitted", "confirmed"]


async def submit(client: httpx.AsyncClient, **fields: object) -> str:
    response = await client.post("/api/orders/execute", json=order_body(**fields))
    assert response.status_code == 202, response.text
    order_id: str = response.json()["orderId"]
    return order_id


async def test_market_order_goes_through_every_status_over_websocket(
    client: httpx.AsyncClient, server: Process
) -> None:
    order_id = await submit(client)
    result = await watch(f"{server.ws_url}/ws/orders/{order_id}")
    assert result.statuses == HAPPY
    assert [m["seq"] for m in result.messages] == [1, 2, 3, 4, 5]
    assert result.close_code == 1000
    building, submitted, confirmed = result.messages[2], result.messages[3], result.messages[4]
    assert set(building["quotes"]) == {"raydium", "meteora"}
    assert building["dex"] in ("raydium", "meteora")
    assert building["minAmountOut"] <= building["expectedAmountOut"]
    assert submitted["txHash"] == confirmed["txHash"]
    assert confirmed["amountOut"] >= building["minAmountOut"]
    assert all(
        m["orderId"] == order_id and m["attempt"] == (0 if m["seq"] == 1 else 1)
        for m in result.messages
    )


async def test_late_subscriber_gets_the_whole_history_then_close(
    client: httpx.AsyncClient, server: Process
) -> None:
    order_id = await submit(client)
    await wait_terminal(client, order_id)
    late = await watch(f"{server.ws_url}/ws/orders/{order_id}")
    assert late.statuses == HAPPY
    assert late.close_code == 1000


async def test_two_subscribers_see_the_same_events(
    client: httpx.AsyncClient, server: Process
) -> None:
    order_id = await submit(client)
    url = f"{server.ws_url}/ws/orders/{order_id}"
    first, second = await asyncio.gather(watch(url), watch(url))
    assert first.statuses == second.statuses == HAPPY
    assert first.messages == second.messages


async def test_after_resumes_past_a_sequence_number(
    client: httpx.AsyncClient, server: Process
) -> None:
    order_id = await submit(client)
    await wait_terminal(client, order_id)
    resumed = await watch(f"{server.ws_url}/ws/orders/{order_id}?after=3")
    assert [m["seq"] for m in resumed.messages] == [4, 5]


async def test_unknown_order_stream_closes_4404(server: Process) -> None:
    result = await watch(f"{server.ws_url}/ws/orders/00000000-0000-4000-8000-000000000000")
    assert result.close_code == 4404
    assert (await watch(f"{server.ws_url}/ws/orders/not-a-uuid")).close_code == 4404


async def test_full_record_after_confirmation(client: httpx.AsyncClient) -> None:
    order_id = await submit(client, amountIn=1.5)
    record = await wait_terminal(client, order_id)  # decoded with exact decimals
    assert record["status"] == "confirmed"
    assert record["amountIn"] == Decimal("1.5")
    assert record["dexUsed"] in ("raydium", "meteora")
    assert record["attempts"] == 1 and record["failReason"] is None
    assert record["amountOut"] >= record["minAmountOut"] > 0
    assert abs(record["executedPrice"] - record["amountOut"] / record["amountIn"]) < Decimal("1e-9")
    assert record["route"][0] == "wSOL"
    assert record["quotes"][record["dexUsed"]]["amountOut"] == max(
        q["amountOut"] for q in record["quotes"].values() if "amountOut" in q
    )
    assert record["createdAt"].endswith("Z") and record["updatedAt"] >= record["createdAt"]


async def test_record_is_readable_at_once_while_pending(client: httpx.AsyncClient) -> None:
    order_id = await submit(client)
    response = await client.get(f"/api/orders/{order_id}")
    assert response.status_code == 200
    assert response.json()["status"] in {"pending", "routing", "building", "submitted", "confirmed"}
    await wait_terminal(client, order_id)


async def test_status_endpoint(client: httpx.AsyncClient) -> None:
    order_id = await submit(client)
    await wait_terminal(client, order_id)
    body = (await client.get(f"/api/orders/status/{order_id}")).json()
    assert set(body) == {"orderId", "status", "attempt", "updatedAt"}
    assert (body["orderId"], body["status"], body["attempt"]) == (order_id, "confirmed", 1)


async def test_events_endpoint_lists_history_in_order(client: httpx.AsyncClient) -> None:
    order_id = await submit(client)
    await wait_terminal(client, order_id)
    events = (await client.get(f"/api/orders/{order_id}/events")).json()["events"]
    assert [e["status"] for e in events] == HAPPY
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]


async def test_history_is_newest_first_paged_and_filtered(client: httpx.AsyncClient) -> None:
    user = "history-user"
    ids = [await submit(client, userId=user) for _ in range(5)]
    await asyncio.gather(*(wait_terminal(client, i) for i in ids))
    page1 = (await client.get("/api/orders", params={"userId": user, "limit": 3})).json()
    assert [o["orderId"] for o in page1["orders"]] == ids[::-1][:3]
    page2 = (
        await client.get(
            "/api/orders", params={"userId": user, "limit": 3, "before": page1["nextBefore"]}
        )
    ).json()
    assert [o["orderId"] for o in page2["orders"]] == ids[::-1][3:]
    assert page2["nextBefore"] is None
    none = (await client.get("/api/orders", params={"userId": user, "status": "failed"})).json()
    assert none["orders"] == []


async def test_submit_over_websocket_then_watch_on_the_same_socket(server: Process) -> None:
    result = await watch(f"{server.ws_url}/api/orders/execute", send=order_body())
    assert "orderId" in result.messages[0]
    assert result.statuses == HAPPY
    assert result.close_code == 1000


async def test_invalid_order_over_websocket_closes_4400(server: Process) -> None:
    result = await watch(f"{server.ws_url}/api/orders/execute", send=order_body(amountIn=-1))
    assert result.messages[0]["error"] == "validation_error"
    assert result.close_code == 4400


async def test_upgrade_ws_returns_the_stream_url(
    client: httpx.AsyncClient, server: Process
) -> None:
    response = await client.post("/api/orders/execute?upgrade=ws", json=order_body())
    body = response.json()
    assert body["websocketUrl"] == f"/ws/orders/{body['orderId']}"
    assert (await watch(server.ws_url + body["websocketUrl"])).statuses == HAPPY


async def test_user_stream_carries_every_event_of_that_users_orders(
    client: httpx.AsyncClient, server: Process
) -> None:
    from websockets.asyncio.client import connect

    user = "blotter-user"
    async with connect(f"{server.ws_url}/ws/orders?userId={user}") as ws:
        order_ids = {await submit(client, userId=user) for _ in range(2)}
        await submit(client, userId="someone-else")
        seen: dict[str, list[str]] = {i: [] for i in order_ids}
        async with asyncio.timeout(30):
            while any(s[-1:] != ["confirmed"] for s in seen.values()):
                message = jsoncodec.loads(await ws.recv())
                assert message["orderId"] in order_ids
                seen[message["orderId"]].append(message["status"])
    assert all(s == HAPPY for s in seen.values())


async def test_idempotency_key_returns_the_first_order(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "key-123"}
    body = order_body(userId="idem-user")
    first = await client.post("/api/orders/execute", json=body, headers=headers)
    again = await client.post("/api/orders/execute", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["orderId"] == again.json()["orderId"]
    other = await client.post("/api/orders/execute", json={**body, "amountIn": 3}, headers=headers)
    assert other.status_code == 409
    assert other.json()["error"] == "idempotency_conflict"
    listed = (await client.get("/api/orders", params={"userId": "idem-user"})).json()["orders"]
    assert len(listed) == 1
    await wait_terminal(client, first.json()["orderId"])


async def test_a_burst_with_one_idempotency_key_makes_one_order(
    client: httpx.AsyncClient,
) -> None:
    """Concurrent retries share group commits; every answer names the one order."""
    headers = {"Idempotency-Key": "burst-key"}
    body = order_body(userId="burst-user")
    answers = await asyncio.gather(
        *(client.post("/api/orders/execute", json=body, headers=headers) for _ in range(20))
    )
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["orderId"] for a in answers}) == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 19
    listed = (await client.get("/api/orders", params={"userId": "burst-user"})).json()["orders"]
    assert len(listed) == 1
    await wait_terminal(client, listed[0]["orderId"])


async def test_concurrent_submissions_each_get_their_own_stored_order(
    client: httpx.AsyncClient,
) -> None:
    answers = await asyncio.gather(
        *(
            client.post("/api/orders/execute", json=order_body(userId="many-user", amountIn=i))
            for i in range(1, 31)
        )
    )
    assert {a.status_code for a in answers} == {202}
    for i, answer in enumerate(answers, start=1):  # committed before the 202: readable now
        stored = (await client.get(f"/api/orders/{answer.json()['orderId']}")).json()
        assert stored["amountIn"] == i and stored["userId"] == "many-user"


async def test_same_key_from_another_user_is_another_order(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "shared-key"}
    a = await client.post("/api/orders/execute", json=order_body(userId="ua"), headers=headers)
    b = await client.post("/api/orders/execute", json=order_body(userId="ub"), headers=headers)
    assert a.json()["orderId"] != b.json()["orderId"]


async def test_cancel_after_routing_began_is_409(client: httpx.AsyncClient) -> None:
    order_id = await submit(client)
    await wait_terminal(client, order_id)
    response = await client.delete(f"/api/orders/{order_id}")
    assert response.status_code == 409
    assert response.json()["error"] == "not_cancellable"


async def test_an_order_after_an_idle_spell_is_picked_up_at_once(client: httpx.AsyncClient) -> None:
    """BullMQ for Python missed new jobs after its long idle wait (see queue/worker.py)."""
    await wait_terminal(client, await submit(client))
    await asyncio.sleep(7)  # the idle spell is the condition under test
    order_id = await submit(client)
    await wait_terminal(client, order_id)
    events = (await client.get(f"/api/orders/{order_id}/events")).json()["events"]
    pending, routing = (datetime.fromisoformat(e["at"].replace("Z", "+00:00")) for e in events[:2])
    assert (routing - pending).total_seconds() < 1.0


async def test_resuming_at_or_past_the_end_of_a_finished_order_closes_at_once(
    client: httpx.AsyncClient, server: Process
) -> None:
    order_id = await submit(client)
    await wait_terminal(client, order_id)
    for after in (5, 9):
        resumed = await watch(f"{server.ws_url}/ws/orders/{order_id}?after={after}", timeout=10)
        assert (resumed.messages, resumed.close_code) == ([], 1000)
