"""The wire format the chain service and its clients share.

Modelled on the real ones so a real adapter could take the client's place: amounts
travel in base units as strings, tokens by mint, venues by Jupiter's AMM labels, and
a transaction is opaque encoded bytes whose signature is known before it is sent.

Until transactions are signed (wallets come later), a transaction is a small JSON
message, base64-encoded, and its "signature" is the base58 of its SHA-512 digest: 64
bytes, like an ed25519 signature, so the same bytes always carry the same signature
and the chain deduplicates a re-send by it. What the engine records before sending is
exactly what it sends again after a crash.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

from solders.hash import Hash
from solders.pubkey import Pubkey
from solders.signature import Signature

from dexecutor.domain.failures import FailureReason
from dexecutor.market.tokens import TOKENS, Token, find_token
from dexecutor.market.types import VENUES

SLOT_MS = 400
SLOTS_PER_EPOCH = 432_000  # as on mainnet: about two days of 400 ms slots
# A blockhash is valid for this many blocks after the one it names (Solana: 150).
BLOCKHASH_VALID_SLOTS = 150

# Jupiter's labels for the venues' AMMs; `dexes=` takes these (or the venue names).
LABELS: dict[str, str] = {"raydium": "Raydium", "meteora": "Meteora DLMM"}
_BY_LABEL = {label.lower(): venue for venue, label in LABELS.items()}
_BY_MINT: dict[str, Token] = {t.mint: t for t in TOKENS}

# The programs whose swaps the chain runs (the real mainnet program ids).
PROGRAMS: dict[str, str] = {
    "raydium": "675kPX9MHTjS2zt1qfr1NYHuzeLXfQM9H24wFSUt1Mp8",
    "meteora": "LBUZKhRxPF3XUpBCjp4YzTKgLccjZhTSDM9t5ZbwiAo",
}

# JSON-RPC error codes (Solana's where it has one).
RPC_INVALID_REQUEST = -32600
RPC_METHOD_NOT_FOUND = -32601
RPC_INVALID_PARAMS = -32602
RPC_NODE_UNHEALTHY = -32005
RPC_TX_REFUSED = -32002  # Solana: "Transaction simulation failed"

# Program error codes a swap fails with (Custom errors of the swap instruction).
# 6001 (0x1771) is the slippage error real aggregator programs raise.
CUSTOM_ERRORS: dict[str, int] = {
    FailureReason.SLIPPAGE_EXCEEDED: 6001,
    FailureReason.INSUFFICIENT_LIQUIDITY: 6002,
    FailureReason.NO_ROUTE: 6003,
}
_BY_CODE = {code: reason for reason, code in CUSTOM_ERRORS.items()}
# Until transactions really expire (wallets and blockhashes come later), a dropped
# transaction is reported at once with this error rather than by its blockhash expiring.
DROPPED = "TransactionDropped"
EXPIRED = "BlockhashNotFound"


def venue_of(name: str) -> str | None:
    """A venue from its name or its Jupiter label, case-insensitively."""
    lowered = name.strip().lower()
    if lowered in VENUES:
        return lowered
    return _BY_LABEL.get(lowered)


def token_by_mint(mint: str) -> Token | None:
    return _BY_MINT.get(mint)


def mint_of(symbol: str) -> str:
    token = find_token(symbol)
    if token is None:
        raise ValueError(f"unknown token {symbol!r}")
    return token.mint


def to_base_units(amount: Decimal, token: Token) -> int:
    """An amount at the token's precision as an integer count of base units (exact)."""
    units = amount.scaleb(token.decimals)
    if units != units.to_integral_value():
        raise ValueError(f"{amount} has more than {token.decimals} decimals")
    return int(units)


def from_base_units(units: int | str, token: Token) -> Decimal:
    return Decimal(int(units)).scaleb(-token.decimals)


def pool_address(venue: str, base: str, quote: str) -> str:
    """A stable address for a venue's pool of a pair (its `ammKey`)."""
    return str(Pubkey(hashlib.sha256(f"pool:{venue}:{base}:{quote}".encode()).digest()))


