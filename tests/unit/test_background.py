"""The loop supervisor, on real asyncio loops that really raise."""

from __future__ import annotations

import asyncio

from dexecutor.background import Loops


async def test_a_dying_loop_restarts_with_backoff_and_is_reported() -> None:
    runs = 0
    healthy = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs <= 3:
            raise ValueError(f"death {runs}")
        healthy.set()
        await asyncio.Event().wait()  # then runs until cancelled

    loops = Loops(backoff_s=0.01, unready_deaths=3, fatal_deaths=10)
    task = loops.start("flaky", flaky)
    await asyncio.wait_for(healthy.wait(), 5)
    assert runs == 4
    assert loops.dying() == {"flaky": 3}
    task.cancel()


async def test_a_loop_that_cannot_be_kept_alive_gives_up_the_process() -> None:
    gave_up: list[str] = []

    async def broken() -> None:
        raise RuntimeError("always")

    loops = Loops(backoff_s=0.001, fatal_deaths=5, give_up=gave_up.append)
    await asyncio.wait_for(loops.supervise("broken", broken), 5)
    assert gave_up == ["broken"]
    assert loops.dying() == {"broken": 5}


async def test_deaths_age_out_of_the_readiness_window() -> None:
    now = [0.0]
    loops = Loops(backoff_s=0, unready_deaths=2, window_s=60, clock=lambda: now[0])
    runs = 0

    async def dies_twice() -> None:
        nonlocal runs
        runs += 1
        if runs <= 2:
            raise RuntimeError("dies")

    await loops.supervise("x", dies_twice)
    assert loops.dying() == {"x": 2}
    now[0] = 61.0
    assert loops.dying() == {}
