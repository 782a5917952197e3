"""The chain's wire format: transactions, signatures, amounts, errors (pure)."""

from __future__ import annotations

from decimal import Decimal
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st
from solders.signature import Signature

from dexecutor.chain import protocol as p
from dexecutor.market.tokens import find_token


@given(
    units_in=st.integers(min_value=1, max_value=10**18),
    units_out=st.integers(min_value=0, max_value=10**18),
    attempt=st.integers(min_value=1, max_value=20),
)
def test_a_transaction_round_trips_exactly(units_in: int, units_out: int, attempt: int) -> None:
    sol, usdc = find_token("SOL"), find_token("USDC")
    assert sol is not None and usdc is not None
    swap = p.SwapTx(
        "meteora", "SOL", "USDC", p.from_base_units(units_in, sol),
        p.from_base_units(units_out, usdc), uuid4(), attempt, "hash", 1234,
    )  # fmt: skip
    assert p.SwapTx.decode(swap.encode()) == swap


def test_a_signature_is_a_solana_signature_of_exactly_these_bytes() -> None:
    swap = p.SwapTx("raydium", "SOL", "USDC", Decimal(2), Decimal(180), uuid4(), 1, "h", 7)
    encoded = swap.encode()
    signature = p.signature_of(encoded)
    assert str(Signature.from_string(signature)) == signature
    assert p.signature_of(swap.encode()) == signature  # same bytes, same signature
    other = p.SwapTx("raydium", "SOL", "USDC", Decimal(2), Decimal(180), swap.order_id, 2, "h", 7)
    assert p.signature_of(other.encode()) != signature  # another attempt, another one


def test_amounts_beyond_a_tokens_precision_are_refused() -> None:
    usdc = find_token("USDC")
    assert usdc is not None
    assert p.to_base_units(Decimal("1.5"), usdc) == 1_500_000
    with pytest.raises(ValueError, match="decimals"):
        p.to_base_units(Decimal("1.0000001"), usdc)


@pytest.mark.parametrize("encoded", ["", "not base64!", "e30=", "eyJwcm9ncmFtIjogIngifQ=="])
def test_garbage_is_not_a_transaction(encoded: str) -> None:
    with pytest.raises(ValueError, match="not a swap transaction"):
        p.SwapTx.decode(encoded)


@pytest.mark.parametrize(
    "reason",
    ["slippage_exceeded", "insufficient_liquidity", "no_route", "failed_to_land", "tx_expired"],
)
def test_failure_reasons_survive_the_transaction_error_shape(reason: str) -> None:
    assert p.reason_of(p.error_of(reason)) == reason


def test_venues_answer_to_their_names_and_jupiters_labels() -> None:
    assert p.venue_of("Raydium") == p.venue_of("raydium") == "raydium"
    assert p.venue_of("meteora dlmm") == "meteora"
    assert p.venue_of("Orca") is None
