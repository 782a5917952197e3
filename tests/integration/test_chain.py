"""The chain service on real PostgreSQL: its protocol, its ledger's rules, its restarts."""

from __future__ import annotations

import asyncio
import base64
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from solders.keypair import Keypair

from dexecutor.chain import protocol as p
from dexecutor.chain import transaction
from dexecutor.chain.accounts import NATIVE, TOKEN_PROGRAM, token_account
from dexecutor.chain.cluster import Cluster, TxRefused, market_time
from dexecutor.chain.service import open_cluster
from dexecutor.chain.transaction import LAMPORTS_PER_SIGNATURE, TOKEN_ACCOUNT_RENT
from dexecutor.market.types import VENUES
from dexecutor.market.venue import Reverted, SubmitRefused
from tests.integration.conftest import Chain, chain_settings, wired

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"


async def rpc(client: httpx.AsyncClient, method: str, *params: object) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    answer: dict[str, Any] = (await client.post("/", json=body)).json()
    return answer


def signed(
    cluster: Cluster,
    wallet: Keypair,
    venue: str = "raydium",
    token_in: str = "SOL",
    token_out: str = "USDC",
    amount: Decimal = Decimal(2),
    minimum: Decimal = Decimal(1),
    order: UUID | None = None,
    attempt: int = 1,
    price: int = 0,
) -> str:
    """A signed swap on the chain's current blockhash, base64 (what sendTransaction takes)."""
    blockhash, _ = cluster.latest_blockhash()
    swap = transaction.SwapTx.single(
        str(wallet.pubkey()), venue, token_in, token_out, amount, minimum,
        order or uuid4(), attempt, blockhash, price,
    )  # fmt: skip
    return transaction.encode(transaction.build(swap, wallet))


async def funded(cluster: Cluster, sol: int = 10) -> Keypair:
    wallet = Keypair()
    await cluster.airdrop(str(wallet.pubkey()), NATIVE, sol * 10**9)
    return wallet


async def settled(cluster: Cluster, signature: str) -> Any:
    """The transaction once it landed (or failed), as the chain saved it."""
    async with asyncio.timeout(10):
        while True:
            (tx,) = await cluster.statuses([signature])
            if tx is not None and tx.final:
                return tx
            await asyncio.sleep(0.01)


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
        valid = chain.settings.chain_blockhash_slots
        assert latest["value"]["lastValidBlockHeight"] >= slot + valid
        known = await rpc(client, "isBlockhashValid", latest["value"]["blockhash"])
        assert known["result"]["value"] is True
        made_up = await rpc(client, "isBlockhashValid", "4" * 44)
        assert made_up["result"]["value"] is False
        fees = (await rpc(client, "getRecentPrioritizationFees", []))["result"]
        assert 1 <= len(fees) <= 150 and set(fees[-1]) == {"slot", "prioritizationFee"}
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


class OneWallet:
    """A signer holding one funded keypair for every user."""

    def __init__(self, keypair: Keypair) -> None:
        self._keypair = keypair

    async def keypair(self, user_id: str) -> Keypair:
        return self._keypair


async def test_a_signature_runs_once_and_an_order_has_one_live_swap(chain: Chain) -> None:
    made = wired(chain, signer=OneWallet(await funded(chain.cluster)))
    try:
        venue = made.venues["raydium"]
        order = uuid4()
        tx = await venue.build(order, 1, "u", "SOL", "USDC", Decimal(2), Decimal(1))
        await asyncio.gather(*(venue.send(tx) for _ in range(5)))
        fill = await venue.confirm(tx)
        await venue.send(tx)  # once more, after it landed: still that one swap
        other = await venue.build(order, 2, "u", "SOL", "USDC", Decimal(2), Decimal(1))
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
        await made.close()


async def test_the_minimum_out_is_enforced_where_the_swap_lands(chain: Chain) -> None:
    wallet = await funded(chain.cluster)
    made = wired(chain, signer=OneWallet(wallet))
    try:
        venue = made.venues["meteora"]
        tx = await venue.build(uuid4(), 1, "u", "SOL", "USDC", Decimal(2), Decimal(10) ** 6)
        await venue.send(tx)
        with pytest.raises(Reverted) as refused:
            await venue.confirm(tx)
        assert refused.value.reason == "slippage_exceeded"
        assert refused.value.tx_hash == tx.signature and refused.value.slot > 0
        # It paid its fee all the same, and nothing else.
        fee = refused.value.network_fee
        assert fee.base == LAMPORTS_PER_SIGNATURE and fee.rent == 0
        left = chain.cluster.accounts.lamports(str(wallet.pubkey()))
        assert left == 10 * 10**9 - fee.lamports
        async with httpx.AsyncClient(base_url=chain.url) as http:
            status = (await rpc(http, "getSignatureStatuses", [tx.signature]))["result"]
        err = status["value"][0]["err"]
        assert err == {"InstructionError": [2, {"Custom": 0x1771}]}
    finally:
        await made.close()


