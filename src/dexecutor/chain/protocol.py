"""The wire format the chain service and its clients share.

Modelled on the real ones so a real adapter could take the client's place: amounts
travel in base units as strings, tokens by mint, venues by Jupiter's AMM labels, and
a transaction is a real signed Solana transaction (`transaction.py`) whose signature
is known before it is sent. The errors are Solana's: a refusal names its
TransactionError, a swap that landed and failed its program's Custom code.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any

from solders.hash import Hash
from solders.pubkey import Pubkey

from dexecutor.domain.failures import FailureReason
from dexecutor.market.tokens import TOKENS, Token, find_token
from dexecutor.market.types import VENUES

# Solana's slot length: the default of CHAIN_SLOT_MS (a chain runs at its own).
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
RPC_TX_REFUSED = -32002  # Solana: "Transaction simulation failed" (data.err says why)
RPC_SIGNATURE_FAILURE = -32003  # Solana: "Transaction signature verification failure"

# The TransactionErrors a -32002 refusal carries in `data.err` (Solana's names).
BLOCKHASH_NOT_FOUND = "BlockhashNotFound"  # unknown, or expired: re-sign with a new one
INSUFFICIENT_FUNDS_FOR_FEE = "InsufficientFundsForFee"  # the fee payer cannot pay the fee
ALREADY_PROCESSED = "AlreadyProcessed"  # the order already has another live transaction

# Program errors a landed swap fails with: Custom errors of the swap instruction (index
# 2, after the two compute-budget instructions). 1 is the SPL token program's
# InsufficientFunds; 6001 (0x1771) the slippage error real aggregator programs raise.
SWAP_INSTRUCTION = 2
CUSTOM_ERRORS: dict[str, int] = {
    FailureReason.INSUFFICIENT_FUNDS: 1,
    FailureReason.TX_FAILED: 6000,
    FailureReason.SLIPPAGE_EXCEEDED: 6001,
    FailureReason.INSUFFICIENT_LIQUIDITY: 6002,
    FailureReason.NO_ROUTE: 6003,
}
_BY_CODE = {code: reason for reason, code in CUSTOM_ERRORS.items()}


def venue_of(name: str) -> str | None:
    """A venue from its name or its Jupiter label, case-insensitively."""
    lowered = name.strip().lower()
    if lowered in VENUES:
        return lowered
    return _BY_LABEL.get(lowered)


def token_by_mint(mint: str) -> Token | None:
    return _BY_MINT.get(mint)


def token_of(symbol: str) -> Token:
    """A registry token by symbol; ValueError for one the registry does not know."""
    token = find_token(symbol)
    if token is None:
        raise ValueError(f"unknown token {symbol!r}")
    return token


def mint_of(symbol: str) -> str:
    return token_of(symbol).mint


def to_base_units(amount: Decimal, token: Token) -> int:
    """An amount at the token's precision as an integer count of base units (exact)."""
    units = amount.scaleb(token.decimals)
    if units != units.to_integral_value():
        raise ValueError(f"{amount} has more than {token.decimals} decimals")
    return int(units)


def from_base_units(units: int | str, token: Token) -> Decimal:
    return Decimal(int(units)).scaleb(-token.decimals)


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58)}


def b58encode(data: bytes) -> str:
    """Bitcoin's base58, as Solana writes instruction data and signatures."""
    number = int.from_bytes(data, "big")
    out = ""
    while number:
        number, digit = divmod(number, 58)
        out = _B58[digit] + out
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + out


def b58decode(text: str) -> bytes:
    """The bytes of a base58 string; ValueError for a character base58 lacks."""
    number = 0
    for char in text:
        digit = _B58_INDEX.get(char)
        if digit is None:
            raise ValueError("not base58")
        number = number * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * zeros + body


def pool_address(venue: str, base: str, quote: str) -> str:
    """A stable address for a venue's pool of a pair (its `ammKey`)."""
    return str(Pubkey(hashlib.sha256(f"pool:{venue}:{base}:{quote}".encode()).digest()))


def blockhash_of(genesis: str, slot: int) -> str:
    """The blockhash of a slot: a digest of the cluster's genesis and the slot."""
    return str(Hash(hashlib.sha256(f"{genesis}:{slot}".encode()).digest()))


def error_of(reason: str) -> Any:
    """The error (Solana's `err` shape) a swap that landed and failed for `reason` has."""
    code = CUSTOM_ERRORS.get(reason, CUSTOM_ERRORS[FailureReason.TX_FAILED])
    return {"InstructionError": [SWAP_INSTRUCTION, {"Custom": code}]}


def reason_of(err: Any) -> str:
    """The failure reason a transaction error (of a status or a refusal) maps to."""
    if err == BLOCKHASH_NOT_FOUND:
        return FailureReason.BLOCKHASH_EXPIRED
    if err == INSUFFICIENT_FUNDS_FOR_FEE:
        return FailureReason.INSUFFICIENT_FUNDS
    if isinstance(err, dict) and "InstructionError" in err:
        detail = err["InstructionError"][1]
        if isinstance(detail, dict) and "Custom" in detail:
            return _BY_CODE.get(int(detail["Custom"]), FailureReason.TX_FAILED)
    return FailureReason.TX_FAILED


def _token(symbol: str) -> Token:
    token = find_token(symbol)
    if token is None:
        raise ValueError(f"unknown token {symbol!r}")
    return token
