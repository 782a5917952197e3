"""The chain's wire format: transactions, signatures, amounts, errors (pure)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from solders.signature import Signature

from dexecutor.chain import protocol as p
from dexecutor.market.tokens import find_token


@given(data=st.binary(max_size=80))
def test_base58_round_trips_and_matches_solders(data: bytes) -> None:
    assert p.b58decode(p.b58encode(data)) == data
    if len(data) == 64:
        assert p.b58encode(data) == str(Signature.from_bytes(data))


def test_base58_refuses_what_it_has_no_digit_for() -> None:
    with pytest.raises(ValueError, match="base58"):
        p.b58decode("0OIl")


def test_amounts_beyond_a_tokens_precision_are_refused() -> None:
    usdc = find_token("USDC")
    assert usdc is not None
    assert p.to_base_units(Decimal("1.5"), usdc) == 1_500_000
    with pytest.raises(ValueError, match="decimals"):
        p.to_base_units(Decimal("1.0000001"), usdc)


@pytest.mark.parametrize(
    "reason",
    ["slippage_exceeded", "insufficient_liquidity", "no_route", "insufficient_funds", "tx_failed"],
)
def test_failure_reasons_survive_the_transaction_error_shape(reason: str) -> None:
    err = p.error_of(reason)
    assert err["InstructionError"][0] == 2  # the swap, after the two compute-budget ones
    assert p.reason_of(err) == reason


def test_the_errors_a_client_acts_on_map_to_reasons() -> None:
    assert p.error_of("slippage_exceeded") == {"InstructionError": [2, {"Custom": 0x1771}]}
    assert p.error_of("insufficient_funds") == {"InstructionError": [2, {"Custom": 1}]}
    assert p.reason_of("BlockhashNotFound") == "blockhash_expired"
    assert p.reason_of("InsufficientFundsForFee") == "insufficient_funds"
    assert p.reason_of({"InstructionError": [2, {"Custom": 42}]}) == "tx_failed"


def test_venues_answer_to_their_names_and_jupiters_labels() -> None:
    assert p.venue_of("Raydium") == p.venue_of("raydium") == "raydium"
    assert p.venue_of("meteora dlmm") == "meteora"
    assert p.venue_of("Orca") is None
