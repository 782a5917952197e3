"""The engine's way to the chain: an HTTP client and the venues built on it.

`ChainClient` speaks the chain's protocol (Jupiter-style quotes, Solana JSON-RPC, the
mock controls) over one keep-alive connection pool. `ChainVenue` is one venue as the
engine sees it (quote, build, send, confirm): the engine never talks HTTP. A real
deployment would put a Jupiter and an RPC adapter behind the same venue protocol.

Transactions go the way a real deployment's do, through solana-py's AsyncClient
(`chain/rpc.py`): signed by the user's wallet, sent, rebroadcast while unconfirmed and
confirmed by batched status polls; quotes, market views and the mock controls stay on
this client.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID

import aiohttp
import structlog
from solders.keypair import Keypair

from dexecutor import jsoncodec
from dexecutor.chain import protocol as p
from dexecutor.chain import transaction as txn
from dexecutor.chain.rpc import (
    FINALIZED_AFTER_SLOTS,
    Expired,
    Landed,
    Rpc,
    SendFailed,
    describe,
    reason_of,
)
from dexecutor.domain.failures import FailureReason
from dexecutor.domain.money import price_of
from dexecutor.engine.routing import Routed, RouteOptions
from dexecutor.market.tokens import find_token, route_name
from dexecutor.market.types import MarketError, Quote
from dexecutor.market.venue import (
    Fill,
    MarketSnapshot,
    NetworkFee,
    Reverted,
    Sent,
    SignedTx,
    SubmitRefused,
    VenueError,
)

log = structlog.get_logger(__name__)


class ChainUnreachable(ConnectionError):
    """The chain did not answer (down, or too slow). Transient: ask again later.

    A ConnectionError, so the engine treats it as passing trouble: the order is not
    failed for it, and a swap already sent is asked about again, never sent anew.
    """


class RpcFailure(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


@dataclass(frozen=True, slots=True)
class _Answer:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class ChainClient:
    """One keep-alive connection pool to the chain, for every venue of the process.

    aiohttp rather than httpx: every quote holds its connection for the chain's quote
    latency, so a worker at a cap of 1,000 keeps about a thousand connections busy, and
    httpx's pool spent most of the worker's time looking for a free one.
    """

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(timeout_s, 3.0))
        self._http: aiohttp.ClientSession | None = None
        self._ids = 0

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    # -- transport -----------------------------------------------------------------------

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:  # made in the running loop, on first use
            self._http = aiohttp.ClientSession(
                base_url=self.url,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                headers={"content-type": "application/json"},
            )
        return self._http

    async def _request(
        self,
        method: str,
        path: str,
        content: bytes | None = None,
        params: dict[str, str] | None = None,
    ) -> _Answer:
        try:
            async with self._session().request(method, path, data=content, params=params) as r:
                answer = _Answer(r.status, await r.read())
        except (aiohttp.ClientError, TimeoutError) as err:
            raise ChainUnreachable(f"the chain at {self.url} did not answer: {err!r}") from None
        if answer.status_code >= 500 and answer.status_code != 503:
            raise ChainUnreachable(f"the chain at {self.url} answered {answer.status_code}")
        return answer

    async def rpc(self, method: str, params: list[Any]) -> Any:
        self._ids += 1
        body = {"jsonrpc": "2.0", "id": self._ids, "method": method, "params": params}
        response = await self._request("POST", "/", jsoncodec.dumps(body))
        answer = jsoncodec.loads(response.content)
        if "error" in answer:
            error = answer["error"]
            raise RpcFailure(int(error["code"]), str(error["message"]), error.get("data"))
        return answer["result"]

    async def rpc_batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """Several calls in one JSON-RPC batch; each answer is a result or an RpcFailure."""
        body = [
            {"jsonrpc": "2.0", "id": i, "method": method, "params": params}
            for i, (method, params) in enumerate(calls)
        ]
        response = await self._request("POST", "/", jsoncodec.dumps(body))
        answers = sorted(jsoncodec.loads(response.content), key=lambda a: a["id"])
        return [
            RpcFailure(a["error"]["code"], a["error"]["message"]) if "error" in a else a["result"]
            for a in answers
        ]

    async def _json(self, method: str, path: str, body: Any = None) -> Any:
        content = jsoncodec.dumps(body) if body is not None else None
        response = await self._request(method, path, content)
        return jsoncodec.loads(response.content)

    # -- quotes --------------------------------------------------------------------------

    async def quote(self, venue: str, token_in: str, token_out: str, amount: Decimal) -> Quote:
        t_in, t_out = find_token(token_in), find_token(token_out)
        assert t_in is not None and t_out is not None
        params = {
            "inputMint": t_in.mint,
            "outputMint": t_out.mint,
            "amount": str(p.to_base_units(amount, t_in)),
            "slippageBps": "0",
            "dexes": p.LABELS[venue],
        }
        body = await self._quote(params, f"{venue}: ")
        single = body.get("venueQuotes", {}).get(venue)
        if single is not None:  # the venue's own best path, not a route across its pools
            if "error" in single:
                raise MarketError(single["error"], str(single["message"]))
            return Quote(
                venue=venue,
                token_in=t_in.symbol,
                token_out=t_out.symbol,
                amount_in=amount,
                amount_out=Decimal(single["amountOut"]),
                price=Decimal(single["price"]),
                fee=Decimal(single["fee"]),
                price_impact=Decimal(single["priceImpact"]),
                route=tuple(single["route"]),
            )
        leg = body["routePlan"][0]["swapInfo"]
        amount_out = p.from_base_units(body["outAmount"], t_out)
        fee = (
            Decimal(body["feeRate"])
            if "feeRate" in body
            else Decimal(leg["feeAmount"]) / Decimal(body["inAmount"])
        )
        route = body.get("route") or [route_name(t_in.symbol), route_name(t_out.symbol)]
        return Quote(
            venue=p.venue_of(leg["label"]) or venue,
            token_in=t_in.symbol,
            token_out=t_out.symbol,
            amount_in=amount,
            amount_out=amount_out,
            price=price_of(amount_out, amount),
            fee=fee,
            price_impact=Decimal(body["priceImpactPct"]),
            route=tuple(route),
        )

    async def route(
        self, token_in: str, token_out: str, amount: Decimal, options: RouteOptions
    ) -> Routed:
        """The best route, split across venues and paths, in one request to the chain.

        `amount` is the input, or for ExactOut the output wanted. MarketError when no
        route can fill it, VenueError when no allowed venue answered.
        """
        t_in, t_out = _token(token_in), _token(token_out)
        exact_in = options.swap_mode == "ExactIn"
        params = {
            "inputMint": t_in.mint,
            "outputMint": t_out.mint,
            "amount": str(p.to_base_units(amount, t_in if exact_in else t_out)),
            "slippageBps": "0",
            **options.query(),
        }
        body = await self._quote(params)
        mid = body.get("midPrice")
        return Routed(body["plan"], body.get("venueQuotes", {}), Decimal(mid) if mid else None)

    async def _quote(self, params: dict[str, str], unreachable: str = "") -> dict[str, Any]:
        """The chain's /quote answer; VenueError when the chain cannot answer now (a 503,
        or unreachable: `unreachable` prefixes the message), MarketError when the market
        refuses (no route, not enough liquidity)."""
        try:
            response = await self._request("GET", "/quote", params=params)
        except ChainUnreachable as err:
            raise VenueError(FailureReason.VENUE_UNAVAILABLE, f"{unreachable}{err}") from None
        body: dict[str, Any] = jsoncodec.loads(response.content)
        if response.status_code != 200:
            reason = body.get("reason") or FailureReason.VENUE_UNAVAILABLE
            if response.status_code == 503:
                raise VenueError(reason, str(body.get("error")))
            raise MarketError(reason, str(body.get("error")))
        return body

    # -- reads and mock controls -------------------------------------------------------------

    async def snapshot(
        self,
        pairs: list[tuple[str, str]],
        quotes: list[tuple[str, str, Decimal]],
        tokens: list[str],
        reference: bool = False,
    ) -> MarketSnapshot:
        """Mids per venue, best prices per size, tradability: one call (no latency, no faults)."""
        body = {
            "pairs": [[p.mint_of(a), p.mint_of(b)] for a, b in pairs],
            "quotes": [
                [p.mint_of(a), p.mint_of(b), str(p.to_base_units(amount, _token(a)))]
                for a, b, amount in quotes
            ],
            "tokens": [p.mint_of(t) for t in tokens],
            "reference": reference,
        }
        response = await self._request("POST", "/market/view", jsoncodec.dumps(body))
        if response.status_code != 200:
            raise ChainUnreachable(f"the chain refused a market view: {response.text[:200]}")
        answer = jsoncodec.loads(response.content)

        def dec(value: str | None) -> Decimal | None:
            return Decimal(value) if value is not None else None

        return MarketSnapshot(
            slot=int(answer["slot"]),
            mids={
                pair: {v: dec(m) for v, m in mids.items()}
                for pair, mids in zip(pairs, answer["mids"], strict=True)
            },
            prices={q: dec(price) for q, price in zip(quotes, answer["prices"], strict=True)},
            tradable=dict(zip(tokens, answer["tradable"], strict=True)),
            reference={
                pair: Decimal(r) for pair, r in zip(pairs, answer["reference"], strict=False)
            },
        )

    async def health(self) -> str:
        response = await self._request("GET", "/health")
        return response.text

    async def arm_fault(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        answer = await self._json("POST", "/mock/faults", body)
        armed: list[dict[str, Any]] = answer["armed"]
        return armed

    async def faults(self) -> list[dict[str, Any]]:
        armed: list[dict[str, Any]] = (await self._json("GET", "/mock/faults"))["armed"]
        return armed

    async def clear_faults(self) -> None:
        await self._json("DELETE", "/mock/faults")

    async def airdrop(self, owner: str, mint: str, units: int) -> int:
        """Development faucet: add base units of a token to a wallet; its new balance."""
        response = await self._request(
            "POST",
            "/mock/airdrop",
            jsoncodec.dumps({"owner": owner, "mint": mint, "amount": str(units)}),
        )
        if response.status_code != 200:
            raise ChainUnreachable(
                f"the chain refused an airdrop ({response.status_code}): {response.text[:200]}"
            )
        return int(jsoncodec.loads(response.content)["balance"])

    async def launch(self, token: str, venue: str) -> bool:
        """Open a pool; True when it was open already."""
        answer = await self._json(
            "POST", "/mock/launch", {"mint": p.mint_of(token), "venue": venue}
        )
        return bool(answer["alreadyOpen"])

    async def jump(self, venue: str, token: str, bps: int) -> None:
        await self._json(
            "POST", "/mock/price", {"mint": p.mint_of(token), "venue": venue, "bps": bps}
        )


def _token(symbol: str) -> Any:
    token = find_token(symbol)
    if token is None:
        raise ValueError(f"unknown token {symbol!r}")
    return token


class Signer(Protocol):
    """Whoever holds the users' keys: the engine asks it to sign, never for the secret."""

    async def keypair(self, user_id: str) -> Keypair: ...


