"""The landing model: congestion, the fee market and a broadcast's fate.

Properties that hold exactly (determinism, bounds, monotone in price and congestion
on the same random draws, the window of recent fees) and the documented figures that
the defaults must keep (quiet: price 0 lands in a few slots; congested: price 0 is
mostly lost or slow, the 75th percentile of recent fees lands in a few slots).
"""

from __future__ import annotations

import itertools
import random
import statistics
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dexecutor.chain.landing import (
    Congestion,
    LandingParams,
    draw,
    fee_at,
    landing_chance,
    loss_chance,
    paid_share,
    rank,
    zero_fee_share,
)

PARAMS = LandingParams()
HOUR = 9_000  # slots
levels = st.floats(min_value=0.0, max_value=1.0)
prices = st.integers(min_value=0, max_value=10_000_000)


def _p75(fees: list[tuple[int, int]]) -> int:
    ordered = sorted(fee for _, fee in fees)
    return ordered[int(0.75 * len(ordered))]


def _quantile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


# --- determinism ---------------------------------------------------------------------


def test_same_seed_same_congestion_and_fees() -> None:
    a, b = Congestion(7), Congestion(7)
    slots = range(0, 3 * HOUR, 37)
    assert [a.level(s) for s in slots] == [b.level(s) for s in slots]
    assert a.recent_fees(20_000) == b.recent_fees(20_000)


def test_another_seed_another_congestion() -> None:
    a, b = Congestion(7), Congestion(8)
    assert [a.level(s) for s in range(0, HOUR, 150)] != [b.level(s) for s in range(0, HOUR, 150)]
    assert a.recent_fees(HOUR) != b.recent_fees(HOUR)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**40), start=st.integers(0, 10**9))
def test_a_slot_asked_out_of_order_gives_the_same_level_and_fee(seed: int, start: int) -> None:
    """Asking slots backwards, or on a fresh instance (a restarted chain), gives the
    same answers."""
    slots = list(range(start, start + 300))
    forward = Congestion(seed)
    expected = [(forward.level(s), forward.fee(s)) for s in slots]
    backward = Congestion(seed)
    assert [(backward.level(s), backward.fee(s)) for s in reversed(slots)] == expected[::-1]


def test_a_slot_asked_again_after_thousands_of_others_is_unchanged() -> None:
    """The cache forgets old slots; computing them again gives the same values."""
    congestion = Congestion(9)
    slots = range(100, 400)
    expected = [(congestion.level(s), congestion.fee(s)) for s in slots]
    for s in range(400, 5_000):
        congestion.fee(s)
    assert [(congestion.level(s), congestion.fee(s)) for s in slots] == expected


def test_broadcast_is_determined_by_the_rng_and_takes_two_draws() -> None:
    """The chain draws its landing from a seeded rng: the same seed, the same fates, and
    every broadcast consumes the same two draws whatever its outcome."""
    congestion = Congestion(3)
    first = [congestion.broadcast(s, 0, random.Random(s)) for s in range(0, HOUR, 7)]
    again = [Congestion(3).broadcast(s, 0, random.Random(s)) for s in range(0, HOUR, 7)]
    assert first == again
    assert None in first and any(d is not None for d in first)
    rng, mirror = random.Random(11), random.Random(11)
    for slot in range(0, HOUR, 13):
        congestion.broadcast(slot, slot % 5 * 50_000, rng)
        mirror.random(), mirror.random()
        assert rng.getstate() == mirror.getstate()


# --- congestion ----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(min_value=-(2**63), max_value=2**63), slot=st.integers(0, 10**12))
def test_level_is_within_bounds(seed: int, slot: int) -> None:
    assert 0.0 <= Congestion(seed).level(slot) <= 1.0


def test_congestion_varies_slowly_and_reverts_to_its_median() -> None:
    """Within a few seconds the level barely moves; over hours it visits both quiet and
    congested times and its median is the configured one."""
    steps, spans, medians = [], [], []
    for seed in range(4):
        congestion = Congestion(seed)
        trace = [congestion.level(s) for s in range(0, 8 * HOUR, 5)]
        steps.append(max(abs(b - a) for a, b in itertools.pairwise(trace)))
        spans.append((min(trace), max(trace)))
        medians.append(statistics.median(trace))
    assert max(steps) < 0.05  # per 2 s
    assert all(low < 0.1 and high > 0.8 for low, high in spans)
    assert abs(statistics.median(medians) - PARAMS.congestion_median) < 0.05


