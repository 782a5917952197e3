"""The chain's HTTP face: a Jupiter-style quote API, a Solana JSON-RPC subset, mock controls.

Shapes follow the real services (amounts in base units as strings, tokens by mint,
`{"context": {"slot"}, "value"}` wrappers where Solana has them), so client code
written against this chain reads like client code for the real ones. Two additions
are the simulation's own: `/mock/*` (scripted faults, launches, price moves) and
`POST /market/view` (many mids and prices in one call, for trigger books and charts).
"""

from __future__ import annotations

import asyncio
import base64
import struct
from decimal import Decimal
from typing import Any

import msgspec
import structlog
from solders.pubkey import Pubkey
from solders.transaction import Transaction
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dexecutor import jsoncodec
from dexecutor.chain import protocol as p
from dexecutor.chain import transaction
from dexecutor.chain.accounts import NATIVE, TOKEN_PROGRAM, token_account
from dexecutor.chain.cluster import MAX_AIRDROP, ChainBehind, Cluster, TxRefused
from dexecutor.chain.records import LANDED, REVERTED, ChainTx
from dexecutor.domain.failures import FailureReason
from dexecutor.market import split
from dexecutor.market.tokens import Token, find_token
from dexecutor.market.types import VENUES, MarketError, Quote, quote_fields
from dexecutor.market.venue import FAULT_KINDS

log = structlog.get_logger(__name__)

MAX_SIGNATURES = 256


def _json(body: Any, status: int = 200) -> Response:
    return Response(jsoncodec.dumps(body), status_code=status, media_type="application/json")


# JSON-RPC answers hold strings, integers, floats, booleans and nulls (amounts in base
# units, as Solana's; a request id echoed as it came): encoded as they are, without
# `jsoncodec`'s walk for decimals and datetimes, which cost a getTransaction batch more
# than its encoding did.
_RPC_ENCODER = msgspec.json.Encoder(decimal_format="number")


def _rpc_json(body: Any) -> Response:
    return Response(_RPC_ENCODER.encode(body), media_type="application/json")


def _error(status: int, code: str, message: str, reason: str | None = None) -> Response:
    body: dict[str, Any] = {"error": message, "errorCode": code}
    if reason is not None:
        body["reason"] = reason
    return _json(body, status)


# A node's -32005 carries its lag, as Solana's does (null: unknown). Clients parse it
# strictly: solders' response types panic on a -32005 without it.
UNHEALTHY_DATA: dict[str, Any] = {"numSlotsBehind": None}


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


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
            venue_quotes[venue] = quote_fields(answer)
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

# Slots from landing until a transaction is finalized (Solana: 32, the lockout depth).
FINALIZED_AFTER = 32
U64_MAX = 2**64 - 1
_COMMITMENTS = ("processed", "confirmed", "finalized")


def _level(tx: ChainTx, slot: int) -> tuple[str, int | None]:
    """A landed transaction's confirmation level at `slot`, and its confirmations."""
    assert tx.slot is not None
    age = max(slot - tx.slot, 0)
    if age >= FINALIZED_AFTER:
        return "finalized", None
    return ("confirmed" if age >= 1 else "processed"), age


def _err(tx: ChainTx) -> Any:
    if tx.meta is not None:
        return tx.meta["err"]
    return None if tx.status == LANDED else p.error_of(tx.reason or FailureReason.TX_FAILED)


def _status(tx: ChainTx | None, slot: int) -> dict[str, Any] | None:
    """Solana's status of a signature: None until it lands (also when lost or expired)."""
    if tx is None or tx.status not in (LANDED, REVERTED) or tx.slot is None:
        return None
    level, confirmations = _level(tx, slot)
    err = _err(tx)
    return {
        "slot": tx.slot,
        "confirmations": confirmations,
        "err": err,
        "status": {"Ok": None} if err is None else {"Err": err},
        "confirmationStatus": level,
    }