async def test_a_restarted_chain_has_its_fills_balances_and_the_same_market(
    chain_dsn: str,
) -> None:
    """Replaying the journal on a fresh market rebuilds exactly the market that was."""
    settings = chain_settings(chain_dsn, mock_swap_latency_ms="0", mock_market="normal")
    async with open_cluster(settings) as first:
        wallet = await funded(first, sol=2000)
        owner = str(wallet.pubkey())
        for i, venue in enumerate(("raydium", "meteora", "raydium")):
            signature = await first.send(signed(first, wallet, venue, amount=Decimal(500)))
            await settled(first, signature)
            await asyncio.sleep(0.45 * (i + 1))  # fills at different slots
        await first.jump("meteora", "BONK", 250)
        assert not await first.launch("NOVA", "raydium")
        lamports, usdc = first.accounts.lamports(owner), first.accounts.token(owner, USDC)
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
        assert second.accounts.lamports(owner) == lamports  # balances, fees and rent too
        assert second.accounts.token(owner, USDC) == usdc and usdc
        # Prices go on from there: the restored chain resumes after its last saved slot.
        assert at >= market_time(0) and second.slot() > 0


async def test_a_failed_transaction_sent_again_after_a_restart_stays_failed(chain_dsn: str) -> None:
    settings = chain_settings(chain_dsn, mock_swap_latency_ms="0")
    async with open_cluster(settings) as first:
        wallet = await funded(first)
        payload = signed(first, wallet, minimum=Decimal(10) ** 6)  # cannot be met
        signature = await first.send(payload)
        reverted = await settled(first, signature)
        assert reverted.status == "reverted" and reverted.reason == "slippage_exceeded"
        lamports = first.accounts.lamports(str(wallet.pubkey()))
    async with open_cluster(settings) as second:
        assert await second.send(payload) == signature  # known: not run again
        (still,) = await second.statuses([signature])
        assert still is not None and still.status == "reverted"
        assert second.accounts.lamports(str(wallet.pubkey())) == lamports  # no second fee
        assert [a for a in await second._store.actions() if a.kind == "fill"] == []


