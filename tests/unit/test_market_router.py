"""Choosing the venue: most output wins, ties go to the first venue in VENUES."""

from __future__ import annotations

from decimal import Decimal

import pytest

from dexecutor.market.router import best_quote
from dexecutor.market.types import Quote


def _quote(venue: str, out: str) -> Quote:
    return Quote(
        venue=venue,
        token_in="SOL",
        token_out="USDC",
        amount_in=Decimal(2),
        amount_out=Decimal(out),
        price=Decimal(out) / 2,
        fee=Decimal("0.0025"),
        price_impact=Decimal(0),
        route=("wSOL", "USDC"),
    )


def test_the_largest_output_wins_whichever_order_quotes_arrive_in() -> None:
    ray, met = _quote("raydium", "196.2"), _quote("meteora", "197.4")
    assert best_quote([ray, met]) is met
    assert best_quote([met, ray]) is met
    assert best_quote([_quote("raydium", "198"), met]).venue == "raydium"


def test_ties_go_to_the_first_venue_in_venues() -> None:
    ray, met = _quote("raydium", "197.4"), _quote("meteora", "197.4")
    assert best_quote([met, ray]) is ray
    assert best_quote([ray, met]) is ray


def test_a_single_quote_is_the_best() -> None:
    met = _quote("meteora", "1")
    assert best_quote([met]) is met


def test_no_quotes_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one"):
        best_quote([])
