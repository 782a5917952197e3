"""The benchmark's figures, computed from stored events, on runs built by hand."""

from __future__ import annotations

import heapq
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dexecutor.bench import mean_slot_s, peak_executing, slot_use, steady_rate

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def run(slots: int, durations: list[float], gap_s: float = 0.0) -> list[dict[str, Any]]:
    """Orders taken from a queue by `slots` slots; a slot rests `gap_s` between orders."""
    free = [(0.0, slot) for slot in range(slots)]
    events: list[dict[str, Any]] = []
    for n, held in enumerate(durations):
        at, slot = heapq.heappop(free)
        start, end = T0 + timedelta(seconds=at), T0 + timedelta(seconds=at + held)
        for seq, status, when in ((1, "pending", T0), (2, "routing", start), (5, "confirmed", end)):
            events.append({"order_id": n, "seq": seq, "status": status, "at": when})
        heapq.heappush(free, (at + held + gap_s, slot))
    return events


def test_a_run_without_gaps_reaches_the_bound_whatever_its_tail() -> None:
    events = run(10, [2.7] * 100)
    assert steady_rate(events) * 60 == pytest.approx(10 / 2.7 * 60, rel=1e-3)
    assert mean_slot_s(events) == pytest.approx(2.7)
    assert peak_executing(events) == 10


def test_random_latencies_do_not_bias_the_rate() -> None:
    """Orders still running at the window's end count for what they did."""
    rng = random.Random(7)
    durations = [rng.uniform(0.15, 0.25) + rng.uniform(2, 3) for _ in range(200)]
    events = run(10, durations)
    bound = 10 / mean_slot_s(events)
    assert steady_rate(events) == pytest.approx(bound, rel=0.01)
    assert slot_use(events, 10) == pytest.approx(1.0, rel=0.01)


def test_gaps_between_orders_lower_the_rate() -> None:
    events = run(10, [2.7] * 100, gap_s=0.3)
    assert steady_rate(events) * 60 == pytest.approx(10 / 3.0 * 60, rel=1e-3)
    assert slot_use(events, 10) == pytest.approx(0.9, rel=1e-3)  # 2.7 s of every 3.0 s
