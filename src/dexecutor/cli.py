"""The `dexecutor` command: run the API, the worker or both; migrate the database; and
the client commands (submit, orders, show, watch, cancel, quote) against a running API."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Coroutine
from enum import StrEnum
from types import ModuleType
from typing import TYPE_CHECKING, Any

import typer

from dexecutor import __version__
from dexecutor.config import ConfigError, Settings, load_settings
from dexecutor.domain.order import OrderStatus, OrderType

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from dexecutor.client import DexecutorClient, Routing
    from dexecutor.embedded import Backends

app = typer.Typer(
    help="dexecutor: order execution engine for Solana DEX swaps.",
    no_args_is_help=True,
    epilog=(
        "Client commands exit 0 when done (a watched order confirmed), 1 when the order"
        " failed or the API refused, 2 on a usage error, 3 when the API is unreachable,"
        " 4 when a watched order expired or was cancelled."
    ),
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"dexecutor {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="print the version"
    ),
) -> None:
    """dexecutor: order execution engine for Solana DEX swaps."""


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as err:
        typer.echo(f"dexecutor: {err}", err=True)
        raise typer.Exit(2) from None


def _require_wallet_key(settings: Settings) -> None:
    """Roles that sign (api, up, worker) need the wallets' key: production refuses to
    start without WALLET_KEY; development makes one in DATA_DIR."""
    from dexecutor.wallets import wallet_key

    try:
        wallet_key(settings)
    except ConfigError as err:
        typer.echo(f"dexecutor: {err}", err=True)
        raise typer.Exit(2) from None


def _setup(settings: Settings) -> None:
    from dexecutor.logs import configure

    configure(settings.log_level, settings.log_json)
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()


def _with_backends(settings: Settings, redis: bool = True) -> tuple[Settings, Backends]:
    """Start embedded PostgreSQL / Valkey where no server is configured; check the rest.

    `redis=False` for a role that never uses Redis (the chain): it neither starts one nor
    waits for one, so it is not down while the engine's Redis is.
    """
    from dexecutor.embedded import resolve

    backends = resolve(
        settings.database_url,
        settings.redis_url,
        settings.postgres_configured(),
        settings.data_dir,
        redis=redis,
    )
    resolved = settings.model_copy(
        update={
            "database_url": backends.database_url,
            "redis_url": backends.redis_url,
            "backend_modes": backends.modes,
        }
    )
    try:
        asyncio.run(_check_reachable(resolved, redis))
    except BackendUnreachable as err:
        backends.stop()
        typer.echo(f"dexecutor: {err}", err=True)
        raise typer.Exit(3) from None
    return resolved, backends


class BackendUnreachable(Exception):
    pass


async def _check_reachable(settings: Settings, redis: bool = True) -> None:
    """Wait up to STARTUP_WAIT_S for the configured servers, then give up naming one.

    A server that is starting or restarting beside us (a deployment coming up, a
    process manager restarting us during an outage) is waited for; one that never
    answers is an error, never a silent fallback to another.
    """
    deadline = time.monotonic() + settings.startup_wait_s
    logged = False
    while True:
        try:
            await _reach_once(settings, redis)
            return
        except BackendUnreachable as err:
            if time.monotonic() >= deadline:
                raise
            if not logged:
                import structlog

                structlog.get_logger(__name__).warning(
                    "waiting for a backend", error=str(err), wait_s=settings.startup_wait_s
                )
                logged = True
            await asyncio.sleep(0.5)


async def _reach_once(settings: Settings, redis: bool = True) -> None:
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
    if not redis:
        return
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
    _setup(settings)
    _require_wallet_key(settings)
    settings, backends = _with_backends(settings)
    own_chain = None
    try:
        if run_worker and settings.chain_url is None:
            # `up` on one machine: the deployment's chain is ours to start (and stop).
            from dexecutor.chain.child import start_chain

            try:
                own_chain = start_chain(
                    settings, explicit_port="chain_port" in settings.model_fields_set
                )
            except RuntimeError as err:
                typer.echo(f"dexecutor: {err}", err=True)
                raise typer.Exit(3) from None
            settings = settings.model_copy(update={"chain_url": own_chain.url})
        asyncio.run(_migrate(settings))
        if settings.api_processes == 1:
            _run_uvicorn(settings, run_worker, backends)
        else:
            from dexecutor.metrics import shared_across_processes

            # The directory is named in the environment before any child starts, so
            # each child's metrics land where every other child's /metrics reads them.
            with shared_across_processes():
                _run_uvicorn(settings, run_worker, backends)
    finally:
        if own_chain is not None:
            own_chain.stop()
        backends.stop()


def _run_uvicorn(settings: Settings, run_worker: bool, backends: Backends) -> None:
    import uvicorn

    from dexecutor.api.app import create_app

    server_options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        # uvicorn's own logging set-up would print plain lines: its loggers go through
        # the structlog formatter `_setup` installed instead.
        "log_config": None,
        "loop": "uvloop",
        # httptools, plus plain submissions answered below the ASGI layer (api/httpdirect.py).
        "http": "dexecutor.api.httpdirect:SubmissionHttpProtocol",
        # websockets-sansio, plus pre-framed writes for the event fan-out (api/wsdirect.py).
        "ws": "dexecutor.api.wsdirect:FramedWebSocketProtocol",
        "ws_max_size": settings.max_body_bytes,  # a bigger message closes with 1009
        # Events are a few hundred bytes: compressing them per connection would cost a
        # zlib context per watcher (memory) and a compression per watcher per event.
        "ws_per_message_deflate": False,
        "access_log": False,
        "timeout_graceful_shutdown": 30,
    }
    if settings.api_processes == 1:
        app_ = create_app(settings, run_worker=run_worker, on_shutdown=backends.stop)
        uvicorn.run(app_, **server_options)
        return
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


def _run_async(
    main: Callable[[Settings], Coroutine[Any, Any, None]], redis: bool = True, signs: bool = False
) -> None:
    """Run a long-lived role without HTTP API of its own, on resolved backends."""
    settings = _settings()
    _setup(settings)
    if signs:
        _require_wallet_key(settings)
    settings, backends = _with_backends(settings, redis)
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

    _run_async(main, redis=False)


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
            # Off by default: a fixed default port would collide between the workers
            # of one host. METRICS_PORT=0 lets the system pick a free one (logged).
            from prometheus_client import start_http_server

            server, _ = start_http_server(settings.metrics_port, addr=settings.host)
            log.info("metrics listening", host=settings.host, port=server.server_port)
        else:
            log.info("metrics not served: set METRICS_PORT (0 picks a free port)")
        services = await Services.open(settings, worker=True, watchers=False)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("worker stopping: finishing in-flight orders")
        await services.close()
        log.info("worker stopped")

    _run_async(main, signs=True)


def _base_url(url: str | None) -> str:
    return (
        url
        or os.environ.get("DEXECUTOR_URL")
        or f"http://localhost:{os.environ.get('PORT', '3000')}"
    )


# Exit codes of the client commands (also in --help and the README).
EXIT_OK = 0  # done; for a watched order: confirmed
EXIT_FAILED = 1  # the order failed, or the API refused the request (4xx/5xx)
EXIT_USAGE = 2  # bad arguments, an ambiguous order-id prefix
EXIT_UNREACHABLE = 3  # nothing answered at the URL (refused, reset, timed out)
EXIT_ENDED = 4  # the watched order expired or was cancelled
EXIT_CODES_HELP = (
    "Exit codes: 0 done (a watched order confirmed), 1 the order failed or the API"
    " refused the request, 2 usage error, 3 the API is unreachable, 4 the watched order"
    " expired or was cancelled."
)
_EXIT_FOR_STATUS = {"confirmed": EXIT_OK, "expired": EXIT_ENDED, "cancelled": EXIT_ENDED}

URL_OPTION = typer.Option(
    None, "--url", help="API base URL (default $DEXECUTOR_URL or localhost:$PORT)"
)
USER_OPTION = typer.Option(
    None,
    "--user",
    "-u",
    help="userId (default: the API key's user, or 'cli' without a key)",
)
KEY_OPTION = typer.Option(
    None,
    "--api-key",
    envvar="DEXECUTOR_API_KEY",
    help="API key, sent as X-API-Key (when the server sets API_KEYS)",
)
JSON_OPTION = typer.Option(False, "--json", help="print JSON for scripts instead of tables")
ID_ARGUMENT = typer.Argument(..., help="order id, or a unique prefix of one of the user's")


def _user(user: str | None, api_key: str | None) -> str | None:
    """An explicit --user wins; with a key the server knows the user; else 'cli'."""
    if user is not None:
        return user
    return None if api_key else "cli"


def _print_json(value: Any) -> None:
    from dexecutor import jsoncodec

    print(jsoncodec.dumps(value).decode(), flush=True)


def _show(value: Any, as_json: bool, table: Callable[[ModuleType], Any]) -> None:
    """`value` as JSON for scripts, or as the table `table` makes of it with
    dexecutor.console (imported only then: the CLI starts without rich)."""
    if as_json:
        _print_json(value)
        return
    from rich.console import Console

    from dexecutor import console

    Console().print(table(console))


def _exit_for(status: str) -> int:
    return _EXIT_FOR_STATUS.get(status, EXIT_FAILED)


def _client_command(
    url: str | None, api_key: str | None, work: Callable[[DexecutorClient], Awaitable[int]]
) -> None:
    """Run one client command: every failure is one line on stderr and an exit code."""
    import httpx
    from websockets.exceptions import InvalidURI

    from dexecutor.client import AmbiguousId, ApiError, DexecutorClient, Unreachable

    base = _base_url(url)

    async def run() -> int:
        async with DexecutorClient(base, api_key=api_key) as client:
            return await work(client)

    try:
        code = asyncio.run(run())
    except Unreachable as err:
        typer.echo(f"dexecutor: {err}", err=True)
        raise typer.Exit(EXIT_UNREACHABLE) from None
    except (AmbiguousId, InvalidURI, httpx.InvalidURL) as err:
        typer.echo(f"dexecutor: {err}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    except ApiError as err:
        typer.echo(f"dexecutor: {err} ({base})", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    raise typer.Exit(code)


async def _follow(client: DexecutorClient, order_id: str, as_json: bool) -> int:
    """Stream the order's events to the terminal; the exit code of its final status."""
    if as_json:
        final = "unknown"
        async for event in client.watch(order_id):
            _print_json(event)
            final = str(event.get("status"))
        return _exit_for(final)
    from rich.console import Console

    from dexecutor.console import watch_order

    return _exit_for(await watch_order(client, order_id, Console()))


