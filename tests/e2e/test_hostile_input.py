"""Hostile input and who may see what: a server with authentication on, production mode,
tight rate limits and a small WebSocket cap."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from dexecutor import jsoncodec
from tests.support import Process, chained, free_port, isolated, order_body, serving, watch

ALICE, BOB, CAROL = "alice-key-0123456789", "bob-key-9876543210", "carol-key-555555"
DAVE = "dave-key-4444444444"
WALLET_KEY = "d2FsbGV0LWtleS1mb3ItdGhlLWd1YXJkZWQtdGVzdHM="  # base64 of 32 bytes


@pytest.fixture(scope="module")
async def guarded() -> AsyncIterator[Process]:
    async with isolated("dxh") as iso:
        env = iso.env(
            ENV="production",
            WALLET_KEY=WALLET_KEY,
            API_KEYS=f"{ALICE}:alice,{BOB}:bob,{CAROL}:carol,{DAVE}:dave",
            RATE_LIMIT_PER_USER="5",
            WS_MAX_CONNECTIONS="3",
            WS_FIRST_MESSAGE_TIMEOUT_S="0.5",
        )
        proc = Process("up", env, port=free_port())
        async with serving(proc):
            yield proc


def client(server: Process, key: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30)


async def place(c: httpx.AsyncClient, user: str, **fields: Any) -> httpx.Response:
    return await c.post("/api/orders/execute", json=order_body(userId=user, **fields))


async def test_requests_without_a_valid_key_are_401(guarded: Process) -> None:
    async with client(guarded, None) as anon, client(guarded, "wrong") as wrong:
        for c in (anon, wrong):
            response = await place(c, "alice")
            assert response.status_code == 401
            assert response.json()["error"] == "unauthorized"
            assert response.headers["WWW-Authenticate"] == "Bearer"
        assert (await anon.get("/healthz")).status_code == 200  # health stays open


async def test_a_user_cannot_act_as_or_see_another_user(guarded: Process) -> None:
    async with client(guarded, ALICE) as alice, client(guarded, BOB) as bob:
        assert (await place(alice, "bob")).status_code == 403
        accepted = await place(bob, "bob")
        assert accepted.status_code == 202
        order_id = accepted.json()["orderId"]
        for path in (f"/api/orders/{order_id}", f"/api/orders/status/{order_id}",
                     f"/api/orders/{order_id}/events"):  # fmt: skip
            assert (await alice.get(path)).status_code == 404
            assert (await bob.get(path)).status_code == 200
        assert (await alice.delete(f"/api/orders/{order_id}")).status_code == 404
        assert (await alice.get("/api/orders", params={"userId": "bob"})).status_code == 403
    stolen = await watch(f"{guarded.ws_url}/ws/orders/{order_id}?apiKey={ALICE}")
    assert stolen.close_code == 4404 and stolen.messages == []
    own = await watch(f"{guarded.ws_url}/ws/orders/{order_id}?apiKey={BOB}")
    assert own.close_code == 1000 and own.statuses[-1] == "confirmed"
    async with connect(f"{guarded.ws_url}/ws/orders?userId=bob&apiKey={ALICE}") as ws:
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert ws.close_code == 4403
    unauthenticated = await watch(f"{guarded.ws_url}/ws/orders/{order_id}")
    assert unauthenticated.close_code == 4401


async def test_the_api_key_names_the_user_of_an_order(guarded: Process) -> None:
    """With a key, userId may be left out; naming another user is a 403 `user_mismatch`."""
    async with httpx.AsyncClient(
        base_url=guarded.url, headers={"X-API-Key": DAVE}, timeout=30
    ) as dave:
        body = order_body(userId=None)
        assert "userId" not in body
        accepted = await dave.post("/api/orders/execute", json=body)
        assert accepted.status_code == 202, accepted.text
        record = (await dave.get(f"/api/orders/{accepted.json()['orderId']}")).json()
        assert record["userId"] == "dave"
        own = await dave.post("/api/orders/execute", json=order_body(userId="dave"))
        assert own.status_code == 202, own.text
        other = await dave.post("/api/orders/execute", json=order_body(userId="alice"))
        assert other.status_code == 403
        assert other.json()["error"] == "user_mismatch" and "API key" in other.json()["message"]
        orders = (await dave.get("/api/orders", params={"userId": "dave"})).json()["orders"]
        assert len(orders) == 2
    async with client(guarded, ALICE) as alice:  # the refused order was not stored as hers
        assert (await alice.get("/api/orders", params={"userId": "alice"})).json()["orders"] == []

    # The submission socket follows the same rule.
    url = f"{guarded.ws_url}/api/orders/execute?apiKey={DAVE}"
    keyed = await watch(url, send=order_body(userId=None))
    assert keyed.close_code == 1000 and keyed.statuses[-1] == "confirmed", keyed
    assert keyed.messages[-1]["userId"] == "dave"
    mismatch = await watch(url, send=order_body(userId="alice"))
    assert mismatch.close_code == 4403
    assert mismatch.messages == [
        {"error": "user_mismatch", "message": mismatch.messages[0]["message"]}
    ]


async def test_the_schema_offers_the_key_schemes_it_requires(guarded: Process) -> None:
    """/docs has an Authorize button; with API_KEYS set the key is not optional."""
    async with httpx.AsyncClient(base_url=guarded.url) as anon:
        schema = (await anon.get("/openapi.json")).json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {**schemes["ApiKey"], "type": "apiKey", "in": "header",
                                 "name": "X-API-Key"}  # fmt: skip
    assert schemes["Bearer"]["scheme"] == "bearer"
    required = [{"ApiKey": []}, {"Bearer": []}]
    assert schema["paths"]["/api/orders/execute"]["post"]["security"] == required
    assert schema["paths"]["/api/orders/{order_id}"]["delete"]["security"] == required
    assert "security" not in schema["paths"]["/healthz"]["get"]


async def test_mock_controls_are_off_in_production(guarded: Process) -> None:
    async with client(guarded, ALICE) as alice:
        response = await alice.post(
            "/api/mock/faults", json={"venue": "all", "kind": "drop", "count": 1}
        )
    assert response.status_code == 403
    assert response.json()["error"] == "mock_controls_disabled"


async def test_a_key_sees_only_its_own_wallet_and_the_faucet_is_off(guarded: Process) -> None:
    async with client(guarded, ALICE) as alice:
        own = await alice.get("/api/balances")
        named = await alice.get("/api/balances", params={"userId": "alice"})
        other = await alice.get("/api/balances", params={"userId": "bob"})
        faucet = await alice.post("/api/mock/airdrop", json={"token": "SOL", "amount": 1})
    assert own.status_code == 200 and own.json()["userId"] == "alice"
    assert named.json() == own.json()
    assert (other.status_code, other.json()["error"]) == (403, "user_mismatch")
    assert (faucet.status_code, faucet.json()["error"]) == (403, "mock_controls_disabled")
    async with client(guarded, None) as anonymous:
        assert (await anonymous.get("/api/balances")).status_code == 401


async def test_oversized_bodies_are_413_before_being_read(guarded: Process) -> None:
    big = b'{"userId": "alice", "pad": "' + b"x" * 20_000 + b'"}'

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
        for i in range(0, len(big), 4096):
            yield big[i : i + 4096]

    async with client(guarded, ALICE) as alice:
        declared = await alice.post("/api/orders/execute", content=big,
                                    headers={"content-type": "application/json"})  # fmt: skip
        streamed = await alice.post("/api/orders/execute", content=chunks(),
                                    headers={"content-type": "application/json"})  # fmt: skip
        for response in (declared, streamed):
            assert response.status_code == 413
            assert response.json()["error"] == "payload_too_large"
        assert (await alice.get("/api/orders", params={"userId": "alice"})).json()["orders"] == []


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"[" * 8_000 + b"]" * 8_000, 400),  # deeply nested (within the size limit)
        (b'{"userId": "al\\u0000ice", "tokenIn": "SOL", "tokenOut": "USDC", "amountIn": 1}', 422),
        (b'{"userId": "alice", "tokenIn": "SOL", "tokenOut": "USDC", "amountIn": Infinity}', 400),
        (b'{"userId": "alice", "tokenIn": "SOL", "tokenOut": "USDC", "amountIn": 1e308}', 422),
        (b'{"userId": "alice", "tokenIn": "SOL", "tokenOut": "USDC", "amountIn": 1e-999999}', 422),
        (b'{"userId": "alice", "tokenIn": "SOL\\u0000", "tokenOut": "USDC", "amountIn": 1}', 422),
        (b"\xff\xfe\x00", 400),
    ],
    ids=["nested", "nul-user", "infinity", "1e308", "tiny", "nul-token", "binary"],
)
async def test_malicious_json_is_4xx_and_stores_nothing(
    guarded: Process, raw: bytes, status: int
) -> None:
    async with client(guarded, ALICE) as alice:
        response = await alice.post("/api/orders/execute", content=raw,
                                    headers={"content-type": "application/json"})  # fmt: skip
        assert response.status_code == status, response.text
        assert set(response.json()) >= {"error", "message"}
        assert (await alice.get("/api/orders", params={"userId": "alice"})).json()["orders"] == []


async def test_per_user_rate_limit_is_429_with_retry_after(guarded: Process) -> None:
    async with client(guarded, CAROL) as carol:  # a user no other test places orders for
        started = time.time()
        responses = await asyncio.gather(*(place(carol, "carol") for _ in range(14)))
        windows = int(time.time()) - int(started) + 1  # the limiter's one-second windows spanned
    codes = [r.status_code for r in responses]
    assert sorted(set(codes)) == [202, 429], codes
    # Each window admits its first 5; any window that saw 5 admitted exactly 5, so at
    # least 5 of the 14 get in, and never more than 5 per window the burst touched.
    assert 5 <= codes.count(202) <= 5 * windows, (codes, windows)
    limited = next(r for r in responses if r.status_code == 429)
    assert limited.json()["error"] == "rate_limited" and limited.headers["Retry-After"] == "1"


async def test_websocket_abuse_is_closed_with_clear_codes(guarded: Process) -> None:
    base = f"{guarded.ws_url}/api/orders/execute?apiKey={ALICE}"
    async with connect(base, max_size=None) as ws:  # oversized message
        await ws.send("x" * 40_000)
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert ws.close_code == 1009
    async with connect(base) as ws:  # malformed message
        await ws.send("{not json")
        error = jsoncodec.loads(await ws.recv())
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert error["error"] == "invalid_json" and ws.close_code == 4400
    async with connect(base) as ws:  # idle: never sends its order
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert ws.close_code == 4408


async def test_websocket_cap_per_process(guarded: Process) -> None:
    url = f"{guarded.ws_url}/ws/orders?userId=alice&apiKey={ALICE}"
    async with connect(url), connect(url), connect(url):
        async with connect(url) as fourth, asyncio.timeout(10):
            with pytest.raises(ConnectionClosed):
                await fourth.recv()
        assert fourth.close_code == 1013


async def test_logs_hold_no_keys_or_bodies(guarded: Process) -> None:
    async with client(guarded, ALICE) as alice:
        await place(alice, "alice", amountIn=1.23456789)
    log = guarded.log_path.read_text()
    assert ALICE not in log and BOB not in log and WALLET_KEY not in log
    assert "1.23456789" not in log


async def test_per_address_rate_limit_counts_every_request_even_refused_ones() -> None:
    async with isolated("dxa") as iso:
        env = iso.env(RATE_LIMIT_PER_ADDRESS="4", RATE_LIMIT_PER_USER="0")
        chain, env = chained(env)
        proc = Process("api", env, port=free_port())
        async with serving(chain, proc), httpx.AsyncClient(base_url=proc.url, timeout=30) as c:
            requests = [
                *(c.post("/api/orders/execute", content=b"{", headers=_JSON) for _ in range(10)),
                *(c.get("/api/orders", params={"userId": "nobody"}) for _ in range(10)),
            ]
            responses = await asyncio.gather(*requests)
    limited = [r for r in responses if r.status_code == 429]
    assert limited, [r.status_code for r in responses]
    assert all("address" in r.json()["message"] for r in limited)
    # At most 4 per one-second window, and 20 requests span at most three windows.
    assert sum(r.status_code != 429 for r in responses) <= 12
    assert {r.status_code for r in responses} <= {400, 200, 429}


_JSON = {"content-type": "application/json"}
