"""Draw the mock market's behaviour for docs/market.md.

Writes, in docs/img/: market_prices.png (SOL/USDC on both venues and the reference
over a simulated hour, one row per preset, with the gap between the venues),
venue_gap.png (the distribution of that gap per preset, against a round trip's fees)
and price_impact.png (price impact against trade size on both venues, for a deep
major pair and a memecoin pair). Run from anywhere: `.venv/bin/python
scripts/plot_market.py`.

Only a documentation aid: it reads nothing but the market's own defaults, and floats
appear here solely to hand numbers to matplotlib.
"""

from __future__ import annotations

import argparse
import statistics
from decimal import Decimal
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from dexecutor.market.params import PRESETS
from dexecutor.market.simulation import Market, MarketParams
from dexecutor.market.types import VENUES, MarketError

ROOT = Path(__file__).resolve().parent.parent
COLOURS = {"raydium": "#6c5ce7", "meteora": "#e17055", "reference": "#2d3436"}
PRESET_COLOURS = {"normal": "#0984e3", "calm": "#00b894", "violent": "#d63031", "wide": "#636e72"}
SLOT = 0.4
HOUR_SLOTS = 9000


class Hour:
    """SOL/USDC mids on both venues and the reference, every slot for an hour."""

    def __init__(self, preset: str, seed: int) -> None:
        market = Market(MarketParams.preset(preset), seed=seed)
        self.minutes: list[float] = []
        self.mids: dict[str, list[float]] = {venue: [] for venue in VENUES}
        self.reference: list[float] = []
        self.gaps_bps: list[float] = []
        for slot in range(HOUR_SLOTS + 1):
            now = slot * SLOT
            self.minutes.append(now / 60)
            mids = {v: market.mid_price(v, "SOL", "USDC", now) for v in VENUES}
            for venue in VENUES:
                self.mids[venue].append(float(mids[venue]))
            ref = market.reference_price("SOL", now) / market.reference_price("USDC", now)
            self.reference.append(float(ref))
            self.gaps_bps.append(float((mids["raydium"] / mids["meteora"] - 1) * 10_000))
        sol_usdc = market.quote("raydium", "SOL", "USDC", Decimal(1), 0.0).fee
        sol_usdc += market.quote("meteora", "SOL", "USDC", Decimal(1), 0.0).fee
        self.round_trip_bps = float(sol_usdc * 10_000)


def plot_prices(hours: dict[str, Hour], seed: int, target: Path) -> None:
    """One row per preset: both venues' mid and the reference, and the gap in bps."""
    fig, axes = plt.subplots(
        len(hours), 2, figsize=(12, 3 * len(hours)), gridspec_kw={"width_ratios": [3, 1.4]}
    )
    for row, (preset, hour) in enumerate(hours.items()):
        prices, gaps = axes[row]
        for venue in VENUES:
            prices.plot(hour.minutes, hour.mids[venue], label=venue, color=COLOURS[venue], lw=0.9)
        prices.plot(
            hour.minutes,
            hour.reference,
            label="reference",
            color=COLOURS["reference"],
            lw=0.8,
            ls="--",
        )
        prices.set_title(f"{preset}: SOL/USDC over a simulated hour (seed {seed})", fontsize=10)
        prices.set_ylabel("USDC per SOL")
        prices.grid(alpha=0.3)
        gaps.plot(hour.minutes, hour.gaps_bps, color=PRESET_COLOURS[preset], lw=0.6)
        gaps.axhline(hour.round_trip_bps, color="#999999", lw=0.8, ls=":")
        gaps.axhline(-hour.round_trip_bps, color="#999999", lw=0.8, ls=":")
        median = statistics.median(abs(g) for g in hour.gaps_bps)
        gaps.set_title(f"raydium vs meteora, bps (median |gap| {median:.1f})", fontsize=10)
        gaps.grid(alpha=0.3)
    axes[0][0].legend(loc="upper left", fontsize=8)
    axes[-1][0].set_xlabel("minutes since market start")
    axes[-1][1].set_xlabel("minutes (dotted: a round trip's fees)")
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)


