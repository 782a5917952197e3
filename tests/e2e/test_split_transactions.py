"""Split routes and exact-out orders through real signed transactions, end to end: a
chain process, `dexecutor up`, a wallet per user, and solana-py's AsyncClient reading
what landed as any tool would.

A split route is ONE transaction (the router's instruction, every leg in it, the
minimum on the total); an exact-out order is the router's (or the venue's) swap-base-out
and spends, on chain, at most its maximum. The wallets' balances move by exactly what
the confirmed events say.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from dexecutor.chain import transaction as txn
from dexecutor.domain.money import price_of
from dexecutor.market.fees import venue_fee
from tests.support import Process, deployed, executed, statuses, wallet_balances

SOL = Decimal("0.000000001")  # one lamport


@pytest.fixture(scope="module")
async def deployment() -> AsyncIterator[tuple[Process, Process]]:
    async with deployed("dxsplit") as made:
        yield made


@pytest.fixture
async def api(deployment: tuple[Process, Process]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=deployment[1].url, timeout=30) as client:
        yield client


@pytest.fixture
async def rpc(deployment: tuple[Process, Process]) -> AsyncIterator[AsyncClient]:
    client = AsyncClient(deployment[0].url)
    yield client
    await client.close()


async def landed(rpc: AsyncClient, tx_hash: str, wallet: str) -> tuple[txn.SwapTx, Any, int]:
    """The landed transaction: what it says (decoded), its meta, its swap's program tag."""
    fetched = await rpc.get_transaction(
        Signature.from_string(tx_hash), encoding="base64", commitment=Confirmed
    )
    assert fetched.value is not None
    tx = fetched.value.transaction.transaction
    assert isinstance(tx, VersionedTransaction)
    keys = tx.message.account_keys
    assert keys[0] == Pubkey.from_string(wallet) and len(tx.signatures) == 1
    assert tx.signatures[0].verify(keys[0], bytes(tx.message))
    swap_ix = tx.message.instructions[2]
    swap, _ = txn.decode(base64.b64encode(bytes(tx)).decode())
    meta = fetched.value.transaction.meta
    assert meta is not None and meta.err is None
    program = keys[swap_ix.program_id_index]
    tag = bytes(swap_ix.data)[0]
    return swap, (meta, program), tag


async def test_a_large_order_splits_and_lands_as_one_router_transaction(
    api: httpx.AsyncClient, rpc: AsyncClient
) -> None:
    user = "splitter"
    wallet, before = await wallet_balances(api, user)
    events, record = await executed(
        api, userId=user, tokenIn="SOL", tokenOut="USDC", amountIn=20_000, slippageBps=100
    )
    assert record["status"] == "confirmed", events
    # One attempt, one transaction: routed, built, submitted once, confirmed.
    assert statuses(events) == ["pending", "routing", "building", "submitted", "confirmed"]
    legs = record["routePlan"]
    assert len(legs) >= 2 and record["splitGainBps"] > 0
    confirmed = events[-1]

    swap, (meta, program), tag = await landed(rpc, record["txHash"], wallet)
    # The router's instruction carries every leg, on the venues and paths planned.
    assert program == txn.ROUTER_PROGRAM and tag == txn.ROUTE
    assert swap.is_split and not swap.exact_out and len(swap.legs) == len(legs)
    assert sorted(leg.amount_in for leg in swap.legs) == sorted(leg["amountIn"] for leg in legs)
    assert swap.amount_in == 20_000 and swap.min_amount_out == record["minAmountOut"]
    assert swap.compute_unit_limit == txn.compute_units_for(swap.legs)
    assert meta.fee * SOL == confirmed["networkFee"]

    # Fees from the route: each leg's venue fee on its share; the impact input-weighted.
    assert confirmed["venueFee"] == {
        "amount": sum(venue_fee("SOL", leg["amountIn"], leg["fee"]) for leg in legs),
        "token": "SOL",
    }
    impact = sum(leg["priceImpact"] * leg["amountIn"] for leg in legs) / 20_000
    assert abs(confirmed["priceImpact"] - impact) < Decimal("1e-12")
    assert confirmed["amountIn"] == 20_000
    assert confirmed["executedPrice"] == price_of(confirmed["amountOut"], Decimal(20_000))
    assert record["executionQuality"]["amountIn"] == 20_000

    # The wallet paid exactly the input and the fee, and got exactly the output.
    _, after = await wallet_balances(api, user)
    assert after["SOL"] == before["SOL"] - 20_000 - confirmed["networkFee"]
    assert after["USDC"] == before["USDC"] + confirmed["amountOut"]
    assert confirmed["amountOut"] >= record["minAmountOut"]


async def test_an_exact_out_order_delivers_its_amount_and_spends_at_most_its_maximum(
    api: httpx.AsyncClient, rpc: AsyncClient
) -> None:
    user = "exact-buyer"
    wallet, before = await wallet_balances(api, user)
    events, record = await executed(
        api, userId=user, tokenIn="USDC", tokenOut="SOL", amountIn=None,
        swapMode="ExactOut", amountOut=25, maxAmountIn=5_000,
    )  # fmt: skip
    assert record["status"] == "confirmed", events
    confirmed = events[-1]
    assert record["amountIn"] == 5_000 and record["minAmountOut"] == 25

    swap, (meta, program), tag = await landed(rpc, record["txHash"], wallet)
    assert swap.exact_out and swap.min_amount_out == 25 and swap.amount_in == 5_000
    if swap.is_split:
        assert program == txn.ROUTER_PROGRAM and tag == txn.EXACT_OUT_ROUTE
    else:
        assert tag == txn.SWAP_BASE_OUT

    # On chain: at least the output wanted arrived, at most the maximum left.
    _, after = await wallet_balances(api, user)
    spent = before["USDC"] - after["USDC"]
    received = after["SOL"] - before["SOL"] + confirmed["networkFee"]
    assert received == confirmed["amountOut"] >= 25
    assert spent == confirmed["amountIn"] <= 5_000
    # The least input that delivers was spent, not the generous maximum sent.
    assert spent < 5_000
    assert meta.fee * SOL == confirmed["networkFee"]
    assert confirmed["executedPrice"] == price_of(confirmed["amountOut"], spent)
    assert record["executionQuality"]["amountIn"] == spent
    assert record["executionQuality"]["realisedAmountOut"] == confirmed["amountOut"]