def _ui_amount(units: int, decimals: int) -> dict[str, Any]:
    exact = Decimal(units).scaleb(-decimals)
    text = f"{exact:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return {
        "amount": str(units),
        "decimals": decimals,
        "uiAmount": float(exact),
        "uiAmountString": text,
    }


def _token_balances(
    held: dict[str, int | None], owner: str, keys: list[str]
) -> list[dict[str, Any]]:
    """Token balances in getTransaction's shape (the index is the mint's account: the
    simulation's swap lists mints, not token accounts)."""
    out = []
    for mint, units in held.items():
        token = p.token_by_mint(mint)
        if mint == NATIVE or units is None or token is None or mint not in keys:
            continue
        out.append(
            {
                "accountIndex": keys.index(mint),
                "mint": mint,
                "owner": owner,
                "programId": TOKEN_PROGRAM,
                "uiTokenAmount": _ui_amount(units, token.decimals),
            }
        )
    return out


def _json_transaction(tx: Transaction) -> dict[str, Any]:
    """A transaction in getTransaction's `json` encoding."""
    message = tx.message
    header = message.header
    return {
        "signatures": [str(sig) for sig in tx.signatures],
        "message": {
            "accountKeys": [str(key) for key in message.account_keys],
            "header": {
                "numRequiredSignatures": header.num_required_signatures,
                "numReadonlySignedAccounts": header.num_readonly_signed_accounts,
                "numReadonlyUnsignedAccounts": header.num_readonly_unsigned_accounts,
            },
            "recentBlockhash": str(message.recent_blockhash),
            "instructions": [
                {
                    "programIdIndex": ix.program_id_index,
                    "accounts": list(bytes(ix.accounts)),
                    "data": p.b58encode(bytes(ix.data)),
                    "stackHeight": None,
                }
                for ix in message.instructions
            ],
        },
    }


def _logs(program: str, meta: dict[str, Any], units: int, limit: int) -> list[str]:
    budget = "ComputeBudget111111111111111111111111111111"
    logs = [f"Program {budget} invoke [1]", f"Program {budget} success"] * 2
    logs += [f"Program {program} invoke [1]", "Program log: Instruction: Swap"]
    err = meta["err"]
    if err is None:
        logs += [
            f"Program log: amount_out={meta['out']}",
            f"Program {program} consumed {units} of {limit} compute units",
            f"Program return: {program} {_return_data(meta['out'])}",
            f"Program {program} success",
            f"Program {transaction.MEMO_PROGRAM} invoke [1]",
            f"Program {transaction.MEMO_PROGRAM} success",
        ]
    else:
        code = err["InstructionError"][1]["Custom"]
        logs += [
            f"Program log: Error: {_MESSAGES.get(code, 'the swap failed')}",
            f"Program {program} consumed {units} of {limit} compute units",
            f"Program {program} failed: custom program error: {code:#x}",
        ]
    return logs


_MESSAGES = {
    1: "insufficient funds",
    6001: "Slippage tolerance exceeded",
    6002: "not enough liquidity",
    6003: "no route",
}


def _return_data(units: int) -> str:
    # What the swap program returns: the amount out, a little-endian u64.
    return base64.b64encode(struct.pack("<Q", units)).decode()


