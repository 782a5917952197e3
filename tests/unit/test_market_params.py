"""Market parameters: presets, validation and per-pair overrides."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest

from dexecutor.market.params import (
    PRESETS,
    MarketParams,
    PairParams,
    ScheduledLaunch,
    TokenParams,
)


def test_each_preset_builds_and_normal_is_the_default() -> None:
    built = {name: MarketParams.preset(name) for name in PRESETS}
    assert built["normal"] == MarketParams()
    assert built["calm"].venue_deviation < built["normal"].venue_deviation
    assert built["violent"].venue_deviation > built["normal"].venue_deviation
    assert built["calm"].liquidity_scale > built["violent"].liquidity_scale
    assert built["calm"].volatility < built["violent"].volatility


def test_an_unknown_preset_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown market preset"):
        MarketParams.preset("wild")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tick_seconds": 0.0}, "tick_seconds"),
        ({"tick_seconds": float("nan")}, "tick_seconds"),
        ({"volatility": Decimal(-1)}, "volatility"),
        ({"venue_deviation": Decimal("0.5")}, "venue_deviation"),
        ({"liquidity_scale": Decimal(0)}, "liquidity_scale"),
        ({"cpmm_max_fill": Decimal(1)}, "cpmm_max_fill"),
        ({"pairs": (PairParams("SOL", "DOGE"),)}, "unknown token"),
        ({"pairs": (PairParams("SOL", "NOVA"),)}, "not launched"),
        ({"pairs": (PairParams("SOL", "SOL"),)}, "two different tokens"),
        ({"pairs": (PairParams("SOL", "USDC"), PairParams("USDC", "SOL"))}, "twice"),
        ({"pairs": (PairParams("SOL", "USDC", venues=("orca",)),)}, "unknown venue"),
        ({"pairs": (PairParams("SOL", "USDC", venues=()),)}, "non-empty"),
        ({"pairs": (PairParams("SOL", "USDC", bin_step_bps=0),)}, "bin_step_bps"),
        ({"tokens": (TokenParams("XYZ"),)}, "unknown token"),
        ({"launches": (ScheduledLaunch("NOVA", "orca", 10.0),)}, "unknown venue"),
        ({"launches": (ScheduledLaunch("SOL", "raydium", 10.0),)}, "SOL"),
        ({"launches": (ScheduledLaunch("NOVA", "raydium", -1.0),)}, "time"),
    ],
)
def test_bad_params_are_refused_with_a_message_naming_them(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(MarketParams(), **change)


def test_with_pair_replaces_a_pair_in_either_orientation() -> None:
    params = MarketParams().with_pair(PairParams("USDC", "SOL", liquidity_usd=Decimal(10)))
    matching = [p for p in params.pairs if {p.base, p.quote} == {"SOL", "USDC"}]
    assert matching == [PairParams("USDC", "SOL", liquidity_usd=Decimal(10))]
    assert len(params.pairs) == len(MarketParams().pairs)


def test_token_params_fall_back_to_neutral_scales() -> None:
    assert MarketParams().token("SOL") == TokenParams("SOL")
    assert MarketParams().token("USDC").peg_seconds is not None