def test_congestion_is_correlated_over_a_minute_not_over_an_hour() -> None:
    def correlation(lag: int) -> float:
        pairs = [
            (c.level(s), c.level(s + lag))
            for c in (Congestion(seed) for seed in range(4))
            for s in range(0, 24 * HOUR, 97)
        ]
        return statistics.correlation([a for a, _ in pairs], [b for _, b in pairs])

    assert correlation(150) > 0.8
    assert correlation(HOUR) < 0.3


# --- recent fees ---------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32), slot=st.integers(0, 10**9), n=st.integers(0, 300))
def test_recent_fees_cover_the_window_ending_at_the_slot(seed: int, slot: int, n: int) -> None:
    fees = Congestion(seed).recent_fees(slot, n)
    assert [s for s, _ in fees] == list(range(max(slot - n + 1, 0), slot + 1))
    assert all(isinstance(fee, int) and fee >= 0 for _, fee in fees)


def test_recent_fees_default_to_150_slots_and_a_window_slides() -> None:
    congestion = Congestion(5)
    window = congestion.recent_fees(1_000)
    assert len(window) == 150 and window[-1][0] == 1_000
    assert congestion.recent_fees(1_001)[:-1] == window[1:]
    assert congestion.recent_fees(10) == congestion.recent_fees(10, 11)  # from slot 0
    with pytest.raises(ValueError, match="n must be"):
        congestion.recent_fees(10, -1)


def test_fees_are_mostly_zero_when_quiet_and_rise_with_congestion() -> None:
    quiet: list[int] = []
    congested: list[int] = []
    for seed in range(3):
        congestion = Congestion(seed)
        for slot in range(0, 24 * HOUR, 11):
            level = congestion.level(slot)
            if level < 0.15:
                quiet.append(congestion.fee(slot))
            elif level > 0.8:
                congested.append(congestion.fee(slot))
    assert len(quiet) > 500 and len(congested) > 500
    assert sum(f == 0 for f in quiet) / len(quiet) > 0.6
    assert sum(f == 0 for f in congested) / len(congested) < 0.05
    assert _quantile(congested, 0.5) > 50_000
    assert _quantile(congested, 0.75) > 20 * max(_quantile(quiet, 0.75), 1)


@settings(max_examples=200, deadline=None)
@given(level=levels, u=st.floats(min_value=0.0, max_value=0.999999))
def test_a_fee_quantile_ranks_where_it_was_drawn(level: float, u: float) -> None:
    """`rank` is the inverse of `fee_at`: paying the market's u-quantile beats a share u
    of it (up to integer rounding of the fee, and half the ties at 0)."""
    fee = fee_at(PARAMS, level, u)
    if fee == 0:
        assert u < zero_fee_share(PARAMS, level)
    elif fee > 100:
        assert rank(PARAMS, level, fee) == pytest.approx(u, abs=0.01)


# --- landing -------------------------------------------------------------------------


def _market(level: float, seed: int) -> Callable[[int], int]:
    """The lowest landed fee of each slot ahead, at a fixed level, from `seed`."""
    rng = random.Random(seed)
    fees: list[int] = []

    def fee_ahead(ahead: int) -> int:
        while len(fees) <= ahead:
            fees.append(fee_at(PARAMS, level, rng.random()))
        return fees[ahead]

    return fee_ahead


@settings(max_examples=300, deadline=None)
@given(level=levels, low=prices, extra=prices, seed=st.integers(0, 2**32))
def test_paying_more_never_lands_later_nor_is_lost_more_often(
    level: float, low: int, extra: int, seed: int
) -> None:
    """On the same draws and slots, a higher price lands no later, and is lost only if
    the lower price is too: so on average it never lands later nor is lost more often."""
    high = low + extra
    assert landing_chance(PARAMS, level, high) >= landing_chance(PARAMS, level, low)
    assert loss_chance(PARAMS, level, high) <= loss_chance(PARAMS, level, low)
    assert paid_share(PARAMS, level, high) >= paid_share(PARAMS, level, low)
    market = _market(level, seed)
    cheap = draw(PARAMS, level, low, random.Random(seed), market)
    dear = draw(PARAMS, level, high, random.Random(seed), market)
    if cheap is not None:
        assert dear is not None and 1 <= dear <= cheap
    if dear is None:
        assert cheap is None


