"""Split routing: a large order is spread so that marginal prices meet, a small one is not.

Markets here are built from `PairParams` with the market's own defaults; sizes are
fractions of each pair's liquidity, so the tests hold whatever the presets say. The
brute force at the end is independent of the router: it prices a fine grid of splits
between two candidates with the pools' own `simulate`, then a finer grid around the best
point, and the router must land between the best single candidate and that optimum.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_DOWN, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dexecutor import jsoncodec
from dexecutor.market.pools import Pool
from dexecutor.market.simulation import Market, MarketParams, PairParams, PlanLeg
from dexecutor.market.split import (
    Candidate,
    RoutePlan,
    candidates,
    disjoint_sets,
    leg_cost_in,
    percents,
    price_legs,
    route,
    route_exact_out,
)
from dexecutor.market.tokens import find_token
from dexecutor.market.types import MarketError

NOW = 30.0


def _market(pairs: Sequence[PairParams], seed: int = 3, now: float = NOW) -> Market:
    market = Market(MarketParams(pairs=tuple(pairs)), seed=seed)
    market.advance(now)
    return market


def _both_venues(liquidity: Decimal = Decimal(2_000_000)) -> Market:
    return _market([PairParams("SOL", "USDT", liquidity_usd=liquidity)])


def _triangle() -> Market:
    """SOL/USDT, SOL/USDC and USDC/USDT on both venues: hop paths share pools."""
    return _market(
        [
            PairParams("SOL", "USDT"),
            PairParams("SOL", "USDC"),
            PairParams("USDC", "USDT", bin_step_bps=1),
        ]
    )


def _sol(market: Market, usd: Decimal) -> Decimal:
    """`usd` worth of SOL at the market's reference, to SOL's precision."""
    sol = find_token("SOL")
    assert sol is not None
    price = market.reference_price("SOL", market.now)
    return (usd / price).quantize(sol.quantum, rounding=ROUND_DOWN)


def _pool_ids(plan: RoutePlan) -> list[int]:
    return [id(hop.pool) for leg in plan.legs for hop in leg.candidate.hops]


def _check_plan(plan: RoutePlan) -> None:
    """What every plan promises: exact legs that add up."""
    assert sum(leg.percent for leg in plan.legs) == 100
    assert all(leg.percent >= 1 for leg in plan.legs)
    assert sum(leg.amount_in for leg in plan.legs) == plan.amount_in
    assert sum(leg.amount_out for leg in plan.legs) == plan.amount_out
    ids = _pool_ids(plan)
    assert len(ids) == len(set(ids)), "two legs trade through the same pool"
    for leg in plan.legs:
        fresh = price_legs([(leg.candidate, leg.amount_in)])[0]
        assert fresh.amount_out == leg.amount_out


def test_a_large_order_splits_and_beats_the_best_single_venue() -> None:
    market = _both_venues()
    options = candidates(market.venue_pools(), "SOL", "USDT")
    plan = route(options, _sol(market, Decimal(200_000)))
    _check_plan(plan)
    assert len(plan.legs) >= 2
    assert {leg.venue for leg in plan.legs} == {"raydium", "meteora"}
    assert plan.best_single is not None
    assert plan.amount_out > plan.best_single.amount_out
    assert plan.split_gain_bps > 0


def test_the_plan_reads_as_the_api_route_plan() -> None:
    market = _both_venues()
    options = candidates(market.venue_pools(), "SOL", "USDT")
    plan = route(options, _sol(market, Decimal(200_000)))
    shown = jsoncodec.loads(jsoncodec.dumps(plan.as_fields()))
    assert shown["swapMode"] == "ExactIn"
    assert [set(leg) for leg in shown["routePlan"]] == [
        {"venue", "path", "percent", "amountIn", "amountOut", "fee", "priceImpact"}
    ] * len(plan.legs)
    assert [leg["percent"] for leg in shown["routePlan"]] == [leg.percent for leg in plan.legs]
    assert shown["routePlan"][0]["path"] == ["wSOL", "USDT"]
    assert Decimal(str(shown["amountOut"])) == plan.amount_out
    assert shown["bestSingle"]["percent"] == 100
    assert Decimal(str(shown["splitGainBps"])) == plan.split_gain_bps


def test_a_small_order_stays_on_one_leg() -> None:
    market = _both_venues()
    options = candidates(market.venue_pools(), "SOL", "USDT")
    plan = route(options, _sol(market, Decimal(5)), leg_cost=Decimal("0.001"))
    _check_plan(plan)
    assert len(plan.legs) == 1
    assert plan.legs[0].percent == 100
    assert plan.best_single is not None
    assert plan.amount_out == plan.best_single.amount_out
    assert plan.split_gain_bps == 0


def test_an_extra_leg_that_does_not_pay_its_cost_is_dropped() -> None:
    market = _both_venues()
    options = candidates(market.venue_pools(), "SOL", "USDT")
    amount = _sol(market, Decimal(200_000))
    free = route(options, amount)
    assert len(free.legs) >= 2
    gain = free.amount_out - (free.best_single.amount_out if free.best_single else 0)
    dear = route(options, amount, leg_cost=gain * 2)
    assert len(dear.legs) == 1
    assert dear.leg_cost == 0


def test_hop_paths_that_share_a_pool_are_never_combined() -> None:
    market = _triangle()
    options = candidates(market.venue_pools(), "SOL", "USDT")
    # Two direct pools and every venue pairing of the two hubs' pools.
    assert len(options) == 6
    assert sum(len(c.hops) == 2 for c in options) == 4
    sets = disjoint_sets(options)
    assert sets
    for members in sets:
        ids = [id(hop.pool) for m in members for hop in options[m].hops]
        assert len(ids) == len(set(ids))
        # Maximal: no other candidate fits beside the set.
        for other in set(range(len(options))) - set(members):
            assert {id(hop.pool) for hop in options[other].hops} & set(ids)
    plan = route(options, _sol(market, Decimal(400_000)))
    _check_plan(plan)
    assert len(plan.legs) >= 3
    assert any(len(leg.path) == 3 for leg in plan.legs)


def test_cross_venue_paths_are_candidates() -> None:
    market = _triangle()
    labels = {c.label for c in candidates(market.venue_pools(), "SOL", "USDT")}
    assert {"raydium", "meteora", "raydium+meteora", "meteora+raydium"} <= labels


def test_price_legs_refuses_legs_through_one_pool() -> None:
    market = _both_venues()
    option = candidates(market.venue_pools(), "SOL", "USDT")[0]
    with pytest.raises(ValueError, match="share a pool"):
        price_legs([(option, Decimal(1)), (option, Decimal(2))])


def test_the_leg_cost_is_converted_at_the_pools_spot_price() -> None:
    market = _triangle()
    pools = market.venue_pools()
    sol = Decimal("0.00001")
    assert leg_cost_in("SOL", pools, sol) == sol
    spots = [pool.spot("SOL") for _, pool in pools if {pool.base, pool.quote} == {"SOL", "USDT"}]
    expected = sol * max(spots)
    assert abs(leg_cost_in("USDT", pools, sol) - expected) <= expected * Decimal("1e-20")


def test_an_amount_finer_than_the_token_is_refused() -> None:
    market = _both_venues()
    options = candidates(market.venue_pools(), "SOL", "USDT")
    with pytest.raises(ValueError, match="9 decimals"):
        route(options, Decimal("1.0000000001"))


# -- venue filters ---------------------------------------------------------------------


def test_dexes_keeps_only_those_venues() -> None:
    market = _triangle()
    pools = market.venue_pools()
    options = candidates(pools, "SOL", "USDT", dexes=["raydium"])
    assert options
    assert all(set(c.venues) == {"raydium"} for c in options)
    plan = route(options, _sol(market, Decimal(400_000)))
    assert all(set(leg.venues) == {"raydium"} for leg in plan.legs)


def test_exclude_dexes_drops_any_path_touching_them() -> None:
    market = _triangle()
    options = candidates(market.venue_pools(), "SOL", "USDT", exclude_dexes=["raydium"])
    assert options
    assert all("raydium" not in c.venues for c in options)


def test_only_direct_routes_has_no_hops() -> None:
    market = _triangle()
    options = candidates(market.venue_pools(), "SOL", "USDT", only_direct_routes=True)
    assert [c.path for c in options] == [("SOL", "USDT"), ("SOL", "USDT")]
    plan = route(options, _sol(market, Decimal(400_000)))
    assert all(len(leg.path) == 2 for leg in plan.legs)


@pytest.mark.parametrize("option", ["dexes", "exclude_dexes"])
def test_an_unknown_venue_is_refused(option: str) -> None:
    market = _both_venues()
    with pytest.raises(ValueError, match="unknown venue 'orca'"):
        candidates(market.venue_pools(), "SOL", "USDT", **{option: ["raydium", "orca"]})


def test_no_venue_left_is_no_route() -> None:
    market = _both_venues()
    options = candidates(market.venue_pools(), "SOL", "USDT", dexes=[])
    assert options == ()
    with pytest.raises(MarketError) as refused:
        route(options, Decimal(1))
    assert refused.value.reason == "no_route"


# -- exact-out -------------------------------------------------------------------------


@pytest.mark.parametrize("usd", [Decimal(50), Decimal(300_000)])
def test_exact_out_delivers_the_amount_for_the_least_input(usd: Decimal) -> None:
    market = _triangle()
    options = candidates(market.venue_pools(), "SOL", "USDT")
    budget = _sol(market, usd)
    wanted = route(options, budget).amount_out.quantize(Decimal("0.01"), rounding=ROUND_DOWN)
    plan = route_exact_out(options, wanted, max_amount_in=budget)
    _check_plan(plan)
    assert plan.swap_mode == "ExactOut"
    assert plan.amount_out >= wanted
    assert plan.amount_in <= budget
    # Least input: a hundredth of a percent less, routed as well as the router can,
    # falls short.
    less = (plan.amount_in * Decimal("0.9999")).quantize(Decimal("1e-9"), rounding=ROUND_DOWN)
    assert route(options, less).amount_out < wanted


def test_exact_out_above_max_amount_in_is_refused_and_below_is_served() -> None:
    market = _both_venues()
    options = candidates(market.venue_pools(), "SOL", "USDT")
    wanted = Decimal(10_000)
    plan = route_exact_out(options, wanted)
    with pytest.raises(MarketError) as refused:
        route_exact_out(options, wanted, max_amount_in=plan.amount_in - Decimal("1e-9"))
    assert refused.value.reason == "slippage_exceeded"
    assert route_exact_out(options, wanted, max_amount_in=plan.amount_in) == plan


def test_exact_out_beyond_all_liquidity_is_insufficient() -> None:
    market = _both_venues()
    options = candidates(market.venue_pools(), "SOL", "USDT")
    with pytest.raises(MarketError) as refused:
        route_exact_out(options, Decimal(10) ** 12)
    assert refused.value.reason == "insufficient_liquidity"


# -- percents --------------------------------------------------------------------------


def test_percents_round_to_a_hundred_by_largest_remainder() -> None:
    assert percents([Decimal(1), Decimal(1), Decimal(1)]) == (34, 33, 33)
    assert percents([Decimal(2), Decimal(1)]) == (67, 33)
    assert percents([Decimal(1000), Decimal(1)]) == (99, 1)
    with pytest.raises(ValueError, match="positive amounts"):
        percents([])


@given(
    st.lists(
        st.decimals(min_value=Decimal("0.000001"), max_value=Decimal(10**9), places=6),
        min_size=1,
        max_size=8,
    )
)
def test_percents_always_sum_to_a_hundred_and_show_every_leg(amounts: list[Decimal]) -> None:
    shown = percents(amounts)
    assert sum(shown) == 100
    assert all(p >= 1 for p in shown)


# -- against the best single candidate and a brute force ---------------------------------


def _exact(candidate: Candidate, amount: Decimal) -> Decimal | None:
    """What `candidate` gives for `amount`, from the pools' own trial swaps."""
    if amount <= 0:
        return Decimal(0)
    out = amount
    try:
        for hop in candidate.hops:
            token = find_token(hop.token_out)
            assert token is not None
            out = hop.pool.simulate(hop.token_in, out, token.decimals).amount_out
    except MarketError:
        return None
    return out


