"""The background loops a process runs (event hub, reconciler, queue worker, ...).

A loop that dies unnoticed leaves a process that answers /healthz but no longer
hears events or requeues orders: alive but deaf. Every long-lived loop therefore runs
under `Loops.supervise`: an unexpected exception is logged with its traceback, the
loop starts again after a capped exponential backoff, its deaths are recorded for
/readyz, and a loop that cannot be kept alive ends the process (non-zero), so the
process manager starts a fresh one instead of leaving it up and useless.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

log = structlog.get_logger(__name__)

EXIT_LOOP_DEAD = 70
"""Exit status of a process that gave up on one of its loops (EX_SOFTWARE)."""


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel a loop that only ends when told, and wait until it has unwound."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _exit_process(name: str) -> None:
    # Not sys.exit: that only raises in this task. The process must go, at once.
    os._exit(EXIT_LOOP_DEAD)


class Loops:
    """Runs a process's loops under supervision and remembers how often each died.

    `unready_deaths` deaths within `window_s` make /readyz name the loop; after
    `fatal_deaths` deaths in a row (none followed by `healthy_s` of running) the
    process exits through `give_up`.
    """

    def __init__(
        self,
        *,
        backoff_s: float = 0.1,
        max_backoff_s: float = 5.0,
        healthy_s: float = 30.0,
        window_s: float = 60.0,
        unready_deaths: int = 3,
        fatal_deaths: int = 20,
        give_up: Callable[[str], None] = _exit_process,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._healthy_s = healthy_s
        self._window_s = window_s
        self._unready_deaths = unready_deaths
        self._fatal_deaths = fatal_deaths
        self._give_up = give_up
        self._clock = clock
        self._deaths: dict[str, deque[float]] = {}

    def start(self, name: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """A task running `run()` under supervision; cancel it to stop the loop."""
        return asyncio.create_task(self.supervise(name, run), name=name)

    async def supervise(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        """Run `run()` again and again until cancelled, whatever it raises.

        A `run` that returns normally is finished (a worker that was closed).
        """
        deaths = self._deaths.setdefault(name, deque(maxlen=max(self._fatal_deaths, 64)))
        in_a_row = 0
        while True:
            started = self._clock()
            try:
                await run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                now = self._clock()
                deaths.append(now)
                in_a_row = 1 if now - started >= self._healthy_s else in_a_row + 1
                delay = min(self._backoff_s * 2 ** (in_a_row - 1), self._max_backoff_s)
                log.exception(
                    "background loop died; restarting",
                    loop=name,
                    deaths_in_a_row=in_a_row,
                    restart_in_s=delay,
                )
                if in_a_row >= self._fatal_deaths:
                    log.critical("background loop cannot be kept alive; exiting", loop=name)
                    self._give_up(name)
                    return
                await asyncio.sleep(delay)

    def dying(self) -> dict[str, int]:
        """Loops that died at least `unready_deaths` times within the window: name -> deaths."""
        since = self._clock() - self._window_s
        recent = {name: sum(1 for t in d if t >= since) for name, d in self._deaths.items()}
        return {name: n for name, n in recent.items() if n >= self._unready_deaths}
