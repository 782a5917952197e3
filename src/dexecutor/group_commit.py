"""Group commit: one flush for all the requests that arrive while the previous one runs.

A submission's cost is mostly round trips (a PostgreSQL commit with its WAL flush, a
queue script, a publish), not work. Requests that arrive together therefore share one
flush: a lone request is flushed at once, so it waits for nothing, and under load each
flush takes everything that queued up meanwhile. Every caller still gets its answer
only after its own item was flushed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class ItemFailed:
    """A flush's answer for one item that failed on its own: its caller alone gets `error`."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


class GroupCommit(Generic[T, R]):
    """Calls `flush(items)` for batches of items; `flush` returns one result per item.

    At most `max_flushes` flushes run at once (two let PostgreSQL work on one batch
    while the next is sent), each of at most `max_batch` items. An exception from a
    flush is raised in every caller of that batch; an `ItemFailed` answer only in the
    caller of that item.
    """

    def __init__(
        self,
        flush: Callable[[list[T]], Awaitable[Sequence[R | ItemFailed]]],
        max_batch: int = 256,
        max_flushes: int = 2,
    ) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._max_flushes = max_flushes
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        self._start_flushes()
        return await future

    async def drain(self) -> None:
        """Wait for every flush under way (shutdown: nothing accepted is left half-done)."""
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    def _start_flushes(self) -> None:
        while self._waiting and len(self._running) < self._max_flushes:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            task = asyncio.create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._start_flushes()

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._flush([item for item, _ in batch])
        except Exception as err:
            for _, future in batch:
                if not future.done():
                    future.set_exception(err)
            return
        except BaseException:
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # a caller that went away leaves a cancelled future
                continue
            if isinstance(result, ItemFailed):
                future.set_exception(result.error)
            else:
                future.set_result(result)


def one_per_key(keys: Sequence[object]) -> tuple[list[int], list[int]]:
    """Positions of a batch split in two: the first item of each key, and every later one.

    A batch statement that changes one row per key applies only one change to a row, so
    the items after the first of their key are run alone, after the shared statement.
    """
    first: dict[object, int] = {}
    later: list[int] = []
    for i, key in enumerate(keys):
        if key in first:
            later.append(i)
        else:
            first[key] = i
    return list(first.values()), later
