"""What `queue/` relies on inside BullMQ for Python, checked against the pinned version.

`queue/orders.py` reads BullMQ's Redis keys directly (one pipelined round trip for the
backlog and for "which orders have no live job"), and `queue/worker.py` wakes idle
workers through the marker key and delays jobs with `moveToDelayed` + `DelayedError`.
None of that is public API: an upgrade that moves it must fail here, loudly, rather
than leave orders unqueued or workers asleep. pyproject pins the minor version.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import UUID, uuid4

import bullmq
import pytest
from bullmq import Job, Queue, Worker
from bullmq.custom_errors import DelayedError
from redis.asyncio import Redis

from dexecutor.queue.orders import JOB_OPTIONS, QUEUE_NAME, OrderQueue
from tests.support import drop_namespace, redis_url


def test_the_pinned_minor_version() -> None:
    assert bullmq.__version__.startswith("3.4."), (
        f"bullmq {bullmq.__version__}: queue/ was written against 3.4's internals;"
        " re-check this file's assertions, then move the pin in pyproject.toml"
    )


def test_the_private_surface_queue_uses() -> None:
    assert issubclass(DelayedError, Exception)
    assert callable(getattr(Job, "moveToDelayed", None))
    for name in ("addBulk", "getJobState", "remove", "setGlobalConcurrency", "getJobCounts"):
        assert callable(getattr(Queue, name, None)), name
    assert callable(getattr(Worker, "on", None)) and callable(getattr(Worker, "run", None))
    # Worker options queue/worker.py sets; an unknown option would be silently ignored.
    source = inspect.getsource(bullmq.worker)
    for option in ("drainDelay", "lockDuration", "stalledInterval", "maxStalledCount", "autorun"):
        assert option in source, option


@pytest.fixture
async def namespace() -> AsyncIterator[str]:
    ns = f"dxbq{uuid4().hex[:10]}"
    yield ns
    await drop_namespace(ns)


async def test_the_redis_keys_queue_reads(namespace: str) -> None:
    url = redis_url()
    redis = Redis.from_url(url)
    queue = OrderQueue(url, namespace, redis)
    raw = Queue(QUEUE_NAME, {"connection": url, "prefix": namespace})
    prefix = f"{namespace}:{QUEUE_NAME}"
    try:
        keys = raw.keys
        for kind in ("wait", "delayed", "prioritized", "failed", "marker"):
            assert keys[kind] == f"{prefix}:{kind}", (kind, keys[kind])

        order_id = uuid4()
        await queue.enqueue(order_id)
        assert await redis.type(f"{prefix}:{order_id}") == b"hash"  # the job: missing()
        assert await redis.type(f"{prefix}:wait") == b"list"  # backlog()
        assert await redis.lrange(f"{prefix}:wait", 0, -1) == [str(order_id).encode()]
        # worker.py wakes idle workers with ZADD on the marker: it must be a sorted set
        assert await redis.type(f"{prefix}:marker") == b"zset"
        other = uuid4()
        assert await queue.missing([order_id, other]) == [other]
        assert await queue.backlog(max_age_s=0) == 1

        later = str(uuid4())
        delay_ms = 60_000
        await raw.add("execute", {"orderId": later}, {"jobId": later, "delay": delay_ms})
        assert await redis.type(f"{prefix}:delayed") == b"zset"
        assert await redis.zscore(f"{prefix}:delayed", later) is not None
        assert await queue.backlog(max_age_s=0) == 2
        assert (await queue.counts())["delayed"] == 1
    finally:
        await raw.close()
        await queue.close()
        await redis.aclose()


async def test_a_job_enqueued_is_the_job_add_bulk_stores(namespace: str) -> None:
    """enqueue_many calls BullMQ's add script without building `Job` objects: what it
    stores must be, field for field, what `Queue.addBulk` with the same options stores."""
    url = redis_url()
    redis = Redis.from_url(url)
    queue = OrderQueue(url, namespace, redis)
    raw = Queue(QUEUE_NAME, {"connection": url, "prefix": namespace})
    prefix = f"{namespace}:{QUEUE_NAME}"
    try:
        ours, theirs = str(uuid4()), str(uuid4())
        await queue.enqueue_many([UUID(ours)])
        await raw.addBulk(
            [
                {
                    "name": "execute",
                    "data": {"orderId": theirs},
                    "opts": {**JOB_OPTIONS, "jobId": theirs},
                }
            ]
        )
        stored = [await redis.hgetall(f"{prefix}:{i}") for i in (ours, theirs)]
        for job in stored:
            assert job.pop(b"timestamp").isdigit()
        assert stored[0][b"data"] == f'{{"orderId":"{ours}"}}'.encode()
        stored[0][b"data"] = stored[1][b"data"]
        stored[0][b"opts"] = stored[0][b"opts"].replace(ours.encode(), theirs.encode())
        assert stored[0] == stored[1]
        assert await redis.lrange(f"{prefix}:wait", 0, -1) == [theirs.encode(), ours.encode()]
        assert (await Job.fromId(raw, ours)).data == {"orderId": ours}
    finally:
        await raw.close()
        await queue.close()
        await redis.aclose()


async def test_the_worker_runs_its_scripts_over_a_pool_of_connections(namespace: str) -> None:
    """BullMQ gives a worker one connection for every script; at a cap of 1,000 each job's
    moveToActive, completion and lock renewal queued for it, locks lapsed and finished
    jobs held their slots. The worker's client must be a pool, and calls must overlap."""
    from dexecutor.queue.worker import REDIS_CONNECTIONS

    async with bull_worker(namespace, concurrency=10) as (bull, _):
        client = bull.backend.connection.conn
        assert not client.single_connection_client
        assert client.connection_pool.max_connections == REDIS_CONNECTIONS >= 32
        # Two blocking reads at once: on one connection the second would wait for the first.
        started = asyncio.get_running_loop().time()
        await asyncio.gather(*(client.blpop([f"{namespace}:nothing"], timeout=1) for _ in range(2)))
        assert asyncio.get_running_loop().time() - started < 1.8


