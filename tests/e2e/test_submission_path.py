"""Plain submissions are answered by the HTTP protocol itself (api/httpdirect.py); any
other request to the same route goes through the ASGI application. The two must be
indistinguishable to a client, and the protocol's own bookkeeping (pipelined requests,
keep-alive, a client that leaves early) must hold on the direct one.

A query string sends a request down the ASGI path (the handler reads only `upgrade`),
so every case here is asked both ways and the answers compared.
"""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

import httpx
import pytest

from tests.support import Process, order_body

USER = "path-user"

CASES: list[tuple[str, bytes, dict[str, str]]] = [
    ("accepted", b"", {}),
    ("not json", b"{", {}),
    ("empty body", b" ", {}),
    ("wrong media type", b"", {"content-type": "text/plain"}),
    ("invalid order", b'{"userId":"path-user","tokenIn":"SOL","tokenOut":"SOL","amountIn":1}', {}),
    ("key too long", b"", {"idempotency-key": "k" * 201}),
]


def _shape(response: httpx.Response) -> tuple[int, dict[str, str], Any]:
    """What a client can rely on: status, headers but the clock's, and the body with
    the order's id replaced (every accepted order has a fresh one)."""
    headers = {k: v for k, v in response.headers.items() if k not in ("date", "content-length")}
    body = response.json()
    if isinstance(body, dict) and "orderId" in body:
        body = {**body, "orderId": "<id>"}
    return response.status_code, headers, body


@pytest.mark.parametrize(("case", "raw", "extra"), CASES, ids=[c[0] for c in CASES])
async def test_direct_and_asgi_answers_are_the_same(
    client: httpx.AsyncClient, case: str, raw: bytes, extra: dict[str, str]
) -> None:
    body = raw or httpx.Request("POST", "/", json=order_body(userId=USER)).content
    headers = {"content-type": "application/json", **extra}
    direct = await client.post("/api/orders/execute", content=body, headers=headers)
    through_asgi = await client.post(
        "/api/orders/execute", params={"via": "asgi"}, content=body, headers=headers
    )
    assert _shape(direct) == _shape(through_asgi)
    assert direct.status_code == (202 if case == "accepted" else direct.status_code)
    assert (direct.status_code < 300) == (case == "accepted")


async def test_a_replayed_key_is_answered_alike_both_ways(client: httpx.AsyncClient) -> None:
    key = f"path-{uuid4()}"
    body = order_body(userId=USER)
    first = await client.post("/api/orders/execute", json=body, headers={"Idempotency-Key": key})
    direct = await client.post("/api/orders/execute", json=body, headers={"Idempotency-Key": key})
    through_asgi = await client.post(
        "/api/orders/execute", params={"via": "asgi"}, json=body, headers={"Idempotency-Key": key}
    )
    assert first.status_code == 202 and "idempotent-replayed" not in first.headers
    order_id = first.json()["orderId"]
    for replay in (direct, through_asgi):
        assert replay.status_code == 202
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.json()["orderId"] == order_id


def _request(body: bytes) -> bytes:
    return (
        b"POST /api/orders/execute HTTP/1.1\r\nhost: test\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)
    ) + body


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return status, await reader.readexactly(length)


async def test_pipelined_submissions_are_answered_in_order_on_one_connection(
    server: Process,
) -> None:
    users = [f"pipe-{uuid4().hex[:8]}" for _ in range(3)]
    bodies = [httpx.Request("POST", "/", json=order_body(userId=u)).content for u in users]
    bodies.insert(1, b"{")  # a refusal between two orders keeps its place
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"".join(_request(b) for b in bodies))  # all in one segment
        answers = [await asyncio.wait_for(_read_answer(reader), 30) for _ in bodies]
    finally:
        writer.close()
    assert [status for status, _ in answers] == [202, 400, 202, 202]
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        for user, (_, answer) in zip(users, [answers[0], *answers[2:]], strict=True):
            order_id = httpx.Response(200, content=answer).json()["orderId"]
            stored = await client.get(f"/api/orders/{order_id}")
            assert stored.json()["userId"] == user  # each answer names its own order


async def test_an_order_whose_client_left_is_still_stored_and_the_server_serves_on(
    server: Process, client: httpx.AsyncClient
) -> None:
    user = f"gone-{uuid4().hex[:8]}"
    body = httpx.Request("POST", "/", json=order_body(userId=user)).content
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(_request(body))
    await writer.drain()
    writer.close()  # without waiting for the answer
    await writer.wait_closed()
    history: list[dict[str, Any]] = []
    for _ in range(300):  # polled: the commit's moment is the server's
        history = (await client.get("/api/orders", params={"userId": user})).json()["orders"]
        if history:
            break
        await asyncio.sleep(0.05)
    assert len(history) == 1
    after = await client.post("/api/orders/execute", json=order_body(userId=user))
    assert after.status_code == 202
