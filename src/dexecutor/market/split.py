"""Split routing: how much of an order each (venue, path) candidate should carry.

A candidate is one way through the pools from `token_in` to `token_out`: a venue's
direct pool, or two hops through a hub (SOL or USDC) whose hops may sit on different
venues. Each candidate's output is concave in its input (constant-product curves, DLMM
bin walks with a fee that only grows), so the allocation of an amount A that maximises
the total output equalises the candidates' marginal outputs. This module finds it and
hands back a `RoutePlan` whose amounts are exact.

How it stays exact and fast (a quote that considers splits must take under 2 ms):

- The *search* for the allocation runs on a float model of each pool (the CPMM closed
  form; a DLMM pool's bins as a piecewise-linear ladder; any other `Pool` sampled
  through `simulate`). Each candidate's curve is sampled on a grid of 32 points over
  [0, A]; the greedy merge of the grid segments by falling slope is the optimum of the
  piecewise-linear curves (water-filling), and a second pass on a 16-point window around
  each share refines it to A/256 per candidate, whose loss is second order (against a
  brute-force optimum, 99 % of the benchmark's orders lose under 0.01 bps; see
  docs/benchmarks.md).
- The *amounts* reported are never float: the chosen shares are rounded down to the
  input token's base unit (the remainder goes to the largest leg) and every leg is priced
  by the pools' own `simulate` in Decimal. The plan is compared, exactly, with the best
  single candidate for the whole amount, and the single candidate wins unless the split
  gives more after its extra legs' cost. So the router never returns less than the best
  single candidate, whatever the error of the split search. (To save time, only the
  candidates the model puts within 0.1 % of the best are priced as singles; the model
  is far closer than that, and the benchmark checks the best single on every order.)

Candidates that share a pool (a direct Raydium SOL→USDC and a Raydium SOL→USDC→USDT)
are not independent: the second swap through a pool sees the first one's price. The
router only combines *pool-disjoint* candidates: it enumerates the maximal sets of
candidates that share no pool (at most a handful: a hub's two-by-two venue pools make
two perfect pairings), solves each, and keeps the best. Every pool then trades at most
once per plan, so each leg's exact price is its `simulate` on the pool as it is now, and
the plan executes as independent swaps in one transaction.

An extra leg costs network fees (compute units, a priority fee) that a single swap does
not. Until the transaction model prices them, the cost is a flat amount per leg beyond
the first, in the output token (`leg_cost`, see `leg_cost_in` for converting a SOL
figure with the pools' spot prices). A leg whose extra output does not pay it is dropped;
so is a split that does not, which keeps small orders on one leg.

Pure: no clock, no I/O, no environment. Pools are read, never committed.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal, localcontext
from typing import Any, Literal

from dexecutor.domain.money import decimal_places, math_context
from dexecutor.market.cpmm import CpmmPool
from dexecutor.market.dlmm import DlmmPool
from dexecutor.market.pools import HopFill, Pool, fee_and_impact
from dexecutor.market.tokens import find_token, route_name
from dexecutor.market.types import VENUES, MarketError

__all__ = [
    "DEFAULT_LEG_COST_SOL",
    "HUBS",
    "Candidate",
    "Hop",
    "Leg",
    "RoutePlan",
    "best_single",
    "candidates",
    "disjoint_sets",
    "leg_cost_in",
    "percents",
    "price_legs",
    "route",
    "route_exact_out",
]

_CTX = math_context()
_ZERO = Decimal(0)
_ONE = Decimal(1)
_INF = float("inf")

# Tokens a two-hop candidate may pass through (the same hubs as the single-venue routes).
HUBS: tuple[str, ...] = ("SOL", "USDC")
# The flat network cost of a leg beyond the first, in SOL: an extra swap instruction is
# some 50k compute units, i.e. about 10,000 lamports at a busy-hour priority fee.
DEFAULT_LEG_COST_SOL = Decimal("0.00001")
# Grid points of the coarse search over [0, A] and of the refinement window.
_COARSE = 32
_FINE = 16

SwapMode = Literal["ExactIn", "ExactOut"]


# -- candidates ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hop:
    """One swap of a candidate: `pool` on `venue`, from `token_in` to `token_out`."""

    venue: str
    pool: Pool
    token_in: str
    token_out: str


@dataclass(frozen=True, slots=True)
class Candidate:
    """One way through the pools: one hop (direct) or two (through a hub)."""

    hops: tuple[Hop, ...]

    @property
    def path(self) -> tuple[str, ...]:
        return (self.hops[0].token_in, *(hop.token_out for hop in self.hops))

    @property
    def venues(self) -> tuple[str, ...]:
        return tuple(hop.venue for hop in self.hops)

    @property
    def label(self) -> str:
        """The venue, or "raydium+meteora" for a path whose hops use both."""
        return venue_label(self.venues)


def venue_label(venues: Sequence[str]) -> str:
    """One venue's name, or the hops' venues joined by "+" when they differ."""
    return venues[0] if len(set(venues)) == 1 else "+".join(venues)


def _known_venues(names: Iterable[str] | None, option: str) -> frozenset[str] | None:
    if names is None:
        return None
    chosen = frozenset(names)
    unknown = sorted(chosen - set(VENUES))
    if unknown:
        raise ValueError(f"{option}: unknown venue {unknown[0]!r}; expected some of {VENUES}")
    return chosen


# Candidates and pool-disjoint sets depend only on which pools are listed, not on their
# state, so a quote reuses those of the last quotes over the same listing. Keys hold
# pools by id; the cached candidates hold the pools, so no id is reused while cached.
_MEMO_SIZE = 256
_CANDIDATES: dict[tuple[object, ...], tuple[Candidate, ...]] = {}
_DISJOINT: dict[tuple[tuple[int, ...], ...], list[list[int]]] = {}


def _remember(memo: dict[Any, Any], key: Any, value: Any) -> None:
    if len(memo) >= _MEMO_SIZE:
        memo.clear()  # listings change rarely (a launch): the few live keys come back
    memo[key] = value


def candidates(
    pools: Iterable[tuple[str, Pool]],
    token_in: str,
    token_out: str,
    *,
    dexes: Iterable[str] | None = None,
    exclude_dexes: Iterable[str] | None = None,
    only_direct_routes: bool = False,
    hubs: Sequence[str] = HUBS,
) -> tuple[Candidate, ...]:
    """Every candidate from `token_in` to `token_out` over `(venue, pool)` listings.

    Direct pools first, then each hub's paths, venues in `VENUES` order, so ties break
    the same way every time. `dexes` keeps only candidates whose every hop is on one of
    those venues, `exclude_dexes` drops any that touches one, `only_direct_routes`
    drops the hops through hubs. An unknown venue name is a ValueError (a 400 at the
    API); an empty list of `dexes` leaves no candidate.
    """
    listing = tuple(pools)
    key = (
        tuple((venue, id(pool)) for venue, pool in listing),
        token_in,
        token_out,
        None if dexes is None else tuple(dexes),
        None if exclude_dexes is None else tuple(exclude_dexes),
        only_direct_routes,
        tuple(hubs),
    )
    found = _CANDIDATES.get(key)
    if found is None:
        found = _candidates(listing, token_in, token_out, key[3], key[4], only_direct_routes, hubs)
        _remember(_CANDIDATES, key, found)
    return found


def _candidates(
    pools: Iterable[tuple[str, Pool]],
    token_in: str,
    token_out: str,
    dexes: Iterable[str] | None,
    exclude_dexes: Iterable[str] | None,
    only_direct_routes: bool,
    hubs: Sequence[str],
) -> tuple[Candidate, ...]:
    allowed = _known_venues(dexes, "dexes")
    banned = _known_venues(exclude_dexes, "excludeDexes") or frozenset()
    listed: dict[frozenset[str], list[tuple[str, Pool]]] = {}
    for venue, pool in pools:
        if venue in banned or (allowed is not None and venue not in allowed):
            continue
        listed.setdefault(frozenset((pool.base, pool.quote)), []).append((venue, pool))
    for entries in listed.values():
        entries.sort(key=lambda entry: _venue_rank(entry[0]))

    def hops(a: str, b: str) -> list[Hop]:
        return [Hop(venue, pool, a, b) for venue, pool in listed.get(frozenset((a, b)), [])]

    found = [Candidate((hop,)) for hop in hops(token_in, token_out)]
    if not only_direct_routes:
        for hub in hubs:
            if hub in (token_in, token_out):
                continue
            for first in hops(token_in, hub):
                found.extend(Candidate((first, second)) for second in hops(hub, token_out))
    return tuple(found)


def _venue_rank(venue: str) -> int:
    return VENUES.index(venue) if venue in VENUES else len(VENUES)


# -- the plan -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Leg:
    """One candidate's share of a plan, priced exactly by its pools.

    `path` is as traded on chain (native SOL as wSOL), `venues` the venue of each hop
    and `venue` their label. `fee` is the combined fee rate of the hops and
    `price_impact` the shortfall against the hops' spot prices after that fee, as in a
    single-venue `Quote`. `fills` are the pools' trial swaps, for the caller to commit.
    """

    venue: str
    venues: tuple[str, ...]
    path: tuple[str, ...]
    percent: int
    amount_in: Decimal
    amount_out: Decimal
    fee: Decimal
    price_impact: Decimal
    fills: tuple[HopFill, ...] = field(repr=False, compare=False)
    candidate: Candidate = field(repr=False, compare=False)

    def as_fields(self) -> dict[str, object]:
        """The leg as a `routePlan` entry of the API (SPEC §10), amounts as Decimals."""
        return {
            "venue": self.venue,
            "path": list(self.path),
            "percent": self.percent,
            "amountIn": self.amount_in,
            "amountOut": self.amount_out,
            "fee": self.fee,
            "priceImpact": self.price_impact,
        }


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """The legs of one route and their totals, beside the best single candidate.

    `amount_out` is the sum of the legs' exact outputs; `leg_cost` the flat cost charged
    for the legs beyond the first (already weighed when choosing the split, not
    deducted from `amount_out`). `best_single` is the best one-candidate leg for the same
    `amount_in` (None when no single candidate can fill it), so the split's gain shows.
    """

    token_in: str
    token_out: str
    swap_mode: SwapMode
    amount_in: Decimal
    amount_out: Decimal
    legs: tuple[Leg, ...]
    best_single: Leg | None
    leg_cost: Decimal

    @property
    def split_gain_bps(self) -> Decimal:
        """How much more the plan gives than the best single candidate, in bps."""
        single = self.best_single
        if single is None or single.amount_out <= 0:
            return _ZERO
        with localcontext(_CTX):
            gain = (self.amount_out / single.amount_out - _ONE) * 10_000
            return gain.quantize(Decimal("0.0001"))

    def as_fields(self) -> dict[str, object]:
        """The plan as the API shows it: `routePlan`, totals, the best single beside it."""
        single = self.best_single
        return {
            "swapMode": self.swap_mode,
            "amountIn": self.amount_in,
            "amountOut": self.amount_out,
            "routePlan": [leg.as_fields() for leg in self.legs],
            "bestSingle": None if single is None else single.as_fields(),
            "splitGainBps": self.split_gain_bps,
        }


def percents(amounts: Sequence[Decimal]) -> tuple[int, ...]:
    """Whole percents of `amounts` that sum to exactly 100, each leg at least 1.

    Largest remainder rounding: floors first, then the leftover points go to the
    largest remainders (ties to the earlier leg). A leg too small to reach 1 % still
    shows 1, taken from the largest leg, since a leg that shows 0 % reads as absent.
    """
    total = sum(amounts, _ZERO)
    if not amounts or total <= 0:
        raise ValueError("percents needs positive amounts")
    with localcontext(_CTX):
        shares = [amount * 100 / total for amount in amounts]
    floors = [max(int(share), 1) for share in shares]
    order = sorted(range(len(amounts)), key=lambda i: (-(shares[i] - int(shares[i])), i))
    for i in order[: max(100 - sum(floors), 0)]:
        floors[i] += 1
    while sum(floors) > 100:
        floors[max(range(len(floors)), key=lambda i: floors[i])] -= 1
    return tuple(floors)


def _decimals(symbol: str) -> int:
    token = find_token(symbol)
    if token is None:
        raise ValueError(f"unknown token {symbol!r}")
    return token.decimals


def _price(candidate: Candidate, amount_in: Decimal, percent: int) -> Leg:
    """The exact leg: each hop's `simulate` on the pool as it is now."""
    fills: list[HopFill] = []
    amount = amount_in
    for hop in candidate.hops:
        fill = hop.pool.simulate(hop.token_in, amount, _decimals(hop.token_out))
        fills.append(fill)
        amount = fill.amount_out
    fee, impact = fee_and_impact(fills, amount_in, amount)
    return Leg(
        venue=candidate.label,
        venues=candidate.venues,
        path=tuple(route_name(symbol) for symbol in candidate.path),
        percent=percent,
        amount_in=amount_in,
        amount_out=amount,
        fee=_tidy(fee),
        price_impact=_tidy(impact),
        fills=tuple(fills),
        candidate=candidate,
    )