TYPE_OPTION = typer.Option(OrderType.MARKET, "--type", "-t", help="order type")
EXACT_OUT_OPTION = typer.Option(
    False, "--exact-out", help="AMOUNT is the output wanted (swapMode ExactOut)"
)
MAX_IN_OPTION = typer.Option(
    None, "--max-in", help="with --exact-out: the most to spend (default: quote + slippage)"
)
DEXES_OPTION = typer.Option(None, "--dexes", help="only these venues, comma-separated")
EXCLUDE_OPTION = typer.Option(None, "--exclude-dexes", help="never these venues, comma-separated")
DIRECT_OPTION = typer.Option(False, "--direct-only", help="direct pools only (onlyDirectRoutes)")


def _routing(
    exact_out: bool, max_in: str | None, dexes: str | None, exclude: str | None, direct: bool
) -> Routing:
    from decimal import Decimal, InvalidOperation

    from dexecutor.client import Routing

    def names(value: str | None) -> tuple[str, ...] | None:
        return None if value is None else tuple(v.strip() for v in value.split(",") if v.strip())

    try:
        max_amount_in = None if max_in is None else Decimal(max_in)
    except InvalidOperation:
        raise typer.BadParameter(f"--max-in: not a number: {max_in!r}") from None
    return Routing(
        exact_out=exact_out,
        max_amount_in=max_amount_in,
        dexes=names(dexes),
        exclude_dexes=names(exclude) or (),
        only_direct_routes=direct,
    )