def _brute_force(pair: Sequence[Candidate], amount: Decimal, quantum: Decimal) -> Decimal:
    """The best split of `amount` between two pool-disjoint candidates.

    Every 1/200 of the amount, then every 1/200 of the two grid steps around the best
    point: the candidates' outputs are concave, so the optimum lies there.
    """

    def total(x: Decimal) -> Decimal | None:
        x = x.quantize(quantum, rounding=ROUND_DOWN)
        first, second = _exact(pair[0], x), _exact(pair[1], amount - x)
        return None if first is None or second is None else first + second

    def scan(low: Decimal, high: Decimal) -> tuple[Decimal, Decimal]:
        best = (Decimal(-1), low)
        for k in range(_GRID + 1):
            x = low + (high - low) * k / _GRID
            value = total(x)
            if value is not None and value > best[0]:
                best = (value, x)
        return best

    value, at = scan(Decimal(0), amount)
    step = amount / _GRID
    fine, _ = scan(max(at - step, Decimal(0)), min(at + step, amount))
    return max(value, fine)


_GRID = 200
_POOL = st.sampled_from([Decimal(300_000), Decimal(1_000_000), Decimal(4_000_000)])


@st.composite
def _layouts(draw: st.DrawFn) -> tuple[list[tuple[str, Pool]], Market, str, str]:
    """Two pool-disjoint candidates: both venues direct, or one direct and one hop."""
    hop = draw(st.booleans())
    pairs = (
        [
            PairParams("SOL", "USDT", venues=("raydium",), liquidity_usd=draw(_POOL)),
            PairParams("SOL", "USDC", venues=("meteora",), liquidity_usd=draw(_POOL)),
            PairParams("USDC", "USDT", venues=("meteora",), liquidity_usd=draw(_POOL)),
        ]
        if hop
        else [
            PairParams(
                "SOL",
                "USDT",
                liquidity_usd=draw(_POOL),
                bin_step_bps=draw(st.sampled_from([5, 10, 25])),
                meteora_width=draw(st.sampled_from([Decimal("0.1"), Decimal("0.5")])),
            )
        ]
    )
    market = _market(pairs, seed=draw(st.integers(0, 50)), now=draw(st.sampled_from([0, 40])))
    selling = draw(st.booleans())
    token_in, token_out = ("SOL", "USDT") if selling else ("USDT", "SOL")
    return list(market.venue_pools()), market, token_in, token_out


