"""Transactions as they land on Solana, end to end: a chain process, `dexecutor up`, a
wallet per user, and solana-py's AsyncClient reading the chain as any tool would.

Blockhashes here are valid 20 slots (8 s) and unconfirmed transactions are sent again
every 400 ms, so a dropped transaction's expiry, and a late one's rebroadcasts, take
seconds. The deployment is this module's own: armed faults are taken by whichever
order reaches the chain next.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from decimal import Decimal
from uuid import UUID

import asyncpg
import httpx
import pytest
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from dexecutor.domain.money import price_of
from tests.support import (
    Isolated,
    Process,
    chained,
    connected,
    executed,
    free_port,
    isolated,
    serving,
    statuses,
    wallet_balances,
)

BLOCKHASH_SLOTS = 20
SOL = Decimal("0.000000001")  # one lamport


@pytest.fixture(scope="module")
async def iso() -> AsyncIterator[Isolated]:
    async with isolated("dxtx") as made:
        yield made


@pytest.fixture(scope="module")
async def deployment(iso: Isolated) -> AsyncIterator[tuple[Process, Process]]:
    chain, env = chained(iso.env(CHAIN_BLOCKHASH_SLOTS=str(BLOCKHASH_SLOTS)))
    up = Process("up", {**env, "REBROADCAST_MS": "400", "MAX_ATTEMPTS": "3"}, port=free_port())
    async with serving(chain, up):
        yield chain, up


@pytest.fixture
async def api(deployment: tuple[Process, Process]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=deployment[1].url, timeout=30) as client:
        yield client
        await client.delete("/api/mock/faults")


@pytest.fixture
async def rpc(deployment: tuple[Process, Process]) -> AsyncIterator[AsyncClient]:
    client = AsyncClient(deployment[0].url)
    yield client
    await client.close()


@pytest.fixture
async def db(iso: Isolated) -> AsyncIterator[asyncpg.Connection]:
    async with connected(iso.dsn) as conn:
        yield conn


async def arm(api: httpx.AsyncClient, **fault: object) -> None:
    response = await api.post("/api/mock/faults", json=fault)
    assert response.status_code == 201, response.text


async def chain_txs(db: asyncpg.Connection, order_id: str) -> list[tuple[int, str]]:
    rows = await db.fetch(
        "SELECT attempt, status FROM chain_txs WHERE order_id = $1 ORDER BY received_at",
        UUID(order_id),
    )
    return [(r["attempt"], r["status"]) for r in rows]


async def broadcasts(up: Process) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=up.url) as client:
        text = (await client.get("/metrics")).text
    found = re.findall(r'^dexecutor_tx_broadcasts_total\{kind="(\w+)"\} (\S+)$', text, re.M)
    return {kind: float(value) for kind, value in found}


async def test_a_confirmed_swap_is_signed_by_the_wallet_and_moves_exactly_its_amounts(
    api: httpx.AsyncClient, rpc: AsyncClient
) -> None:
    user = "signer"
    wallet, before = await wallet_balances(api, user)
    events, record = await executed(api, userId=user, tokenIn="SOL", tokenOut="USDC", amountIn=1.5)
    assert statuses(events) == ["pending", "routing", "building", "submitted", "confirmed"]
    submitted, confirmed = events[3], events[4]

    # The txHash is the transaction's ed25519 signature by the wallet over its message.
    signature = Signature.from_string(record["txHash"])
    fetched = await rpc.get_transaction(signature, encoding="base64", commitment=Confirmed)
    assert fetched.value is not None and fetched.value.slot == confirmed["slot"] == record["slot"]
    tx = fetched.value.transaction.transaction
    assert isinstance(tx, VersionedTransaction)
    assert tx.message.account_keys[0] == Pubkey.from_string(wallet)
    assert tx.signatures[0] == signature
    assert signature.verify(Pubkey.from_string(wallet), bytes(tx.message))
    assert not signature.verify(Pubkey.from_string(wallet), bytes(tx.message) + b"x")

    # The submitted event says what was bid and until when the transaction is valid.
    assert submitted["lastValidBlockHeight"] >= submitted["slot"]
    assert submitted["computeUnitLimit"] > 0 and submitted["computeUnitPrice"] >= 0
    priority = -(-submitted["computeUnitLimit"] * submitted["computeUnitPrice"] // 10**6)
    detail = confirmed["networkFeeDetail"]
    assert detail == {"base": Decimal("0.000005"), "priority": priority * SOL, "rent": 0}
    assert confirmed["networkFee"] == detail["base"] + detail["priority"]
    assert fetched.value.transaction.meta is not None
    assert fetched.value.transaction.meta.fee * SOL == confirmed["networkFee"]
    assert confirmed["commitment"] == "confirmed"
    assert confirmed["finalizedAtSlot"] == confirmed["slot"] + 32
    assert confirmed["venueFee"]["token"] == "SOL" and confirmed["venueFee"]["amount"] > 0
    assert confirmed["effectivePrice"] < confirmed["executedPrice"]
    for name in ("slot", "networkFee", "venueFee", "effectivePrice", "priceImpact", "commitment"):
        assert record[name] == confirmed[name], name

    # The wallet paid exactly the input and the fee, and received exactly the output.
    _, after = await wallet_balances(api, user)
    assert after["SOL"] == before["SOL"] - Decimal("1.5") - confirmed["networkFee"]
    assert after["USDC"] == before["USDC"] + confirmed["amountOut"]


async def test_a_swap_into_a_token_the_wallet_lacks_pays_the_new_account_s_rent(
    api: httpx.AsyncClient,
) -> None:
    user = "renter"
    _, before = await wallet_balances(api, user)
    assert "JUP" not in before
    events, record = await executed(api, userId=user, tokenIn="SOL", tokenOut="JUP", amountIn=1)
    assert record["status"] == "confirmed", events
    confirmed = events[-1]
    assert confirmed["networkFeeDetail"]["rent"] == Decimal("0.00203928")
    assert confirmed["networkFee"] == sum(confirmed["networkFeeDetail"].values())
    _, after = await wallet_balances(api, user)
    assert after["SOL"] == before["SOL"] - 1 - confirmed["networkFee"]
    assert after["JUP"] == confirmed["amountOut"]
    # The rent is counted in what the swap cost: the effective price is below the fill's.
    assert confirmed["effectivePrice"] == price_of(
        confirmed["amountOut"], 1 + confirmed["networkFee"]
    )


async def test_a_dropped_transaction_is_rebroadcast_then_re_signed_only_after_expiry(
    api: httpx.AsyncClient, db: asyncpg.Connection, deployment: tuple[Process, Process]
) -> None:
    sent_before = await broadcasts(deployment[1])
    await arm(api, venue="all", kind="drop", count=1)
    events, record = await executed(api, userId="dropper")
    assert statuses(events) == [
        "pending", "routing", "building", "submitted", "retrying",
        "routing", "building", "submitted", "confirmed",
    ]  # fmt: skip
    first, retry, second = events[3], events[4], events[7]
    assert (retry["reason"], retry["retryable"]) == ("blockhash_expired", True)
    assert "txHash" not in retry  # it never landed: nothing was paid
    # Re-signed only once the chain was past the first transaction's validity.
    assert second["txHash"] != first["txHash"]
    assert second["slot"] > first["lastValidBlockHeight"]
    # Meanwhile its same bytes went out again, a few times, and never ran.
    rebroadcasts = (await broadcasts(deployment[1])).get("rebroadcast", 0)
    assert rebroadcasts - sent_before.get("rebroadcast", 0) >= 3
    rows = await chain_txs(db, record["orderId"])
    assert rows[1:] == [(2, "landed")] and rows[0][0] == 1 and rows[0][1] in ("dropped", "expired")
    assert record["status"] == "confirmed" and record["txHash"] == second["txHash"]


async def test_a_late_transaction_lands_once_while_it_is_being_rebroadcast(
    api: httpx.AsyncClient, db: asyncpg.Connection, deployment: tuple[Process, Process]
) -> None:
    sent_before = await broadcasts(deployment[1])
    await arm(api, venue="all", kind="late", slots=6, count=1)
    events, record = await executed(api, userId="latecomer")
    assert statuses(events) == ["pending", "routing", "building", "submitted", "confirmed"]
    assert events[4]["slot"] >= events[3]["slot"] + 6
    rebroadcasts = (await broadcasts(deployment[1])).get("rebroadcast", 0)
    assert rebroadcasts - sent_before.get("rebroadcast", 0) >= 2
    assert await chain_txs(db, record["orderId"]) == [(1, "landed")]


async def test_a_reverted_swap_pays_its_fee_and_fails_slippage_exceeded(
    api: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    user = "reverter"
    _, before = await wallet_balances(api, user)
    await arm(api, venue="all", kind="price", bps=-900, count=3)
    events, record = await executed(api, userId=user, slippageBps=50)
    reverts = [e for e in events if e["status"] in ("retrying", "failed")]
    assert reverts and all(e["reason"] == "slippage_exceeded" for e in reverts)
    landed = [e for e in reverts if "txHash" in e]
    assert landed, reverts
    paid = Decimal(0)
    for event in landed:
        assert event["slot"] > 0
        assert event["networkFee"] >= Decimal("0.000005")
        assert event["networkFeeDetail"]["rent"] == 0
        assert "0x1771" in event["message"]
        paid += event["networkFee"]
    fill = record["networkFee"] if record["status"] == "confirmed" else Decimal(0)
    spent = record["amountIn"] if record["status"] == "confirmed" else Decimal(0)
    _, after = await wallet_balances(api, user)
    assert after["SOL"] == before["SOL"] - paid - fill - spent
    rows = await chain_txs(db, record["orderId"])
    assert [s for _, s in rows].count("reverted") == len(landed)