@app.command(epilog=EXIT_CODES_HELP)
def submit(
    token_in: str = typer.Argument(..., help="token sold, e.g. SOL"),
    token_out: str = typer.Argument(..., help="token bought, e.g. USDC"),
    amount: str = typer.Argument(..., help="amount of token_in (of token_out with --exact-out)"),
    order_type: OrderType = TYPE_OPTION,
    limit_price: str | None = typer.Option(None, "--limit-price", help="worst price (limit)"),
    ttl: int | None = typer.Option(None, "--ttl", help="seconds before a waiting order expires"),
    slippage_bps: int | None = typer.Option(None, "--slippage-bps", help="tolerance, default 50"),
    exact_out: bool = EXACT_OUT_OPTION,
    max_in: str | None = MAX_IN_OPTION,
    dexes: str | None = DEXES_OPTION,
    exclude_dexes: str | None = EXCLUDE_OPTION,
    direct_only: bool = DIRECT_OPTION,
    user: str | None = USER_OPTION,
    watch: bool = typer.Option(False, "--watch", "-w", help="follow the order until it ends"),
    as_json: bool = JSON_OPTION,
    url: str | None = URL_OPTION,
    api_key: str | None = KEY_OPTION,
) -> None:
    """Place an order; with --watch, follow it live until it finishes.

    With --watch the exit code says how the order ended (0 confirmed, 1 failed,
    4 expired or cancelled); --json prints the acceptance, or each event as a line.
    """

    async def work(client: DexecutorClient) -> int:
        accepted = await client.submit(
            user_id=_user(user, api_key),
            token_in=token_in,
            token_out=token_out,
            amount_in=amount,
            type=order_type.value,
            limit_price=limit_price,
            ttl_seconds=ttl,
            slippage_bps=slippage_bps,
            routing=_routing(exact_out, max_in, dexes, exclude_dexes, direct_only),
        )
        if watch:
            return await _follow(client, accepted.order_id, as_json)
        if as_json:
            _print_json({"orderId": accepted.order_id, "status": accepted.status})
        else:
            typer.echo(f"order {accepted.order_id} accepted ({accepted.status})")
        return EXIT_OK

    _client_command(url, api_key, work)