@settings(max_examples=40)
@given(_layouts(), st.floats(min_value=-5, max_value=-0.7))
def test_the_router_lies_between_the_best_single_and_the_brute_force_optimum(
    layout: tuple[list[tuple[str, Pool]], Market, str, str], exponent: float
) -> None:
    pools, market, token_in, token_out = layout
    options = candidates(pools, token_in, token_out)
    assert len(options) == 2
    token = find_token(token_in)
    assert token is not None
    usd = Decimal(repr(10**exponent)) * Decimal(1_000_000)
    price = market.reference_price(token_in, market.now)
    amount = (usd / price).quantize(token.quantum, rounding=ROUND_DOWN)
    refusal: MarketError | None = None
    try:
        plan = route(options, amount)
    except MarketError as error:
        refusal = error
    if refusal is not None:
        # Only when no candidate alone can fill it (a split might still, and did not).
        assert refusal.reason == "insufficient_liquidity"
        assert all(_exact(c, amount) is None for c in options)
        return
    _check_plan(plan)
    singles = [out for c in options if (out := _exact(c, amount)) is not None]
    if singles:
        assert plan.best_single is not None
        assert plan.best_single.amount_out == max(singles)
        assert plan.amount_out >= max(singles)
    optimum = _brute_force(options, amount, token.quantum)
    out_token = find_token(token_out)
    assert out_token is not None
    # Rounding: each leg's output is rounded down to a base unit, and the optimum's
    # split is on a grid of input base units.
    assert plan.amount_out <= optimum * (1 + Decimal("1e-9")) + 2 * out_token.quantum
    # And it finds that optimum, to a tenth of a basis point.
    assert plan.amount_out >= optimum * (1 - Decimal("1e-5")) - 2 * out_token.quantum


