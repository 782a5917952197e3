"""The `dexecutor` command: run the API, the worker or both; migrate the database."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import typer

from dexecutor.config import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from dexecutor.embedded import Backends

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


def _with_backends(settings: Settings) -> tuple[Settings, Backends]:
    """Start embedded PostgreSQL / Valkey where no server is configured; check the rest."""
    from dexecutor.embedded import resolve

    backends = resolve(
        settings.database_url, settings.redis_url, settings.postgres_configured(), settings.data_dir
    )
    resolved = settings.model_copy(
        update={
            "database_url": backends.database_url,
            "redis_url": backends.redis_url,
            "backend_modes": backends.modes,
        }
    )
    try:
        asyncio.run(_check_reachable(resolved))
    except BackendUnreachable as err:
        backends.stop()
        typer.echo(f"dexecutor: {err}", err=True)
        raise typer.Exit(3) from None
    return resolved, backends


class BackendUnreachable(Exception):
    pass


async def _check_reachable(settings: Settings) -> None:
    """A configured server that does not answer is an error, never a silent fallback."""
    import asyncpg
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    from dexecutor.store.db import ensure_database

    mode = settings.backend_modes
    try:
        await asyncio.wait_for(ensure_database(settings.dsn()), 15)
    except (OSError, TimeoutError, asyncpg.PostgresError) as err:
        raise BackendUnreachable(
            f"PostgreSQL ({mode.get('postgres')}) at {_redacted(settings.dsn())}"
            f" is unreachable: {err}"
        ) from None
    client = Redis.from_url(settings.redis)
    try:
        await asyncio.wait_for(client.ping(), 5)
    except (OSError, TimeoutError, RedisError) as err:
        raise BackendUnreachable(
            f"Redis ({mode.get('redis')}) at {_redacted(settings.redis)} is unreachable: {err}"
        ) from None
    finally:
        await client.aclose()


def _redacted(url: str) -> str:
    """The URL without its password, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


async def _migrate(settings: Settings) -> list[str]:
    """Apply migrations; the database exists already (`_with_backends` made sure of it)."""
    import asyncpg

    from dexecutor.store.migrate import migrate

    conn = await asyncpg.connect(settings.dsn())
    try:
        return await migrate(conn)
    finally:
        await conn.close()


@app.command()
def migrate() -> None:
    """Create the database if needed and apply pending schema migrations."""
    settings, backends = _with_backends(_settings())
    try:
        applied = asyncio.run(_migrate(settings))
    finally:
        backends.stop()
    typer.echo(
        f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else "")
    )


def _serve(settings: Settings, run_worker: bool) -> None:
    import uvicorn

    from dexecutor.api.app import create_app

    _setup(settings)
    settings, backends = _with_backends(settings)
    own_chain = None
    if run_worker and settings.chain_url is None:
        from dexecutor.chain.child import start_chain

        try:
            own_chain = start_chain(
                settings, explicit_port="chain_port" in settings.model_fields_set
            )
        except RuntimeError as err:
            backends.stop()
            typer.echo(f"dexecutor: {err}", err=True)
            raise typer.Exit(3) from None
        settings = settings.model_copy(update={"chain_url": own_chain.url})
    server_options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "loop": "uvloop",
        "http": "httptools",
        "ws": "websockets-sansio",
        "ws_max_size": settings.max_body_bytes,  # a bigger message closes with 1009
        # Events are a few hundred bytes: compressing them per connection would cost a
        # zlib context per watcher (memory) and a compression per watcher per event.
        "ws_per_message_deflate": False,
        "access_log": False,
        "timeout_graceful_shutdown": 30,
    }
    try:
        asyncio.run(_migrate(settings))
        if settings.api_processes == 1:
            app_ = create_app(settings, run_worker=run_worker, on_shutdown=backends.stop)
            uvicorn.run(app_, **server_options)
        else:
            # Several processes share the port; each builds its app from the environment,
            # where the resolved backends are written for them.
            os.environ.update(
                DATABASE_URL=settings.dsn(),
                REDIS_URL=settings.redis,
                CHAIN_URL=settings.chain,
                DEXECUTOR_RUN_WORKER="1" if run_worker else "0",
            )
            uvicorn.run(
                "dexecutor.api.app:app_from_environment",
                factory=True,
                workers=settings.api_processes,
                **server_options,
            )
    finally:
        if own_chain is not None:
            own_chain.stop()
        backends.stop()


def _run_async(main: Callable[[Settings], Coroutine[Any, Any, None]]) -> None:
    """Run a long-lived role without HTTP API of its own, on resolved backends."""
    settings = _settings()
    _setup(settings)
    settings, backends = _with_backends(settings)
    try:
        asyncio.run(main(settings))
    finally:
        backends.stop()


@app.command()
def chain() -> None:
    """Run the chain service: the one simulated market, ledger and slot clock (CHAIN_PORT)."""

    async def main(settings: Settings) -> None:
        from dexecutor.chain.service import serve

        await serve(settings)

    _run_async(main)


@app.command()
def api() -> None:
    """Run the HTTP and WebSocket API (no worker)."""
    _serve(_settings(), run_worker=False)


@app.command()
def up() -> None:
    """Run the API and a worker in one process, and the chain beside it unless CHAIN_URL is set."""
    _serve(_settings(), run_worker=True)