def _transaction(tx: ChainTx | None, slot: int, encoding: str, commitment: str) -> Any:
    """getTransaction's answer: None until landed (and at the commitment asked)."""
    status = _status(tx, slot)
    if tx is None or status is None:
        return None
    if commitment == "finalized" and status["confirmationStatus"] != "finalized":
        return None
    if commitment == "confirmed" and status["confirmationStatus"] == "processed":
        return None
    try:
        swap, signed = transaction.decode(tx.payload)
    except ValueError:
        return None  # a transaction of an older chain: not readable in this shape
    meta = tx.meta or {}
    keys = [str(key) for key in signed.message.account_keys]
    pre: dict[str, int | None] = meta.get("pre", {})
    post: dict[str, int | None] = meta.get("post", {})
    owner = swap.owner
    units = int(meta.get("units", 0))
    program = str(signed.message.account_keys[signed.message.instructions[2].program_id_index])
    lamports_pre = [int(pre.get(NATIVE) or 0)] + [0] * (len(keys) - 1)
    lamports_post = [int(post.get(NATIVE) or 0)] + [0] * (len(keys) - 1)
    body: dict[str, Any] = {
        "err": status["err"],
        "status": status["status"],
        "fee": tx.fee,
        "preBalances": lamports_pre,
        "postBalances": lamports_post,
        "innerInstructions": [],
        "logMessages": _logs(program, meta, units, swap.compute_unit_limit) if meta else [],
        "preTokenBalances": _token_balances(pre, owner, keys),
        "postTokenBalances": _token_balances(post, owner, keys),
        "rewards": [],
        "loadedAddresses": {"writable": [], "readonly": []},
        "computeUnitsConsumed": units,
    }
    if status["err"] is None and meta.get("out") is not None:
        body["returnData"] = {"programId": program, "data": [_return_data(meta["out"]), "base64"]}
    return {
        "slot": tx.slot,
        "blockTime": meta.get("blockTime"),
        "transaction": _json_transaction(signed) if encoding == "json" else [tx.payload, "base64"],
        "meta": body,
        "version": "legacy",
    }


def _accounts(cluster: Cluster) -> dict[str, tuple[str, str, str]]:
    return {
        p.pool_address(venue, base, quote): (venue, base, quote)
        for venue in VENUES
        for base, quote in cluster.market.pairs(venue)
    }


def _pubkey(value: Any, name: str = "pubkey") -> str:
    if isinstance(value, str) and 32 <= len(value) <= 44:
        try:
            return str(Pubkey.from_string(value))
        except ValueError:
            pass
    raise RpcError(p.RPC_INVALID_PARAMS, f"Invalid param: {name} is not a valid public key")


def _config(params: list[Any], at: int) -> dict[str, Any]:
    config = params[at] if len(params) > at else None
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise RpcError(p.RPC_INVALID_PARAMS, "Invalid params: the configuration is not an object")
    return config


def _commitment(config: dict[str, Any], default: str = "finalized") -> str:
    commitment = config.get("commitment") or default
    if commitment not in _COMMITMENTS:
        raise RpcError(p.RPC_INVALID_PARAMS, f"Invalid commitment {str(commitment)[:20]!r}")
    return str(commitment)


def _token_account(cluster: Cluster, owner: str, mint: str, encoding: str) -> dict[str, Any]:
    """An SPL token account in getTokenAccountsByOwner's shape."""
    units = cluster.accounts.token(owner, mint) or 0
    token = p.token_by_mint(mint)
    assert token is not None
    data: Any
    if encoding == "jsonParsed":
        data = {
            "program": "spl-token",
            "parsed": {
                "info": {
                    "isNative": False,
                    "mint": mint,
                    "owner": owner,
                    "state": "initialized",
                    "tokenAmount": _ui_amount(units, token.decimals),
                },
                "type": "account",
            },
            "space": TOKEN_ACCOUNT_SPACE,
        }
    else:
        data = [base64.b64encode(_token_account_bytes(owner, mint, units)).decode(), "base64"]
    return {
        "pubkey": token_account(owner, mint),
        "account": {
            "data": data,
            "executable": False,
            "lamports": transaction.TOKEN_ACCOUNT_RENT,
            "owner": TOKEN_PROGRAM,
            "rentEpoch": U64_MAX,
            "space": TOKEN_ACCOUNT_SPACE,
        },
    }


TOKEN_ACCOUNT_SPACE = 165