def plot_gaps(hours: dict[str, Hour], target: Path) -> None:
    """The distribution of |gap| per preset, every slot of the hour, log scale."""
    fig, ax = plt.subplots(figsize=(10, 5))
    edges = [0.1 * 1.25**i for i in range(45)]
    for preset, hour in hours.items():
        gaps = [max(abs(g), 0.1) for g in hour.gaps_bps]
        median = statistics.median(gaps)
        ax.hist(
            gaps,
            bins=edges,
            histtype="step",
            lw=1.6,
            color=PRESET_COLOURS[preset],
            label=f"{preset} (median {median:.1f} bps)",
        )
        ax.axvline(median, color=PRESET_COLOURS[preset], lw=0.8, ls="--")
    first = next(iter(hours.values()))
    ax.axvline(first.round_trip_bps, color="#2d3436", lw=1.2, ls=":")
    ax.annotate(
        "a round trip's fees\n(SOL/USDC, raydium + meteora)",
        (first.round_trip_bps, 0),
        xytext=(4, 150),
        textcoords="offset points",
        fontsize=8,
    )
    ax.set_xscale("log")
    ax.set_xlabel("|raydium mid / meteora mid − 1| in bps (log scale), every slot for an hour")
    ax.set_ylabel("slots")
    ax.set_title("SOL/USDC venue gap per preset")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)


def _sizes(low: int, high: int) -> list[Decimal]:
    """Trade sizes from 10^(low/8) to 10^(high/8), eight per decade."""
    return [
        (Decimal(10) ** (Decimal(step) / 8)).quantize(Decimal("0.00001"))
        for step in range(low, high)
    ]


# (token sold, token bought, sizes as eighths of a decade, unit of the x axis)
IMPACT_PAIRS = (("SOL", "USDC", (-16, 41)), ("BONK", "SOL", (40, 100)))


def plot_impact(seed: int, preset: str, target: Path) -> None:
    """Price impact and fee of selling into each venue's pool, against trade size."""
    market = Market(MarketParams.preset(preset), seed=seed)
    fig, axes = plt.subplots(1, len(IMPACT_PAIRS), figsize=(13, 5.5))
    for ax, (token_in, token_out, (low, high)) in zip(axes, IMPACT_PAIRS, strict=True):
        for venue in VENUES:
            sizes: list[float] = []
            impacts: list[float] = []
            fees: list[float] = []
            for size in _sizes(low, high):
                try:
                    quote = market.quote(venue, token_in, token_out, size, 0.0)
                except MarketError as refused:
                    if refused.reason != "insufficient_liquidity":
                        raise
                    ax.axvline(float(size), color=COLOURS[venue], ls=":", lw=1)
                    ax.annotate(
                        f"{venue}: insufficient\nliquidity at {size:,.0f}",
                        (float(size), 0.02 if venue == "raydium" else 0.06),
                        color=COLOURS[venue],
                        fontsize=8,
                        ha="right",
                        xytext=(-4, 0),
                        textcoords="offset points",
                    )
                    break
                sizes.append(float(size))
                impacts.append(float(quote.price_impact) * 100)
                fees.append(float(quote.fee) * 100)
            ax.plot(sizes, impacts, marker="o", ms=3, color=COLOURS[venue], label=f"{venue} impact")
            ax.plot(sizes, fees, ls="--", lw=1, color=COLOURS[venue], label=f"{venue} fee")
        pair = market.params.pairs
        depth = next(p for p in pair if {p.base, p.quote} == {token_in, token_out})
        tvl = ", ".join(f"{v} \\${depth.liquidity_on(v) / 1_000_000:g}M" for v in VENUES)
        ax.set_xscale("log")
        # Linear below 0.1 % so zero impact (a trade inside one DLMM bin) stays visible.
        ax.set_yscale("symlog", linthresh=0.1)
        ax.set_ylim(0, 100)
        ax.set_xlabel(f"trade size ({token_in} sold for {token_out}, log scale)")
        ax.set_title(f"{token_in}/{token_out} (TVL {tvl})", fontsize=10)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("% of the trade (linear below 0.1 %, log above)")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle("Price impact vs size: constant product (Raydium) vs concentrated bins (Meteora)")
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="market seed (the tests use 0)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    hours = {preset: Hour(preset, args.seed) for preset in PRESETS}
    plot_prices(hours, args.seed, args.out / "market_prices.png")
    plot_gaps(hours, args.out / "venue_gap.png")
    plot_impact(args.seed, "normal", args.out / "price_impact.png")
    print(f"wrote market_prices.png, venue_gap.png and price_impact.png in {args.out}")


if __name__ == "__main__":
    main()
