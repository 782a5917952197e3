"""Fixtures the integration tests share: a client of the real Redis, a chain in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

import asyncpg
import pytest
from redis.asyncio import Redis

from dexecutor.chain.client import ChainClient, ChainVenue, Signer
from dexecutor.chain.cluster import Cluster
from dexecutor.chain.rpc import Rpc
from dexecutor.chain.service import running_chain
from dexecutor.config import Settings
from dexecutor.market.types import VENUES
from dexecutor.wallets import SecretBox, Wallets
from tests.support import create_database, drop_database, free_port, redis_url


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url())
    yield client
    await client.aclose()


@dataclass
class Chain:
    """The chain service, served over HTTP from this test's event loop."""

    url: str
    dsn: str  # its own database: the chain's state is not the engine's
    cluster: Cluster
    settings: Settings


def chain_settings(dsn: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": dsn,
        "chain_port": free_port(),
        "mock_seed": 7,
        "mock_market": "calm",
        "mock_quote_latency_ms": "0",
        "mock_swap_latency_ms": "10-20",
        "chain_blockhash_slots": 10,  # 4 s: a dropped transaction expires in seconds
        "log_json": False,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def chain_dsn() -> AsyncIterator[str]:
    dsn = await create_database()
    yield dsn
    await drop_database(dsn)


@pytest.fixture
async def chain(chain_dsn: str) -> AsyncIterator[Chain]:
    settings = chain_settings(chain_dsn)
    async with running_chain(settings) as cluster:
        yield Chain(f"http://127.0.0.1:{settings.chain_port}", chain_dsn, cluster, settings)


# Every test wallet's secret is sealed under this key (several engines of one test
# share their wallets, as a deployment's processes do).
WALLET_KEY = bytes(range(32))
FUNDING = [("SOL", Decimal(1000)), ("USDC", Decimal(100_000))]


@dataclass
class Wired:
    """The chain as a worker process reaches it: quotes over the chain client, swaps
    signed by the users' wallets and sent and confirmed through the RPC side."""

    client: ChainClient
    rpc: Rpc
    venues: dict[str, ChainVenue]

    async def close(self) -> None:
        await self.rpc.close()
        await self.client.close()


def wired(chain: Chain, pool: asyncpg.Pool | None = None, signer: Signer | None = None) -> Wired:
    """Venues signing with the users' wallets in `pool`'s database (or with `signer`)."""
    client = ChainClient(chain.url)
    rpc = Rpc(chain.url, poll_s=0.01, rebroadcast_s=0.2, slot_s=chain.settings.slot_s)
    if signer is None:
        assert pool is not None
        signer = Wallets(pool, client, SecretBox(WALLET_KEY), FUNDING)
    venues = {name: ChainVenue(name, client, rpc, signer) for name in VENUES}
    return Wired(client, rpc, venues)