STATUS_OPTION = typer.Option(None, "--status", "-s", help="only these statuses (repeatable)")


@app.command(epilog=EXIT_CODES_HELP)
def orders(
    user: str | None = USER_OPTION,
    status: list[OrderStatus] | None = STATUS_OPTION,
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=200),
    wide: bool = typer.Option(False, "--wide", help="full order ids (default: 8 characters)"),
    as_json: bool = JSON_OPTION,
    url: str | None = URL_OPTION,
    api_key: str | None = KEY_OPTION,
) -> None:
    """List a user's orders, newest first."""
    wanted = ",".join(s.value for s in status) if status else None

    async def work(client: DexecutorClient) -> int:
        found = await client.orders(_user(user, api_key), wanted, limit)
        _show(found, as_json, lambda console: console.orders_table(found, wide=wide))
        return EXIT_OK

    _client_command(url, api_key, work)


@app.command(epilog=EXIT_CODES_HELP)
def show(
    order_id: str = ID_ARGUMENT,
    user: str | None = USER_OPTION,
    as_json: bool = JSON_OPTION,
    url: str | None = URL_OPTION,
    api_key: str | None = KEY_OPTION,
) -> None:
    """An order's record (its fill once confirmed) and its events."""

    async def work(client: DexecutorClient) -> int:
        full = await client.resolve(order_id, _user(user, api_key))
        record = await client.order(full)
        history = await client.events(full)
        if as_json:
            _print_json({"order": record, "events": history})
        else:
            from rich.console import Console

            from dexecutor.console import lifecycle_table, record_table

            console = Console()
            console.print(record_table(record))
            console.print(lifecycle_table(full, history))
        return EXIT_OK

    _client_command(url, api_key, work)


@app.command(epilog=EXIT_CODES_HELP)
def cancel(
    order_id: str = ID_ARGUMENT,
    user: str | None = USER_OPTION,
    as_json: bool = JSON_OPTION,
    url: str | None = URL_OPTION,
    api_key: str | None = KEY_OPTION,
) -> None:
    """Cancel an order that has not started routing (pending or waiting)."""

    async def work(client: DexecutorClient) -> int:
        record = await client.cancel(await client.resolve(order_id, _user(user, api_key)))
        if as_json:
            _print_json(record)
        else:
            typer.echo(f"order {record['orderId']} {record['status']}")
        return EXIT_OK

    _client_command(url, api_key, work)


