"""Connections to PostgreSQL: the pool, and creating the database on first run."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import structlog

log = structlog.get_logger(__name__)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release a connection to the pool without asyncpg's reset query.

    The default runs `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` on
    every release: a second round trip for each one-statement use, a tenth of a
    worker's time. The service's pool connections take no locks, cursors, listeners or
    session settings (migrations use a connection of their own), and asyncpg still
    rolls back a transaction left open before this is called.
    """


async def create_pool(
    dsn: str, min_size: int = 2, max_size: int = 20, wait_s: float = 30
) -> asyncpg.Pool:
    """A pool for the service, waiting up to `wait_s` for a database that is starting.

    Each step of an order holds a connection only for one statement, so a small pool
    serves many in-flight orders; sizing it by the order cap would exhaust the server.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    delay = 0.2
    while True:
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                command_timeout=30,
                max_inactive_connection_lifetime=60,
                reset=_keep_session,
            )
        except (OSError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError) as err:
            if loop.time() + delay > deadline:
                raise
            log.warning("waiting for PostgreSQL", error=str(err), retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 3)
            continue
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
