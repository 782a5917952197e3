"""Running the chain: its PostgreSQL state, its cluster, its HTTP server.

`dexecutor chain` runs `serve`; `dexecutor up` runs the same in a child process when
no CHAIN_URL is configured; tests run `running_chain` inside their own event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import structlog
import uvicorn

from dexecutor.chain.cluster import Cluster, Latencies, params_of
from dexecutor.chain.server import create_chain_app
from dexecutor.chain.store import ChainStore
from dexecutor.config import Settings
from dexecutor.store.db import create_pool
from dexecutor.store.migrate import migrate

log = structlog.get_logger(__name__)


def latencies_of(settings: Settings) -> Latencies:
    return Latencies(
        settings.quote_latency,
        settings.swap_latency,
        settings.mock_failure_rate,
        settings.landing_mode,
        settings.chain_blockhash_slots,
        settings.slot_s,
    )


@asynccontextmanager
async def open_cluster(settings: Settings) -> AsyncIterator[Cluster]:
    """The cluster over its stored state, running until the context ends."""
    pool = await create_pool(settings.dsn(), max_size=8)
    try:
        conn = await asyncpg.connect(settings.dsn())
        try:
            await migrate(conn)
        finally:
            await conn.close()
        cluster = await Cluster.restore(
            ChainStore(pool),
            params_of,
            settings.mock_seed,
            settings.mock_market,
            latencies_of(settings),
        )
        await cluster.start()
        launches = [
            asyncio.create_task(_launch_later(cluster, token, venue, at))
            for token, venue, at in settings.launch_schedule
        ]
        try:
            yield cluster
        finally:
            for task in launches:
                task.cancel()
            await cluster.stop()
    finally:
        await pool.close()


async def _launch_later(cluster: Cluster, token: str, venue: str, at_s: float) -> None:
    await asyncio.sleep(at_s)
    log.info("scheduled launch", token=token, venue=venue)
    await cluster.launch(token, venue)


def _server(cluster: Cluster, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(
        create_chain_app(cluster),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        loop="none",
        http="httptools",
        lifespan="off",
        timeout_graceful_shutdown=5,
    )
    return uvicorn.Server(config)


async def serve(settings: Settings) -> None:
    """Run the chain until SIGTERM/SIGINT (uvicorn handles the signals)."""
    async with open_cluster(settings) as cluster:
        log.info("chain serving", port=settings.chain_port, seed=cluster.market.seed)
        await _server(cluster, settings.host, settings.chain_port).serve()


@asynccontextmanager
async def running_chain(settings: Settings) -> AsyncIterator[Cluster]:
    """The chain served on `settings.chain_port` inside this event loop (tests)."""
    async with open_cluster(settings) as cluster:
        server = _server(cluster, "127.0.0.1", settings.chain_port)
        task = asyncio.create_task(server.serve())
        try:
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
            yield cluster
        finally:
            server.should_exit = True
            await task
