"""Workers killed with kill -9, twice in a row, and a graceful SIGTERM: nothing lost,
nothing executed twice."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.faults.conftest import RECOVERY_BOUND_S, TERMINAL, Deployment, Progress

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]


async def test_kill_9_with_100_orders_in_flight(
    deployment: Deployment, client: httpx.AsyncClient
) -> None:
    user = "crash-once"
    first = deployment.start_worker()
    async with Progress(f"{deployment.api.ws_url}/ws/orders?userId={user}") as progress:
        ids = await deployment.submit(client, user, 100)
        await progress.reach("submitted", 50)
        deployment.kill(first)
        killed_at = time.monotonic()
        deployment.start_worker()
        finals = await deployment.all_terminal(ids)
        recovered_s = time.monotonic() - killed_at
        print(f"\nkill -9: all 100 orders terminal {recovered_s:.1f}s after the kill")
    assert len(finals) == 100 and set(finals) <= TERMINAL
    assert recovered_s < RECOVERY_BOUND_S
    await deployment.assert_exactly_once(ids, finals)
    assert finals.count("confirmed") >= 95  # the rest may honestly fail slippage after 3 attempts


async def test_kill_9_twice_in_a_row(deployment: Deployment, client: httpx.AsyncClient) -> None:
    user = "crash-twice"
    first = deployment.start_worker()
    async with Progress(f"{deployment.api.ws_url}/ws/orders?userId={user}") as progress:
        ids = await deployment.submit(client, user, 100)
        await progress.reach("submitted", 30)
        deployment.kill(first)
        second = deployment.start_worker()
        # let the second worker take over part of the recovery, then kill it too
        await progress.reach("confirmed", 10)
        deployment.kill(second)
        deployment.start_worker()
        finals = await deployment.all_terminal(ids)
    assert set(finals) <= TERMINAL and len(finals) == 100
    await deployment.assert_exactly_once(ids, finals)


async def test_sigterm_lets_in_flight_orders_finish(
    deployment: Deployment, client: httpx.AsyncClient
) -> None:
    user = "graceful"
    worker = deployment.start_worker()
    async with Progress(f"{deployment.api.ws_url}/ws/orders?userId={user}") as progress:
        ids = await deployment.submit(client, user, 20)
        await progress.reach("submitted", 10)
        in_flight = progress.counts.get("submitted", 0)
        assert await worker.terminate(timeout=30) == 0
        # everything that had been submitted finished before the worker exited
        assert progress.counts.get("confirmed", 0) + progress.counts.get("retrying", 0) >= in_flight
        deployment.start_worker()
        finals = await deployment.all_terminal(ids)
    assert set(finals) <= TERMINAL and len(finals) == 20
    await deployment.assert_exactly_once(ids, finals)
