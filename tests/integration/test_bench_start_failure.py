"""A benchmark child that fails to start says why (its stderr), not only "not ready"."""

from __future__ import annotations

import pytest

from dexecutor.bench import stack
from tests.support import redis_url, server_dsn


async def test_a_child_that_fails_to_start_shows_its_stderr_tail() -> None:
    async def deploy() -> None:
        async with stack(server_dsn(), redis_url(), MAX_ATTEMPTS="many") as s:
            s.spawn("api")
            await s.ready()

    # The deployment's first child, its chain, already refuses the setting.
    with pytest.raises(RuntimeError) as caught:
        await deploy()
    message = str(caught.value)
    assert "chain exited with 2 at start-up" in message
    assert "MAX_ATTEMPTS" in message  # the child's own words, from its stderr
