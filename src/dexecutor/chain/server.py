"""The chain's HTTP face: a Jupiter-style quote API, a Solana JSON-RPC subset, mock controls.

Shapes follow the real services (amounts in base units as strings, tokens by mint,
`{"context": {"slot"}, "value"}` wrappers where Solana has them), so client code
written against this chain reads like client code for the real ones. Two additions
are the simulation's own: `/mock/*` (scripted faults, launches, price moves) and
`POST /market/view` (many mids and prices in one call, for trigger books and charts).
"""

from __future__ import annotations

import base64
import struct
import time
from decimal import Decimal
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dexecutor import jsoncodec
from dexecutor.chain import protocol as p
from dexecutor.chain.cluster import Cluster, TxRefused
from dexecutor.chain.records import LANDED, PENDING, ChainTx
from dexecutor.domain.failures import FailureReason
from dexecutor.market import split
from dexecutor.market.tokens import Token, find_token
from dexecutor.market.types import VENUES, MarketError, Quote
from dexecutor.market.venue import FAULT_KINDS

log = structlog.get_logger(__name__)

MAX_SIGNATURES = 256


def _json(body: Any, status: int = 200) -> Response:
    return Response(jsoncodec.dumps(body), status_code=status, media_type="application/json")


def _error(status: int, code: str, message: str, reason: str | None = None) -> Response:
    body: dict[str, Any] = {"error": message, "errorCode": code}
    if reason is not None:
        body["reason"] = reason
    return _json(body, status)


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _mint(value: Any, name: str) -> Token:
    token = p.token_by_mint(str(value)) if value is not None else None
    if token is None:
        raise ValueError(f"{name}: unknown mint {str(value)[:64]!r}")
    return token


def _venues_param(q: Any, name: str) -> list[str] | None:
    """A comma-separated list of venue names or Jupiter labels; ValueError for unknown."""
    raw = q.get(name)
    if raw is None:
        return None
    named: list[str] = []
    for item in raw.split(","):
        if not item.strip():
            continue
        venue = p.venue_of(item)
        if venue is None:
            raise ValueError(f"{name}: unknown venue {item.strip()[:40]!r}; expected {VENUES}")
        named.append(venue)
    return named


def _flag(q: Any, name: str) -> bool:
    value = str(q.get(name, "false")).lower()
    if value not in ("true", "false"):
        raise ValueError(f"{name}: expected true or false")
    return value == "true"


