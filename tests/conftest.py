"""Session fixtures: one fresh database and Redis namespace, one running `dexecutor up`."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from uuid import uuid4

import asyncpg
import httpx
import pytest
from hypothesis import settings as hypothesis_settings

from dexecutor.config import Settings
from dexecutor.embedded import Backends, resolve
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

# Property tests explore the same examples on every run: a failure found once is found
# again, and CI never fails on a draw a developer never saw.
hypothesis_settings.register_profile("dexecutor", derandomize=True, deadline=None, database=None)
hypothesis_settings.load_profile("dexecutor")

_backends: Backends | None = None


def pytest_configure(config: pytest.Config) -> None:
    """With no DATABASE_URL / REDIS_URL configured, run against embedded servers.

    They are the same ones `make run` uses (data in ./.data); the URLs are exported so
    every server process the tests start connects to them too.
    """
    global _backends
    settings = Settings()
    if settings.postgres_configured() and settings.redis_url:
        return
    _backends = resolve(
        settings.database_url, settings.redis_url, settings.postgres_configured(), settings.data_dir
    )
    assert _backends.database_url is not None and _backends.redis_url is not None
    os.environ["DATABASE_URL"] = _backends.database_url
    os.environ["REDIS_URL"] = _backends.redis_url


def pytest_unconfigure(config: pytest.Config) -> None:
    if _backends is not None:
        _backends.stop()


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
