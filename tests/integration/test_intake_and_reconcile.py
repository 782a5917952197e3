"""Group commit with a refused row, and the reconciler's paging, on the real servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
from redis.asyncio import Redis

from dexecutor.api.errors import database_down_message
from dexecutor.bus.events import EventPublisher
from dexecutor.bus.redis import Keys
from dexecutor.config import load_settings
from dexecutor.domain.order import OrderType, first_event
from dexecutor.engine.intake import Intake, NewOrder
from dexecutor.queue.orders import OrderQueue
from dexecutor.runtime import Services
from dexecutor.store.orders import NewRecord, OrderRepository
from tests.integration.test_store import make_order
from tests.support import drop_namespace, isolated, redis_url


class NoQuotes:
    async def get(self, quote_id: str) -> dict[str, Any] | None:
        return None


@pytest.fixture
async def intake(database: str) -> AsyncIterator[Intake]:
    pool = await asyncpg.create_pool(database, min_size=1, max_size=4)
    assert pool is not None
    namespace = f"dxi{uuid4().hex[:10]}"
    redis = Redis.from_url(redis_url())
    queue = OrderQueue(redis_url(), namespace, redis)
    yield Intake(
        OrderRepository(pool), queue, EventPublisher(redis, Keys(namespace).events), NoQuotes()
    )
    await queue.close()
    await redis.aclose()
    await pool.close()
    await drop_namespace(namespace)


def new_order(token_in: str = "SOL") -> NewOrder:
    return NewOrder("batch-user", OrderType.MARKET, token_in, "USDC", 1, 50)  # type: ignore[arg-type]


async def test_one_refused_row_fails_only_its_own_submission(intake: Intake) -> None:
    # PostgreSQL cannot store a NUL character in text: that one row is refused.
    orders = [new_order("SO\x00L") if i == 5 else new_order() for i in range(8)]
    results = await asyncio.gather(
        *(intake.accept(o, None, "fp") for o in orders), return_exceptions=True
    )
    assert isinstance(results[5], asyncpg.DataError)
    accepted = [r for i, r in enumerate(results) if i != 5]
    assert all(isinstance(r, tuple) and r[1] is True for r in accepted), accepted


def test_a_503_after_a_broken_connection_does_not_claim_nothing_was_stored() -> None:
    for lost in (asyncpg.ConnectionDoesNotExistError("closed mid-query"), ConnectionResetError()):
        message = database_down_message(lost)
        assert "nothing was stored" not in message
        assert "Idempotency-Key" in message
    assert "nothing was stored" in database_down_message(ConnectionRefusedError())


async def test_reconcile_pages_through_every_unfinished_order() -> None:
    """1,000 orders still queued must not hide the lost ones behind them."""
    async with isolated("dxr") as iso:
        settings = load_settings(
            database_url=iso.dsn, redis_url=redis_url(), namespace=iso.namespace
        )
        svc = await Services.open(settings, worker=False, watchers=False)
        try:
            start = datetime.now(UTC) - timedelta(hours=1)
            orders = [
                replace(make_order("page-user"), created_at=start + timedelta(milliseconds=i),
                        updated_at=start + timedelta(milliseconds=i))
                for i in range(1100)
            ]  # fmt: skip
            await svc.repo.create_many([NewRecord(o, first_event(o)) for o in orders])
            await svc.queue.enqueue_many([o.id for o in orders[:1000]])  # the oldest are queued
            assert await svc.reconcile(quiet_s=0) == 100
            assert await svc.queue.missing([o.id for o in orders]) == []
        finally:
            await svc.close()