def _token_account_bytes(owner: str, mint: str, units: int) -> bytes:
    """The SPL token account layout: mint, owner, amount, no delegate, initialized."""
    return (
        bytes(Pubkey.from_string(mint))
        + bytes(Pubkey.from_string(owner))
        + struct.pack("<Q", units)
        + bytes(36)  # delegate: none
        + b"\x01"  # state: initialized
        + bytes(12)  # is_native: none
        + struct.pack("<Q", 0)  # delegated amount
        + bytes(36)  # close authority: none
    )


async def _send(cluster: Cluster, params: list[Any]) -> str:
    if not params or not isinstance(params[0], str):
        raise RpcError(p.RPC_INVALID_PARAMS, "params: expected [encodedTransaction, config]")
    config = _config(params, 1)
    encoding = config.get("encoding", "base58")
    if encoding == "base58":
        try:
            encoded = base64.b64encode(p.b58decode(params[0])).decode()
        except ValueError:
            raise RpcError(p.RPC_INVALID_PARAMS, "invalid transaction: not base58") from None
    elif encoding == "base64":
        encoded = params[0]
    else:
        raise RpcError(p.RPC_INVALID_PARAMS, f"unsupported encoding: {str(encoding)[:20]}")
    try:
        return await cluster.send(encoded)
    except TxRefused as refusal:
        if refusal.err is None:
            raise RpcError(refusal.code, refusal.message) from None
        data = {
            "accounts": None,
            "err": refusal.err,
            "innerInstructions": None,
            "logs": [],
            "replacementBlockhash": None,
            "returnData": None,
            "unitsConsumed": 0,
        }
        message = f"Transaction simulation failed: {refusal.message}"
        raise RpcError(refusal.code, message, data) from None


async def _statuses(cluster: Cluster, signatures: list[str]) -> list[ChainTx | None]:
    try:
        return await cluster.statuses(signatures)
    except ChainBehind as err:
        raise RpcError(p.RPC_NODE_UNHEALTHY, f"Node is behind: {err}", UNHEALTHY_DATA) from None