# Swaps kept per venue after building: far more than the orders one process has in
# flight, so a swap is found again for its send and its confirmation.
BUILT_KEPT = 20_000


class ChainVenue:
    """One venue on the chain, as the engine's venue protocol wants it.

    Quotes go through the chain client (Jupiter-style HTTP); transactions through the
    JSON-RPC side (`Rpc`, solana-py's AsyncClient): built with the slot's blockhash and
    priority-fee bid, signed by the user's wallet, sent, rebroadcast and confirmed.
    """

    def __init__(
        self,
        name: str,
        client: ChainClient,
        rpc: Rpc,
        signer: Signer,
        confirm_timeout_s: float = 180.0,
    ) -> None:
        self.name = name
        self._client = client
        self._rpc = rpc
        self._signer = signer
        # A guard only: a transaction whose validity is known ends by expiring first.
        self._confirm_timeout = confirm_timeout_s
        # The swaps this process built, by signature, so sending and confirming them
        # need not parse their bytes again (a signature names one signed message). A
        # transaction recorded by another process is parsed as before.
        self._built: dict[str, txn.SwapTx] = {}

    async def quote(self, token_in: str, token_out: str, amount_in: Decimal) -> Quote:
        return await self._client.quote(self.name, token_in, token_out, amount_in)

    async def build(
        self,
        order_id: UUID,
        attempt: int,
        user_id: str,
        token_in: str,
        token_out: str,
        amount_in: Decimal,
        min_amount_out: Decimal,
        legs: tuple[txn.Leg, ...] | None = None,
        exact_out: bool = False,
    ) -> SignedTx:
        """The swap transaction signed by the user's wallet, ready to record and send.

        Without `legs` the whole order is this venue's swap; with them, the route's legs
        go in one transaction (the router's instruction when there are several, or a leg
        of two hops, or exact-out), with the compute units the legs need.
        """
        keypair, (blockhash, last_valid), price = await asyncio.gather(
            self._signer.keypair(user_id), self._rpc.latest_blockhash(), self._rpc.priority_fee()
        )
        if legs is None:
            legs = (txn.Leg((txn.Hop(self.name, token_in, token_out),), amount_in),)
        swap = txn.SwapTx(
            owner=str(keypair.pubkey()),
            token_in=token_in,
            token_out=token_out,
            amount_in=amount_in,
            min_amount_out=min_amount_out,
            legs=legs,
            order_id=order_id,
            attempt=attempt,
            recent_blockhash=blockhash,
            compute_unit_limit=txn.compute_units_for(legs),
            compute_unit_price=price,
            exact_out=exact_out,
        )
        signed = txn.build(swap, keypair)
        signature = txn.signature(signed)
        if len(self._built) >= BUILT_KEPT:
            del self._built[next(iter(self._built))]  # the oldest: sent long ago, or never
        self._built[signature] = swap
        return SignedTx(signature, self.name, txn.encode(signed), last_valid)

    def _swap(self, tx: SignedTx) -> txn.SwapTx:
        """The swap a recorded transaction carries (ValueError for bytes not a swap)."""
        swap = self._built.get(tx.signature)
        return swap if swap is not None else txn.decode(tx.payload)[0]

    async def send(self, tx: SignedTx) -> Sent:
        """Send the recorded bytes. A refusal for an expired blockhash is not the end:
        the same bytes may have landed before (a resumed order), so confirm decides."""
        swap = self._swap(tx)
        sent = Sent(self._rpc.slot, swap.compute_unit_price, swap.compute_unit_limit)
        try:
            signature = await self._rpc.send(base64.b64decode(tx.payload))
        except SendFailed as err:
            if err.reason is None:
                raise SubmitRefused(err.message) from None
            if err.reason == FailureReason.BLOCKHASH_EXPIRED:
                log.info("the chain no longer takes this transaction", signature=tx.signature)
                return sent
            raise MarketError(err.reason, f"{self.name}: {err.message}") from None
        if signature != tx.signature:
            raise ChainUnreachable(f"the chain named {tx.signature} {signature}")
        return sent

    async def confirm(self, tx: SignedTx) -> Fill:
        """The confirmed swap with its fees, or the reason it failed (`Reverted` when it
        landed and failed, BLOCKHASH_EXPIRED when it never landed and never will)."""
        swap = self._swap(tx) if tx.payload else None
        raw = base64.b64decode(tx.payload) if tx.payload else None
        owner = swap.owner if swap is not None else None
        try:  # a timeout scope rather than wait_for: no task of its own for each order
            async with asyncio.timeout(self._confirm_timeout):
                outcome = await self._rpc.outcome(
                    tx.signature, raw, tx.last_valid_block_height, owner
                )
        except TimeoutError:
            raise ChainUnreachable(
                f"no outcome for {tx.signature} within {self._confirm_timeout:g}s"
            ) from None
        if isinstance(outcome, Expired):
            raise VenueError(
                FailureReason.BLOCKHASH_EXPIRED,
                f"{self.name}: transaction {tx.signature} never landed; its blockhash expired"
                f" after block {outcome.last_valid_block_height} (now {outcome.block_height})",
            )
        assert swap is not None, f"{tx.signature}: a landed transaction without its record"
        self._built.pop(tx.signature, None)  # its outcome is known: not sent or read again
        fee, amount_in, amount_out = _costs(swap, outcome)
        if outcome.err is not None:
            reason = reason_of(outcome.err)
            raise Reverted(
                reason,
                f"{self.name}: the transaction failed on chain ({reason}): {describe(outcome.err)}",
                tx.signature,
                outcome.slot,
                fee,
            )
        sides = (swap.token_in, swap.token_out)
        sol_price = None if "SOL" in sides else await self._sol_price(swap.token_out)
        return Fill(
            tx_hash=tx.signature,
            venue=swap.venue,
            amount_out=amount_out,
            executed_price=price_of(amount_out, amount_in),
            slot=outcome.slot,
            network_fee=fee,
            commitment="finalized" if outcome.finalized else "confirmed",
            finalized_at_slot=outcome.slot + FINALIZED_AFTER_SLOTS,
            sol_price=sol_price,
            amount_in=amount_in,
        )

    async def _sol_price(self, token: str) -> Decimal | None:
        """One SOL in `token` at the reference price now (None when unknown)."""
        try:
            view = await self._client.snapshot([("SOL", token)], [], [], reference=True)
        except (ChainUnreachable, KeyError, ValueError) as err:
            log.info("no SOL price to value the network fee", token=token, error=str(err))
            return None
        return view.reference.get(("SOL", token))


