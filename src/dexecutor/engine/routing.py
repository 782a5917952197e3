"""Asking every venue for a quote at once and choosing the route.

Shared by order execution and `GET /api/quote`, so the route a client is shown is
the route an order would take.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from dexecutor.domain.failures import FailureReason, is_retryable
from dexecutor.market.router import best_quote
from dexecutor.market.types import MarketError, Quote
from dexecutor.market.venue import Venue, VenueError

# When every venue refuses, report the refusal that says the most to the user.
_FAILURE_PRECEDENCE = (
    FailureReason.INSUFFICIENT_LIQUIDITY,
    FailureReason.VENUE_TIMEOUT,
    FailureReason.VENUE_UNAVAILABLE,
    FailureReason.NO_ROUTE,
)


@dataclass(frozen=True, slots=True)
class Decision:
    """Every venue's answer and the winner (None when no venue could quote)."""

    results: dict[str, Quote | MarketError]
    best: Quote | None

    def table(self) -> dict[str, dict[str, Any]]:
        """Per-venue quote fields (or error), as stored with the order and shown to clients."""
        return {venue: quote_fields(r) for venue, r in self.results.items()}

    def failure(self) -> MarketError:
        """The most telling refusal, when no venue quoted.

        Transient if any venue's refusal was: a venue that timed out may well quote the
        next time, so one venue's lack of liquidity must not end the order for good.
        """
        errors = [r for r in self.results.values() if isinstance(r, MarketError)]
        transient = [e for e in errors if is_retryable(e.reason)]
        if transient and len(transient) < len(errors):
            first = self._most_telling(transient)
            rest = "; ".join(e.message for e in errors if not is_retryable(e.reason))
            return MarketError(first.reason, f"{first.message}; {rest}")
        return self._most_telling(errors)

    @staticmethod
    def _most_telling(errors: list[MarketError]) -> MarketError:
        for reason in _FAILURE_PRECEDENCE:
            matching = [e for e in errors if e.reason == reason]
            if matching:
                if reason is FailureReason.NO_ROUTE and len(errors) > 1:
                    return MarketError(reason, "no venue has a route for this pair")
                return matching[0]
        return errors[0]


def quote_fields(result: Quote | MarketError) -> dict[str, Any]:
    if isinstance(result, MarketError):
        return {"error": result.reason, "message": result.message}
    return {
        "price": result.price,
        "amountOut": result.amount_out,
        "fee": result.fee,
        "priceImpact": result.price_impact,
        "route": list(result.route),
    }


async def _ask(
    venue: Venue, token_in: str, token_out: str, amount: Decimal, timeout_s: float
) -> Quote | MarketError:
    try:
        return await asyncio.wait_for(venue.quote(token_in, token_out, amount), timeout_s)
    except TimeoutError:
        return VenueError(
            FailureReason.VENUE_TIMEOUT, f"{venue.name} did not quote within {timeout_s:g}s"
        )
    except MarketError as err:
        return err


async def decide(
    venues: Iterable[Venue], token_in: str, token_out: str, amount: Decimal, timeout_s: float
) -> Decision:
    """Quote every venue concurrently (each bounded by `timeout_s`) and pick the best output."""
    venue_list = list(venues)
    answers = await asyncio.gather(
        *(_ask(v, token_in, token_out, amount, timeout_s) for v in venue_list)
    )
    results = {v.name: a for v, a in zip(venue_list, answers, strict=True)}
    quotes = [a for a in answers if isinstance(a, Quote)]
    return Decision(results, best_quote(quotes) if quotes else None)