def _tidy(value: Decimal) -> Decimal:
    return value.normalize() if value else _ZERO


def price_legs(allocation: Sequence[tuple[Candidate, Decimal]]) -> tuple[Leg, ...]:
    """Price fixed amounts on candidates that share no pool, exactly, as the pools are now.

    This is what execution does with a plan: the same legs and amounts, repriced at fill
    time, so the caller can check the total against the minimum and commit every leg's
    fills (or none). Raises MarketError when a leg cannot fill.
    """
    if not allocation:
        raise ValueError("price_legs needs at least one leg")
    seen: set[int] = set()
    for candidate, _ in allocation:
        ids = {id(hop.pool) for hop in candidate.hops}
        if ids & seen:
            raise ValueError("the legs of a plan must not share a pool")
        seen |= ids
    shown = percents([amount for _, amount in allocation])
    return tuple(
        _price(candidate, amount, percent)
        for (candidate, amount), percent in zip(allocation, shown, strict=True)
    )


def best_single(options: Sequence[Candidate], amount_in: Decimal) -> Leg | None:
    """The single candidate that gives the most for all of `amount_in`, exactly.

    Ties go to the earlier candidate (direct before hubs, `VENUES` order). None when no
    candidate can fill the amount.
    """
    best: Leg | None = None
    for candidate in options:
        try:
            leg = _price(candidate, amount_in, 100)
        except MarketError:
            continue
        if best is None or leg.amount_out > best.amount_out:
            best = leg
    return best


