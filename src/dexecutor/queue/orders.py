"""The BullMQ queue of orders to execute: enqueueing, depth, and the global cap.

One job per order, with the order id as job id, so enqueueing an order twice is a
no-op. The job carries only the id: PostgreSQL holds the truth about the order.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from typing import Any
from uuid import UUID

import msgspec
from bullmq import Job, Queue
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

QUEUE_NAME = "orders"
JOB_NAME = "execute"

# Job-level retries are for the engine's own trouble (say PostgreSQL is briefly gone);
# the order's business retries are decided by the engine and use moveToDelayed.
JOB_OPTIONS: dict[str, Any] = {
    "removeOnComplete": True,
    "removeOnFail": {"age": 7 * 24 * 3600},
    "attempts": 50,
    "backoff": {"type": "fixed", "delay": 1000},
}


# BullMQ's scripts read their arguments with cmsgpack; msgspec writes the same format.
_pack = msgspec.msgpack.Encoder().encode

# KEYS[1] the failed set, KEYS[1 + i] job i's hash, ARGV[i] job i's id: 1 where job i
# is gone or failed, 0 where it lives.
_MISSING = """
local flags = {}
for i, id in ipairs(ARGV) do
  if redis.call('EXISTS', KEYS[i + 1]) == 0 or redis.call('ZSCORE', KEYS[1], id) then
    flags[i] = 1
  else
    flags[i] = 0
  end