# -- executing a plan: one atomic swap ----------------------------------------------


def _plan_legs(plan: RoutePlan) -> list[PlanLeg]:
    return [PlanLeg(leg.venues, leg.path, leg.amount_in) for leg in plan.legs]


def _spots(market: Market) -> list[Decimal]:
    return [pool.spot(pool.base) for _, pool in market.venue_pools()]


def test_a_split_route_fills_every_leg_at_the_planned_prices() -> None:
    market = _both_venues()
    plan = route(candidates(market.venue_pools(), "SOL", "USDT"), _sol(market, Decimal(200_000)))
    assert len(plan.legs) >= 2
    before = _spots(market)
    filled = market.execute_plan(_plan_legs(plan), plan.amount_out, market.now)
    assert [leg.amount_out for leg in filled] == [leg.amount_out for leg in plan.legs]
    moved = [a != b for a, b in zip(before, _spots(market), strict=True)]
    assert sum(moved) == len(plan.legs), "every leg's pool traded, and only those"


def test_a_split_route_that_misses_its_minimum_fills_no_leg() -> None:
    market = _both_venues()
    plan = route(candidates(market.venue_pools(), "SOL", "USDT"), _sol(market, Decimal(200_000)))
    assert len(plan.legs) >= 2
    before = _spots(market)
    with pytest.raises(MarketError) as refused:
        market.execute_plan(_plan_legs(plan), plan.amount_out + Decimal("0.000001"), market.now)
    assert refused.value.reason == "slippage_exceeded"
    assert _spots(market) == before, "a leg filled although the route missed its minimum"
    # The same route with its own minimum still fills: nothing was left half done.
    market.execute_plan(_plan_legs(plan), plan.amount_out, market.now)
    assert _spots(market) != before