# -- the float model ------------------------------------------------------------------


class _Curve:
    """A pool's output for an input, in float: what the allocation search runs on."""

    cap: float = _INF
    # How far (in input) the model is known: a DLMM ladder is built only as far as needed.
    reach: float = _INF

    def out(self, x: float) -> float:
        raise NotImplementedError

    def inverse(self, y: float) -> float:
        """The input that gives output `y` (y below the output at the cap)."""
        raise NotImplementedError


class _CpmmCurve(_Curve):
    def __init__(self, pool: CpmmPool, token_in: str) -> None:
        base, quote = pool.reserves()
        r_in, r_out = (base, quote) if token_in == pool.base else (quote, base)
        self.r_in = float(r_in)
        self.r_out = float(r_out)
        self.keep = 1.0 - float(pool.fee_rate)
        fill = float(pool.max_fill)
        self.cap = fill * self.r_in / ((1.0 - fill) * self.keep)

    def out(self, x: float) -> float:
        net = x * self.keep
        return self.r_out * net / (self.r_in + net)

    def inverse(self, y: float) -> float:
        return y * self.r_in / (self.keep * (self.r_out - y))


class _LadderCurve(_Curve):
    """A piecewise-linear curve: cumulative inputs, outputs and the slope after each."""

    def __init__(self, xs: list[float], ys: list[float], capped: bool) -> None:
        self.xs = xs
        self.ys = ys
        self.slopes = [
            (ys[i + 1] - ys[i]) / (xs[i + 1] - xs[i]) if xs[i + 1] > xs[i] else 0.0
            for i in range(len(xs) - 1)
        ]
        self.cap = xs[-1] if capped else _INF
        self.reach = xs[-1]

    def out(self, x: float) -> float:
        xs = self.xs
        i = bisect_right(xs, x) - 1
        if i >= len(self.slopes):
            i = len(self.slopes) - 1
            if self.cap == _INF and i >= 0:
                return self.ys[-1] + (x - xs[-1]) * self.slopes[-1]
        if i < 0:
            return 0.0
        return self.ys[i] + (x - xs[i]) * self.slopes[i]

    def inverse(self, y: float) -> float:
        ys = self.ys
        i = min(max(bisect_right(ys, y) - 1, 0), len(self.slopes) - 1)
        slope = self.slopes[i]
        return self.xs[i] + (y - ys[i]) / slope if slope > 0 else self.xs[i]


