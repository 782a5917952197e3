"""Execution quality: the split router against a brute-force optimum (issue 16).

Replays a seeded tape of orders (sizes log-uniform from 0.01 to 20,000 USD, every
ordered pair of launched tokens) against fixed snapshots of the default market: a
`Market` built from the "normal" preset and advanced to a few times, pools as they are
then. For each order it prices, exactly (the pools' own `simulate`):

- the router (`market.split.route`, all candidates, the default flat leg cost);
- the best single candidate for the whole amount;
- the rule of the seed's Node engine: the venue whose quoted price looks best without
  considering size (the highest spot price, fee and size ignored), filled whole on that
  venue's best path (`Market.mid_price` then `Market.quote`);
- the optimum, by brute force: for every maximal set of pool-disjoint candidates (what
  one transaction of independent swaps can execute), the best split on a grid of 1/100
  of the amount (a max-plus dynamic programme over every candidate's exact outputs),
  then on a grid of 1/2,000 within one coarse step of that best point.

Outputs are compared net of the flat cost of the legs beyond the first, in bps of the
optimum. The router's time per quote (candidates, leg cost and route) is measured
in-process, after a warm-up, as wall time and as this thread's CPU time (the machine is
shared, so wall time includes other processes' turns).

    .venv/bin/python bench/quality.py [--orders 2000] [--seed 16]
        [--out bench/results/quality.json] [--plot docs/img/split_quality.png] [--json]

`dexecutor bench --only quality` runs it too. Needs numpy and matplotlib (the dev extras).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import numpy as np

from dexecutor.market.cpmm import CpmmPool
from dexecutor.market.dlmm import DlmmPool
from dexecutor.market.pools import Pool
from dexecutor.market.simulation import Market, MarketParams
from dexecutor.market.split import Candidate, best_single, candidates, leg_cost_in, route
from dexecutor.market.tokens import TOKENS, find_token
from dexecutor.market.types import VENUES, MarketError

SNAPSHOTS = (900.0, 1800.0, 2700.0, 3600.0)
MIN_USD, MAX_USD = 0.01, 20_000.0
COARSE = 100
FINE = 20
WARM_UP = 60
DEEP = 0.01  # "above 1 % of pool depth"


@dataclass
class Row:
    """One order of the tape and what each rule made of it."""

    snapshot: float
    token_in: str
    token_out: str
    usd: float
    amount_in: str
    candidates: int
    legs: int
    router_bps: float
    single_bps: float
    lower_price_bps: float | None
    split_gain_bps: float
    depth_share: float
    single_reported: bool
    wall_us: float
    cpu_us: float


def _decimals(symbol: str) -> int:
    token = find_token(symbol)
    assert token is not None
    return token.decimals


def _exact(candidate: Candidate, amount: Decimal) -> Decimal | None:
    """The candidate's output for `amount`, from the pools' own trial swaps."""
    if amount <= 0:
        return Decimal(0)
    out = amount
    try:
        for hop in candidate.hops:
            out = hop.pool.simulate(hop.token_in, out, _decimals(hop.token_out)).amount_out
    except MarketError:
        return None
    return out


def _disjoint_sets(options: Sequence[Candidate]) -> list[list[int]]:
    """Every maximal set of candidates sharing no pool, by plain enumeration."""
    pools = [frozenset(id(hop.pool) for hop in c.hops) for c in options]
    sets: list[frozenset[int]] = []
    for mask in range(1, 1 << len(options)):
        members = [i for i in range(len(options)) if mask >> i & 1]
        ids = [pool for i in members for pool in pools[i]]
        if len(ids) == len(set(ids)):
            sets.append(frozenset(members))
    maximal = [s for s in sets if not any(s < other for other in sets)]
    return [sorted(s) for s in maximal]


def _best_split(table: np.ndarray, cost: float) -> tuple[float, list[int]]:
    """Max-plus DP: the best use of `units` grid steps over the rows of `table`.

    `table[i, k]` is candidate i's output for k steps (−inf where it cannot fill); each
    candidate given a positive share pays `cost`, refunded once (the first leg is free).
    """
    n, width = table.shape
    units = width - 1
    taxed = table - cost
    taxed[:, 0] = 0.0
    best = taxed[0].copy()
    choice = np.zeros((n, width), dtype=np.int64)
    choice[0] = np.arange(width)
    j = np.arange(width)[:, None]
    k = np.arange(width)[None, :]
    valid = k <= j
    for i in range(1, n):
        grid = np.where(valid, best[np.clip(j - k, 0, units)] + taxed[i][k], -np.inf)
        choice[i] = np.argmax(grid, axis=1)
        best = grid[np.arange(width), choice[i]]
    alloc = [0] * n
    left = units
    for i in range(n - 1, -1, -1):
        alloc[i] = int(choice[i][left])
        left -= alloc[i]
    return float(best[units]) + cost, alloc


def _fine_split(
    options: Sequence[Candidate],
    members: Sequence[int],
    coarse: Sequence[int],
    amount: Decimal,
    quantum: Decimal,
    cost: float,
) -> list[Decimal]:
    """Within one coarse step of each share, on a grid FINE times finer."""
    steps = COARSE * FINE
    rows = []
    for member, k in zip(members, coarse, strict=True):
        row = []
        for d in range(-FINE, FINE + 1):
            units = k * FINE + d
            if units < 0 or units > steps:
                row.append(-math.inf)
                continue
            share = (amount * units / steps).quantize(quantum, rounding=ROUND_DOWN)
            out = _exact(options[member], share)
            row.append(-math.inf if out is None else float(out) - (cost if units else 0.0))
        rows.append(row)
    # DP over the sum of the offsets, which must come back to zero.
    span = FINE * len(members)
    best = {0: (0.0, list[int]())}
    for row in rows:
        nxt: dict[int, tuple[float, list[int]]] = {}
        for total, (value, picks) in best.items():
            for d, gain in enumerate(row, start=-FINE):
                if gain == -math.inf or abs(total + d) > span:
                    continue
                candidate = (value + gain, [*picks, d])
                if total + d not in nxt or candidate[0] > nxt[total + d][0]:
                    nxt[total + d] = candidate
        best = nxt
    _, offsets = best[0]
    return [
        (amount * (k * FINE + d) / steps).quantize(quantum, rounding=ROUND_DOWN)
        for k, d in zip(coarse, offsets, strict=True)
    ]


def optimum(options: Sequence[Candidate], amount: Decimal, cost: Decimal) -> Decimal:
    """The brute-force optimum: net output of the best pool-disjoint split."""
    quantum = Decimal(1).scaleb(-_decimals(options[0].path[0]))
    grid = [(amount * k / COARSE).quantize(quantum, rounding=ROUND_DOWN) for k in range(COARSE)]
    grid.append(amount)
    table = np.full((len(options), COARSE + 1), -np.inf)
    for i, candidate in enumerate(options):
        for k, share in enumerate(grid):
            out = _exact(candidate, share)
            if out is not None:
                table[i, k] = float(out)
    flat_cost = float(cost)
    found: tuple[float, list[int], list[int]] | None = None
    for members in _disjoint_sets(options):
        value, alloc = _best_split(table[members], flat_cost)
        if found is None or value > found[0]:
            found = (value, members, alloc)
    assert found is not None
    _, members, alloc = found
    shares = _fine_split(options, members, alloc, amount, quantum, flat_cost)
    shares[max(range(len(shares)), key=lambda i: shares[i])] += amount - sum(shares)
    outs = [_exact(options[m], s) for m, s in zip(members, shares, strict=True)]
    if any(out is None for out in outs):
        return _net_single(options, amount)
    legs = sum(1 for s in shares if s > 0)
    total = sum((out for out in outs if out is not None), Decimal(0))
    return max(total - cost * (legs - 1), _net_single(options, amount))


def _net_single(options: Sequence[Candidate], amount: Decimal) -> Decimal:
    leg = best_single(options, amount)
    return Decimal(0) if leg is None else leg.amount_out


def lower_price_rule(market: Market, token_in: str, token_out: str, amount: Decimal) -> Decimal:
    """The Node engine's choice: the venue with the best-looking price, filled whole."""
    now = market.now
    mids: list[tuple[Decimal, int, str]] = []
    for rank, venue in enumerate(VENUES):
        try:
            mids.append((market.mid_price(venue, token_in, token_out, now), -rank, venue))
        except MarketError:
            continue
    venue = max(mids)[2]
    try:
        return market.quote(venue, token_in, token_out, amount, now).amount_out
    except MarketError:
        return Decimal(0)


