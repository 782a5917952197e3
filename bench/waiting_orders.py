"""How much 10,000 waiting limit orders cost per market tick.

Builds a trigger book of N limit orders spread over four pairs and times one evaluation
pass against the real market simulation, next to a pass over an empty book, in two
cases:

- best case: limits 2-40 % better than the market, so none is marketable and every
  pair's scan stops at its first order;
- worst case: limits packed near their trigger (0.01-0.1 % under the mid), so the scan
  passes every order and quotes each one, and the quote (fee and price impact) stays
  under the limit: nothing fires, and every pass does it all again.

Prints medians and p99, and how many orders each pass quoted.

    .venv/bin/python bench/waiting_orders.py [N]
"""

from __future__ import annotations

import contextlib
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

from dexecutor.domain.order import Order, OrderStatus, OrderType
from dexecutor.engine.triggers import TriggerBook
from dexecutor.market.simulation import Market, MarketParams
from dexecutor.market.types import VENUES, MarketError

PAIRS = [
    ("SOL", "USDC", "2"),
    ("RAY", "USDC", "50"),
    ("JUP", "SOL", "100"),
    ("BONK", "USDC", "1000000"),
]


def build(n: int, market: Market, rng: random.Random, near: bool = False) -> TriggerBook:
    """A book of n waiting limits: far from their trigger, or (near) just past the mid."""
    book = TriggerBook()
    now = datetime.now(UTC)
    for i in range(n):
        token_in, token_out, amount = PAIRS[i % len(PAIRS)]
        mid = max(market.mid_price(v, token_in, token_out, 0.0) for v in VENUES)
        better = rng.uniform(-0.001, -0.0001) if near else rng.uniform(0.02, 0.40)
        limit = (mid * Decimal(str(1 + better))).quantize(Decimal("1e-12"))
        book.add(
            Order(
                id=uuid4(),
                user_id="bench",
                type=OrderType.LIMIT,
                token_in=token_in,
                token_out=token_out,
                amount_in=Decimal(amount),
                slippage_bps=50,
                created_at=now,
                updated_at=now,
                status=OrderStatus.WAITING,
                seq=2,
                limit_price=limit,
            )
        )
    return book


def timed_passes(book: TriggerBook, market: Market, ticks: int) -> tuple[list[float], int]:
    """Milliseconds of each pass, and the quotes the median pass asked for."""

    def mids(a: str, b: str) -> Decimal | None:
        try:
            return max(market.mid_price(v, a, b, market.now) for v in VENUES)
        except MarketError:
            return None

    quoted = 0

    def best(order: Order) -> Decimal | None:
        nonlocal quoted
        quoted += 1
        prices = []
        for v in VENUES:
            with contextlib.suppress(MarketError):
                q = market.quote(v, order.token_in, order.token_out, order.amount_in, market.now)
                prices.append(q.price)
        return max(prices) if prices else None

    out, quotes = [], []
    for t in range(1, ticks + 1):
        market.advance(float(t))
        quoted = 0
        start = time.perf_counter()
        book.due(mids, best, lambda token: market.is_tradable(token), float(t))
        out.append((time.perf_counter() - start) * 1000)
        quotes.append(quoted)
    return out, int(statistics.median(quotes))


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    ticks = 120
    empty, _ = timed_passes(TriggerBook(), Market(MarketParams.preset("normal"), seed=1), ticks)
    rows = [("empty book", empty, 0)]
    for case, near in (("best case", False), ("worst case", True)):
        rng = random.Random(1)
        market = Market(MarketParams.preset("normal"), seed=1)
        market.advance(0.0)
        started = time.perf_counter()
        book = build(n, market, rng, near=near)
        build_ms = (time.perf_counter() - started) * 1000
        passes, quoted = timed_passes(book, market, ticks)
        rows.append((f"{n:,} orders, {case}", passes, quoted))
        print(f"{case}: {n:,} waiting limit orders (book built in {build_ms:.0f} ms)")
    for label, passes, quoted in rows:
        median, p99 = statistics.median(passes), sorted(passes)[int(ticks * 0.99) - 1]
        share = median / 10  # one pass per 1 s market tick, as a share of one core in %
        print(
            f"trigger pass, {label}: median {median:.3f} ms, p99 {p99:.3f} ms,"
            f" {quoted:,} orders quoted per pass, {share:.2f} % of one core"
        )


if __name__ == "__main__":
    main()