end
return flags
"""


def queue_options(redis_url: str, namespace: str) -> dict[str, Any]:
    return {"connection": redis_url, "prefix": namespace}


class OrderQueue:
    def __init__(self, redis_url: str, namespace: str, redis: Redis) -> None:
        self._queue = Queue(
            QUEUE_NAME, {**queue_options(redis_url, namespace), "defaultJobOptions": JOB_OPTIONS}
        )
        self._redis = redis
        self._prefix = f"{namespace}:{QUEUE_NAME}"
        self._backlog = (0.0, 0)  # (measured at, jobs)
        self._measuring = False
        self._missing = redis.register_script(_MISSING)
        # BullMQ's own add script, keys and job options, as `Queue.addBulk` uses them.
        scripts = self._queue.backend.scripts
        self._add = scripts.commands["addStandardJob"]
        self._add_keys = scripts.getKeys(
            ["wait", "paused", "meta", "id", "completed", "delayed", "active", "events", "marker"]
        )
        self._job_prefix = scripts.keys[""]
        self._job_opts = scripts.encodeOpts(Job(self._queue, JOB_NAME, None, JOB_OPTIONS).opts)

    async def enqueue(self, order_id: UUID, *, first: bool = False) -> None:
        await self.enqueue_many([order_id], first=first)

    async def enqueue_many(self, order_ids: Sequence[UUID], *, first: bool = False) -> None:
        """One pipeline of BullMQ's add script for the whole batch.

        The script is called with the arguments `Queue.addBulk` would build, without
        its `Job` objects: building them was a tenth of an API process's time under
        submission load, for jobs that differ only in their id.
        tests/integration/test_bullmq_internals.py holds this to what BullMQ stores.

        `first`: at the head of the wait list (BullMQ's `lifo`), taken before every job
        already waiting; the last one given is taken first.
        """
        timestamp = round(time.time() * 1000)
        add, keys = self._add, self._add_keys
        calls = []
        for order_id in order_ids:
            job_id = str(order_id)
            args = _pack(
                [self._job_prefix, job_id, JOB_NAME, timestamp, None, None, None, None, None]
            )
            data = f'{{"orderId":"{job_id}"}}'
            opts = _pack({**self._job_opts, "jobId": job_id, **({"lifo": True} if first else {})})
            calls.append((*keys, args, data, opts, timestamp))

        async def send() -> list[Any]:
            # EVALSHA itself, not the script object: a pipeline given script objects
            # asks Redis whether they exist (a round trip) before every batch.
            pipe = self._redis.pipeline(transaction=False)
            for call in calls:
                pipe.evalsha(add.sha, len(keys), *call)
            return await pipe.execute()

        try:
            answers = await send()
        except NoScriptError:
            # Redis lost its scripts (a restart, SCRIPT FLUSH): no job of the batch was
            # added. Load the script and send the batch again.
            await self._redis.script_load(add.script)
            answers = await send()
        for answer in answers:
            if isinstance(answer, int) and answer < 0:
                raise RuntimeError(f"BullMQ refused a job (code {answer})")
        measured_at, backlog = self._backlog
        self._backlog = (measured_at, backlog + len(order_ids))  # ours count at once

    async def requeue(self, order_id: UUID, *, first: bool = False) -> bool:
        """Make sure a job exists for an unfinished order (the reconcilers' tool).

        A job that BullMQ already finished or gave up on is removed and added again; a
        live one is left alone. The trigger runner queues fired orders this way: a plain
        add would take a failed job of the same id for a duplicate and do nothing.
        `first`: ahead of every waiting job (see `enqueue_many`).
        """
        key = str(order_id)
        state = await self._queue.getJobState(key)
        if state in ("waiting", "active", "delayed", "prioritized", "waiting-children"):
            return False
        if state != "unknown":
            await self._queue.remove(key)
        await self.enqueue(order_id, first=first)
        return True

    async def requeue_missing(
        self, order_ids: Sequence[UUID], resumed: Collection[UUID] = ()
    ) -> list[UUID]:
        """Requeue every order of the batch that has no live job; return those.

        The `resumed` ones (orders already executing: routing, building or submitted)
        go ahead of every waiting job, the oldest first. Such an order still counts
        against the cap, whatever BullMQ lost: queued at the tail it would wait behind
        the whole backlog while new orders took the free slots.
        """
        lost = await self.missing(order_ids)
        ahead = [order_id for order_id in lost if order_id in resumed]
        for order_id in reversed(ahead):  # the head is taken first: the oldest goes last
            await self.requeue(order_id, first=True)
        for order_id in lost:
            if order_id not in resumed:
                await self.requeue(order_id)
        return lost

    async def missing(self, order_ids: Sequence[UUID]) -> list[UUID]:
        """Which of these orders have no live job (lost with Redis, or given up by BullMQ).

        One script call for the whole batch: the reconciler asks this of every queued
        order every few seconds, and a pipeline of two commands per order cost the
        process more to pack and parse than Redis took to answer.
        """
        if not order_ids:
            return []
        ids = [str(i) for i in order_ids]
        keys = [f"{self._prefix}:failed", *(f"{self._prefix}:{i}" for i in ids)]
        flags = await self._missing(keys=keys, args=ids)
        return [order_id for order_id, lost in zip(order_ids, flags, strict=True) if lost]

    async def backlog(self, max_age_s: float = 0.25) -> int:
        """Jobs waiting to run (waiting, delayed, prioritized), cached briefly.

        POST consults this on every request; a quarter-second-old figure is plenty
        to decide that the queue holds more work than it should accept.
        """
        measured_at, jobs = self._backlog
        now = time.monotonic()
        if now - measured_at < max_age_s or self._measuring:
            # While one request measures, the others take the figure it replaces:
            # under load, every request that arrived meanwhile would measure again.
            return jobs
        self._measuring = True
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.llen(f"{self._prefix}:wait")
            pipe.zcard(f"{self._prefix}:delayed")
            pipe.zcard(f"{self._prefix}:prioritized")
            jobs = sum(int(n) for n in await pipe.execute())
        finally:
            self._measuring = False
        self._backlog = (now, jobs)
        return jobs

    async def set_global_concurrency(self, limit: int) -> None:
        await self._queue.setGlobalConcurrency(limit)

    async def counts(self) -> dict[str, int]:
        counts: dict[str, int] = await self._queue.getJobCounts(
            "waiting", "active", "delayed", "prioritized", "failed"
        )
        return counts

    async def close(self) -> None:
        await self._queue.close()