def _dlmm_curve(pool: DlmmPool, token_in: str, need: float) -> _LadderCurve:
    """The bins from the active one outward, far enough to take `need` of input.

    In a bin the price is fixed, so the output is linear per bin: the ladder is each
    bin's capacity at its price and fee, read through the pool's public `bin`,
    `bin_price` and `bin_fees`.
    """
    selling_base = token_in == pool.base
    direction = -1 if selling_base else 1
    ladder: list[tuple[int, float, float]] = []  # (bin index, output held, net input)
    index = pool.active
    net_total = 0.0
    capped = False
    # Net input never exceeds gross input, so walking until the net capacity covers
    # `need` walks far enough whatever the fees.
    while net_total < need:
        base_amt, quote_amt = pool.bin(index)
        available = float(quote_amt if selling_base else base_amt)
        if available > 0:
            price = float(pool.bin_price(index))
            net_cap = available / price if selling_base else available * price
            ladder.append((index, available, net_cap))
            net_total += net_cap
        elif abs(index - pool.centre) > pool.reach:
            capped = True
            break
        index += direction
    if not ladder:
        return _LadderCurve([0.0, 1.0], [0.0, 0.0], capped=True)
    fees = [float(rate) for rate in pool.bin_fees([i for i, _, _ in ladder])]
    xs = [0.0]
    ys = [0.0]
    for (_, available, net_cap), fee in zip(ladder, fees, strict=True):
        xs.append(xs[-1] + net_cap / (1.0 - fee))
        ys.append(ys[-1] + available)
    return _LadderCurve(xs, ys, capped=capped)


