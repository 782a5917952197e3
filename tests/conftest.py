"""Session fixtures: one fresh database and Redis namespace, one running `dexecutor up`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import uuid4

import asyncpg
import httpx
import pytest

from tests.support import (
    Process,
    connected,
    create_database,
    drop_database,
    drop_namespace,
    free_port,
    service_env,
    serving,
)


@pytest.fixture(scope="session")
async def database() -> AsyncIterator[str]:
    dsn = await create_database()
    yield dsn
    await drop_database(dsn)


@pytest.fixture(scope="session")
async def namespace() -> AsyncIterator[str]:
    ns = f"dxt{uuid4().hex[:10]}"
    yield ns
    await drop_namespace(ns)


@pytest.fixture(scope="session")
async def server(database: str, namespace: str) -> AsyncIterator[Process]:
    """`dexecutor up` (API + worker in one process) with fast venues."""
    proc = Process("up", service_env(database, namespace), port=free_port())
    async with serving(proc):
        yield proc


@pytest.fixture
async def client(server: Process) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        yield c


@pytest.fixture
async def db(database: str) -> AsyncIterator[asyncpg.Connection]:
    async with connected(database) as conn:
        yield conn