def test_a_plan_leg_through_a_missing_pool_is_no_route_and_fills_nothing() -> None:
    market = _both_venues()
    before = _spots(market)
    legs = [
        PlanLeg(("raydium",), ("SOL", "USDT"), Decimal(1)),
        PlanLeg(("meteora", "meteora"), ("SOL", "USDC", "USDT"), Decimal(1)),
    ]
    with pytest.raises(MarketError) as refused:
        market.execute_plan(legs, Decimal(0), market.now)
    assert refused.value.reason == "no_route"
    assert _spots(market) == before


def test_exact_out_execution_spends_the_least_input_within_the_legs() -> None:
    market = _both_venues()
    options = candidates(market.venue_pools(), "SOL", "USDT")
    wanted = Decimal(150_000)
    plan = route_exact_out(options, wanted)
    cushion = [
        PlanLeg(leg.venues, leg.path, (leg.amount_in * Decimal("1.01")).quantize(Decimal("1e-9")))
        for leg in plan.legs
    ]
    filled = market.execute_plan(cushion, wanted, market.now, exact_out=True)
    spent = sum(leg.amount_in for leg in filled)
    assert sum(leg.amount_out for leg in filled) >= wanted
    assert spent <= sum(leg.amount_in for leg in cushion)
    # Within a base unit per leg of the router's least input (the same pools, unmoved).
    assert spent <= plan.amount_in + Decimal("1e-9") * len(plan.legs)


def test_candidates_follow_the_listing_when_it_changes() -> None:
    """Candidates are reused per listing: a pool listed or delisted shows at once."""
    market = _triangle()
    pools = market.venue_pools()
    every = candidates(pools, "SOL", "USDT")
    assert candidates(pools, "SOL", "USDT") == every
    fewer = tuple(entry for entry in pools if entry[0] != "meteora")
    assert {c.label for c in candidates(fewer, "SOL", "USDT")} == {"raydium"}
    assert candidates(pools, "SOL", "USDT") == every
    direct = candidates(pools, "SOL", "USDT", only_direct_routes=True)
    assert all(len(c.hops) == 1 for c in direct) and len(direct) < len(every)
    assert disjoint_sets(every) == disjoint_sets(every)  # the same sets when asked again
    sets = disjoint_sets(every)
    sets[0].append(99)  # a caller's copy: the next answer is not changed by it
    assert 99 not in disjoint_sets(every)[0]
