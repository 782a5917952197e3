"""Failure reason codes a client can act on, and which of them are worth retrying.

Modelled on what Solana venues report. Retryable reasons are transient: the same
order may well succeed a moment later. Permanent ones will fail the same way again.
"""

from __future__ import annotations

from enum import StrEnum


class FailureReason(StrEnum):
    SLIPPAGE_EXCEEDED = "slippage_exceeded"
    QUOTE_EXPIRED = "quote_expired"
    VENUE_UNAVAILABLE = "venue_unavailable"
    VENUE_TIMEOUT = "venue_timeout"
    FAILED_TO_LAND = "failed_to_land"
    TX_EXPIRED = "tx_expired"
    NO_ROUTE = "no_route"
    INSUFFICIENT_LIQUIDITY = "insufficient_liquidity"
    DENIED = "denied"
    INTERNAL_ERROR = "internal_error"
    # What the chain says of a transaction (see chain/transaction.py):
    INSUFFICIENT_FUNDS = "insufficient_funds"  # the wallet cannot pay the input or the fee
    BLOCKHASH_EXPIRED = "blockhash_expired"  # never landed while its blockhash was valid
    TX_FAILED = "tx_failed"  # another program error; the message carries its code


RETRYABLE: frozenset[FailureReason] = frozenset(
    {
        FailureReason.SLIPPAGE_EXCEEDED,
        FailureReason.VENUE_UNAVAILABLE,
        FailureReason.VENUE_TIMEOUT,
        FailureReason.FAILED_TO_LAND,
        FailureReason.TX_EXPIRED,
        FailureReason.BLOCKHASH_EXPIRED,  # re-signed with a new blockhash, never before
    }
)


def is_retryable(reason: str) -> bool:
    """Whether another attempt could succeed. Unknown codes are treated as permanent."""
    try:
        return FailureReason(reason) in RETRYABLE
    except ValueError:
        return False


def backoff_ms(base_ms: int, attempt: int) -> int:
    """Exponential backoff before attempt `attempt + 1`: base, 2×base, 4×base, …"""
    return int(base_ms * (2 ** max(0, attempt - 1)))
