"""How much 10,000 waiting limit orders cost per market tick.

Builds a trigger book of N limit orders (limits 2-40 % better than the market, so
none is marketable, spread over four pairs) and times one evaluation pass against
the real market simulation, next to a pass over an empty book. Prints medians.

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


def build(n: int, market: Market, rng: random.Random) -> TriggerBook:
    book = TriggerBook()
    now = datetime.now(UTC)
    for i in range(n):
        token_in, token_out, amount = PAIRS[i % len(PAIRS)]
        mid = max(market.mid_price(v, token_in, token_out, 0.0) for v in VENUES)
        limit = (mid * Decimal(str(1 + rng.uniform(0.02, 0.40)))).quantize(Decimal("1e-12"))
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


def timed_passes(book: TriggerBook, market: Market, ticks: int) -> list[float]:
    def mids(a: str, b: str) -> Decimal | None:
        try:
            return max(market.mid_price(v, a, b, market.now) for v in VENUES)
        except MarketError:
            return None

    def best(order: Order) -> Decimal | None:
        prices = []
        for v in VENUES:
            with contextlib.suppress(MarketError):
                q = market.quote(v, order.token_in, order.token_out, order.amount_in, market.now)
                prices.append(q.price)
        return max(prices) if prices else None

    out = []
    for t in range(1, ticks + 1):
        market.advance(float(t))
        start = time.perf_counter()
        book.due(mids, best, lambda token: market.is_tradable(token), float(t))
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    rng = random.Random(1)
    market = Market(MarketParams.preset("normal"), seed=1)
    market.advance(0.0)
    started = time.perf_counter()
    book = build(n, market, rng)
    build_ms = (time.perf_counter() - started) * 1000
    empty = timed_passes(TriggerBook(), Market(MarketParams.preset("normal"), seed=1), 120)
    full = timed_passes(book, market, 120)
    print(f"waiting limit orders: {n:,} (book built in {build_ms:.0f} ms)")
    for label, passes in (("empty book", empty), (f"{n:,} orders", full)):
        median, p99 = statistics.median(passes), sorted(passes)[118]
        print(f"trigger pass, {label}: median {median:.3f} ms, p99 {p99:.3f} ms")
    share = statistics.median(full) / 10
    print(f"share of one core at one pass per 1 s market tick: {share:.2f} %")


if __name__ == "__main__":
    main()
