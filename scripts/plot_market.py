"""Draw the mock market's behaviour for docs/market.md.

Writes docs/img/market_prices.png (both venues' SOL/USDC mid price and the reference
over a simulated hour) and docs/img/price_impact.png (price impact against trade size
on both venues). Run from anywhere: `.venv/bin/python scripts/plot_market.py`.

Only a documentation aid: it reads nothing but the market's own defaults, and floats
appear here solely to hand numbers to matplotlib.
"""

from __future__ import annotations

import argparse
from decimal import Decimal
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from dexecutor.market.simulation import Market, MarketParams
from dexecutor.market.types import VENUES, MarketError

ROOT = Path(__file__).resolve().parent.parent
COLOURS = {"raydium": "#6c5ce7", "meteora": "#e17055", "reference": "#2d3436"}


def plot_prices(seed: int, preset: str, target: Path) -> None:
    """Both venues' SOL/USDC mid price and the reference, sampled every 5 s for an hour."""
    market = Market(MarketParams.preset(preset), seed=seed)
    minutes: list[float] = []
    mids: dict[str, list[float]] = {venue: [] for venue in VENUES}
    reference: list[float] = []
    gaps: list[float] = []
    for second in range(0, 3601, 5):
        now = float(second)
        minutes.append(second / 60)
        for venue in VENUES:
            mids[venue].append(float(market.mid_price(venue, "SOL", "USDC", now)))
        ref = market.reference_price("SOL", now) / market.reference_price("USDC", now)
        reference.append(float(ref))
        gaps.append(100 * (mids["raydium"][-1] / mids["meteora"][-1] - 1))

    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(10, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]}
    )
    for venue in VENUES:
        top.plot(minutes, mids[venue], label=f"{venue} mid", color=COLOURS[venue], lw=1.3)
    top.plot(minutes, reference, label="reference", color=COLOURS["reference"], lw=1.2, ls="--")
    top.set_ylabel("USDC per SOL")
    top.set_title(f"SOL/USDC over a simulated hour ({preset} preset, seed {seed})")
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    bottom.axhline(0, color="#999999", lw=0.8)
    bottom.fill_between(minutes, gaps, 0, color=COLOURS["raydium"], alpha=0.35, lw=0)
    bottom.plot(minutes, gaps, color=COLOURS["raydium"], lw=1)
    median_gap = sorted(abs(g) for g in gaps)[len(gaps) // 2]
    bottom.set_title(f"gap between the venues (median {median_gap:.1f} %)", fontsize=10)
    bottom.set_ylabel("raydium vs\nmeteora (%)")
    bottom.set_xlabel("minutes since market start")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(target, dpi=120)
    plt.close(fig)


def _sizes() -> list[Decimal]:
    """Trade sizes from 0.01 to about 56,000 SOL, eight per decade."""
    sizes = []
    for step in range(-16, 39):
        size = (Decimal(10) ** (Decimal(step) / 8)).quantize(Decimal("0.000000001"))
        sizes.append(size)
    return sizes


def plot_impact(seed: int, preset: str, target: Path) -> None:
    """Price impact of selling SOL for USDC on a fresh market, against trade size."""
    market = Market(MarketParams.preset(preset), seed=seed)
    fig, ax = plt.subplots(figsize=(10, 5.5))
    for venue in VENUES:
        sizes: list[float] = []
        impacts: list[float] = []
        fees: list[float] = []
        for size in _sizes():
            try:
                quote = market.quote(venue, "SOL", "USDC", size, 0.0)
            except MarketError as refused:
                if refused.reason != "insufficient_liquidity":
                    raise
                ax.axvline(float(size), color=COLOURS[venue], ls=":", lw=1)
                ax.annotate(
                    f"{venue}: insufficient\nliquidity at {size:,.0f} SOL",
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
        ax.plot(sizes, fees, ls="--", lw=1, color=COLOURS[venue], label=f"{venue} fee charged")
    ax.set_xscale("log")
    # Linear below 0.1 % so zero impact (a trade inside one DLMM bin) stays on the chart.
    ax.set_yscale("symlog", linthresh=0.1)
    ax.set_ylim(0, 100)
    ax.set_xlabel("trade size (SOL sold for USDC, log scale)")
    ax.set_ylabel("% of the trade (linear below 0.1 %, log above)")
    ax.set_title("Price impact vs size: constant product (Raydium) vs concentrated bins (Meteora)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(target, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="market seed (the tests use 0)")
    parser.add_argument("--preset", default="normal", choices=["calm", "normal", "violent"])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    plot_prices(args.seed, args.preset, args.out / "market_prices.png")
    plot_impact(args.seed, args.preset, args.out / "price_impact.png")
    print(f"wrote {args.out / 'market_prices.png'} and {args.out / 'price_impact.png'}")


if __name__ == "__main__":
    main()