def _sampled_curve(pool: Pool, token_in: str, need: float) -> _LadderCurve:
    """Any other pool: its `simulate` at doubling sizes up to `need`, joined linearly."""
    decimals = _decimals(pool.quote if token_in == pool.base else pool.base)
    xs = [0.0]
    ys = [0.0]
    size = max(need, 1e-9) / 1024
    while True:
        try:
            fill = pool.simulate(token_in, Decimal(repr(size)), decimals)
        except MarketError:
            return _LadderCurve(xs, ys, capped=len(xs) > 1)
        xs.append(size)
        ys.append(float(fill.amount_out))
        if size >= need:
            return _LadderCurve(xs, ys, capped=False)
        size *= 2


_Curves = dict[tuple[int, str], _Curve]


def _curve(hop: Hop, need: float, built: _Curves) -> _Curve:
    """The hop's curve, shared by the candidates through the same pool in one search."""
    key = (id(hop.pool), hop.token_in)
    curve = built.get(key)
    if curve is not None and (curve.cap < _INF or curve.reach >= need):
        return curve
    pool = hop.pool
    if isinstance(pool, CpmmPool):
        curve = _CpmmCurve(pool, hop.token_in)
    elif isinstance(pool, DlmmPool):
        curve = _dlmm_curve(pool, hop.token_in, need)
    else:
        curve = _sampled_curve(pool, hop.token_in, need)
    built[key] = curve
    return curve


class _Path:
    """A candidate's float model: its hops' curves composed, and its input cap."""

    def __init__(self, candidate: Candidate, amount: float, built: _Curves) -> None:
        self.curves: list[_Curve] = []
        need = amount
        for hop in candidate.hops:
            curve = _curve(hop, need, built)
            self.curves.append(curve)
            need = curve.out(min(need, curve.cap))
        cap = _INF
        for k, curve in enumerate(self.curves):
            if curve.cap == _INF:
                continue
            # The largest path input whose flow this hop can still take.
            limit = curve.cap
            for before in reversed(self.curves[:k]):
                reach = before.out(before.cap) if before.cap < _INF else _INF
                limit = _INF if limit >= reach else before.inverse(limit)
            cap = min(cap, limit)
        self.cap = cap

    def out(self, x: float) -> float:
        for curve in self.curves:
            x = curve.out(x)
        return x


@dataclass(slots=True)
class _Samples:
    """One candidate's curve on a grid: inputs `xs` and outputs `ys`."""

    xs: list[float]
    ys: list[float]


def _sample(path: _Path, low: float, high: float, points: int) -> _Samples:
    high = min(high, path.cap)
    if high <= low:
        return _Samples([low], [path.out(low)])
    step = (high - low) / points
    xs = [low + step * k for k in range(points)] + [high]
    return _Samples(xs, [path.out(x) for x in xs])


def _fill(samples: Sequence[_Samples], budget: float) -> tuple[list[float], float, float] | None:
    """Water-filling: spend `budget` on the grid segments with the steepest slopes.

    Each candidate's segments are taken in order (its curve is concave, so in order is
    by falling slope); the result is the optimum of the piecewise-linear curves. Returns
    each candidate's input, the total output and the last slope taken (the marginal
    rate λ), or None when the candidates cannot take the whole budget.
    """
    alloc = [s.xs[0] for s in samples]
    value = sum(s.ys[0] for s in samples)
    heap: list[tuple[float, int, int]] = []
    for i, s in enumerate(samples):
        if len(s.xs) > 1:
            heap.append((-_slope(s, 0), i, 0))
    heapq.heapify(heap)
    left = budget
    slope = 0.0
    while left > 1e-12 * budget:
        if not heap:
            return None
        negative, i, j = heapq.heappop(heap)
        s = samples[i]
        width = s.xs[j + 1] - s.xs[j]
        take = min(width, left)
        slope = -negative
        alloc[i] += take
        value += take * slope
        left -= take
        if take == width and j + 2 < len(s.xs):
            heapq.heappush(heap, (-_slope(s, j + 1), i, j + 1))
    return alloc, value, slope


def _slope(s: _Samples, j: int) -> float:
    width = s.xs[j + 1] - s.xs[j]
    return (s.ys[j + 1] - s.ys[j]) / width if width > 0 else 0.0