def _depth_usd(pool: Pool, token_in: str, usd: dict[str, Decimal]) -> float:
    """What the pool holds of the token a trade from `token_in` takes out, in USD."""
    token_out = pool.quote if token_in == pool.base else pool.base
    if isinstance(pool, CpmmPool):
        base, quote = pool.reserves()
        held = quote if token_out == pool.quote else base
    elif isinstance(pool, DlmmPool):
        direction = -1 if token_in == pool.base else 1
        side = 1 if token_out == pool.quote else 0
        held = sum(
            (pool.bin(pool.active + direction * i)[side] for i in range(2 * pool.reach + 1)),
            Decimal(0),
        )
    else:
        return math.inf
    return float(held * usd[token_out])


def _bps(value: Decimal, reference: Decimal) -> float:
    return float((value / reference - 1) * 10_000) if reference > 0 else 0.0


def tape(seed: int, orders: int) -> list[tuple[int, str, str, float]]:
    """(snapshot, token_in, token_out, usd) for each order, from `seed` alone."""
    rng = random.Random(seed)
    symbols = [t.symbol for t in TOKENS if t.launched]
    pairs = [(a, b) for a in symbols for b in symbols if a != b]
    low, high = math.log(MIN_USD), math.log(MAX_USD)
    return [
        (i % len(SNAPSHOTS), *rng.choice(pairs), math.exp(rng.uniform(low, high)))
        for i in range(orders)
    ]


