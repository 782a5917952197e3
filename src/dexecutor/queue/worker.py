"""The queue worker: takes order jobs from BullMQ and hands them to the engine.

Thin on purpose: the engine decides what happens to the order. This module only
translates the engine's answer into queue operations (done, or come back after a
backoff) and sets the queue's deployment-wide concurrency cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any
from uuid import UUID

import structlog
from bullmq import Worker
from bullmq.custom_errors import DelayedError
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dexecutor.background import Loops
from dexecutor.engine.execute import PASSING_TROUBLE, Engine
from dexecutor.queue.orders import QUEUE_NAME, OrderQueue, queue_options
from dexecutor.queue.pipelined import pipeline_per_job_scripts

log = structlog.get_logger(__name__)

# A killed worker's job is handed to another after its lock lapses; BullMQ's default
# (30 s lock, 30 s checks) would leave an order stalled for up to a minute.
LOCK_DURATION_MS = 6_000
STALLED_INTERVAL_MS = 2_000
# The engine resumes an order safely however often it is picked up again, so a job is
# never failed merely for having stalled.
MAX_STALLED_COUNT = 1_000
# How long an idle worker blocks waiting for BullMQ's marker, in seconds. With the
# default 5 s, BullMQ for Python (3.4) missed the marker of a job added after the
# first wait timed out: the first order after 6 s idle waited 1 s, after 12 s idle
# more than 20 s. Short waits pick every job up at once; an idle worker polls twice
# a second.
DRAIN_DELAY_S = 0.5
# How long an attempt that met passing trouble (PostgreSQL, Redis or the chain away)
# waits before it tries again, in place: the same pause BullMQ's job backoff had.
TROUBLE_RETRY_S = 1.0
# Connections of the worker's BullMQ client. BullMQ for Python gives a worker ONE
# connection (`single_connection_client`) for all its scripts: every job's
# moveToActive, moveToFinished and lock renewal waits its turn for a full round trip
# on it. At a cap of 1,000 that queue, not the work, set the pace: about 45 jobs/s on
# the 2-core machine under other load, with renewals so late that locks lapsed,
# finished jobs stayed active (holding slots) and jobs ran twice. A pool lets the
# round trips overlap; each script is still atomic in Redis and one job's calls still
# follow each other. 16 connections still left lapsed locks at a cap of 1,000; 64
# did not (docs/benchmarks.md).
REDIS_CONNECTIONS = 64


class OrderWorker:
    def __init__(
        self,
        engine: Engine,
        queue: OrderQueue,
        redis: Redis,
        redis_url: str,
        namespace: str,
        concurrency: int,
        loops: Loops | None = None,
        trouble_retry_s: float = TROUBLE_RETRY_S,
    ) -> None:
        self._engine = engine
        self._loops = loops or Loops()
        self._closing = False
        self._stopping = asyncio.Event()
        self._trouble_retry_s = trouble_retry_s
        self._runs = 0
        self._queue = queue
        self._redis = redis
        self._marker = f"{namespace}:{QUEUE_NAME}:marker"
        self._concurrency = concurrency
        self._opts: dict[str, Any] = {
            **queue_options(redis_url, namespace),
            "concurrency": concurrency,
            "lockDuration": LOCK_DURATION_MS,
            "stalledInterval": STALLED_INTERVAL_MS,
            "maxStalledCount": MAX_STALLED_COUNT,
            "drainDelay": DRAIN_DELAY_S,
            "autorun": False,
        }
        self._redis_url = redis_url
        self._worker: Worker | None = None
        self._worker_redis: Redis | None = None
        self._run_task: asyncio.Future[None] | None = None
        self._pending: set[asyncio.Future[Any]] = set()
        self._waking: asyncio.Future[Any] | None = None
        self._wake_again = False

    async def start(self) -> None:
        # Every worker writes the same cap; it bounds active jobs across all of them.
        await self._queue.set_global_concurrency(self._concurrency)
        self._worker = self._new_worker()
        self._run_task = self._loops.start("queue-worker", self._run)

    def _new_worker(self) -> Worker:
        # A client of its own per BullMQ worker: closing a worker closes its client.
        self._worker_redis = Redis(
            connection_pool=BlockingConnectionPool.from_url(
                self._redis_url, max_connections=REDIS_CONNECTIONS, decode_responses=True
            ),
            # As BullMQ configures its own connections: ride out a restarting Redis.
            retry=Retry(ExponentialBackoff(cap=20, base=1), 20),
            retry_on_error=[BusyLoadingError, RedisConnectionError, RedisTimeoutError],
        )
        worker = Worker(QUEUE_NAME, self._process, {**self._opts, "connection": self._worker_redis})
        # Jobs taken and finished together share a round trip (queue/pipelined.py).
        pipeline_per_job_scripts(worker.scripts.commands)
        worker.on("error", lambda err, *a: log.error("queue error", error=str(err)))
        worker.on("completed", lambda *a: self._wake())
        worker.on("failed", self._on_failed)
        return worker

    async def _run(self) -> None:
        """BullMQ's run loop, which must not end while this worker is open.

        On an unexpected error BullMQ prints a traceback and *returns*: the process
        would stay up and take no job again. Here that counts as a death, so the
        supervisor logs it and runs a fresh BullMQ worker (a used one cannot renew job
        locks again: its lock manager is closed for good).
        """
        if self._closing:
            return
        if self._runs or self._worker is None:  # a restart: the used worker is done
            if self._worker is not None:
                await self._close_worker(force=True)
            self._worker = self._new_worker()
        self._runs += 1
        await self._worker.run()
        if not self._closing:
            raise RuntimeError("the BullMQ run loop ended while the worker was open")

    async def stop(self) -> None:
        self._closing = True
        self._stopping.set()
        if self._worker is not None:
            await self._close_worker()
        if self._run_task is not None:
            await self._run_task
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def _close_worker(self, force: bool = False) -> None:
        assert self._worker is not None
        await self._worker.close(force=force)
        if self._worker_redis is not None:
            # BullMQ closes the client; the pool it was given is ours to disconnect.
            await self._worker_redis.connection_pool.disconnect()

    def _on_failed(self, job: Any, err: BaseException) -> None:
        log.error("job failed", order_id=job.id, error=repr(err))
        self._wake()

    def _wake(self) -> None:
        """Tell idle workers a slot is free.

        Under a global concurrency limit, a worker that found the queue at its cap waits
        for BullMQ's marker, which finishing a job does not set; without this nudge other
        workers would sit out their whole drain delay while the slot stays empty.
        """
        if self._waking is not None:
            # A nudge is on its way: send one more after it, not one per finished job.
            self._wake_again = True
            return
        task = asyncio.ensure_future(self._redis.zadd(self._marker, {"0": 0}))
        self._waking = task
        self._pending.add(task)
        task.add_done_callback(self._woken)

    def _woken(self, task: asyncio.Future[Any]) -> None:
        self._pending.discard(task)
        self._waking = None
        if not task.cancelled() and task.exception() is not None:
            # Redis is away: the reconciler and the drain delay cover a lost nudge.
            log.debug("wake-up marker not set", error=str(task.exception()))
        if self._wake_again:
            self._wake_again = False
            self._wake()

    async def _process(self, job: Any, token: str) -> None:
        delay = await self._carry(UUID(job.data["orderId"]))
        if delay is not None:
            await job.moveToDelayed(int(time.time() * 1000) + delay, token)
            self._wake()
            raise DelayedError()

    async def _carry(self, order_id: UUID) -> int | None:
        """Run the engine on the order; on passing trouble, again in place until it passes.

        An order met by an outage mid-attempt stays routing, building or submitted: it
        still executes, and keeps its slot under the cap until the attempt ends. Handed
        back to BullMQ instead, its retry would come out of the delayed set at the tail
        of the wait list, behind every order queued meanwhile, while a new order took
        its slot: more orders executing than the cap, for as long as that backlog.
        Only a closing worker hands the job back (BullMQ retries it after its backoff).
        """
        while True:
            try:
                return await self._engine.process(order_id)
            except PASSING_TROUBLE as err:
                if self._closing:
                    raise
                log.warning(
                    "backend trouble: trying the order again in place",
                    order_id=str(order_id),
                    error=repr(err),
                    retry_s=self._trouble_retry_s,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._trouble_retry_s)