async def quote_response(cluster: Cluster, request: Request) -> Response:
    """GET /quote, as Jupiter's: the best route, split across venues and paths.

    `amount` is the input (ExactIn) or the output wanted (ExactOut), in base units.
    `dexes`, `excludeDexes` (venue names or labels, comma-separated) and
    `onlyDirectRoutes` narrow the candidates; a venue with a scripted quote fault is
    left out of the route, as an aggregator routes around a venue that does not answer.
    The simulation's own fields: each venue's best single-path quote (`venueQuotes`),
    the plan in decimals (`plan`, with the best single candidate beside it) and the
    pair's best spot price (`midPrice`), so one request tells an engine all it needs.
    """
    q = request.query_params
    try:
        t_in = _mint(q.get("inputMint"), "inputMint")
        t_out = _mint(q.get("outputMint"), "outputMint")
        units = int(q.get("amount", ""))
        slippage = int(q.get("slippageBps", "50"))
        if units <= 0 or not 0 <= slippage <= 10_000 or t_in == t_out:
            raise ValueError("amount must be positive and the mints different")
        mode = q.get("swapMode", "ExactIn")
        if mode not in ("ExactIn", "ExactOut"):
            raise ValueError("swapMode: ExactIn or ExactOut")
        dexes = _venues_param(q, "dexes")
        excluded = _venues_param(q, "excludeDexes") or []
        direct = _flag(q, "onlyDirectRoutes")
    except ValueError as err:
        return _error(400, "INVALID_REQUEST", str(err))
    venues = [v for v in VENUES if (dexes is None or v in dexes) and v not in excluded]
    answers = await cluster.venue_answers(venues)
    open_venues = [v for v in venues if answers[v] is None]
    refusals = [a for a in answers.values() if a is not None]
    if not open_venues:
        if refusals:
            return _error(503, "VENUE_UNAVAILABLE", refusals[0].message, refusals[0].reason)
        return _error(400, "COULD_NOT_FIND_ANY_ROUTE", "no venue left to route on", "no_route")
    at = cluster.now()
    market = cluster.market
    token_in, token_out = t_in.symbol, t_out.symbol
    pools = [(v, pool) for v, pool in market.venue_pools() if v in open_venues]
    options = split.candidates(pools, token_in, token_out, only_direct_routes=direct)
    amount = p.from_base_units(units, t_in if mode == "ExactIn" else t_out)
    cost = split.leg_cost_in(token_out, market.venue_pools())
    try:
        if mode == "ExactIn":
            plan = split.route(options, amount, leg_cost=cost)
        else:
            plan = split.route_exact_out(options, amount, leg_cost=cost)
    except MarketError as refusal:
        if refusals:  # a venue that did not answer may fill it the next time: transient
            down = refusals[0]
            return _error(
                503, "VENUE_UNAVAILABLE", f"{down.message}; {refusal.message}", down.reason
            )
        code = "COULD_NOT_FIND_ANY_ROUTE" if refusal.reason == "no_route" else "NO_LIQUIDITY"
        return _error(400, code, refusal.message, refusal.reason)
    in_units = p.to_base_units(plan.amount_in, t_in)
    out_units = p.to_base_units(plan.amount_out, t_out)
    if mode == "ExactIn":
        threshold = out_units * (10_000 - slippage) // 10_000
    else:
        threshold = -(-in_units * (10_000 + slippage) // 10_000)
    # Each venue's own quote for the whole amount (ExactIn; an ExactOut route shows only
    # its refusals: its best single candidate is `plan.bestSingle`).
    venue_quotes: dict[str, Any] = {}
    for venue in venues:
        answer: Quote | MarketError | None = answers[venue]
        if answer is None and mode == "ExactIn":
            try:
                answer = market.quote(venue, token_in, token_out, amount, at)
            except MarketError as err:
                answer = err
        if answer is not None:
            venue_quotes[venue] = _venue_quote(answer)
    legs = plan.legs
    first = legs[0]
    return _json(
        {
            "inputMint": t_in.mint,
            "inAmount": str(in_units),
            "outputMint": t_out.mint,
            "outAmount": str(out_units),
            "otherAmountThreshold": str(threshold),
            "swapMode": mode,
            "slippageBps": slippage,
            "platformFee": None,
            "priceImpactPct": str(_route_impact(legs)),
            "routePlan": [
                _swap_info(leg, hop_index, t_in, t_out)
                for leg in legs
                for hop_index in range(len(leg.venues))
            ],
            "contextSlot": cluster.slot(),
            "timeTaken": 0,
            # The simulation's own fields.
            "venue": first.venue if len(legs) == 1 else "+".join(dict.fromkeys(first.venues)),
            "feeRate": str(first.fee),
            "route": list(first.path),
            "plan": plan.as_fields(),
            "venueQuotes": venue_quotes,
            "midPrice": _best_mid(cluster, open_venues, token_in, token_out, at),
        }
    )


def _venue_quote(result: Quote | MarketError) -> dict[str, Any]:
    if isinstance(result, MarketError):
        return {"error": result.reason, "message": result.message}
    return {
        "price": result.price,
        "amountOut": result.amount_out,
        "fee": result.fee,
        "priceImpact": result.price_impact,
        "route": list(result.route),
    }


def _route_impact(legs: tuple[split.Leg, ...]) -> Decimal:
    """The route's price impact: the legs' impacts weighted by their inputs."""
    total = sum((leg.amount_in for leg in legs), Decimal(0))
    return sum((leg.price_impact * leg.amount_in / total for leg in legs), Decimal(0)).normalize()


def _swap_info(leg: split.Leg, i: int, t_in: Token, t_out: Token) -> dict[str, Any]:
    """One hop of a leg as a Jupiter `routePlan` entry (the leg's percent on its first)."""
    fill = leg.fills[i]
    hop_in, hop_out = _token_of(fill.token_in), _token_of(fill.token_out)
    return {
        "swapInfo": {
            "ammKey": p.pool_address(leg.venues[i], *sorted((fill.token_in, fill.token_out))),
            "label": p.LABELS[leg.venues[i]],
            "inputMint": hop_in.mint,
            "outputMint": hop_out.mint,
            "inAmount": str(p.to_base_units(fill.amount_in, hop_in)),
            "outAmount": str(p.to_base_units(fill.amount_out, hop_out)),
            "feeAmount": str(int(fill.fee_amount.scaleb(hop_in.decimals).to_integral_value())),
            "feeMint": hop_in.mint,
        },
        "percent": leg.percent if i == 0 else 100,
    }


def _token_of(symbol: str) -> Token:
    token = find_token(symbol)
    assert token is not None
    return token


def _best_mid(
    cluster: Cluster, venues: list[str], token_in: str, token_out: str, at: float
) -> str | None:
    mids = [m for v, m in cluster.mids(token_in, token_out, at).items() if v in venues and m]
    return str(max(mids)) if mids else None


# -- JSON-RPC ----------------------------------------------------------------------------


def _status(tx: ChainTx | None) -> dict[str, Any] | None:
    if tx is None or tx.status == PENDING:
        return None
    err = None if tx.status == LANDED else p.error_of(tx.reason or FailureReason.FAILED_TO_LAND)
    return {
        "slot": tx.slot,
        "confirmations": None,
        "err": err,
        "status": {"Ok": None} if err is None else {"Err": err},
        "confirmationStatus": "finalized",
    }


def _transaction(tx: ChainTx | None) -> dict[str, Any] | None:
    status = _status(tx)
    if tx is None or status is None:
        return None
    out_token = find_token(tx.token_out)
    assert out_token is not None
    logs = [f"Program {p.PROGRAMS[tx.venue]} invoke [1]", f"Program log: Memo {tx.order_id}"]
    meta: dict[str, Any] = {
        "err": status["err"],
        "status": status["status"],
        "fee": 5000,
        "preBalances": [],
        "postBalances": [],
        "preTokenBalances": [],
        "postTokenBalances": [],
        "logMessages": logs,
    }
    if tx.status == LANDED and tx.amount_out is not None:
        out_units = p.to_base_units(tx.amount_out, out_token)
        # What the swap program returns: the amount out, a little-endian u64.
        meta["returnData"] = {
            "programId": p.PROGRAMS[tx.venue],
            "data": [base64.b64encode(struct.pack("<Q", out_units)).decode(), "base64"],
        }
        logs.append(f"Program log: swap amount_out={out_units}")
        logs.append(f"Program {p.PROGRAMS[tx.venue]} success")
    else:
        logs.append(f"Program {p.PROGRAMS[tx.venue]} failed: {tx.reason}")
    return {
        "slot": tx.slot,
        "blockTime": int(time.time()),
        "transaction": [tx.payload, "base64"],
        "meta": meta,
        "version": "legacy",
    }


def _accounts(cluster: Cluster) -> dict[str, tuple[str, str, str]]:
    return {
        p.pool_address(venue, base, quote): (venue, base, quote)
        for venue in VENUES
        for base, quote in cluster.market.pairs(venue)
    }


async def _rpc(cluster: Cluster, method: str, params: list[Any]) -> Any:
    slot = cluster.slot()
    context = {"slot": slot, "apiVersion": "2.0.0"}
    if method == "getHealth":
        if not cluster.healthy:
            raise RpcError(p.RPC_NODE_UNHEALTHY, "Node is unhealthy: its ledger cannot be saved")
        return "ok"
    if method in ("getSlot", "getBlockHeight"):
        return slot
    if method == "getEpochInfo":
        return {
            "absoluteSlot": slot,
            "blockHeight": slot,
            "epoch": slot // p.SLOTS_PER_EPOCH,
            "slotIndex": slot % p.SLOTS_PER_EPOCH,
            "slotsInEpoch": p.SLOTS_PER_EPOCH,
            "transactionCount": None,
        }
    if method == "getLatestBlockhash":
        blockhash, last_valid = cluster.latest_blockhash()
        return {
            "context": context,
            "value": {"blockhash": blockhash, "lastValidBlockHeight": last_valid},
        }
    if method == "sendTransaction":
        if not params or not isinstance(params[0], str):
            raise RpcError(p.RPC_INVALID_PARAMS, "params: expected [encodedTransaction, config]")
        config = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
        if config.get("encoding", "base58") != "base64":
            raise RpcError(p.RPC_INVALID_PARAMS, "only encoding=base64 is supported")
        try:
            return await cluster.send(params[0])
        except TxRefused as err:
            raise RpcError(p.RPC_TX_REFUSED, f"Transaction refused: {err}") from None
    if method == "getSignatureStatuses":
        signatures = params[0] if params and isinstance(params[0], list) else None
        if signatures is None or not all(isinstance(s, str) for s in signatures):
            raise RpcError(p.RPC_INVALID_PARAMS, "params: expected [[signature, ...]]")
        if len(signatures) > MAX_SIGNATURES:
            raise RpcError(p.RPC_INVALID_PARAMS, f"Too many inputs provided; max {MAX_SIGNATURES}")
        found = await cluster.statuses(signatures)
        return {"context": context, "value": [_status(tx) for tx in found]}
    if method == "getTransaction":
        if not params or not isinstance(params[0], str):
            raise RpcError(p.RPC_INVALID_PARAMS, "params: expected [signature, config]")
        return _transaction((await cluster.statuses([params[0]]))[0])
    if method == "getAccountInfo":
        if not params or not isinstance(params[0], str):
            raise RpcError(p.RPC_INVALID_PARAMS, "params: expected [address, config]")
        account = _accounts(cluster).get(params[0])
        if account is None:
            return {"context": context, "value": None}
        venue, base, quote = account
        mid = cluster.market.mid_price(venue, base, quote, cluster.now())
        info = {
            "venue": venue,
            "baseMint": p.mint_of(base),
            "quoteMint": p.mint_of(quote),
            "price": str(mid),
        }
        return {
            "context": context,
            "value": {
                "data": {
                    "parsed": {"type": "pool", "info": info},
                    "program": p.LABELS[venue],
                    "space": 0,
                },
                "executable": False,
                "lamports": 0,
                "owner": p.PROGRAMS[venue],
                "rentEpoch": 0,
                "space": 0,
            },
        }
    raise RpcError(p.RPC_METHOD_NOT_FOUND, f"Method not found: {method[:64]}")


async def _one_rpc(cluster: Cluster, call: Any) -> dict[str, Any]:
    call_id = call.get("id") if isinstance(call, dict) else None
    try:
        if (
            not isinstance(call, dict)
            or call.get("jsonrpc") != "2.0"
            or not isinstance(call.get("method"), str)
        ):
            raise RpcError(p.RPC_INVALID_REQUEST, "Invalid request")
        params = call.get("params", [])
        if not isinstance(params, list):
            raise RpcError(p.RPC_INVALID_PARAMS, "params must be an array")
        result = await _rpc(cluster, call["method"], params)
    except RpcError as err:
        return {
            "jsonrpc": "2.0",
            "error": {"code": err.code, "message": err.message},
            "id": call_id,
        }
    return {"jsonrpc": "2.0", "result": result, "id": call_id}


# -- the app ------------------------------------------------------------------------------


def create_chain_app(cluster: Cluster) -> Starlette:
    async def rpc(request: Request) -> Response:
        try:
            body = jsoncodec.loads(await request.body())
        except ValueError:
            return _json(
                {"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": None}
            )
        if isinstance(body, list):
            return _json([await _one_rpc(cluster, call) for call in body[:MAX_SIGNATURES]])
        return _json(await _one_rpc(cluster, body))

    async def quote(request: Request) -> Response:
        return await quote_response(cluster, request)

    async def health(_: Request) -> Response:
        ok = cluster.healthy
        return Response("ok" if ok else "unhealthy", status_code=200 if ok else 503)

    async def body_of(request: Request) -> dict[str, Any]:
        try:
            body = jsoncodec.loads(await request.body())
        except ValueError:
            raise _Bad("body: not JSON") from None
        if not isinstance(body, dict):
            raise _Bad("body: expected an object")
        return body

    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            cluster.faults.clear()
        elif request.method == "POST":
            try:
                body = await body_of(request)
                venues = VENUES if body.get("venue") == "all" else (body.get("venue"),)
                kind = body.get("kind")
                if not set(venues) <= set(VENUES) or kind not in FAULT_KINDS:
                    raise _Bad("venue or kind unknown")
                for venue in venues:
                    assert venue is not None
                    cluster.faults.arm(
                        venue,
                        kind,
                        body.get("count"),
                        body.get("durationMs"),
                        int(body.get("bps", 0)),
                    )
            except _Bad as err:
                return _error(400, "INVALID_REQUEST", str(err))
            return _json({"armed": cluster.faults.armed()}, 201)
        return _json({"armed": cluster.faults.armed()})

    async def launch(request: Request) -> Response:
        try:
            body = await body_of(request)
            token = _mint(body.get("mint"), "mint")
            venue = p.venue_of(str(body.get("venue", "")))
            if venue is None or token.symbol == "SOL":
                raise _Bad("venue unknown, or SOL (the quote side of every launch)")
        except (_Bad, ValueError) as err:
            return _error(400, "INVALID_REQUEST", str(err))
        already = await cluster.launch(token.symbol, venue)
        return _json({"mint": token.mint, "venue": venue, "alreadyOpen": already})

    async def price(request: Request) -> Response:
        try:
            body = await body_of(request)
            token = _mint(body.get("mint"), "mint")
            venue = p.venue_of(str(body.get("venue", "")))
            bps = body.get("bps")
            if venue is None or not isinstance(bps, int) or bps <= -10_000:
                raise _Bad("venue unknown or bps not an integer above -10000")
        except (_Bad, ValueError) as err:
            return _error(400, "INVALID_REQUEST", str(err))
        await cluster.jump(venue, token.symbol, bps)
        return _json({"mint": token.mint, "venue": venue, "bps": bps})

    async def view(request: Request) -> Response:
        try:
            body = await body_of(request)
            pairs = [(_mint(a, "pairs"), _mint(b, "pairs")) for a, b in body.get("pairs", [])]
            quotes = [
                (_mint(a, "quotes"), _mint(b, "quotes"), int(u))
                for a, b, u in body.get("quotes", [])
            ]
            tokens = [_mint(m, "tokens") for m in body.get("tokens", [])]
        except (_Bad, ValueError, TypeError) as err:
            return _error(400, "INVALID_REQUEST", str(err))
        slot = cluster.slot()
        at = cluster.now(slot)  # everything below reads the market as of this one slot
        mids = [
            {
                v: (str(m) if m is not None else None)
                for v, m in cluster.mids(a.symbol, b.symbol, at).items()
            }
            for a, b in pairs
        ]
        references = (
            [str(cluster.reference(a.symbol, b.symbol, at)) for a, b in pairs]
            if body.get("reference")
            else []
        )
        prices = []
        for a, b, units in quotes:
            best = cluster.best_price(a.symbol, b.symbol, p.from_base_units(units, a), at)
            prices.append(str(best) if best is not None else None)
        tradable = [cluster.market.is_tradable(t.symbol) for t in tokens]
        return _json(
            {
                "slot": slot,
                "mids": mids,
                "reference": references,
                "prices": prices,
                "tradable": tradable,
            }
        )

    return Starlette(
        routes=[
            Route("/", rpc, methods=["POST"]),
            Route("/quote", quote, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/mock/faults", faults, methods=["GET", "POST", "DELETE"]),
            Route("/mock/launch", launch, methods=["POST"]),
            Route("/mock/price", price, methods=["POST"]),
            Route("/market/view", view, methods=["POST"]),
        ]
    )


class _Bad(Exception):
    pass