def run(orders: int, seed: int) -> tuple[list[Row], dict[str, Any]]:
    markets = []
    for at in SNAPSHOTS:
        market = Market(MarketParams.preset("normal"), seed=seed)
        market.advance(at)
        markets.append(market)
    symbols = [t.symbol for t in TOKENS if t.launched]
    prices = [{s: m.reference_price(s, m.now) for s in symbols} for m in markets]
    rows: list[Row] = []
    entries = tape(seed, orders)
    for n, (snap, token_in, token_out, usd) in enumerate(entries[:WARM_UP] + entries):
        market = markets[snap]
        quantum = Decimal(1).scaleb(-_decimals(token_in))
        amount = (Decimal(repr(usd)) / prices[snap][token_in]).quantize(quantum, ROUND_DOWN)
        if amount <= 0:
            continue
        wall, cpu = time.perf_counter(), time.thread_time()
        pools = market.venue_pools()
        options = candidates(pools, token_in, token_out)
        cost = leg_cost_in(token_out, pools)
        plan = route(options, amount, leg_cost=cost)
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
        if n < WARM_UP:
            continue
        best = optimum(options, amount, cost)
        single = best_single(options, amount)
        assert single is not None
        node = lower_price_rule(market, token_in, token_out, amount)
        shallowest = min(
            _depth_usd(hop.pool, hop.token_in, prices[snap]) for hop in single.candidate.hops
        )
        rows.append(
            Row(
                snapshot=SNAPSHOTS[snap],
                token_in=token_in,
                token_out=token_out,
                usd=usd,
                amount_in=str(amount),
                candidates=len(options),
                legs=len(plan.legs),
                router_bps=_bps(plan.amount_out - plan.leg_cost, best),
                single_bps=_bps(single.amount_out, best),
                lower_price_bps=_bps(node, best) if node > 0 else None,
                split_gain_bps=_bps(plan.amount_out - plan.leg_cost, single.amount_out),
                depth_share=usd / shallowest,
                single_reported=plan.best_single is not None
                and plan.best_single.amount_out == single.amount_out,
                wall_us=wall * 1e6,
                cpu_us=cpu * 1e6,
            )
        )
    return rows, summarise(rows, seed)


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(int(q / 100 * len(ordered)), len(ordered) - 1)]


def summarise(rows: Sequence[Row], seed: int) -> dict[str, Any]:
    def dist(values: Sequence[float]) -> dict[str, float]:
        return {
            "median": round(statistics.median(values), 4),
            "mean": round(statistics.fmean(values), 4),
            "p1": round(_pct(values, 1), 4),
            "min": round(min(values), 4),
        }

    deep = [r for r in rows if r.depth_share > DEEP]
    node = [r.lower_price_bps for r in rows if r.lower_price_bps is not None]
    split = [r for r in rows if r.candidates > 1]
    return {
        "orders": len(rows),
        "seed": seed,
        "snapshots": list(SNAPSHOTS),
        "pairs": len({(r.token_in, r.token_out) for r in rows}),
        "router_vs_optimum_bps": dist([r.router_bps for r in rows]),
        "best_single_vs_optimum_bps": dist([r.single_bps for r in rows]),
        "lower_price_rule_vs_optimum_bps": dist(node),
        "lower_price_rule_failed": len(rows) - len(node),
        "deep_orders": len(deep),
        "split_gain_deep_bps": dist([r.split_gain_bps for r in deep]) if deep else {},
        "best_single_misreported": sum(not r.single_reported for r in rows),
        "split_orders_share": round(sum(r.legs > 1 for r in rows) / len(rows), 4),
        "single_leg_under_100_usd_share": round(
            sum(r.legs == 1 for r in rows if r.usd < 100) / max(sum(r.usd < 100 for r in rows), 1),
            4,
        ),
        "quote_wall_us": {
            "p50": round(_pct([r.wall_us for r in split], 50), 1),
            "p99": round(_pct([r.wall_us for r in split], 99), 1),
        },
        "quote_cpu_us": {
            "p50": round(_pct([r.cpu_us for r in split], 50), 1),
            "p99": round(_pct([r.cpu_us for r in split], 99), 1),
        },
    }


