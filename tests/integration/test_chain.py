"""The chain service on real PostgreSQL: its protocol, its ledger's rules, its restarts."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from uuid import uuid4

import httpx
import pytest

from dexecutor.chain import protocol as p
from dexecutor.chain.client import ChainClient, ChainVenue
from dexecutor.chain.cluster import market_time
from dexecutor.chain.service import open_cluster
from dexecutor.market.types import VENUES
from dexecutor.market.venue import SubmitRefused, VenueError
from tests.integration.conftest import Chain, chain_settings

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"


async def rpc(client: httpx.AsyncClient, method: str, *params: object) -> dict[str, object]:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    answer: dict[str, object] = (await client.post("/", json=body)).json()
    return answer


async def test_quotes_take_jupiters_shape_and_can_be_held_to_one_venue(chain: Chain) -> None:
    async with httpx.AsyncClient(base_url=chain.url) as client:
        params = {"inputMint": SOL, "outputMint": USDC, "amount": "2000000000", "slippageBps": "50"}
        best = (await client.get("/quote", params=params)).json()
        shape = {
            "inputMint", "inAmount", "outputMint", "outAmount", "otherAmountThreshold",
            "swapMode", "slippageBps", "priceImpactPct", "routePlan", "contextSlot",
        }  # fmt: skip
        assert shape <= set(best)
        assert best["inAmount"] == "2000000000" and best["swapMode"] == "ExactIn"
        assert int(best["otherAmountThreshold"]) == int(best["outAmount"]) * 9950 // 10000
        leg = best["routePlan"][0]
        assert leg["percent"] == 100
        assert {"ammKey", "label", "inputMint", "outputMint", "inAmount", "outAmount",
                "feeAmount", "feeMint"} <= set(leg["swapInfo"])  # fmt: skip
        per_venue = {}
        for label in ("Raydium", "Meteora DLMM"):
            answer = (await client.get("/quote", params={**params, "dexes": label})).json()
            assert answer["routePlan"][0]["swapInfo"]["label"] == label
            per_venue[label] = int(answer["outAmount"])
        assert int(best["outAmount"]) == max(per_venue.values())
        unknown = await client.get("/quote", params={**params, "dexes": "Orca"})
        assert unknown.status_code == 400 and unknown.json()["errorCode"] == "INVALID_REQUEST"


async def test_rpc_answers_in_solanas_shapes(chain: Chain) -> None:
    async with httpx.AsyncClient(base_url=chain.url) as client:
        assert (await rpc(client, "getHealth"))["result"] == "ok"
        slot = (await rpc(client, "getSlot"))["result"]
        assert isinstance(slot, int)
        epoch = (await rpc(client, "getEpochInfo"))["result"]
        assert isinstance(epoch, dict) and epoch["slotsInEpoch"] == p.SLOTS_PER_EPOCH
        assert epoch["epoch"] * p.SLOTS_PER_EPOCH + epoch["slotIndex"] == epoch["absoluteSlot"]
        latest = (await rpc(client, "getLatestBlockhash"))["result"]
        assert isinstance(latest, dict)
        assert set(latest["value"]) == {"blockhash", "lastValidBlockHeight"}
        assert latest["value"]["lastValidBlockHeight"] >= slot + p.BLOCKHASH_VALID_SLOTS
        too_many = await rpc(client, "getSignatureStatuses", ["x"] * 257)
        assert too_many["error"]["code"] == p.RPC_INVALID_PARAMS  # type: ignore[index]
        unknown = (await rpc(client, "getSignatureStatuses", ["nope"]))["result"]
        assert unknown["value"] == [None]  # type: ignore[index]
        assert (await rpc(client, "getTransaction", "nope"))["result"] is None
        pool = p.pool_address("raydium", "SOL", "USDC")
        account = (await rpc(client, "getAccountInfo", pool, {"encoding": "jsonParsed"}))["result"]
        value = account["value"]  # type: ignore[index]
        assert value["owner"] == p.PROGRAMS["raydium"]
        assert value["data"]["parsed"]["info"]["baseMint"] == SOL
        batch = await client.post(
            "/",
            json=[
                {"jsonrpc": "2.0", "id": 1, "method": "getSlot"},
                {"jsonrpc": "2.0", "id": 2, "method": "noSuchMethod"},
            ],
        )
        answers = batch.json()
        assert answers[0]["id"] == 1 and "result" in answers[0]
        assert answers[1]["error"]["code"] == p.RPC_METHOD_NOT_FOUND


async def test_a_signature_runs_once_and_an_order_has_one_live_swap(chain: Chain) -> None:
    client = ChainClient(chain.url, poll_s=0.01)
    try:
        venue = ChainVenue("raydium", client)
        order = uuid4()
        tx = await venue.build(order, 1, "SOL", "USDC", Decimal(2), Decimal(1))
        await asyncio.gather(*(venue.send(tx) for _ in range(5)))
        fill = await venue.confirm(tx.signature)
        await venue.send(tx)  # once more, after it landed: still that one swap
        other = await venue.build(order, 2, "SOL", "USDC", Decimal(2), Decimal(1))
        with pytest.raises(SubmitRefused):  # the order's swap landed: no second one
            await venue.send(other)
        landed = await chain.cluster.statuses([tx.signature, other.signature])
        assert landed[0] is not None and landed[0].amount_out == fill.amount_out
        assert landed[1] is None
        fills = [
            a for a in await chain.cluster._store.actions() if a.kind == "fill"
        ]  # the market saw one fill
        assert [a.data["signature"] for a in fills] == [tx.signature]
    finally:
        await client.close()


async def test_the_minimum_out_is_enforced_where_the_swap_lands(chain: Chain) -> None:
    client = ChainClient(chain.url, poll_s=0.01)
    try:
        venue = ChainVenue("meteora", client)
        tx = await venue.build(uuid4(), 1, "SOL", "USDC", Decimal(2), Decimal(10) ** 6)
        await venue.send(tx)
        with pytest.raises(VenueError) as refused:
            await venue.confirm(tx.signature)
        assert refused.value.reason == "slippage_exceeded"
        async with httpx.AsyncClient(base_url=chain.url) as http:
            status = (await rpc(http, "getSignatureStatuses", [tx.signature]))["result"]
        err = status["value"][0]["err"]  # type: ignore[index]
        assert err == {"InstructionError": [0, {"Custom": 0x1771}]}
    finally:
        await client.close()


async def test_a_restarted_chain_has_its_fills_and_the_same_market(chain_dsn: str) -> None:
    """Replaying the journal on a fresh market rebuilds exactly the market that was."""
    settings = chain_settings(chain_dsn, mock_swap_latency_ms="0", mock_market="normal")
    async with open_cluster(settings) as first:
        for i, venue in enumerate(("raydium", "meteora", "raydium")):
            swap = p.SwapTx(venue, "SOL", "USDC", Decimal(500), Decimal(1), uuid4(), 1, "h", 10**9)
            await first.send(swap.encode())
            await asyncio.sleep(0.45 * (i + 1))  # fills at different slots
        await first.jump("meteora", "BONK", 250)
        assert not await first.launch("NOVA", "raydium")
        signature = p.signature_of(swap.encode())
    before = first.market
    async with open_cluster(settings) as second:
        restored = second.market
        at = restored.now
        before.advance(at)  # the first run's market, carried to the same moment
        for venue in VENUES:
            for pair in (("SOL", "USDC"), ("BONK", "SOL")):
                assert restored.mid_price(venue, *pair, at) == before.mid_price(venue, *pair, at)
        assert restored.is_tradable("NOVA", "raydium")
        (landed,) = await second.statuses([signature])
        assert landed is not None and landed.status == "landed"
        # Prices go on from there: the restored chain resumes after its last saved slot.
        assert at >= market_time(0) and second.slot() > 0


async def test_a_failed_transaction_sent_again_after_a_restart_stays_failed(chain_dsn: str) -> None:
    settings = chain_settings(chain_dsn, mock_swap_latency_ms="0")
    swap = p.SwapTx("raydium", "SOL", "USDC", Decimal(1), Decimal(1), uuid4(), 1, "h", 10**9)
    async with open_cluster(settings) as first:
        first.faults.arm("raydium", "drop", count=1, duration_ms=None, bps=0)
        signature = await first.send(swap.encode())
        (dropped,) = await first.statuses([signature])
        assert dropped is not None and dropped.status == "dropped"
    async with open_cluster(settings) as second:
        assert await second.send(swap.encode()) == signature  # known: not run again
        (still,) = await second.statuses([signature])
        assert still is not None and still.status == "dropped"
        assert [a for a in await second._store.actions() if a.kind == "fill"] == []
