"""The engine's way to the chain: an HTTP client and the venues built on it.

`ChainClient` speaks the chain's protocol (Jupiter-style quotes, Solana JSON-RPC, the
mock controls) over one keep-alive connection pool. `ChainVenue` is one venue as the
engine sees it (quote, build, send, confirm): the engine never talks HTTP. A real
deployment would put a Jupiter and an RPC adapter behind the same venue protocol.

Confirmation is batched: every transaction awaited in this process is asked about in
one `getSignatureStatuses` call per poll (up to 256 signatures a call), and the
landed ones' results are read in one JSON-RPC batch of `getTransaction`.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

import aiohttp
import structlog

from dexecutor import jsoncodec
from dexecutor.background import cancel_and_wait
from dexecutor.chain import protocol as p
from dexecutor.domain.failures import FailureReason
from dexecutor.domain.money import price_of
from dexecutor.engine.routing import Routed, RouteOptions
from dexecutor.market.tokens import find_token, route_name
from dexecutor.market.types import MarketError, Quote
from dexecutor.market.venue import Fill, MarketSnapshot, SignedTx, SubmitRefused, VenueError

log = structlog.get_logger(__name__)

POLL_S = 0.02
BLOCKHASH_CACHE_S = p.SLOT_MS / 1000


class ChainUnreachable(ConnectionError):
    """The chain did not answer (down, or too slow). Transient: ask again later.

    A ConnectionError, so the engine treats it as passing trouble: the order is not
    failed for it, and a swap already sent is asked about again, never sent anew.
    """


class RpcFailure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Outcome:
    """A transaction's final state as the chain reports it."""

    signature: str
    slot: int
    err: Any
    amount_out_units: int | None
    payload: str | None


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

    def __init__(self, url: str, timeout_s: float = 10.0, poll_s: float = POLL_S) -> None:
        self.url = url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(timeout_s, 3.0))
        self._http: aiohttp.ClientSession | None = None
        self._poll_s = poll_s
        self._ids = 0
        self._blockhash: tuple[float, str, int] | None = None
        self._blockhash_call: asyncio.Task[tuple[str, int]] | None = None
        self._waiting: dict[str, list[asyncio.Future[Outcome]]] = {}
        self._wake = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None
        self._complained_at = 0.0

    async def close(self) -> None:
        await cancel_and_wait(self._poller)
        for futures in self._waiting.values():
            for future in futures:
                future.cancel()
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
            raise RpcFailure(int(answer["error"]["code"]), str(answer["error"]["message"]))
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
        try:
            response = await self._request("GET", "/quote", params=params)
        except ChainUnreachable as err:
            raise VenueError(FailureReason.VENUE_UNAVAILABLE, f"{venue}: {err}") from None
        body = jsoncodec.loads(response.content)
        if response.status_code != 200:
            reason = body.get("reason") or FailureReason.VENUE_UNAVAILABLE
            if response.status_code == 503:
                raise VenueError(reason, str(body.get("error")))
            raise MarketError(reason, str(body.get("error")))
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
        try:
            response = await self._request("GET", "/quote", params=params)
        except ChainUnreachable as err:
            raise VenueError(FailureReason.VENUE_UNAVAILABLE, str(err)) from None
        body = jsoncodec.loads(response.content)
        if response.status_code != 200:
            reason = body.get("reason") or FailureReason.VENUE_UNAVAILABLE
            if response.status_code == 503:
                raise VenueError(reason, str(body.get("error")))
            raise MarketError(reason, str(body.get("error")))
        mid = body.get("midPrice")
        return Routed(body["plan"], body.get("venueQuotes", {}), Decimal(mid) if mid else None)

    # -- transactions ----------------------------------------------------------------------

    async def latest_blockhash(self) -> tuple[str, int]:
        """The recent blockhash: asked once a slot, however many transactions are built."""
        cached = self._blockhash
        if cached is not None and time.monotonic() - cached[0] < BLOCKHASH_CACHE_S:
            return cached[1], cached[2]
        if self._blockhash_call is None or self._blockhash_call.done():
            self._blockhash_call = asyncio.create_task(self._fetch_blockhash())
        return await asyncio.shield(self._blockhash_call)

    async def _fetch_blockhash(self) -> tuple[str, int]:
        asked_at = time.monotonic()
        answer = await self.rpc("getLatestBlockhash", [{"commitment": "finalized"}])
        value = answer["value"]
        self._blockhash = (asked_at, value["blockhash"], int(value["lastValidBlockHeight"]))
        return value["blockhash"], int(value["lastValidBlockHeight"])

    async def send(self, encoded: str) -> str:
        try:
            signature = await self.rpc("sendTransaction", [encoded, {"encoding": "base64"}])
        except RpcFailure as err:
            if err.code == p.RPC_TX_REFUSED:
                raise SubmitRefused(err.message) from None
            raise ChainUnreachable(f"sendTransaction failed: {err.message}") from None
        return str(signature)

    async def outcome(self, signature: str) -> Outcome:
        """Wait until the chain reports the transaction final (batched polling)."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(signature, []).append(future)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll(), name="chain-confirm")
        self._wake.set()
        return await future

    async def _poll(self) -> None:
        while True:
            if not self._waiting:
                self._wake.clear()
                await self._wake.wait()
            try:
                await self._poll_once()
            except (ChainUnreachable, RpcFailure) as err:
                now = time.monotonic()
                if now - self._complained_at > 5:
                    self._complained_at = now
                    log.warning("chain did not answer a status poll", error=str(err))
            # One call a poll whatever the number awaited; with very many, a little less
            # often (each call then carries hundreds of signatures).
            await asyncio.sleep(max(self._poll_s, min(0.1, len(self._waiting) / 10_000)))

    async def _poll_once(self) -> None:
        for sig, futures in list(self._waiting.items()):
            alive = [f for f in futures if not f.done()]
            if alive:
                self._waiting[sig] = alive
            else:
                del self._waiting[sig]
        signatures = list(self._waiting)
        for start in range(0, len(signatures), 256):
            chunk = signatures[start : start + 256]
            answer = await self.rpc(
                "getSignatureStatuses", [chunk, {"searchTransactionHistory": True}]
            )
            final = [
                (s, st) for s, st in zip(chunk, answer["value"], strict=True) if st is not None
            ]
            landed = [s for s, st in final if st["err"] is None]
            details: dict[str, Any] = {}
            if landed:
                txs = await self.rpc_batch(
                    [
                        (
                            "getTransaction",
                            [s, {"encoding": "json", "maxSupportedTransactionVersion": 0}],
                        )
                        for s in landed
                    ]
                )
                details = dict(zip(landed, txs, strict=True))
            for sig, status in final:
                detail = details.get(sig)
                units: int | None = None
                payload: str | None = None
                if isinstance(detail, dict):
                    data = detail["meta"].get("returnData")
                    if data:
                        (units,) = struct.unpack("<Q", base64.b64decode(data["data"][0]))
                    payload = detail["transaction"][0]
                elif status["err"] is None:
                    continue  # landed but not readable yet: ask again next poll
                outcome = Outcome(sig, int(status["slot"]), status["err"], units, payload)
                for future in self._waiting.pop(sig, []):
                    if not future.done():
                        future.set_result(outcome)

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


class ChainVenue:
    """One venue on the chain, as the engine's venue protocol wants it."""

    def __init__(self, name: str, client: ChainClient, confirm_timeout_s: float = 60.0) -> None:
        self.name = name
        self._client = client
        self._confirm_timeout = confirm_timeout_s

    async def quote(self, token_in: str, token_out: str, amount_in: Decimal) -> Quote:
        return await self._client.quote(self.name, token_in, token_out, amount_in)

    async def build(
        self,
        order_id: UUID,
        attempt: int,
        token_in: str,
        token_out: str,
        amount_in: Decimal,
        min_amount_out: Decimal,
    ) -> SignedTx:
        """The swap transaction, ready to record and send (not sent)."""
        blockhash, last_valid = await self._client.latest_blockhash()
        swap = p.SwapTx(
            venue=self.name,
            token_in=token_in,
            token_out=token_out,
            amount_in=amount_in,
            min_amount_out=min_amount_out,
            order_id=order_id,
            attempt=attempt,
            recent_blockhash=blockhash,
            last_valid_block_height=last_valid,
        )
        encoded = swap.encode()
        return SignedTx(p.signature_of(encoded), self.name, encoded)

    async def send(self, tx: SignedTx) -> None:
        signature = await self._client.send(tx.payload)
        if signature != tx.signature:
            raise ChainUnreachable(f"the chain named {tx.signature} {signature}")

    async def confirm(self, tx_hash: str) -> Fill:
        """The landed swap, or VenueError/MarketError with the reason it failed."""
        try:
            outcome = await asyncio.wait_for(self._client.outcome(tx_hash), self._confirm_timeout)
        except TimeoutError:
            raise ChainUnreachable(
                f"no outcome for {tx_hash} within {self._confirm_timeout:g}s"
            ) from None
        if outcome.err is not None:
            reason = p.reason_of(outcome.err)
            raise VenueError(reason, f"{self.name}: the transaction failed on chain ({reason})")
        assert outcome.payload is not None and outcome.amount_out_units is not None
        swap = p.SwapTx.decode(outcome.payload)
        token_out = _token(swap.token_out)
        amount_out = p.from_base_units(outcome.amount_out_units, token_out)
        return Fill(
            tx_hash=tx_hash,
            venue=swap.venue,
            amount_out=amount_out,
            executed_price=price_of(amount_out, swap.amount_in),
            slot=outcome.slot,
        )
