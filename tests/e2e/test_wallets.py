"""Custodial wallets on real processes: starting balances, the faucet, the pre-trade
check, reservations, and the secret at rest.

A deployment of its own (chain, API and worker), with the development default funding
(no DEV_FUNDING) and a WALLET_KEY the test knows, so it can open a stored secret.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from dexecutor import jsoncodec
from dexecutor.domain.order import Order, OrderStatus, OrderType, first_event
from dexecutor.engine.triggers import trigger_of
from dexecutor.store.orders import OrderRepository
from dexecutor.wallets import SecretBox, secret_context
from tests.e2e.test_client_cli_logs import run_cli
from tests.support import (
    DEXECUTOR,
    Process,
    chained,
    cli_env,
    connected,
    free_port,
    isolated,
    order_body,
    serving,
    unrecorded_txs,
    wait_terminal,
)


@dataclass
class Deployment:
    client: httpx.AsyncClient
    dsn: str
    key: bytes
    logs: list[Process]


@pytest.fixture(scope="module")
async def deployment() -> AsyncIterator[Deployment]:
    key = secrets.token_bytes(32)
    async with isolated("dxw") as iso:
        env = iso.env(
            TRIGGER_INTERVAL_MS="100",
            RECONCILE_INTERVAL_MS="500",
            WALLET_KEY=base64.b64encode(key).decode(),
        )
        del env["DEV_FUNDING"]  # the development default
        chain, env = chained(env)
        api = Process("api", env, port=free_port())
        worker = Process("worker", env)
        async with (
            serving(chain, api, worker),
            httpx.AsyncClient(base_url=api.url, timeout=30) as client,
        ):
            yield Deployment(client, iso.dsn, key, [api, worker])


def decoded(response: httpx.Response) -> Any:
    return jsoncodec.loads(response.content)


async def balances(client: httpx.AsyncClient, user: str) -> dict[str, Any]:
    response = await client.get("/api/balances", params={"userId": user})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = decoded(response)
    return body


async def place(client: httpx.AsyncClient, **fields: Any) -> httpx.Response:
    return await client.post(
        "/api/orders/execute",
        content=jsoncodec.dumps(order_body(**fields)),
        headers={"content-type": "application/json"},
    )


async def test_a_new_development_user_starts_with_1000_sol_and_100000_usdc(
    deployment: Deployment,
) -> None:
    body = await balances(deployment.client, "newcomer")
    assert body["userId"] == "newcomer"
    Pubkey.from_string(body["wallet"])  # a real address
    assert body["balances"] == {
        "SOL": {"total": 1000, "available": 1000, "reserved": 0},
        "USDC": {"total": 100000, "available": 100000, "reserved": 0},
    }
    again = await balances(deployment.client, "newcomer")
    assert again == body  # made and funded once


async def test_the_cli_shows_the_balances(deployment: Deployment) -> None:
    url = str(deployment.client.base_url)
    await balances(deployment.client, "clier")
    code, out = await run_cli("balances", "--user", "clier", "--json", url=url)
    assert code == 0, out
    assert jsoncodec.loads(out) == await balances(deployment.client, "clier")
    code, out = await run_cli("balances", "--user", "clier", url=url)
    assert code == 0, out
    assert "clier" in out and "SOL" in out and "100000" in out and "available" in out


async def test_balances_without_a_user_is_a_400(deployment: Deployment) -> None:
    response = await deployment.client.get("/api/balances")
    assert response.status_code == 400
    assert response.json()["error"] == "validation_error"


async def test_an_airdrop_adds_to_the_wallet(deployment: Deployment) -> None:
    response = await deployment.client.post(
        "/api/mock/airdrop", json={"userId": "dropped", "token": "RAY", "amount": 25.5}
    )
    assert response.status_code == 200, response.text
    after = decoded(response)
    assert after["balances"]["RAY"] == {"total": Decimal("25.5"), "available": Decimal("25.5"),
                                        "reserved": 0}  # fmt: skip
    response = await deployment.client.post(
        "/api/mock/airdrop", json={"userId": "dropped", "token": "sol", "amount": "0.000000001"}
    )
    assert response.status_code == 200, response.text
    assert (await balances(deployment.client, "dropped"))["balances"]["SOL"]["total"] == Decimal(
        "1000.000000001"
    )


@pytest.mark.parametrize(
    "body",
    [
        {"userId": "careful", "token": "DOGE", "amount": 1},
        {"userId": "careful", "token": "USDC", "amount": 0},
        {"userId": "careful", "token": "USDC", "amount": -5},
        {"userId": "careful", "token": "USDC", "amount": "0.0000001"},
        {"userId": "careful", "token": "USDC", "amount": True},
        {"userId": "careful", "token": "USDC", "amount": "lots"},
        {"userId": "careful", "token": "USDC"},
        {"userId": "careful", "amount": 1},
        {"userId": "careful", "token": "USDC", "amount": 1, "extra": 1},
        {"userId": "bad user!", "token": "USDC", "amount": 1},
        {"token": "USDC", "amount": 1},
        [1, 2],
        "not json",
    ],
    ids=[
        "unknown-token",
        "zero",
        "negative",
        "decimals",
        "bool",
        "text",
        "no-amount",
        "no-token",
        "extra-field",
        "bad-user",
        "no-user",
        "array",
        "not-json",
    ],
)
async def test_a_bad_airdrop_is_a_400_and_changes_nothing(
    deployment: Deployment, body: Any
) -> None:
    before = await balances(deployment.client, "careful")
    content = body.encode() if isinstance(body, str) else jsoncodec.dumps(body)
    response = await deployment.client.post(
        "/api/mock/airdrop", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert set(response.json()) >= {"error", "message"}
    assert await balances(deployment.client, "careful") == before


async def test_an_unfunded_order_fails_insufficient_funds_and_sends_no_swap(
    deployment: Deployment,
) -> None:
    client = deployment.client
    await balances(client, "skint")  # 1,000 SOL: all of it leaves nothing for the fee
    failures = []
    for fields in (
        {"tokenIn": "SOL", "amountIn": 1000},
        {"tokenIn": "USDC", "tokenOut": "SOL", "amountIn": 100001},
        {"tokenIn": "JUP", "tokenOut": "USDC", "amountIn": 1},  # holds no JUP at all
    ):
        response = await place(client, userId="skint", **fields)
        assert response.status_code == 202, response.text
        record = await wait_terminal(client, response.json()["orderId"])
        assert (record["status"], record["failReason"]) == ("failed", "insufficient_funds")
        assert record["txHash"] is None and record["attempts"] == 1
        failures.append(record["orderId"])
    events = decoded(await client.get(f"/api/orders/{failures[0]}/events"))["events"]
    assert [e["status"] for e in events] == ["pending", "routing", "failed"]
    assert events[-1]["retryable"] is False
    assert "1000 SOL" in events[-1]["message"] and "network fee" in events[-1]["message"]
    async with connected(deployment.dsn) as conn:
        sent = await conn.fetchval(
            "SELECT count(*) FROM chain_txs WHERE order_id = ANY($1::uuid[])", failures
        )
        assert sent == 0
        assert await unrecorded_txs(conn) == []
    after = await balances(client, "skint")
    assert after["balances"]["SOL"]["total"] == 1000  # not even a fee was paid


async def test_a_waiting_order_reserves_its_input_and_cancel_releases_it(
    deployment: Deployment,
) -> None:
    client = deployment.client
    far = {"type": "limit", "tokenIn": "SOL", "limitPrice": 1_000_000}  # never fires
    first = await place(client, userId="saver", amountIn=600, **far)
    assert first.status_code == 202, first.text
    first_id = first.json()["orderId"]
    held = (await balances(client, "saver"))["balances"]["SOL"]
    assert held == {"total": 1000, "available": 400, "reserved": 600}

    # A second waiting order that would overdraw is refused at placement, stored nowhere.
    second = await place(client, userId="saver", amountIn=600, **far)
    assert second.status_code == 422, second.text
    assert second.json()["error"] == "insufficient_funds"
    listed = decoded(await client.get("/api/orders", params={"userId": "saver"}))["orders"]
    assert [o["orderId"] for o in listed] == [first_id]

    # A market order for the same amount is accepted, then fails before any swap.
    market = await place(client, userId="saver", amountIn=600)
    assert market.status_code == 202
    record = await wait_terminal(client, market.json()["orderId"])
    assert record["failReason"] == "insufficient_funds"
    events = decoded(await client.get(f"/api/orders/{record['orderId']}/events"))["events"]
    assert "600 SOL reserved by waiting orders" in events[-1]["message"]

    cancelled = await client.delete(f"/api/orders/{first_id}")
    assert cancelled.status_code == 200, cancelled.text
    freed = (await balances(client, "saver"))["balances"]["SOL"]
    assert freed == {"total": 1000, "available": 1000, "reserved": 0}
    again = await place(client, userId="saver", amountIn=600, **far)
    assert again.status_code == 202, again.text


async def test_a_limit_order_that_fires_unfunded_fails_insufficient_funds(
    deployment: Deployment,
) -> None:
    """Stored as intake stores it but without the placement check (as if placed before
    the wallet was drained): the engine's check stops it when it fires."""
    now = datetime.now(UTC)
    order = Order(
        id=uuid4(), user_id="drained", type=OrderType.LIMIT, token_in="JUP", token_out="USDC",
        amount_in=Decimal(5), slippage_bps=100, created_at=now, updated_at=now, seq=1,
        limit_price=Decimal("0.000001"),  # marketable: fires at the next tick
    )  # fmt: skip
    pool = await asyncpg.create_pool(deployment.dsn, min_size=1, max_size=2)
    try:
        repo = OrderRepository(pool)
        await repo.create(order, first_event(order))
        await repo.append(order, order.event(OrderStatus.WAITING, now, trigger=trigger_of(order)))
    finally:
        await pool.close()
    record = await wait_terminal(deployment.client, str(order.id))
    assert (record["status"], record["failReason"]) == ("failed", "insufficient_funds")
    events = decoded(await deployment.client.get(f"/api/orders/{order.id}/events"))["events"]
    assert [e["status"] for e in events] == ["pending", "waiting", "routing", "failed"]
    async with connected(deployment.dsn) as conn:
        assert (
            await conn.fetchval("SELECT count(*) FROM chain_txs WHERE order_id = $1", order.id) == 0
        )


