"""Keeping the cyclic garbage collector from stalling an API process.

An API process holding 10,000 WebSocket watchers holds millions of long-lived objects
(each connection's protocol, tasks, queue and buffers), and every full collection
walks them all: measured, the pauses grew with the connection count to 1.2 s, and
every event in flight waited that long. `gc.freeze()` moves what is alive into a
generation the collector ignores, so collections only walk what is new. It is cheap
and done every few seconds. Cycles among frozen objects (a closed connection's, say)
are reclaimed by one full collection, after unfreezing, every few minutes: one pause
per period instead of pauses that grow with the heap.

A worker allocates a burst of short-lived objects for every step of every order (rows,
events, futures, JSON); at CPython's default a young collection ran every 700 of them
and, with the older generations they triggered, took about a tenth of the worker's
CPU in the overhead benchmark. `young_threshold` lets such a process collect less often:
what dies young is freed by reference counting anyway, and only cycles wait longer.
"""

from __future__ import annotations

import asyncio
import gc
import time

import structlog

from dexecutor.background import cancel_and_wait

log = structlog.get_logger(__name__)

FREEZE_EVERY_S = 2.0
FULL_COLLECTION_EVERY_S = 600.0


class HeapKeeper:
    def __init__(
        self,
        freeze_every_s: float = FREEZE_EVERY_S,
        full_every_s: float = FULL_COLLECTION_EVERY_S,
        young_threshold: int | None = None,
    ) -> None:
        self._freeze_every = freeze_every_s
        self._full_every = full_every_s
        self._young_threshold = young_threshold
        self._thresholds: tuple[int, int, int] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._young_threshold is not None:
            # How many new container objects start a young collection (CPython: 700).
            self._thresholds = gc.get_threshold()
            gc.set_threshold(self._young_threshold, *self._thresholds[1:])
        self._task = asyncio.create_task(self._run(), name="heap-keeper")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        gc.unfreeze()
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None

    async def _run(self) -> None:
        last_full = time.monotonic()
        while True:
            await asyncio.sleep(self._freeze_every)
            if time.monotonic() - last_full >= self._full_every:
                started = time.perf_counter()
                gc.unfreeze()
                collected = gc.collect()
                last_full = time.monotonic()
                log.info(
                    "full garbage collection",
                    collected=collected,
                    ms=round((time.perf_counter() - started) * 1000),
                )
            gc.freeze()
