"""The slot length is a setting (CHAIN_SLOT_MS): the chain's clock, its commitment steps
and the engine's confirm loop all count in slots of that length.

A chain of 20 ms slots runs the 32 slots to finalization in well under a second, where
Solana's 400 ms would take 12.8 s: each bound below is far below what the default
slot length allows, so a chain still on 400 ms slots fails them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any
from uuid import uuid4

import httpx
import pytest

from dexecutor.chain.service import open_cluster, running_chain
from dexecutor.config import Settings, load_settings
from dexecutor.domain.failures import FailureReason
from dexecutor.market.venue import VenueError
from tests.integration.conftest import Chain, chain_settings, wired
from tests.integration.test_chain import OneWallet, funded, rpc, signed

SLOT_MS = 20


@pytest.fixture
async def short(chain_dsn: str) -> AsyncIterator[Chain]:
    """A chain of 20 ms slots, its blockhashes valid 200 of them (4 s, as elsewhere)."""
    settings = chain_settings(chain_dsn, chain_slot_ms=SLOT_MS, chain_blockhash_slots=200)
    async with running_chain(settings) as cluster:
        yield Chain(f"http://127.0.0.1:{settings.chain_port}", chain_dsn, cluster, settings)


async def _commitment(http: httpx.AsyncClient, signature: str) -> tuple[str, int] | None:
    answer = await rpc(http, "getSignatureStatuses", [signature])
    status = answer["result"]["value"][0]
    return None if status is None else (status["confirmationStatus"], status["slot"])


async def test_the_chain_counts_slots_of_chain_slot_ms(short: Chain) -> None:
    async with httpx.AsyncClient(base_url=short.url) as http:
        started = time.monotonic()  # before the first read: >= 24 whole slots pass
        first: int = (await rpc(http, "getSlot"))["result"]
        async with asyncio.timeout(5):
            while True:  # polling the chain over HTTP, as a client does
                if (await rpc(http, "getSlot"))["result"] >= first + 25:
                    break
                await asyncio.sleep(SLOT_MS / 1000)
        elapsed = time.monotonic() - started
    # 25 slots of 20 ms: half a second (at 400 ms they would take 10 s).
    assert 24 * SLOT_MS / 1000 <= elapsed < 2.5


async def test_a_transaction_is_confirmed_then_finalized_within_short_slots(
    short: Chain,
) -> None:
    wallet = await funded(short.cluster)
    async with httpx.AsyncClient(base_url=short.url) as http:
        answer: dict[str, Any] = await rpc(http, "getLatestBlockhash")
        value = answer["result"]["value"]
        assert value["lastValidBlockHeight"] == answer["result"]["context"]["slot"] + 200
        payload = signed(short.cluster, wallet)
        sent = await rpc(http, "sendTransaction", payload, {"encoding": "base64"})
        signature = sent["result"]
        seen: list[str] = []
        started = time.monotonic()
        async with asyncio.timeout(5):  # 32 slots of 20 ms: 0.64 s (12.8 s at 400 ms)
            while not seen or seen[-1] != "finalized":
                status = await _commitment(http, signature)
                if status is not None and (not seen or seen[-1] != status[0]):
                    seen.append(status[0])
                await asyncio.sleep(SLOT_MS / 2000)
        elapsed = time.monotonic() - started
        now: int = (await rpc(http, "getSlot"))["result"]
    assert seen[-2:] == ["confirmed", "finalized"]
    assert elapsed < 3
    landed = await _commitment_slot(short, signature)
    assert now - landed >= 32


async def _commitment_slot(chain: Chain, signature: str) -> int:
    (tx,) = await chain.cluster.statuses([signature])
    assert tx is not None and tx.slot is not None
    return tx.slot


async def test_the_engine_confirms_and_expires_at_the_chain_s_slot_length(short: Chain) -> None:
    """The confirm loop, told the slot length, confirms a swap within a few short slots
    and gives a dropped one up once the block height passed its validity."""
    made = wired(short, signer=OneWallet(await funded(short.cluster)))
    try:
        venue = made.venues["raydium"]
        tx = await venue.build(uuid4(), 1, "u", "SOL", "USDC", Decimal(1), Decimal(0))
        assert tx.last_valid_block_height - short.cluster.slot() <= 200
        await venue.send(tx)
        fill = await asyncio.wait_for(venue.confirm(tx), 3)
        assert fill.tx_hash == tx.signature and fill.amount_out > 0
        # Dropped: given up once the chain is past its 200 slots (4 s; 80 s at 400 ms).
        short.cluster.faults.arm("raydium", "drop", count=1, duration_ms=None, bps=0)
        lost = await venue.build(uuid4(), 1, "u", "SOL", "USDC", Decimal(1), Decimal(0))
        await venue.send(lost)
        with pytest.raises(VenueError) as expired:
            await asyncio.wait_for(venue.confirm(lost), 8)
        assert expired.value.reason == FailureReason.BLOCKHASH_EXPIRED
    finally:
        await made.close()


def test_the_engine_s_processes_read_the_slot_length_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHAIN_SLOT_MS", "10")
    settings = load_settings()
    assert settings.chain_slot_ms == 10 and settings.slot_s == 0.01
    # Rebroadcasts follow the slot (5 of them) unless REBROADCAST_MS says otherwise.
    assert settings.rebroadcast_s == 0.05
    assert Settings(chain_slot_ms=10, rebroadcast_ms=300).rebroadcast_s == 0.3
    monkeypatch.delenv("CHAIN_SLOT_MS")
    assert Settings().rebroadcast_s == 2.0 and Settings().slot_s == 0.4  # Solana's


async def test_a_chain_restarted_with_shorter_slots_keeps_its_market_time(chain_dsn: str) -> None:
    """The slot numbers go on across a change of CHAIN_SLOT_MS; the market's time must
    not go back with them (a market behind its own fills would stand still)."""
    async with open_cluster(chain_settings(chain_dsn)) as first:
        await first.jump("raydium", "SOL", 50)
        jumped = first.market.now
        assert jumped >= 0.4  # slot 1 or later, at 400 ms
    async with open_cluster(chain_settings(chain_dsn, chain_slot_ms=1)) as second:
        assert second.market.now >= jumped
        before = second.now()
        assert before >= jumped
        await asyncio.sleep(0.05)  # 50 slots of 1 ms: the market's time moves on from there
        assert second.now() >= before + 0.04
