"""The `dexecutor` command: run the API, the worker or both; migrate the database."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import typer

from dexecutor.config import ConfigError, Settings, load_settings

app = typer.Typer(
    help="dexecutor: order execution engine for Solana DEX swaps.", no_args_is_help=True
)


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as err:
        typer.echo(f"dexecutor: {err}", err=True)
        raise typer.Exit(2) from None


def _setup(settings: Settings) -> None:
    from dexecutor.logs import configure

    configure(settings.log_level, settings.log_json)
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()


async def _migrate(settings: Settings) -> list[str]:
    import asyncpg

    from dexecutor.store.db import ensure_database
    from dexecutor.store.migrate import migrate

    await ensure_database(settings.dsn())
    conn = await asyncpg.connect(settings.dsn())
    try:
        return await migrate(conn)
    finally:
        await conn.close()


@app.command()
def migrate() -> None:
    """Create the database if needed and apply pending schema migrations."""
    settings = _settings()
    applied = asyncio.run(_migrate(settings))
    typer.echo(
        f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else "")
    )


def _serve(settings: Settings, run_worker: bool) -> None:
    import uvicorn

    from dexecutor.api.app import create_app

    _setup(settings)
    asyncio.run(_migrate(settings))
    uvicorn.run(
        create_app(settings, run_worker=run_worker),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        loop="uvloop",
        http="httptools",
        ws="websockets",
        access_log=False,
        timeout_graceful_shutdown=30,
    )


@app.command()
def api() -> None:
    """Run the HTTP and WebSocket API (no worker)."""
    _serve(_settings(), run_worker=False)


@app.command()
def up() -> None:
    """Run the API and a worker in one process (one-machine use)."""
    _serve(_settings(), run_worker=True)


@app.command()
def worker() -> None:
    """Run a queue worker that executes orders (no HTTP)."""
    settings = _settings()
    _setup(settings)

    async def main() -> None:
        import structlog

        from dexecutor.runtime import Services

        log = structlog.get_logger("dexecutor.worker")

        await _migrate(settings)
        services = await Services.open(settings, api=False, worker=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("worker stopping: finishing in-flight orders")
        await services.close()
        log.info("worker stopped")

    asyncio.run(main())


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
