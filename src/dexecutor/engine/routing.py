"""Asking every venue for a quote at once and choosing the route.

Shared by order execution and `GET /api/quote`, so the route a client is shown is
the route an order would take.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, localcontext
from itertools import pairwise
from typing import Any, Literal, Protocol

from dexecutor.chain.protocol import LABELS, venue_of
from dexecutor.chain.transaction import Hop, Leg
from dexecutor.domain.failures import FailureReason, is_retryable
from dexecutor.domain.money import math_context
from dexecutor.domain.order import Order
from dexecutor.market.router import best_quote
from dexecutor.market.tokens import find_token, route_name
from dexecutor.market.types import VENUES, MarketError, Quote, quote_fields
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


# -- split routes: the chain's plan, in one request ---------------------------------------


SwapMode = Literal["ExactIn", "ExactOut"]


@dataclass(frozen=True, slots=True)
class RouteOptions:
    """How an order wants to be routed (SPEC §10), as given on a quote or an order.

    `dexes` None means every venue; venue names are checked (`venue_list`) before an
    order is stored, so an unknown one is a 400 and never reaches the engine.
    """

    swap_mode: SwapMode = "ExactIn"
    amount_out: Decimal | None = None  # ExactOut: the output wanted
    max_amount_in: Decimal | None = None  # ExactOut: the most to spend
    dexes: tuple[str, ...] | None = None
    exclude_dexes: tuple[str, ...] = ()
    only_direct_routes: bool = False

    @property
    def is_default(self) -> bool:
        return self == RouteOptions()

    def venues(self) -> tuple[str, ...]:
        """The venues a route may use."""
        named = VENUES if self.dexes is None else self.dexes
        return tuple(v for v in named if v not in self.exclude_dexes)

    def as_fields(self) -> dict[str, Any]:
        """As stored with the order and shown in its record (camelCase, like the API)."""
        return {
            "swapMode": self.swap_mode,
            "amountOut": self.amount_out,
            "maxAmountIn": self.max_amount_in,
            "dexes": None if self.dexes is None else list(self.dexes),
            "excludeDexes": list(self.exclude_dexes),
            "onlyDirectRoutes": self.only_direct_routes,
        }

    @staticmethod
    def from_fields(fields: Mapping[str, Any] | None) -> RouteOptions:
        if not fields:
            return RouteOptions()

        def dec(value: Any) -> Decimal | None:
            return None if value is None else Decimal(value)

        dexes = fields.get("dexes")
        return RouteOptions(
            swap_mode="ExactOut" if fields.get("swapMode") == "ExactOut" else "ExactIn",
            amount_out=dec(fields.get("amountOut")),
            max_amount_in=dec(fields.get("maxAmountIn")),
            dexes=None if dexes is None else tuple(dexes),
            exclude_dexes=tuple(fields.get("excludeDexes") or ()),
            only_direct_routes=bool(fields.get("onlyDirectRoutes")),
        )

    def query(self) -> dict[str, str]:
        """The chain's `/quote` parameters for these options (Jupiter's names)."""
        params: dict[str, str] = {"swapMode": self.swap_mode}
        if self.dexes is not None:
            params["dexes"] = ",".join(LABELS[v] for v in self.dexes)
        if self.exclude_dexes:
            params["excludeDexes"] = ",".join(LABELS[v] for v in self.exclude_dexes)
        if self.only_direct_routes:
            params["onlyDirectRoutes"] = "true"
        return params


def venue_list(value: str | Iterable[str] | None, option: str) -> tuple[str, ...] | None:
    """Venue names or Jupiter labels, as a list or comma-separated; ValueError if unknown.

    Names are returned as the engine's venue names, in `VENUES` order, without repeats.
    """
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    named: set[str] = set()
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{option}: expected venue names, got {item!r}")
        if not item.strip():
            continue
        venue = venue_of(item)
        if venue is None:
            raise ValueError(
                f"{option}: unknown venue {item.strip()[:40]!r}; expected some of "
                + ", ".join(VENUES)
            )
        named.add(venue)
    return tuple(v for v in VENUES if v in named)


@dataclass(frozen=True, slots=True)
class Routed:
    """The chain's answer to one routing request: the plan and what to show beside it.

    `plan` is `RoutePlan.as_fields()` (swapMode, amountIn, amountOut, routePlan,
    bestSingle, splitGainBps); `quotes` each venue's best single-path quote (or its
    refusal), as the `quotes` table of SPEC §4; `mid` the best spot price of the pair.
    """

    plan: Mapping[str, Any]
    quotes: dict[str, dict[str, Any]]
    mid: Decimal | None

    @property
    def amount_in(self) -> Decimal:
        return Decimal(self.plan["amountIn"])

    @property
    def amount_out(self) -> Decimal:
        return Decimal(self.plan["amountOut"])

    @property
    def dex(self) -> str:
        """The venue that carries the most of the route (the order's `dex`)."""
        legs = self.plan["routePlan"]
        top = max(legs, key=lambda leg: Decimal(str(leg["amountIn"])))  # as SwapTx.venue
        return str(top["venue"]).split("+")[0]


def single_route(quote: Quote, table: dict[str, dict[str, Any]]) -> Routed:
    """One venue's quote for the whole order, as a one-leg plan."""
    leg = {
        "venue": quote.venue,
        "path": list(quote.route),
        "percent": 100,
        "amountIn": quote.amount_in,
        "amountOut": quote.amount_out,
        "fee": quote.fee,
        "priceImpact": quote.price_impact,
    }
    plan = {
        "swapMode": "ExactIn",
        "amountIn": quote.amount_in,
        "amountOut": quote.amount_out,
        "routePlan": [leg],
        "bestSingle": leg,
        "splitGainBps": Decimal(0),
    }
    return Routed(plan, table, None)


class Router(Protocol):
    async def route(
        self, token_in: str, token_out: str, amount: Decimal, options: RouteOptions
    ) -> Routed:
        """One request: the best (split) route for `amount` (input, or output for
        ExactOut); MarketError/VenueError when there is none."""
        ...


def legs_of(route_plan: Sequence[Mapping[str, Any]]) -> tuple[Leg, ...]:
    """A `routePlan` (as in the building event and the order record) as transaction legs.

    Each leg's `venue` is one venue, or the hops' venues joined by "+"; its `path` is
    as traded (wSOL for SOL). The transaction names tokens by symbol, so wSOL is SOL.
    """
    legs: list[Leg] = []
    for entry in route_plan:
        path = [_symbol(name) for name in entry["path"]]
        venue = str(entry["venue"])
        hops_n = len(path) - 1
        venues = venue.split("+") if "+" in venue else [venue] * hops_n
        if len(venues) != hops_n or hops_n < 1:
            raise ValueError(f"leg {entry!r}: one venue per hop")
        hops = tuple(Hop(v, a, b) for v, (a, b) in zip(venues, pairwise(path), strict=True))
        legs.append(Leg(hops, Decimal(entry["amountIn"])))
    return tuple(legs)


def _symbol(name: str) -> str:
    return "SOL" if name == route_name("SOL") else name


@dataclass(frozen=True, slots=True)
class SwapTerms:
    """What an order's swap transaction says (`chain.transaction.SwapTx` fields)."""

    legs: tuple[Leg, ...]
    amount_in: Decimal  # the legs' sum: the input, or for ExactOut the most to spend
    min_amount_out: Decimal  # on the total; for ExactOut the exact output wanted
    exact_out: bool


def swap_terms(order: Order) -> SwapTerms:
    """The transaction terms of an order in `building`: its route plan's legs and bounds.

    ExactIn: the legs as planned, their sum the order's amountIn. ExactOut: the legs
    scaled up in proportion so that they sum to the order's maximum (its amountIn), for
    the chain spends the least input that delivers `minAmountOut` and never more than a
    leg's amount (rounded down to the input token's unit; the remainder goes to the
    largest leg).
    """
    route = order.route or {}
    plan = route.get("routePlan")
    if not plan or order.min_amount_out is None:
        raise ValueError(f"order {order.id} has no route to build a transaction from")
    legs = legs_of(plan)
    exact_out = route.get("swapMode") == "ExactOut"
    if exact_out:
        token = find_token(order.token_in)
        assert token is not None
        planned = sum((leg.amount_in for leg in legs), Decimal(0))
        with localcontext(math_context()):
            amounts = [
                (leg.amount_in * order.amount_in / planned).quantize(
                    token.quantum, rounding=ROUND_DOWN
                )
                for leg in legs
            ]
            largest = max(range(len(amounts)), key=lambda i: amounts[i])
            amounts[largest] += order.amount_in - sum(amounts, Decimal(0))
        legs = tuple(Leg(leg.hops, amount) for leg, amount in zip(legs, amounts, strict=True))
    total = sum((leg.amount_in for leg in legs), Decimal(0))
    return SwapTerms(legs, total, order.min_amount_out, exact_out)
