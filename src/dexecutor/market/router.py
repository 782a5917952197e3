"""Choosing among venues' quotes: the one that gives the user the most output.

Pure and tiny on purpose: the engine gathers the quotes (with timeouts, concurrency
and fault handling that belong at the edge) and asks this module only for the decision,
so the rule is the same in the engine, the quote endpoint and the tests. Paths within
one venue (direct or multi-hop) are chosen by the venue itself, in `simulation`.
"""

from __future__ import annotations

from collections.abc import Sequence

from dexecutor.market.types import VENUES, Quote


def _venue_rank(venue: str) -> int:
    return VENUES.index(venue) if venue in VENUES else len(VENUES)


def best_quote(quotes: Sequence[Quote]) -> Quote:
    """The quote with the largest `amount_out` (after fees).

    Ties go to the venue listed first in `VENUES`, then by venue name, so the choice
    never depends on the order in which concurrent quotes happened to arrive.
    """
    if not quotes:
        raise ValueError("best_quote needs at least one quote")
    return min(quotes, key=lambda q: (-q.amount_out, _venue_rank(q.venue), q.venue))