@settings(max_examples=300, deadline=None)
@given(calm=levels, rise=levels, price=prices, seed=st.integers(0, 2**32))
def test_more_congestion_never_helps(calm: float, rise: float, price: int, seed: int) -> None:
    busy = min(calm + rise, 1.0)
    assert landing_chance(PARAMS, busy, price) <= landing_chance(PARAMS, calm, price)
    assert loss_chance(PARAMS, busy, price) >= loss_chance(PARAMS, calm, price)
    assert paid_share(PARAMS, busy, price) <= paid_share(PARAMS, calm, price)
    # The same slots' uniforms: a busier market's fees are at least as high.
    when_calm = draw(PARAMS, calm, price, random.Random(seed), _market(calm, seed))
    when_busy = draw(PARAMS, busy, price, random.Random(seed), _market(busy, seed))
    if when_busy is not None:
        assert when_calm is not None and when_calm <= when_busy


def _fates(level: float, price: int, n: int = 4_000) -> tuple[float, list[int]]:
    """One broadcast each of `n` transactions, each in a market of its own."""
    rng = random.Random(f"{level}:{price}")
    fates = [draw(PARAMS, level, price, rng, _market(level, i)) for i in range(n)]
    landed = [d for d in fates if d is not None]
    return 1 - len(landed) / n, landed


def test_quiet_price_zero_lands_within_a_few_slots() -> None:
    lost, landed = _fates(0.1, 0)
    assert lost < 0.02
    assert sum(d <= 3 for d in landed) / len(landed) > 0.9
    assert statistics.median(landed) == 1


def test_congested_price_zero_is_mostly_lost_or_slow() -> None:
    lost, landed = _fates(0.9, 0)
    assert lost > 0.5
    assert statistics.median(landed) > 20
    assert _quantile(landed, 0.9) > 60


def test_a_landed_broadcast_pays_the_lowest_fee_its_slot_reports() -> None:
    """getRecentPrioritizationFees never contradicts a landed transaction: it lands only
    in a slot whose lowest fee it pays. So under congestion a price below the market
    mostly waits for a cheap slot, which may not come within a blockhash's life."""
    congestion = Congestion(2)
    rng = random.Random(2)
    landed = 0
    for slot in range(0, 6 * HOUR, 17):
        price = rng.choice((0, 1_000, 30_000, 300_000))
        delay = congestion.broadcast(slot, price, rng)
        if delay is not None:
            landed += 1
            assert 1 <= delay <= PARAMS.horizon_slots
            assert congestion.fee(slot + delay) <= price
    assert landed > 1_000


@settings(max_examples=20, deadline=None)
@given(level=levels, price=prices)
def test_paid_share_is_the_share_of_slots_whose_fee_a_price_pays(level: float, price: int) -> None:
    rng = random.Random(price)
    n = 4_000
    paid = sum(fee_at(PARAMS, level, rng.random()) <= price for _ in range(n)) / n
    assert paid == pytest.approx(paid_share(PARAMS, level, price), abs=0.03)


def test_paying_the_75th_percentile_lands_in_a_few_slots_under_congestion() -> None:
    """The engine's default policy, end to end: the 75th percentile of
    getRecentPrioritizationFees at congested slots lands in a few slots."""
    congestion = Congestion(1)
    rng = random.Random(0)
    slots = [s for s in range(150, 12 * HOUR, 10) if congestion.level(s) > 0.85]
    assert len(slots) > 50
    fates = [
        congestion.broadcast(s, _p75(congestion.recent_fees(s)), rng)
        for s in slots
        for _ in range(40)
    ]
    landed = [d for d in fates if d is not None]
    assert 1 - len(landed) / len(fates) < 0.12
    assert statistics.median(landed) <= 3
    assert _quantile(landed, 0.9) <= 10
    # Not paying in the same slots: far worse.
    free = [congestion.broadcast(s, 0, rng) for s in slots for _ in range(40)]
    assert sum(d is None for d in free) / len(free) > 0.5


def test_a_high_percentile_lands_in_the_next_slot_or_two() -> None:
    price = fee_at(PARAMS, 0.9, 0.95)
    lost, landed = _fates(0.9, price)
    assert lost < 0.02
    assert sum(d <= 2 for d in landed) / len(landed) > 0.9


# --- input checks --------------------------------------------------------------------


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="price"):
        Congestion(1).broadcast(10, -1, random.Random(0))
    with pytest.raises(ValueError, match="level"):
        draw(PARAMS, 1.5, 0, random.Random(0))
    with pytest.raises(ValueError, match="fee_quiet"):
        LandingParams(fee_quiet=10.0, fee_congested=1.0)
    with pytest.raises(ValueError, match="loss_floor"):
        LandingParams(loss_floor=0.5, loss_max=0.6)
