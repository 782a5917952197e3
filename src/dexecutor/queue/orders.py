"""The BullMQ queue of orders to execute: enqueueing, depth, and the global cap.

One job per order, with the order id as job id, so enqueueing an order twice is a
no-op. The job carries only the id: PostgreSQL holds the truth about the order.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

from bullmq import Queue

QUEUE_NAME = "orders"

# Job-level retries are for the engine's own trouble (say PostgreSQL is briefly gone);
# the order's business retries are decided by the engine and use moveToDelayed.
JOB_OPTIONS: dict[str, Any] = {
    "removeOnComplete": True,
    "removeOnFail": {"age": 7 * 24 * 3600},
    "attempts": 50,
    "backoff": {"type": "fixed", "delay": 1000},
}


def queue_options(redis_url: str, namespace: str) -> dict[str, Any]:
    return {"connection": redis_url, "prefix": namespace}


class OrderQueue:
    def __init__(self, redis_url: str, namespace: str) -> None:
        self._queue = Queue(QUEUE_NAME, queue_options(redis_url, namespace))

    async def enqueue(self, order_id: UUID) -> None:
        key = str(order_id)
        await self._queue.add("execute", {"orderId": key}, {**JOB_OPTIONS, "jobId": key})

    async def enqueue_many(self, order_ids: Iterable[UUID]) -> None:
        jobs = [
            {
                "name": "execute",
                "data": {"orderId": str(i)},
                "opts": {**JOB_OPTIONS, "jobId": str(i)},
            }
            for i in order_ids
        ]
        if jobs:
            await self._queue.addBulk(jobs)

    async def requeue(self, order_id: UUID) -> bool:
        """Make sure a job exists for an unfinished order (the reconciler's tool).

        A job that BullMQ already finished or gave up on is removed and added again.
        """
        key = str(order_id)
        state = await self._queue.getJobState(key)
        if state in ("waiting", "active", "delayed", "prioritized", "waiting-children"):
            return False
        if state != "unknown":
            await self._queue.remove(key)
        await self.enqueue(order_id)
        return True

    async def set_global_concurrency(self, limit: int) -> None:
        await self._queue.setGlobalConcurrency(limit)

    async def counts(self) -> dict[str, int]:
        counts: dict[str, int] = await self._queue.getJobCounts(
            "waiting", "active", "delayed", "prioritized", "failed"
        )
        return counts

    async def close(self) -> None:
        await self._queue.close()