def plot(rows: Sequence[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    sizes = [r.usd for r in rows]
    for label, values, colour in (
        ("lower-price rule", [r.lower_price_bps for r in rows], "#c44e52"),
        ("best single venue", [r.single_bps for r in rows], "#dd8452"),
        ("router", [r.router_bps for r in rows], "#4c72b0"),
    ):
        xs = [s for s, v in zip(sizes, values, strict=True) if v is not None]
        ys = [v for v in values if v is not None]
        axes[0].scatter(xs, ys, s=4, alpha=0.5, label=label, color=colour)
    axes[0].set_xscale("log")
    axes[0].set_yscale("symlog", linthresh=0.1)
    axes[0].set_ylim(top=1)
    axes[0].set_xlabel("order size (USD)")
    axes[0].set_ylabel("output against the optimum (bps)")
    axes[0].set_title("execution against the brute-force optimum")
    axes[0].legend(loc="lower left", markerscale=3)
    axes[1].scatter(
        [r.depth_share * 100 for r in rows],
        [r.split_gain_bps for r in rows],
        s=4,
        alpha=0.5,
        color="#4c72b0",
    )
    axes[1].axvline(DEEP * 100, color="grey", linestyle="--", linewidth=1)
    axes[1].set_xscale("log")
    axes[1].set_xlabel("order size, % of the best single route's shallowest pool")
    axes[1].set_ylabel("split gain over best single (bps)")
    axes[1].set_title("what splitting adds")
    considered = [r for r in rows if r.candidates > 1]
    bins = np.geomspace(50, 50_000, 70)
    for label, values, colour in (
        ("wall", [r.wall_us for r in considered], "#8c8c8c"),
        ("CPU (this thread)", [r.cpu_us for r in considered], "#4c72b0"),
    ):
        axes[2].hist(values, bins=bins, alpha=0.6, color=colour, label=label)
        axes[2].axvline(_pct(values, 99), color=colour, linestyle="--", linewidth=1)
    axes[2].axvline(2000, color="#c44e52", linestyle=":", label="2 ms target")
    axes[2].set_xscale("log")
    axes[2].set_xlabel("router time per quote (µs; dashed: p99)")
    axes[2].set_title("quotes that consider splits")
    axes[2].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(summary: dict[str, Any]) -> str:
    lines = [f"execution quality: {summary['orders']} orders, {summary['pairs']} pairs"]
    for key in (
        "router_vs_optimum_bps",
        "best_single_vs_optimum_bps",
        "lower_price_rule_vs_optimum_bps",
        "split_gain_deep_bps",
    ):
        figures = summary[key]
        shown = "  ".join(f"{k} {v:>10.4f}" for k, v in figures.items())
        lines.append(f"  {key:<34} {shown}")
    lines.append(f"  orders above 1 % of pool depth     {summary['deep_orders']}")
    lines.append(f"  orders split                       {summary['split_orders_share']:.1%}")
    lines.append(
        "  quote time (wall) p50/p99          "
        f"{summary['quote_wall_us']['p50']:.0f} / {summary['quote_wall_us']['p99']:.0f} µs"
    )
    lines.append(
        "  quote time (CPU)  p50/p99          "
        f"{summary['quote_cpu_us']['p50']:.0f} / {summary['quote_cpu_us']['p99']:.0f} µs"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--out", default="bench/results/quality.json")
    parser.add_argument("--plot", default="docs/img/split_quality.png")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    rows, summary = run(args.orders, args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "orders": [asdict(r) for r in rows]}))
    plot(rows, Path(args.plot))
    if args.json:
        json.dump(summary, sys.stdout)
    else:
        print(table(summary))


if __name__ == "__main__":
    main()