@app.command()
def worker() -> None:
    """Run a queue worker that executes orders (no HTTP)."""

    async def main(settings: Settings) -> None:
        import structlog

        from dexecutor.runtime import Services

        log = structlog.get_logger("dexecutor.worker")

        await _migrate(settings)
        if settings.metrics_port is not None:
            # A worker serves no HTTP; its engine metrics get a listener of their own.
            from prometheus_client import start_http_server

            start_http_server(settings.metrics_port, addr=settings.host)
        services = await Services.open(settings, worker=True, watchers=False)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("worker stopping: finishing in-flight orders")
        await services.close()
        log.info("worker stopped")

    _run_async(main)


def _base_url(url: str | None) -> str:
    return (
        url
        or os.environ.get("DEXECUTOR_URL")
        or f"http://localhost:{os.environ.get('PORT', '3000')}"
    )


URL_OPTION = typer.Option(
    None, "--url", help="API base URL (default $DEXECUTOR_URL or localhost:$PORT)"
)
USER_OPTION = typer.Option("cli", "--user", "-u", help="userId the order belongs to")


def _fail(err: Exception) -> typer.Exit:
    typer.echo(f"dexecutor: {err}", err=True)
    return typer.Exit(1)


@app.command()
def submit(
    token_in: str = typer.Argument(..., help="token sold, e.g. SOL"),
    token_out: str = typer.Argument(..., help="token bought, e.g. USDC"),
    amount: str = typer.Argument(..., help="amount of token_in, e.g. 2 or 0.5"),
    order_type: str = typer.Option("market", "--type", "-t", help="market, limit or sniper"),
    limit_price: str | None = typer.Option(None, "--limit-price", help="worst price (limit)"),
    ttl: int | None = typer.Option(None, "--ttl", help="seconds before a waiting order expires"),
    slippage_bps: int | None = typer.Option(None, "--slippage-bps", help="tolerance, default 50"),
    user: str = USER_OPTION,
    watch: bool = typer.Option(False, "--watch", "-w", help="show the lifecycle live"),
    url: str | None = URL_OPTION,
) -> None:
    """Place an order; with --watch, follow it live until it finishes."""
    from rich.console import Console

    from dexecutor.client import ApiError, DexecutorClient
    from dexecutor.console import watch_order

    console = Console()

    async def run() -> str:
        async with DexecutorClient(_base_url(url)) as client:
            accepted = await client.submit(
                user_id=user,
                token_in=token_in,
                token_out=token_out,
                amount_in=amount,
                type=order_type,
                limit_price=limit_price,
                ttl_seconds=ttl,
                slippage_bps=slippage_bps,
            )
            if not watch:
                console.print(f"order [bold]{accepted.order_id}[/] accepted ({accepted.status})")
                return accepted.status
            return await watch_order(client, accepted, console)

    try:
        final = asyncio.run(run())
    except (ApiError, OSError) as err:
        raise _fail(err) from None
    if watch and final == "failed":
        raise typer.Exit(1)


@app.command()
def orders(
    user: str = USER_OPTION,
    status: str | None = typer.Option(None, "--status", help="filter, e.g. confirmed,failed"),
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=200),
    url: str | None = URL_OPTION,
) -> None:
    """List a user's orders, newest first."""
    from rich.console import Console

    from dexecutor.client import ApiError, DexecutorClient
    from dexecutor.console import orders_table

    async def run() -> None:
        async with DexecutorClient(_base_url(url)) as client:
            Console().print(orders_table(await client.orders(user, status, limit)))

    try:
        asyncio.run(run())
    except (ApiError, OSError) as err:
        raise _fail(err) from None


@app.command()
def quote(
    token_in: str = typer.Argument(..., help="token sold"),
    token_out: str = typer.Argument(..., help="token bought"),
    amount: str = typer.Argument(..., help="amount of token_in"),
    url: str | None = URL_OPTION,
) -> None:
    """Both venues' quotes and the route an order would take."""
    from rich.console import Console

    from dexecutor.client import ApiError, DexecutorClient
    from dexecutor.console import quote_table

    async def run() -> None:
        async with DexecutorClient(_base_url(url)) as client:
            Console().print(quote_table(await client.quote(token_in, token_out, amount)))

    try:
        asyncio.run(run())
    except (ApiError, OSError) as err:
        raise _fail(err) from None


ONLY_OPTION = typer.Option([], "--only", help="scenario(s) to run; default all")


@app.command()
def bench(
    runs: int = typer.Option(3, "--runs", min=1, help="repetitions per scenario (medians)"),
    quick: bool = typer.Option(False, "--quick", help="smaller loads, for a smoke run"),
    only: list[str] = ONLY_OPTION,
    out: str | None = typer.Option(None, "--out", help="results folder"),
    watchers: int = typer.Option(0, "--watchers", min=0, help="fan-out watchers (0: default)"),
    api_processes: int = typer.Option(
        2, "--api-processes", min=1, help="API processes in the submission scenario"
    ),
) -> None:
    """Run the load benchmark against the whole stack on this machine."""
    from datetime import UTC, datetime
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from dexecutor.bench import run_all, write_results

    console = Console()
    settings, backends = _with_backends(_settings())
    try:
        results = asyncio.run(
            run_all(
                settings.dsn(),
                settings.redis,
                runs,
                quick,
                only,
                lambda text: console.print(f"[dim]{text}[/]"),
                watchers,
                api_processes,
            )
        )
    finally:
        backends.stop()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = write_results(results, Path(out) if out else Path("bench/results") / stamp)
    table = Table(title=f"dexecutor bench (medians of {runs} run(s); {folder})")
    table.add_column("scenario")
    table.add_column("figures")
    for name, figures in results.items():
        shown = {
            k: (round(v, 2) if isinstance(v, float) else v)
            for k, v in figures.items()
            if k != "timeline"
        }
        table.add_row(name, ", ".join(f"{k}={v}" for k, v in shown.items()))
    console.print(table)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