def _costs(swap: txn.SwapTx, landed: Landed) -> tuple[NetworkFee, Decimal, Decimal]:
    """The network fee (base, priority, rent) and the amounts in and out of a landed swap,
    from the wallet's balance changes (getTransaction's meta).

    The input is what the wallet's input account lost (an exact-out swap spends at most
    what it was sent with); with SOL as input, what its lamports lost beyond the fee and
    the rent. The rent is the deposit of a token account the swap opened.
    """
    base = txn.LAMPORTS_PER_SIGNATURE
    priority = max(0, landed.fee - base)
    t_in, t_out = _token(swap.token_in), _token(swap.token_out)
    if landed.err is not None:  # a reverted swap moved nothing but its fee
        return NetworkFee(base, priority, 0), Decimal(0), Decimal(0)
    rent = txn.TOKEN_ACCOUNT_RENT if t_out.mint in landed.opened else 0
    sol = landed.owner_lamports_delta + landed.fee + rent  # the swap's own SOL movement
    units_in = -sol if swap.token_in == "SOL" else -landed.owner_token_deltas.get(t_in.mint, 0)
    units = landed.return_units
    if units is None:
        units = sol if swap.token_out == "SOL" else landed.owner_token_deltas.get(t_out.mint, 0)
    return (
        NetworkFee(base, priority, rent),
        p.from_base_units(units_in, t_in),
        p.from_base_units(units, t_out),
    )