async def test_a_retried_placement_with_its_key_replays_instead_of_being_refused(
    deployment: Deployment,
) -> None:
    body = jsoncodec.dumps(
        order_body(userId="steady", type="limit", amountIn=900, limitPrice=1_000_000)
    )
    headers = {"content-type": "application/json", "idempotency-key": "k-900"}
    first = await deployment.client.post("/api/orders/execute", content=body, headers=headers)
    retry = await deployment.client.post("/api/orders/execute", content=body, headers=headers)
    assert (first.status_code, retry.status_code) == (202, 202), retry.text
    assert retry.json()["orderId"] == first.json()["orderId"]
    assert retry.headers["Idempotent-Replayed"] == "true"


async def test_the_wallet_secret_is_stored_encrypted(deployment: Deployment) -> None:
    wallet = (await balances(deployment.client, "vaulted"))["wallet"]
    async with connected(deployment.dsn) as conn:
        row = await conn.fetchrow(
            "SELECT pubkey, secret FROM wallets WHERE user_id = $1", "vaulted"
        )
    assert row is not None and row["pubkey"] == wallet
    stored = bytes(row["secret"])
    seed = SecretBox(deployment.key).open(stored, secret_context("vaulted", wallet))
    keypair = Keypair.from_seed(seed)
    assert str(keypair.pubkey()) == wallet
    for form in (seed, bytes(keypair), str(keypair).encode(), seed.hex().encode()):
        assert form not in stored
    # Nor in any log line of the processes that made and used it.
    for proc in deployment.logs:
        text = proc.log_path.read_bytes()
        assert str(keypair).encode() not in text and seed.hex().encode() not in text


@pytest.mark.parametrize("role", ["api", "worker"])
def test_production_without_a_wallet_key_refuses_to_start(role: str) -> None:
    env = cli_env(ENV="production", DATABASE_URL="postgresql://127.0.0.1:1/none",
                  REDIS_URL="redis://127.0.0.1:1")  # fmt: skip
    env.pop("WALLET_KEY", None)
    done = subprocess.run([DEXECUTOR, role], env=env, capture_output=True, timeout=60)
    assert done.returncode == 2, done
    assert b"WALLET_KEY: required in production" in done.stderr


def test_a_malformed_wallet_key_is_refused_at_start() -> None:
    env = cli_env(WALLET_KEY="c2hvcnQ=", DATABASE_URL="postgresql://127.0.0.1:1/none")
    done = subprocess.run([DEXECUTOR, "api"], env=env, capture_output=True, timeout=60)
    assert done.returncode == 2
    assert b"WALLET_KEY" in done.stderr and b"32 bytes" in done.stderr
    assert "c2hvcnQ" not in os.fsdecode(done.stderr)  # the key is not echoed back
