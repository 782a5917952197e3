"""Session fixtures: one fresh database and Redis namespace, one running `dexecutor up`."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import AsyncIterator
from uuid import uuid4

import asyncpg
import httpx
import pytest
from hypothesis import settings as hypothesis_settings

from dexecutor.config import Settings
from dexecutor.embedded import Backends, resolve
from tests.secret_scan import Report, scan
from tests.support import (
    OUTPUT,
    SECRETS,
    SESSION_LOGS,
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
_scanned: Report | None = None


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


def _prune_old_sessions(keep_hours: float = 24) -> None:
    """Log folders of sessions older than a day go (a running session's never does)."""
    for folder in (OUTPUT / "sessions").glob("*"):
        if folder != SESSION_LOGS and time.time() - folder.stat().st_mtime > keep_hours * 3600:
            shutil.rmtree(folder, ignore_errors=True)


def pytest_sessionstart(session: pytest.Session) -> None:
    _prune_old_sessions()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """What pytest captured from a test (its prints, in-process logs) joins the session's
    logs, passed or failed, so the secret check reads it too. Each phase's report carries
    the sections of the phases before it: only its own are written."""
    sections = [(name, text) for name, text in report.sections if name.endswith(report.when)]
    if not sections:
        return
    SESSION_LOGS.mkdir(parents=True, exist_ok=True)
    with (SESSION_LOGS / "pytest-captured.log").open("a") as log:
        for name, text in sections:
            log.write(f"== {report.nodeid}: {name}\n{text}\n")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The secret check: every secret the session configured or made (API keys, wallet
    keys, every wallet of every test database), looked for in every log it wrote. A
    leak fails the run; the report names file, line and whose secret, never the secret.
    By now every server has stopped and every test database has been read and dropped.
    """
    global _scanned
    _scanned = scan(SESSION_LOGS, SECRETS)
    if _scanned.findings:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _scanned is None:
        return
    leaked = bool(_scanned.findings)
    terminalreporter.write_sep("=", "secret scan of the session's logs", red=leaked, bold=leaked)
    for line in _scanned.lines():
        terminalreporter.write_line(line, red=leaked)


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