@dataclass(slots=True)
class _Split:
    members: list[int]
    alloc: list[float]
    value: float
    rate: float


def _solve(
    members: list[int], coarse: Sequence[_Samples], amount: float, cost: float
) -> _Split | None:
    """The best allocation over a pool-disjoint set, dropping legs that do not pay."""
    members = list(members)
    while True:
        filled = _fill([coarse[i] for i in members], amount)
        if filled is None:
            return None
        alloc, value, rate = filled
        used = [k for k, x in enumerate(alloc) if x > 1e-12 * amount]
        split = _Split([members[k] for k in used], [alloc[k] for k in used], value, rate)
        if len(used) <= 1 or cost <= 0:
            return split
        # The leg whose output beyond what the others would give for its input is least.
        weakest = min(
            range(len(split.members)),
            key=lambda k: _interp(coarse[split.members[k]], split.alloc[k]) - rate * split.alloc[k],
        )
        trial = _solve(
            [m for k, m in enumerate(split.members) if k != weakest], coarse, amount, cost
        )
        net = split.value - cost * (len(split.members) - 1)
        if trial is None or trial.value - cost * (len(trial.members) - 1) < net:
            return split
        return trial


def _interp(s: _Samples, x: float) -> float:
    i = min(max(bisect_right(s.xs, x) - 1, 0), max(len(s.xs) - 2, 0))
    if len(s.xs) == 1:
        return s.ys[0]
    return s.ys[i] + (x - s.xs[i]) * _slope(s, i)


def _refine(split: _Split, paths: Sequence[_Path], amount: float) -> _Split:
    """A finer grid on a window around each share: the coarse grid's step, split again."""
    if len(split.members) == 1:
        return split
    step = amount / _COARSE
    windows = [
        _sample(paths[m], max(x - step, 0.0), min(x + step, amount), _FINE)
        for m, x in zip(split.members, split.alloc, strict=True)
    ]
    budget = amount - sum(w.xs[0] for w in windows)
    filled = _fill(windows, budget)
    if filled is None:
        return split
    alloc, value, rate = filled
    return _Split(split.members, alloc, value, rate)


def disjoint_sets(options: Sequence[Candidate]) -> list[list[int]]:
    """The maximal sets of candidates (by index) that share no pool.

    A small exhaustive search: a pair has at most a dozen candidates and the sets are a
    handful, so the router can solve each.
    """
    key = tuple(tuple(id(hop.pool) for hop in c.hops) for c in options)
    found = _DISJOINT.get(key)
    if found is None:
        found = _disjoint_sets(options)
        _remember(_DISJOINT, key, found)
    return [list(members) for members in found]


def _disjoint_sets(options: Sequence[Candidate]) -> list[list[int]]:
    pools = [frozenset(id(hop.pool) for hop in c.hops) for c in options]
    found: list[list[int]] = []

    def grow(chosen: list[int], used: frozenset[int], start: int) -> None:
        extended = False
        for i in range(start, len(options)):
            if not pools[i] & used:
                extended = True
                grow([*chosen, i], used | pools[i], i + 1)
        if not extended and all(pools[j] & used for j in range(len(options)) if j not in chosen):
            found.append(chosen)

    grow([], frozenset(), 0)
    return found


# -- routing ----------------------------------------------------------------------


@dataclass(slots=True)
class _Search:
    """The float search's answer: the best split (None: no feasible one) and the
    candidates worth pricing exactly as the best single one."""

    split: _Split | None
    singles: list[int]


# A single candidate whose modelled output is this far below the best one's cannot be
# the best exactly: the float model is far closer to the pools than that.
_SINGLE_MARGIN = 1e-3


def _search(options: Sequence[Candidate], amount: Decimal, cost: float) -> _Search:
    """The float search: the best set, its shares, refined."""
    size = float(amount)
    built: _Curves = {}
    paths = [_Path(c, size, built) for c in options]
    coarse = [_sample(p, 0.0, size, _COARSE) for p in paths]
    whole = [s.ys[-1] if s.xs[-1] >= size * (1 - 1e-12) else -1.0 for s in coarse]
    top = max(whole)
    singles = [i for i, v in enumerate(whole) if v >= 0 and v >= top * (1 - _SINGLE_MARGIN)]
    best: _Split | None = None
    for members in disjoint_sets(options):
        split = _solve(members, coarse, size, cost)
        if split is None:
            continue
        if best is None or split.value - cost * len(split.members) > best.value - cost * len(
            best.members
        ):
            best = split
    if best is not None:
        best = _refine(best, paths, size)
    return _Search(best, singles)


