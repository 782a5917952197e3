"""The process's one confirm loop outlives an answer it cannot read.

solders parses every answer into strict types and *panics* (pyo3's PanicException, a
BaseException) on one that breaks them, as a -32005 without its `data` did: the chain
service answered so while it was behind after a restart. The shared poll task ended on
it and every order awaiting an outcome in that process waited until another order's
confirmation happened to start a new one.

The node here is a stand-in served over real HTTP: it answers the one malformed error
first, then as a node does for a transaction that never landed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from solders.signature import Signature

from dexecutor.chain.rpc import Expired, Rpc
from tests.support import free_port

HEIGHT = 500


@pytest.fixture
async def node() -> AsyncIterator[tuple[str, list[str]]]:
    """A JSON-RPC node whose first getSignatureStatuses answer solders cannot read."""
    calls: list[str] = []

    async def rpc(request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json()
        method = body["method"]
        calls.append(method)
        answer: dict[str, Any] = {"jsonrpc": "2.0", "id": body["id"]}
        if method == "getSignatureStatuses" and calls.count(method) == 1:
            answer["error"] = {"code": -32005, "message": "Node is behind"}  # no `data`
        elif method == "getSignatureStatuses":
            answer["result"] = {
                "context": {"slot": HEIGHT},
                "value": [None] * len(body["params"][0]),
            }
        elif method == "getBlockHeight":
            answer["result"] = HEIGHT
        else:
            answer["error"] = {"code": -32601, "message": "Method not found"}
        return web.json_response(answer)

    app = web.Application()
    app.router.add_post("/", rpc)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", calls
    await runner.cleanup()


async def test_the_poll_loop_outlives_an_answer_the_client_cannot_read(
    node: tuple[str, list[str]],
) -> None:
    url, calls = node
    rpc = Rpc(url, poll_s=0.01)
    try:
        signature = str(Signature.new_unique())
        outcome = await asyncio.wait_for(rpc.outcome(signature, None, HEIGHT - 100), 10)
    finally:
        await rpc.close()
    assert calls.count("getSignatureStatuses") >= 2  # it asked again after the bad answer
    assert isinstance(outcome, Expired)
    assert (outcome.last_valid_block_height, outcome.block_height) == (HEIGHT - 100, HEIGHT)