def blockhash_of(genesis: str, slot: int) -> str:
    """The blockhash of a slot: a digest of the cluster's genesis and the slot."""
    return str(Hash(hashlib.sha256(f"{genesis}:{slot}".encode()).digest()))


def error_of(reason: str) -> Any:
    """The transaction error (Solana's `err` shape) for a failure reason."""
    if reason == FailureReason.FAILED_TO_LAND:
        return DROPPED
    if reason == FailureReason.TX_EXPIRED:
        return EXPIRED
    return {"InstructionError": [0, {"Custom": CUSTOM_ERRORS.get(reason, 6000)}]}


def reason_of(err: Any) -> str:
    """The failure reason a transaction error maps to."""
    if err == DROPPED:
        return FailureReason.FAILED_TO_LAND
    if err == EXPIRED:
        return FailureReason.TX_EXPIRED
    if isinstance(err, dict) and "InstructionError" in err:
        detail = err["InstructionError"][1]
        if isinstance(detail, dict) and "Custom" in detail:
            return _BY_CODE.get(int(detail["Custom"]), FailureReason.SLIPPAGE_EXCEEDED)
    return FailureReason.FAILED_TO_LAND


@dataclass(frozen=True, slots=True)
class SwapTx:
    """One swap transaction: what the engine records, sends, and re-sends."""

    venue: str
    token_in: str
    token_out: str
    amount_in: Decimal
    min_amount_out: Decimal
    order_id: UUID
    attempt: int
    recent_blockhash: str
    last_valid_block_height: int

    @property
    def memo(self) -> str:
        """The order and attempt, as the memo instruction of a real swap would carry it."""
        return f"dexecutor:{self.order_id}:{self.attempt}"

    def encode(self) -> str:
        """The transaction as base64 (sendTransaction's `encoding: base64`)."""
        t_in, t_out = _token(self.token_in), _token(self.token_out)
        message = {
            "program": PROGRAMS[self.venue],
            "inputMint": t_in.mint,
            "outputMint": t_out.mint,
            "amountIn": str(to_base_units(self.amount_in, t_in)),
            "minimumAmountOut": str(to_base_units(self.min_amount_out, t_out)),
            "memo": self.memo,
            "recentBlockhash": self.recent_blockhash,
            "lastValidBlockHeight": self.last_valid_block_height,
        }
        raw = json.dumps(message, separators=(",", ":"), sort_keys=True).encode()
        return base64.b64encode(raw).decode()

    @staticmethod
    def decode(encoded: str) -> SwapTx:
        """Parse a transaction; ValueError when it is not one this chain can run."""
        try:
            message = json.loads(base64.b64decode(encoded, validate=True))
            venue = next(v for v, p in PROGRAMS.items() if p == message["program"])
            t_in = token_by_mint(message["inputMint"])
            t_out = token_by_mint(message["outputMint"])
            if t_in is None or t_out is None:
                raise ValueError("unknown mint")
            prefix, order, attempt = str(message["memo"]).split(":")
            if prefix != "dexecutor":
                raise ValueError("memo is not an order's")
            return SwapTx(
                venue=venue,
                token_in=t_in.symbol,
                token_out=t_out.symbol,
                amount_in=from_base_units(message["amountIn"], t_in),
                min_amount_out=from_base_units(message["minimumAmountOut"], t_out),
                order_id=UUID(order),
                attempt=int(attempt),
                recent_blockhash=str(message["recentBlockhash"]),
                last_valid_block_height=int(message["lastValidBlockHeight"]),
            )
        except (ValueError, KeyError, TypeError, StopIteration) as err:
            raise ValueError(f"not a swap transaction this chain can run: {err}") from None


def signature_of(encoded: str) -> str:
    """The transaction's signature (base58, 64 bytes), known before it is sent."""
    digest = hashlib.sha512(base64.b64decode(encoded)).digest()
    return str(Signature.from_bytes(digest))


def _token(symbol: str) -> Token:
    token = find_token(symbol)
    if token is None:
        raise ValueError(f"unknown token {symbol!r}")
    return token