def _to_amounts(split: _Split, amount: Decimal, decimals: int) -> list[Decimal]:
    """Float shares to base units: round down, the remainder to the largest leg."""
    quantum = _ONE.scaleb(-decimals)
    total = sum(split.alloc)
    with localcontext(_CTX):
        shares = [
            (amount * Decimal(repr(x / total))).quantize(quantum, rounding=ROUND_DOWN)
            for x in split.alloc
        ]
        largest = max(range(len(shares)), key=lambda k: shares[k])
        shares[largest] += amount - sum(shares, _ZERO)
    return shares


def route(
    options: Sequence[Candidate], amount_in: Decimal, *, leg_cost: Decimal = _ZERO
) -> RoutePlan:
    """The exact-in plan for `amount_in`: the split that gives the most output.

    `leg_cost` is the flat cost of each leg beyond the first, in the output token. The
    plan has one leg unless splitting gives more than the best single candidate by
    more than the extra legs' cost. Raises MarketError `no_route` without candidates
    and `insufficient_liquidity` when nothing can fill the amount.
    """
    if not options:
        raise MarketError("no_route", "no pool path joins these tokens")
    token_in, token_out = options[0].path[0], options[0].path[-1]
    if not isinstance(amount_in, Decimal) or not amount_in.is_finite() or amount_in <= 0:
        raise ValueError(f"amount_in must be a positive, finite Decimal, got {amount_in!r}")
    if not leg_cost.is_finite() or leg_cost < 0:
        raise ValueError(f"leg_cost must be a finite amount >= 0, got {leg_cost!r}")
    if decimal_places(amount_in) > _decimals(token_in):
        raise ValueError(f"{token_in} has {_decimals(token_in)} decimals; got {amount_in}")
    search = _search(options, amount_in, float(leg_cost))
    single = best_single([options[i] for i in search.singles], amount_in)
    legs = _split_legs(options, search.split, amount_in)
    chosen: tuple[Leg, ...]
    if legs is not None and (
        single is None
        or sum((leg.amount_out for leg in legs), _ZERO) - leg_cost * (len(legs) - 1)
        > single.amount_out
    ):
        chosen = legs
    elif single is not None:
        chosen = (single,)
    else:
        raise MarketError("insufficient_liquidity", f"no route can fill {amount_in} {token_in}")
    return RoutePlan(
        token_in=token_in,
        token_out=token_out,
        swap_mode="ExactIn",
        amount_in=amount_in,
        amount_out=sum((leg.amount_out for leg in chosen), _ZERO),
        legs=chosen,
        best_single=single,
        leg_cost=leg_cost * (len(chosen) - 1),
    )


def _split_legs(
    options: Sequence[Candidate], split: _Split | None, amount_in: Decimal
) -> tuple[Leg, ...] | None:
    """The search's best split priced exactly, or None when it is one leg."""
    if split is None or len(split.members) < 2:
        return None
    amounts = _to_amounts(split, amount_in, _decimals(options[0].path[0]))
    allocation = [(options[m], a) for m, a in zip(split.members, amounts, strict=True) if a > 0]
    if len(allocation) < 2:
        return None
    try:
        return price_legs(allocation)
    except MarketError:
        return None


def route_exact_out(
    options: Sequence[Candidate],
    amount_out: Decimal,
    *,
    max_amount_in: Decimal | None = None,
    leg_cost: Decimal = _ZERO,
) -> RoutePlan:
    """The least input whose exact-in plan delivers at least `amount_out`.

    Newton-like steps on the exact-in router (its output increases with the input)
    bracket the answer; then a bisection in the input token's base units, keeping that
    plan's legs and proportions, finds the least input that still delivers, each step
    priced exactly. Raises MarketError `slippage_exceeded` when that input exceeds
    `max_amount_in`, `insufficient_liquidity` when no input can deliver `amount_out`.
    """
    if not options:
        raise MarketError("no_route", "no pool path joins these tokens")
    if not isinstance(amount_out, Decimal) or not amount_out.is_finite() or amount_out <= 0:
        raise ValueError(f"amount_out must be a positive, finite Decimal, got {amount_out!r}")
    token_in, token_out = options[0].path[0], options[0].path[-1]
    quantum = _ONE.scaleb(-_decimals(token_in))
    guess = _first_guess(options, amount_out, quantum)
    plan: RoutePlan | None = None
    low = _ZERO
    failed: Decimal | None = None
    for _ in range(24):
        try:
            trial = route(options, guess, leg_cost=leg_cost)
        except MarketError as error:
            if error.reason != "insufficient_liquidity":
                raise
            trial = None
        if trial is not None and trial.amount_out >= amount_out:
            plan = trial
            break
        if trial is None:
            failed = guess
            guess = ((low + guess) / 2).quantize(quantum, rounding=ROUND_DOWN)
        else:
            low = guess
            with localcontext(_CTX):
                # The average rate overstates the marginal one (the output is concave),
                # so aim a little beyond the target.
                step = (amount_out - trial.amount_out) * guess / trial.amount_out
                guess = (guess + step * Decimal("1.05")).quantize(quantum) + quantum
                if failed is not None and guess >= failed:
                    guess = ((low + failed) / 2).quantize(quantum, rounding=ROUND_DOWN)
        if guess <= low:
            break
    if plan is None:
        raise MarketError(
            "insufficient_liquidity", f"no route can deliver {amount_out} {token_out}"
        )
    plan = _least_input(options, plan, amount_out, low, quantum, leg_cost)
    if max_amount_in is not None and plan.amount_in > max_amount_in:
        raise MarketError(
            "slippage_exceeded",
            f"delivering {amount_out} {token_out} takes {plan.amount_in} {token_in}, "
            f"above the maximum of {max_amount_in}",
        )
    return plan


