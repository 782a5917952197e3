"""Group commit: batching, answers to the right callers, errors to the whole batch."""

from __future__ import annotations

import asyncio

import pytest

from dexecutor.group_commit import GroupCommit


class Recorder:
    """A flush that waits until released, so a test decides when each batch ends."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.fail: Exception | None = None
        self._grew = asyncio.Condition()

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        self.started.set()
        async with self._grew:
            self._grew.notify_all()
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return [i * 10 for i in items]

    async def running(self, batches: int) -> None:
        async with self._grew:
            await self._grew.wait_for(lambda: len(self.batches) >= batches)


async def test_a_lone_item_is_flushed_at_once() -> None:
    flush = Recorder()
    flush.release.set()
    commits = GroupCommit(flush)
    assert await commits.submit(7) == 70
    assert flush.batches == [[7]]


async def test_items_arriving_during_a_flush_share_the_next_one() -> None:
    flush = Recorder()
    commits = GroupCommit(flush, max_flushes=1)
    first = asyncio.create_task(commits.submit(1))
    await flush.started.wait()
    rest = [asyncio.create_task(commits.submit(i)) for i in range(2, 7)]
    await asyncio.sleep(0)  # let them queue behind the running flush
    assert flush.batches == [[1]]
    flush.release.set()
    assert await asyncio.gather(first, *rest) == [10, 20, 30, 40, 50, 60]
    assert flush.batches == [[1], [2, 3, 4, 5, 6]]


async def test_batches_are_bounded_and_flushes_run_side_by_side() -> None:
    flush = Recorder()
    commits = GroupCommit(flush, max_batch=2, max_flushes=2)
    tasks = [asyncio.create_task(commits.submit(i)) for i in range(5)]
    await flush.running(2)
    assert flush.batches == [[0], [1]]  # two flushes at once; the other items wait
    flush.release.set()
    assert await asyncio.gather(*tasks) == [0, 10, 20, 30, 40]
    assert flush.batches == [[0], [1], [2, 3], [4]]  # at most two items a batch


async def test_a_failed_flush_fails_every_caller_of_its_batch_only() -> None:
    flush = Recorder()
    commits = GroupCommit(flush, max_flushes=1)
    flush.fail = ConnectionResetError("database gone")
    doomed = [asyncio.create_task(commits.submit(i)) for i in range(3)]
    await flush.started.wait()
    flush.release.set()
    for task in doomed:
        with pytest.raises(ConnectionResetError):
            await task
    flush.fail = None
    assert await commits.submit(4) == 40


async def test_drain_waits_for_the_flush_under_way() -> None:
    flush = Recorder()
    commits = GroupCommit(flush)
    task = asyncio.create_task(commits.submit(1))
    await flush.started.wait()
    drained = asyncio.create_task(commits.drain())
    await asyncio.sleep(0)
    assert not drained.done()
    flush.release.set()
    await drained
    assert task.done() and task.result() == 10
