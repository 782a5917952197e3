"""Connections to PostgreSQL: the pool, and creating the database on first run."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import asyncpg


async def create_pool(dsn: str, min_size: int = 2, max_size: int = 20) -> asyncpg.Pool:
    """A pool for the service. Statement caching stays on: our SQL is fixed text."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        command_timeout=30,
        max_inactive_connection_lifetime=60,
    )
    assert pool is not None
    return pool


def database_name(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/") or "postgres"


def with_database(dsn: str, name: str) -> str:
    """The same server address with another database name."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


async def ensure_database(dsn: str) -> bool:
    """Create the DSN's database if it does not exist yet. Returns True if created.

    First runs should just work: `make run` on a server that has never seen us.
    """
    name = database_name(dsn)
    try:
        conn = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await conn.close()
        return False
    admin = await asyncpg.connect(with_database(dsn, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name.replace(chr(34), "")}"')
    except asyncpg.DuplicateDatabaseError:
        return False
    finally:
        await admin.close()
    return True