def _first_guess(options: Sequence[Candidate], amount_out: Decimal, quantum: Decimal) -> Decimal:
    """The input at the best candidate's spot rate, before fees: a lower bound."""
    best = _ZERO
    with localcontext(_CTX):
        for candidate in options:
            rate = _ONE
            for hop in candidate.hops:
                rate *= hop.pool.spot(hop.token_in)
            best = max(best, rate)
        if best <= 0:
            raise MarketError("no_route", "no pool prices these tokens")
        return max((amount_out / best).quantize(quantum, rounding=ROUND_DOWN), quantum)


def _least_input(
    options: Sequence[Candidate],
    plan: RoutePlan,
    amount_out: Decimal,
    low: Decimal,
    quantum: Decimal,
    leg_cost: Decimal,
) -> RoutePlan:
    """Bisect the input between `low` (short) and the plan's (enough), legs fixed."""
    chosen = [leg.candidate for leg in plan.legs]
    with localcontext(_CTX):
        weights = [leg.amount_in / plan.amount_in for leg in plan.legs]
    amount, legs = plan.amount_in, plan.legs
    lo_units = int(low / quantum)
    hi_units = int(plan.amount_in / quantum)
    while hi_units - lo_units > 1:
        mid_units = (lo_units + hi_units) // 2
        trial = quantum * mid_units
        try:
            priced = _scaled(chosen, weights, trial, quantum)
        except MarketError:
            lo_units = mid_units
            continue
        if sum((leg.amount_out for leg in priced), _ZERO) >= amount_out:
            hi_units = mid_units
            amount, legs = trial, priced
        else:
            lo_units = mid_units
    return RoutePlan(
        token_in=plan.token_in,
        token_out=plan.token_out,
        swap_mode="ExactOut",
        amount_in=amount,
        amount_out=sum((leg.amount_out for leg in legs), _ZERO),
        legs=legs,
        best_single=best_single(options, amount),
        leg_cost=leg_cost * (len(legs) - 1),
    )


def _scaled(
    chosen: Sequence[Candidate], weights: Sequence[Decimal], amount: Decimal, quantum: Decimal
) -> tuple[Leg, ...]:
    """The legs of `chosen` in the proportions `weights`, for a total of `amount`."""
    with localcontext(_CTX):
        shares = [(amount * w).quantize(quantum, rounding=ROUND_DOWN) for w in weights]
        shares[0] += amount - sum(shares, _ZERO)
    return price_legs([(c, a) for c, a in zip(chosen, shares, strict=True) if a > 0])


def leg_cost_in(
    token_out: str, pools: Iterable[tuple[str, Pool]], sol: Decimal = DEFAULT_LEG_COST_SOL
) -> Decimal:
    """A cost of `sol` SOL in `token_out`, at the best spot price of a SOL pool.

    Through USDC when `token_out` has no SOL pool; zero when no pool prices it (the
    router then splits whenever splitting gives more at all).
    """
    listed = list(pools)
    if token_out == "SOL":
        return sol

    def rate(a: str, b: str) -> Decimal:
        best = _ZERO
        for _, pool in listed:
            if {pool.base, pool.quote} == {a, b}:
                best = max(best, pool.spot(a))
        return best

    with localcontext(_CTX):
        direct = rate("SOL", token_out)
        if direct > 0:
            return sol * direct
        return sol * rate("SOL", "USDC") * rate("USDC", token_out)