async def _rpc(cluster: Cluster, method: str, params: list[Any]) -> Any:
    slot = cluster.slot()
    context = {"slot": slot, "apiVersion": "2.0.0"}
    if method == "getHealth":
        if not cluster.healthy:
            message = "Node is unhealthy: its ledger cannot be saved"
            raise RpcError(p.RPC_NODE_UNHEALTHY, message, UNHEALTHY_DATA)
        return "ok"
    if method in ("getSlot", "getBlockHeight"):
        return slot  # one block a slot: no skipped slots here
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
    if method == "isBlockhashValid":
        if not params or not isinstance(params[0], str):
            raise RpcError(p.RPC_INVALID_PARAMS, "params: expected [blockhash, config]")
        return {"context": context, "value": cluster.blockhash_slot(params[0]) is not None}
    if method == "sendTransaction":
        return await _send(cluster, params)
    if method == "getSignatureStatuses":
        signatures = params[0] if params and isinstance(params[0], list) else None
        if signatures is None or not all(isinstance(s, str) for s in signatures):
            raise RpcError(p.RPC_INVALID_PARAMS, "params: expected [[signature, ...]]")
        if len(signatures) > MAX_SIGNATURES:
            raise RpcError(p.RPC_INVALID_PARAMS, f"Too many inputs provided; max {MAX_SIGNATURES}")
        # The context slot is read first: whatever landed before it is in the answer.
        found = await _statuses(cluster, signatures)
        return {
            "context": context,
            "value": [
                cluster.airdrop_status(sig, slot) or _status(tx, slot)
                for sig, tx in zip(signatures, found, strict=True)
            ],
        }
    if method == "getTransaction":
        if not params or not isinstance(params[0], str):
            raise RpcError(p.RPC_INVALID_PARAMS, "params: expected [signature, config]")
        config = _config(params, 1)
        encoding = config.get("encoding", "json")
        if encoding not in ("json", "base64"):
            raise RpcError(p.RPC_INVALID_PARAMS, f"unsupported encoding: {str(encoding)[:20]}")
        commitment = _commitment(config)
        if commitment == "processed":
            raise RpcError(
                p.RPC_INVALID_PARAMS, "Method does not support commitment below `confirmed`"
            )
        (read,) = await _statuses(cluster, [params[0]])
        return _transaction(read, slot, encoding, commitment)
    if method == "getBalance":
        owner = _pubkey(params[0] if params else None)
        return {"context": context, "value": cluster.accounts.lamports(owner)}
    if method == "getTokenAccountsByOwner":
        owner = _pubkey(params[0] if params else None)
        which = _config(params, 1)
        encoding = _config(params, 2).get("encoding", "base64")
        if encoding not in ("jsonParsed", "base64"):
            raise RpcError(p.RPC_INVALID_PARAMS, f"unsupported encoding: {str(encoding)[:20]}")
        if "mint" in which:
            mints = [_pubkey(which["mint"], "mint")]
        elif which.get("programId") == TOKEN_PROGRAM:
            mints = cluster.accounts.token_mints(owner)
        elif "programId" in which:
            raise RpcError(p.RPC_INVALID_PARAMS, "Invalid param: unrecognized Token program id")
        else:
            raise RpcError(p.RPC_INVALID_PARAMS, "Invalid params: expected {mint} or {programId}")
        held = [m for m in mints if m != NATIVE and cluster.accounts.token(owner, m) is not None]
        return {
            "context": context,
            "value": [_token_account(cluster, owner, m, encoding) for m in held],
        }
    if method == "getRecentPrioritizationFees":
        return [{"slot": s, "prioritizationFee": fee} for s, fee in cluster.recent_fees()]
    if method == "requestAirdrop":
        owner = _pubkey(params[0] if params else None)
        lamports = params[1] if len(params) > 1 else None
        if not isinstance(lamports, int) or not 0 < lamports <= MAX_AIRDROP:
            raise RpcError(p.RPC_INVALID_PARAMS, "Invalid param: lamports")
        try:
            return await cluster.request_airdrop(owner, lamports)
        except ValueError as err:
            raise RpcError(p.RPC_INVALID_PARAMS, f"Invalid param: {err}") from None
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
        error: dict[str, Any] = {"code": err.code, "message": err.message}
        if err.data is not None:
            error["data"] = err.data
        return {"jsonrpc": "2.0", "error": error, "id": call_id}
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
            # The calls of a batch run together, as a node serves them: a batch of
            # sendTransaction then waits for one save of the ledger, not one each.
            # Each call's synchronous part runs in the batch's order.
            calls = body[:MAX_SIGNATURES]
            return _rpc_json(await asyncio.gather(*(_one_rpc(cluster, c) for c in calls)))
        return _rpc_json(await _one_rpc(cluster, body))

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
                        int(body.get("slots") or 0),
                    )
            except (_Bad, ValueError, TypeError) as err:
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

    async def airdrop(request: Request) -> Response:
        """The faucet: any token (SOL's mint: lamports), in base units."""
        try:
            body = await body_of(request)
            owner = _pubkey(body.get("owner"), "owner")
            token = _mint(body.get("mint"), "mint")
            amount = body.get("amount")
            units = int(amount) if isinstance(amount, (str, int)) else 0
            if not 0 < units <= MAX_AIRDROP:
                raise _Bad(f"amount: base units as a positive integer up to {MAX_AIRDROP}")
        except (_Bad, ValueError, RpcError) as err:
            return _error(400, "INVALID_REQUEST", str(err))
        try:
            balance = await cluster.airdrop(owner, token.mint, units)
        except ValueError as err:
            return _error(400, "INVALID_REQUEST", str(err))
        return _json({"owner": owner, "mint": token.mint, "balance": str(balance)})

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
            Route("/mock/airdrop", airdrop, methods=["POST"]),
            Route("/market/view", view, methods=["POST"]),
        ]
    )


class _Bad(Exception):
    pass
