"""How transactions land on the chain: lost broadcasts, rebroadcasts, expiry, faults, the model."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any
from uuid import uuid4

from dexecutor.chain.accounts import NATIVE
from dexecutor.chain.cluster import Cluster
from dexecutor.chain.landing import Congestion
from dexecutor.chain.records import ChainTx
from dexecutor.chain.server import _status
from dexecutor.chain.service import open_cluster
from tests.integration.conftest import chain_settings
from tests.integration.test_chain import funded, settled, signed


async def pending(cluster: Cluster, signature: str) -> ChainTx:
    tx = cluster._txs[signature]
    assert tx.status == "pending", tx
    return tx


async def slots_pass(cluster: Cluster, n: int) -> None:
    """Wait until the slot clock moved on `n` slots."""
    for _ in range(n):
        await asyncio.sleep(cluster.clock.until_next() + 0.005)


def status(tx: ChainTx, slot: int) -> dict[str, Any]:
    answer = _status(tx, slot)
    assert answer is not None
    return answer


async def fills(cluster: Cluster) -> list[str]:
    return [a.data["signature"] for a in await cluster._store.actions() if a.kind == "fill"]


async def test_a_lost_broadcast_lands_when_it_is_sent_again(chain_dsn: str) -> None:
    settings = chain_settings(chain_dsn, mock_failure_rate=1.0)  # every broadcast lost
    async with open_cluster(settings) as cluster:
        wallet = await funded(cluster)
        payload = signed(cluster, wallet)
        signature = await cluster.send(payload)
        await slots_pass(cluster, 2)
        assert (await pending(cluster, signature)).lands_at is None
        (lost,) = await cluster.statuses([signature])
        assert _status(lost, cluster.slot()) is None  # lost: no status, as on Solana
        cluster._lat = replace(cluster._lat, failure_rate=0.0)  # the network recovers
        assert await cluster.send(payload) == signature  # a rebroadcast, same signature
        assert (await settled(cluster, signature)).status == "landed"
        for _ in range(3):
            await cluster.send(payload)  # once landed, more broadcasts change nothing
        assert await fills(cluster) == [signature]


async def test_a_dropped_transaction_never_lands_and_frees_its_order_at_expiry(
    chain_dsn: str,
) -> None:
    settings = chain_settings(chain_dsn, chain_blockhash_slots=3)
    async with open_cluster(settings) as cluster:
        wallet = await funded(cluster)
        owner = str(wallet.pubkey())
        order = uuid4()
        cluster.faults.arm("raydium", "drop", count=1, duration_ms=None, bps=0)
        payload = signed(cluster, wallet, order=order)
        signature = await cluster.send(payload)
        tx = await pending(cluster, signature)
        assert tx.fault == "drop" and tx.last_valid is not None
        while cluster.slot() <= tx.last_valid:
            await cluster.send(payload)  # rebroadcasts: all lost
            await asyncio.sleep(0.1)
        await slots_pass(cluster, 1)
        dead = await settled(cluster, signature)
        assert dead.status == "dropped" and dead.slot is None
        assert await cluster.send(payload) == signature  # after expiry: accepted, inert
        (after,) = await cluster.statuses([signature])
        assert after is not None and after.status == "dropped"
        assert cluster.accounts.lamports(owner) == 10 * 10**9  # it never landed: no fee
        # Only now may the order sign again: a new blockhash, a new signature.
        retry = await cluster.send(signed(cluster, wallet, order=order, attempt=2))
        assert (await settled(cluster, retry)).status == "landed"
        assert await fills(cluster) == [retry]


async def test_a_late_transaction_lands_when_the_fault_says_even_if_resent(
    chain_dsn: str,
) -> None:
    settings = chain_settings(chain_dsn, chain_blockhash_slots=20)
    async with open_cluster(settings) as cluster:
        wallet = await funded(cluster)
        cluster.faults.arm("meteora", "late", count=1, duration_ms=None, bps=0, slots=4)
        payload = signed(cluster, wallet, "meteora")
        signature = await cluster.send(payload)
        tx = await pending(cluster, signature)
        assert tx.lands_at == tx.received_slot + 4
        await cluster.send(payload)
        landed = await settled(cluster, signature)
        assert landed.status == "landed" and landed.slot == tx.received_slot + 4


async def test_a_transaction_due_after_its_blockhash_expired_never_lands(chain_dsn: str) -> None:
    settings = chain_settings(chain_dsn, chain_blockhash_slots=2)
    async with open_cluster(settings) as cluster:
        wallet = await funded(cluster)
        cluster.faults.arm("raydium", "late", count=1, duration_ms=None, bps=0, slots=6)
        signature = await cluster.send(signed(cluster, wallet))
        expired = await settled(cluster, signature)
        assert expired.status == "expired"
        assert await fills(cluster) == []
        assert cluster.accounts.lamports(str(wallet.pubkey())) == 10 * 10**9


async def test_the_landing_model_lands_a_well_paid_transaction_in_a_few_slots(
    chain_dsn: str,
) -> None:
    settings = chain_settings(chain_dsn, chain_landing="model", mock_seed=11)
    async with open_cluster(settings) as cluster:
        wallet = await funded(cluster)
        # What getRecentPrioritizationFees reports is the model's fee market.
        slot = cluster.slot()
        fees = cluster.recent_fees()
        assert fees == Congestion(cluster.market.seed).recent_fees(slot)
        bid = max(fee for _, fee in fees) * 2 + 1  # above every recent slot's fee
        payload = signed(cluster, wallet, price=bid)
        signature = await cluster.send(payload)
        async with asyncio.timeout(20):
            while (await cluster.statuses([signature]))[0] is None:
                await cluster.send(payload)  # rebroadcast, as a client does, until it lands
                await asyncio.sleep(0.2)
        landed = await settled(cluster, signature)
        assert landed.status == "landed"
        assert landed.slot is not None and landed.slot > landed.received_slot  # a later slot
        assert await fills(cluster) == [signature]
        fee = 5000 + -(-140_000 * bid // 10**6)
        assert cluster.accounts.lamports(str(wallet.pubkey())) == (
            10 * 10**9 - 2 * 10**9 - fee - 2_039_280
        )
        assert cluster.accounts.token(str(wallet.pubkey()), NATIVE) is not None


async def test_statuses_rise_from_processed_to_confirmed(chain_dsn: str) -> None:
    settings = chain_settings(chain_dsn, mock_swap_latency_ms="0")
    async with open_cluster(settings) as cluster:
        wallet = await funded(cluster)
        signature = await cluster.send(signed(cluster, wallet))
        landed = await settled(cluster, signature)
        assert landed.slot is not None
        levels = [status(landed, landed.slot + age) for age in (0, 1, 31, 32)]
        assert [s["confirmationStatus"] for s in levels] == [
            "processed", "confirmed", "confirmed", "finalized",
        ]  # fmt: skip
        assert [s["confirmations"] for s in levels] == [0, 1, 31, None]


async def test_a_late_transaction_still_lands_after_a_restart_and_only_once(
    chain_dsn: str,
) -> None:
    settings = chain_settings(chain_dsn, chain_blockhash_slots=30)
    async with open_cluster(settings) as first:
        wallet = await funded(first)
        first.faults.arm("raydium", "late", count=1, duration_ms=None, bps=0, slots=6)
        payload = signed(first, wallet)
        signature = await first.send(payload)
        due = (await pending(first, signature)).lands_at
    async with open_cluster(settings) as second:  # the chain went down before it landed
        assert (await pending(second, signature)).lands_at == due
        assert await second.send(payload) == signature  # rebroadcast after the restart
        landed = await settled(second, signature)
        assert landed.status == "landed" and landed.slot == due
        assert await fills(second) == [signature]
