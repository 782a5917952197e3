"""Landing latency against priority fee: the chain's landing model, measured (issue 15).

Draws many transactions per compute unit price (micro-lamports per CU) at three fixed
congestion levels (quiet 0.1, busy 0.5, congested 0.9: congestion moves over minutes,
a transaction's life is seconds), through `dexecutor.chain.landing`, the module the
chain lands transactions with, and its default parameters. Two ways to send:

- **once**: one broadcast; a lost broadcast or one that would land after the
  blockhash expired never lands;
- **rebroadcast**: the same signed bytes sent again every 5 slots (2 s, the engine's
  REBROADCAST_MS) until one lands or the blockhash expires 150 slots (60 s) after the
  first send; the transaction lands at the earliest landing of any broadcast.

Beside the fixed prices, the engine's policy: the 75th percentile of a window of 150
per-slot fees (getRecentPrioritizationFees) drawn at that level, capped at `--cap`.
Latency is from the first send to the landing slot, 400 ms a slot (the `confirmed`
commitment is one slot later). The plot also shows an hour of the cluster's congestion
for `--seed` and the 75th percentile of its recent fees.

    .venv/bin/python bench/landing.py [--transactions 4000] [--seed 15] [--cap 1000000]
        [--out bench/results/landing.json] [--plot docs/img/landing.png] [--json]

`dexecutor bench --only landing` runs it too. Needs numpy and matplotlib (the dev
extras).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dexecutor.chain.landing import (
    SLOT_MS,
    Congestion,
    LandingParams,
    draw,
    fee_at,
    paid_share,
)

LEVELS = {"quiet": 0.1, "busy": 0.5, "congested": 0.9}
PRICES = (0, 100, 300, 1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000, 3_000_000)
REBROADCAST_SLOTS = 5
EXPIRY_SLOTS = 150
WINDOW = 150
WINDOWS = 200
PERCENTILE = 75
HOUR = 9_000  # slots


@dataclass
class Row:
    """One congestion level and price: what became of its transactions."""

    level_name: str
    level: float
    price: str  # micro-lamports per CU, or "p75" for the engine's policy
    mean_price: float
    once_lost: float
    once_p50_ms: float | None
    once_p90_ms: float | None
    never_landed: float
    p50_ms: float | None
    p90_ms: float | None
    broadcasts: float


def paying_slots(
    params: LandingParams, level: float, price: int, n: int, rng: np.random.Generator
) -> np.ndarray:
    """For each of `n` transactions, `out[i, k]`: the first slot at or after `k` (slots
    from its first send) whose lowest landed fee it pays, or beyond expiry when none.

    At a fixed level the slots' fees are independent draws, so the slots a price pays
    are a Bernoulli process with the model's `paid_share`; `Congestion` draws the same
    fees slot by slot."""
    width = EXPIRY_SLOTS + 1
    paid = rng.random((n, width)) < paid_share(params, level, price)
    index = np.where(paid, np.arange(width), width)
    return np.minimum.accumulate(index[:, ::-1], axis=1)[:, ::-1]


def send(
    params: LandingParams,
    level: float,
    price: int,
    rng: random.Random,
    slots: np.ndarray,
    rebroadcast: bool,
) -> tuple[int | None, int]:
    """(slots from the first send to landing or None, broadcasts sent) for one
    transaction whose paying slots are `slots` (a row of `paying_slots`)."""
    landed: int | None = None
    sent = 0
    at = 0
    while at <= EXPIRY_SLOTS and (landed is None or at < landed):
        sent += 1
        # The delay the model draws; the landing is then the first slot it pays.
        delay = draw(params, level, price, rng)
        if delay is not None and at + delay <= EXPIRY_SLOTS:
            lands = int(slots[at + delay])
            if lands <= EXPIRY_SLOTS:
                landed = lands if landed is None else min(landed, lands)
        if not rebroadcast:
            break
        at += REBROADCAST_SLOTS
    return landed, sent


def policy_prices(params: LandingParams, level: float, rng: random.Random, cap: int) -> list[int]:
    """The engine's price for each of `WINDOWS` windows of recent fees at this level."""
    prices = []
    for _ in range(WINDOWS):
        window = sorted(fee_at(params, level, rng.random()) for _ in range(WINDOW))
        prices.append(min(window[PERCENTILE * WINDOW // 100], cap))
    return prices


def _pct(values: Sequence[int], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[min(int(q / 100 * len(ordered)), len(ordered) - 1)] * SLOT_MS)


def measure(
    params: LandingParams,
    name: str,
    level: float,
    label: str,
    prices: list[int],
    rng: random.Random,
    fees: np.random.Generator,
) -> Row:
    """Every price in `prices` is one transaction, sent once and (again) rebroadcast."""
    once, again = [], []
    for price in sorted(set(prices)):
        slots = paying_slots(params, level, price, prices.count(price), fees)
        for row in slots:
            once.append(send(params, level, price, rng, row, rebroadcast=False)[0])
            again.append(send(params, level, price, rng, row, rebroadcast=True))
    n = len(prices)
    once_landed = [d for d in once if d is not None]
    landed = [d for d, _ in again if d is not None]
    return Row(
        level_name=name,
        level=level,
        price=label,
        mean_price=sum(prices) / n,
        once_lost=round(1 - len(once_landed) / n, 4),
        once_p50_ms=_pct(once_landed, 50),
        once_p90_ms=_pct(once_landed, 90),
        never_landed=round(1 - len(landed) / n, 4),
        p50_ms=_pct(landed, 50),
        p90_ms=_pct(landed, 90),
        broadcasts=round(sum(sent for _, sent in again) / n, 2),
    )


def run(transactions: int, seed: int, cap: int) -> list[Row]:
    params = LandingParams()
    rows = []
    for name, level in LEVELS.items():
        rng = random.Random(f"{seed}:{name}")
        fees = np.random.default_rng([seed, round(level * 100)])
        for price in PRICES:
            rows.append(measure(params, name, level, str(price), [price] * transactions, rng, fees))
        policy = policy_prices(params, level, rng, cap)
        chosen = [policy[i % len(policy)] for i in range(transactions)]
        rows.append(measure(params, name, level, f"p{PERCENTILE}", chosen, rng, fees))
    return rows


def timeline(seed: int, step: int = 25) -> dict[str, list[float]]:
    """An hour of the cluster's congestion and the 75th percentile of its recent fees."""
    congestion = Congestion(seed)
    slots = list(range(WINDOW, WINDOW + HOUR, step))
    p75 = []
    for slot in slots:
        window = sorted(fee for _, fee in congestion.recent_fees(slot, WINDOW))
        p75.append(float(window[PERCENTILE * WINDOW // 100]))
    return {
        "minutes": [(s - WINDOW) * SLOT_MS / 60_000 for s in slots],
        "level": [congestion.level(s) for s in slots],
        "p75": p75,
    }


def summarise(rows: Sequence[Row], seed: int, transactions: int, cap: int) -> dict[str, Any]:
    """The headline figures (flat, as `dexecutor bench` shows them), with rebroadcasts:
    a zero fee and the engine's policy at each level."""
    summary: dict[str, Any] = {
        "seed": seed,
        "transactions_per_point": transactions,
        "policy_cap": cap,
    }
    for name in LEVELS:
        zero = next(r for r in rows if r.level_name == name and r.price == "0")
        policy = next(r for r in rows if r.level_name == name and r.price.startswith("p"))
        summary[f"{name}_zero_fee_p90_ms"] = zero.p90_ms
        summary[f"{name}_zero_fee_never_landed"] = zero.never_landed
        summary[f"{name}_p{PERCENTILE}_price"] = round(policy.mean_price)
        summary[f"{name}_p{PERCENTILE}_p90_ms"] = policy.p90_ms
        summary[f"{name}_p{PERCENTILE}_never_landed"] = policy.never_landed
    return summary


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def table(rows: Sequence[Row]) -> str:
    lines = [
        "landing latency by priority fee (µlamports/CU); rebroadcast every "
        f"{REBROADCAST_SLOTS} slots until expiry at {EXPIRY_SLOTS}",
        f"  {'level':<10} {'price':>16} | {'once: lost':>10} {'p50 ms':>7} {'p90 ms':>7} |"
        f" {'never landed':>12} {'p50 ms':>7} {'p90 ms':>7} {'sends':>6}",
    ]
    for r in rows:
        policy = r.price.startswith("p")
        price = f"{r.price} ({r.mean_price:,.0f})" if policy else f"{int(r.price):,}"
        lines.append(
            f"  {r.level_name:<10} {price:>16} | {r.once_lost:>10.1%} {_ms(r.once_p50_ms):>7}"
            f" {_ms(r.once_p90_ms):>7} | {r.never_landed:>12.1%} {_ms(r.p50_ms):>7}"
            f" {_ms(r.p90_ms):>7} {r.broadcasts:>6.1f}"
        )
    return "\n".join(lines)


def plot(rows: Sequence[Row], hour: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"quiet": "#55a868", "busy": "#dd8452", "congested": "#c44e52"}
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    for name, colour in colours.items():
        fixed = [r for r in rows if r.level_name == name and not r.price.startswith("p")]
        policy = next(r for r in rows if r.level_name == name and r.price.startswith("p"))
        xs = [float(r.price) for r in fixed]
        axes[0].plot(
            xs, [math.nan if r.p50_ms is None else r.p50_ms for r in fixed], "-o",
            color=colour, markersize=3, label=f"{name} ({LEVELS[name]}) p50",
        )  # fmt: skip
        axes[0].plot(
            xs, [math.nan if r.p90_ms is None else r.p90_ms for r in fixed], "--",
            color=colour, label=f"{name} p90",
        )  # fmt: skip
        if policy.p90_ms is not None:
            axes[0].plot([policy.mean_price], [policy.p90_ms], "*", color=colour, markersize=12)
        axes[1].plot(
            xs, [r.never_landed * 100 for r in fixed], "-o", color=colour, markersize=3,
            label=f"{name}: rebroadcast until expiry",
        )  # fmt: skip
        axes[1].plot(
            xs, [r.once_lost * 100 for r in fixed], ":", color=colour,
            label=f"{name}: one broadcast",
        )  # fmt: skip
    for ax in axes[:2]:
        ax.set_xscale("symlog", linthresh=100)
        ax.set_xlim(left=0)
        ax.set_xlabel("compute unit price (micro-lamports/CU; 0 at the left)")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("landing latency (ms)")
    axes[0].set_title(
        f"latency, rebroadcast every {REBROADCAST_SLOTS} slots (★: p90 paying p{PERCENTILE})"
    )
    axes[0].legend(fontsize=7, ncol=2)
    axes[1].set_ylabel("never landed (%)")
    axes[1].set_title(f"transactions never landed (blockhash expires at {EXPIRY_SLOTS} slots)")
    axes[1].legend(fontsize=7)
    axes[2].plot(hour["minutes"], hour["level"], color="#4c72b0")
    axes[2].set_ylim(0, 1)
    axes[2].set_xlabel("minutes")
    axes[2].set_ylabel("congestion level", color="#4c72b0")
    axes[2].set_title("an hour of the cluster")
    fees = axes[2].twinx()
    fees.plot(hour["minutes"], [max(f, 1.0) for f in hour["p75"]], color="#8c8c8c", linewidth=1)
    fees.set_yscale("log")
    fees.set_ylabel(f"p{PERCENTILE} of recent fees (µlamports/CU; 0 drawn at 1)", color="#8c8c8c")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transactions", type=int, default=4000, help="per level and price")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--cap", type=int, default=1_000_000, help="policy cap, µlamports/CU")
    parser.add_argument("--out", default="bench/results/landing.json")
    parser.add_argument("--plot", default="docs/img/landing.png")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    rows = run(args.transactions, args.seed, args.cap)
    summary = summarise(rows, args.seed, args.transactions, args.cap)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "rows": [asdict(r) for r in rows]}, indent=1))
    plot(rows, timeline(args.seed), Path(args.plot))
    if args.json:
        json.dump(summary, sys.stdout)
    else:
        print(table(rows))


if __name__ == "__main__":
    main()