async def test_a_swap_moves_exactly_its_amounts_its_fee_and_its_rent(chain: Chain) -> None:
    cluster = chain.cluster
    wallet = await funded(cluster)
    owner = str(wallet.pubkey())
    async with httpx.AsyncClient(base_url=chain.url) as http:
        assert (await rpc(http, "getBalance", owner))["result"]["value"] == 10 * 10**9
        none = await rpc(http, "getTokenAccountsByOwner", owner, {"mint": USDC},
                         {"encoding": "jsonParsed"})  # fmt: skip
        assert none["result"]["value"] == []
        price = 50_000  # micro-lamports per compute unit
        signature = await cluster.send(signed(cluster, wallet, amount=Decimal(2), price=price))
        first = await settled(cluster, signature)
        assert first.status == "landed"
        out = p.to_base_units(first.amount_out, p.token_by_mint(USDC))  # type: ignore[arg-type]
        priority = -(-transaction.SWAP_COMPUTE_UNITS * price // 10**6)
        fee = LAMPORTS_PER_SIGNATURE + priority
        spent = 2 * 10**9 + fee + TOKEN_ACCOUNT_RENT  # the USDC account was opened
        assert (await rpc(http, "getBalance", owner))["result"]["value"] == 10 * 10**9 - spent
        accounts = await rpc(http, "getTokenAccountsByOwner", owner,
                             {"programId": TOKEN_PROGRAM}, {"encoding": "jsonParsed"})  # fmt: skip
        (account,) = accounts["result"]["value"]
        assert account["pubkey"] == token_account(owner, USDC)
        info = account["account"]["data"]["parsed"]["info"]
        assert (info["mint"], info["owner"]) == (USDC, owner)
        assert info["tokenAmount"]["amount"] == str(out) and info["tokenAmount"]["decimals"] == 6
        await asyncio.sleep(0.45)  # one slot on: confirmed
        answer = await rpc(http, "getTransaction", signature,
                           {"encoding": "json", "commitment": "confirmed"})  # fmt: skip
        meta = answer["result"]["meta"]
        assert meta["err"] is None and meta["fee"] == fee
        assert meta["preBalances"][0] - meta["postBalances"][0] == spent
        (post,) = meta["postTokenBalances"]
        assert post["mint"] == USDC and post["uiTokenAmount"]["amount"] == str(out)
        assert meta["preTokenBalances"] == []
        returned = base64.b64decode(meta["returnData"]["data"][0])
        assert int.from_bytes(returned, "little") == out
        tx = answer["result"]["transaction"]
        assert tx["signatures"] == [signature] and tx["message"]["accountKeys"][0] == owner
        # finalized commitment: not yet (32 slots after landing)
        early = await rpc(http, "getTransaction", signature, {"commitment": "finalized"})
        assert early["result"] is None
        # A second swap into the same account pays no rent.
        again = await cluster.send(signed(cluster, wallet, amount=Decimal(1)))
        assert (await settled(cluster, again)).status == "landed"
        second = 10 * 10**9 - spent - 10**9 - LAMPORTS_PER_SIGNATURE
        assert (await rpc(http, "getBalance", owner))["result"]["value"] == second


async def test_the_chain_refuses_what_a_real_node_refuses(chain: Chain) -> None:
    cluster = chain.cluster
    wallet = await funded(cluster, sol=1)
    async with httpx.AsyncClient(base_url=chain.url) as http:

        async def send(payload: str) -> dict[str, Any]:
            return await rpc(http, "sendTransaction", payload, {"encoding": "base64"})

        raw = bytearray(base64.b64decode(signed(cluster, wallet)))
        raw[5] ^= 0xFF  # inside the signature
        forged = await send(base64.b64encode(bytes(raw)).decode())
        assert forged["error"]["code"] == -32003
        stranger = await send(signed(cluster, Keypair()))  # no lamports for the fee
        assert stranger["error"]["code"] == -32002
        assert stranger["error"]["data"]["err"] == "InsufficientFundsForFee"
        blockhash = p.blockhash_of("elsewhere", 1)
        swap = transaction.SwapTx.single(
            str(wallet.pubkey()), "raydium", "SOL", "USDC", Decimal(1), Decimal(1), uuid4(), 1,
            blockhash,
        )  # fmt: skip
        unknown = await send(transaction.encode(transaction.build(swap, wallet)))
        assert unknown["error"]["data"]["err"] == "BlockhashNotFound"
        garbage = await send("bm90IGEgdHJhbnNhY3Rpb24=")
        assert garbage["error"]["code"] == p.RPC_INVALID_PARAMS
        assert cluster.accounts.lamports(str(wallet.pubkey())) == 10**9  # nothing charged
        # Too little input at landing: the swap fails (SPL InsufficientFunds), the fee is paid.
        short = await cluster.send(signed(cluster, wallet, "raydium", "USDC", "SOL", Decimal(5)))
        failed = await settled(cluster, short)
        assert failed.status == "reverted" and failed.reason == "insufficient_funds"
        assert failed.meta["err"] == {"InstructionError": [2, {"Custom": 1}]}
        assert cluster.accounts.lamports(str(wallet.pubkey())) == 10**9 - LAMPORTS_PER_SIGNATURE
        with pytest.raises(TxRefused):  # and in-process, the same refusal as an exception
            await cluster.send("")


async def test_the_faucet_funds_any_token_and_refuses_nonsense(chain: Chain) -> None:
    owner = str(Keypair().pubkey())
    async with httpx.AsyncClient(base_url=chain.url) as http:
        for _ in range(2):
            granted = await http.post(
                "/mock/airdrop", json={"owner": owner, "mint": USDC, "amount": str(2**63 - 1)}
            )
            assert granted.status_code == 200
        granted = await http.post(
            "/mock/airdrop", json={"owner": owner, "mint": USDC, "amount": "1"}
        )
        assert granted.json() == {"owner": owner, "mint": USDC, "balance": str(2**64 - 1)}
        sol = await rpc(http, "requestAirdrop", owner, 3 * 10**9)
        statuses = await rpc(http, "getSignatureStatuses", [sol["result"]])
        assert statuses["result"]["value"][0]["err"] is None
        assert (await rpc(http, "getBalance", owner))["result"]["value"] == 3 * 10**9
        for bad in (
            {"owner": "nope", "mint": USDC, "amount": "1"},
            {"owner": owner, "mint": "nope", "amount": "1"},
            {"owner": owner, "mint": USDC, "amount": "-1"},
            {"owner": owner, "mint": USDC, "amount": "1.5"},
            {"owner": owner, "mint": USDC, "amount": str(2**63 - 1)},  # past a u64 in all
        ):
            refused = await http.post("/mock/airdrop", json=bad)
            assert refused.status_code == 400, bad
        assert (await rpc(http, "getBalance", "nope"))["error"]["code"] == p.RPC_INVALID_PARAMS
    assert chain.cluster.accounts.token(owner, USDC) == 2**64 - 1
    async with httpx.AsyncClient(base_url=chain.url) as http:  # and the ledger still saves
        assert (await rpc(http, "getHealth"))["result"] == "ok"
        assert (await rpc(http, "getSignatureStatuses", []))["result"]["value"] == []


def route(
    cluster: Cluster, wallet: Keypair, minimum: Decimal, order: UUID | None = None
) -> tuple[str, transaction.SwapTx]:
    """A split route: 1 SOL on each venue for USDC, in one transaction."""
    blockhash, _ = cluster.latest_blockhash()
    legs = tuple(
        transaction.Leg((transaction.Hop(venue, "SOL", "USDC"),), Decimal(1)) for venue in VENUES
    )
    swap = transaction.SwapTx(
        owner=str(wallet.pubkey()), token_in="SOL", token_out="USDC", amount_in=Decimal(2),
        min_amount_out=minimum, legs=legs, order_id=order or uuid4(), attempt=1,
        recent_blockhash=blockhash, compute_unit_limit=transaction.compute_units_for(legs),
    )  # fmt: skip
    return transaction.encode(transaction.build(swap, wallet)), swap


async def test_a_route_fills_all_its_legs_or_nothing(chain_dsn: str) -> None:
    settings = chain_settings(chain_dsn, mock_swap_latency_ms="0")
    async with open_cluster(settings) as first:
        wallet = await funded(first)
        owner = str(wallet.pubkey())
        # A minimum no route can meet: reverted, the market untouched, only the fee paid.
        payload, _ = route(first, wallet, Decimal(10) ** 6)
        missed = await settled(first, await first.send(payload))
        assert missed.status == "reverted" and missed.reason == "slippage_exceeded"
        assert [a.kind for a in await first._store.actions()] == []  # no pool touched
        assert first.accounts.lamports(owner) == 10 * 10**9 - LAMPORTS_PER_SIGNATURE
        # A minimum it meets: both legs fill, the total is credited, both venues moved.
        expected = sum(
            first.market.quote(v, "SOL", "USDC", Decimal(1), first.now()).amount_out for v in VENUES
        )
        payload, swap = route(first, wallet, (expected * Decimal("0.99")).quantize(Decimal("1e-6")))
        filled = await settled(first, await first.send(payload))
        assert filled.status == "landed" and filled.amount_out >= swap.min_amount_out
        usdc = first.accounts.token(owner, USDC)
        assert usdc == p.to_base_units(filled.amount_out, p.token_of("USDC"))
        (action,) = [a for a in await first._store.actions() if a.kind == "plan"]
        assert [leg["venues"] for leg in action.data["legs"]] == [[v] for v in VENUES]
    async with open_cluster(settings) as second:  # the route replays as it filled
        second.market.advance(first.market.now)
        first.market.advance(second.market.now)
        at = second.market.now
        assert second.mids("SOL", "USDC", at) == first.mids("SOL", "USDC", at)
        assert second.accounts.token(owner, USDC) == usdc


async def test_sends_of_many_orders_at_once_share_one_request_and_keep_their_answers(
    chain: Chain,
) -> None:
    """Concurrent sends go to the chain as one JSON-RPC batch; each caller still gets its
    own answer: its signature, or its own refusal (here a second live swap of an order)."""
    wallet = await funded(chain.cluster)
    made = wired(chain, signer=OneWallet(wallet))
    posted: list[bytes] = []
    transport = made.rpc._transport
    handle = transport.handle_async_request

    async def counted(request: Any) -> Any:
        posted.append(await request.aread())
        return await handle(request)

    transport.handle_async_request = counted  # type: ignore[method-assign]
    try:
        venue = made.venues["raydium"]
        fenced = uuid4()
        first = await venue.build(fenced, 1, "u", "SOL", "USDC", Decimal(1), Decimal(0))
        await venue.send(first)
        posted.clear()
        txs = [
            await venue.build(uuid4(), 1, "u", "SOL", "USDC", Decimal(1), Decimal(0))
            for _ in range(6)
        ]
        second = await venue.build(fenced, 2, "u", "SOL", "USDC", Decimal(1), Decimal(0))
        results = await asyncio.gather(
            *(venue.send(tx) for tx in [*txs, second]), return_exceptions=True
        )
        assert isinstance(results[-1], SubmitRefused)  # its own refusal, no one else's
        assert not any(isinstance(r, BaseException) for r in results[:-1])
        # A lone send goes at once; the ones that queued behind it share a request.
        assert len(posted) < len(txs)
        assert any(body.startswith(b"[") for body in posted)
        fills = await asyncio.gather(*(venue.confirm(tx) for tx in txs))
        assert [f.tx_hash for f in fills] == [tx.signature for tx in txs]
        statuses = await chain.cluster.statuses([tx.signature for tx in txs])
        assert all(s is not None and s.status == "landed" for s in statuses)
    finally:
        await made.close()