@app.command(epilog=EXIT_CODES_HELP)
def watch(
    order_id: str = ID_ARGUMENT,
    user: str | None = USER_OPTION,
    as_json: bool = JSON_OPTION,
    url: str | None = URL_OPTION,
    api_key: str | None = KEY_OPTION,
) -> None:
    """Follow an order live until it ends, resuming where it left off if the connection
    drops. The exit code says how it ended: 0 confirmed, 1 failed, 4 expired or cancelled."""

    async def work(client: DexecutorClient) -> int:
        return await _follow(client, await client.resolve(order_id, _user(user, api_key)), as_json)

    _client_command(url, api_key, work)


@app.command(epilog=EXIT_CODES_HELP)
def quote(
    token_in: str = typer.Argument(..., help="token sold"),
    token_out: str = typer.Argument(..., help="token bought"),
    amount: str = typer.Argument(..., help="amount of token_in (of token_out with --exact-out)"),
    exact_out: bool = EXACT_OUT_OPTION,
    dexes: str | None = DEXES_OPTION,
    exclude_dexes: str | None = EXCLUDE_OPTION,
    direct_only: bool = DIRECT_OPTION,
    as_json: bool = JSON_OPTION,
    url: str | None = URL_OPTION,
    api_key: str | None = KEY_OPTION,
) -> None:
    """Both venues' quotes and the route an order would take (split when it pays)."""

    async def work(client: DexecutorClient) -> int:
        routing = _routing(exact_out, None, dexes, exclude_dexes, direct_only)
        found = await client.quote(token_in, token_out, amount, routing)
        _show(found, as_json, lambda console: console.quote_table(found))
        return EXIT_OK

    _client_command(url, api_key, work)


@app.command(epilog=EXIT_CODES_HELP)
def balances(
    user: str | None = USER_OPTION,
    as_json: bool = JSON_OPTION,
    url: str | None = URL_OPTION,
    api_key: str | None = KEY_OPTION,
) -> None:
    """A user's wallet: total, available and reserved per token."""

    async def work(client: DexecutorClient) -> int:
        wallet = await client.balances(_user(user, api_key))
        _show(wallet, as_json, lambda console: console.balances_table(wallet))
        return EXIT_OK

    _client_command(url, api_key, work)


class Scenario(StrEnum):
    """The benchmark's scenarios (`dexecutor.bench.SCENARIOS`, kept equal by a test)."""

    SUBMISSION = "submission"
    END_TO_END = "end-to-end"
    OVERHEAD = "overhead"
    SCALE = "scale"
    CHAIN_QUOTE = "chain-quote"
    FAN_OUT = "fan-out"
    FAN_OUT_SPREAD = "fan-out-spread"
    QUALITY = "quality"
    LANDING = "landing"


ONLY_OPTION = typer.Option([], "--only", help="scenario(s) to run (repeatable); default all")


@app.command()
def bench(
    runs: int = typer.Option(3, "--runs", min=1, help="repetitions per scenario (medians)"),
    quick: bool = typer.Option(False, "--quick", help="smaller loads, for a smoke run"),
    only: list[Scenario] = ONLY_OPTION,
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
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Table

    from dexecutor.bench import run_all, write_results

    console = Console()
    settings, backends = _with_backends(_settings())
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("elapsed"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
    )
    task = bar.add_task("starting", total=None)

    def progress(text: str, done: int, total: int) -> None:
        bar.update(task, description=text, completed=done, total=total)

    try:
        with bar:
            results = asyncio.run(
                run_all(
                    settings.dsn(),
                    settings.redis,
                    runs,
                    quick,
                    [s.value for s in only],
                    progress,
                    watchers,
                    api_processes,
                )
            )
    finally:
        backends.stop()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = write_results(results, Path(out) if out else Path("bench/results") / stamp)
    table = Table(title=f"dexecutor bench (median run of {runs}; {folder}/results.json)")
    table.add_column("scenario")
    table.add_column("run")
    table.add_column("figures")

    def shown(figures: dict[str, Any]) -> str:
        return ", ".join(
            f"{k}={round(v, 2) if isinstance(v, float) else v}"
            for k, v in figures.items()
            if k not in ("timeline", "every_run", "failed")
        )

    for name, figures in results.items():
        table.add_row(name, "median", shown(figures))
        for i, row in enumerate(figures.get("every_run", []), 1):
            table.add_row("", str(i), shown(row))
        for reason in figures.get("failed", []):
            table.add_row("", "FAILED", reason)
    console.print(table)
    if any(figures.get("failed") for figures in results.values()):
        raise typer.Exit(1)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
