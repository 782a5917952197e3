"""The CLI's choices stay the names the code uses."""

from __future__ import annotations

from dexecutor.bench import SCENARIOS
from dexecutor.cli import Scenario


def test_bench_only_offers_exactly_the_scenarios() -> None:
    assert tuple(s.value for s in Scenario) == SCENARIOS