@asynccontextmanager
async def bull_worker(namespace: str, concurrency: int) -> AsyncIterator[tuple[Worker, OrderQueue]]:
    """The BullMQ worker an OrderWorker runs (not started), and the queue it takes from."""
    from dexecutor.queue.worker import OrderWorker

    url = redis_url()
    redis = Redis.from_url(url)
    queue = OrderQueue(url, namespace, redis)
    worker = OrderWorker(None, queue, redis, url, namespace, concurrency)  # type: ignore[arg-type]
    worker._worker = worker._new_worker()
    try:
        yield worker._worker, queue
    finally:
        await worker._close_worker(force=True)
        await queue.close()
        await redis.aclose()


async def test_jobs_taken_and_finished_together_share_round_trips(namespace: str) -> None:
    """The worker's moveToActive and moveToFinished calls made at once go in pipelines:
    each still runs as its own script (the global cap holds, each job is taken once),
    and each caller gets its own answer."""
    from dexecutor.queue.pipelined import PipelinedScript

    async with bull_worker(namespace, concurrency=3) as (bull, queue):
        await queue.set_global_concurrency(3)
        ids = [uuid4() for _ in range(5)]
        await queue.enqueue_many(ids)
        client = bull.backend.connection.conn
        trips = {"alone": 0, "pipelines": 0}
        evalsha, pipeline = client.evalsha, client.pipeline

        def counted_evalsha(*args: object) -> object:
            trips["alone"] += 1
            return evalsha(*args)

        def counted_pipeline(*args: object, **kwargs: object) -> object:
            trips["pipelines"] += 1
            return pipeline(*args, **kwargs)

        client.evalsha, client.pipeline = counted_evalsha, counted_pipeline
        taken = await asyncio.gather(*(bull.moveToActive(f"{bull.id}:{i}") for i in range(5)))
        jobs = [job for job in taken if job is not None]
        assert len(jobs) == 3  # the cap: the last two calls found it reached
        assert len({job.id for job in jobs}) == 3 and {job.id for job in jobs} <= set(map(str, ids))
        assert trips["alone"] + trips["pipelines"] < 5
        assert isinstance(bull.scripts.commands["moveToActive"], PipelinedScript)
        trips.update(alone=0, pipelines=0)
        await asyncio.gather(
            *(bull.backend.moveToCompleted(job, None, True, job.token, False) for job in jobs)
        )
        assert trips["alone"] + trips["pipelines"] < 3
        assert (await queue.counts())["active"] == 0
        rest = [
            job
            for job in await asyncio.gather(
                *(bull.moveToActive(f"{bull.id}:r{i}") for i in range(3))
            )
            if job
        ]
        assert {job.id for job in rest} == set(map(str, ids)) - {job.id for job in jobs}
        # Finished together, one with a token that holds no lock: that caller alone is refused.
        answers = await asyncio.gather(
            bull.backend.moveToCompleted(rest[0], None, True, rest[0].token, False),
            bull.backend.moveToCompleted(rest[1], None, True, "not-its-token", False),
            return_exceptions=True,
        )
        assert not isinstance(answers[0], BaseException) and isinstance(answers[1], Exception)
        assert (await queue.counts())["active"] == 1  # the refused one is still active


async def test_a_batch_is_queued_whole_after_redis_lost_its_scripts(namespace: str) -> None:
    """enqueue_many calls BullMQ's add script by its digest, without asking Redis first
    whether it has it; after a SCRIPT FLUSH (or a restart) the batch must still land."""
    url = redis_url()
    redis = Redis.from_url(url)
    queue = OrderQueue(url, namespace, redis)
    wait = f"{namespace}:{QUEUE_NAME}:wait"
    try:
        await queue.enqueue(uuid4())  # the script is loaded now
        await redis.script_flush()
        batch = [uuid4() for _ in range(5)]
        await queue.enqueue_many(batch)
        queued = {UUID(i.decode()) for i in await redis.lrange(wait, 0, -1)}
        assert set(batch) <= queued and len(queued) == 6
    finally:
        await queue.close()
        await redis.aclose()
