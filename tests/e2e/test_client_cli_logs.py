"""The typed client, the CLI commands and the structured logs, against a running server."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest

from dexecutor.client import ApiError, DexecutorClient
from tests.support import DEXECUTOR, Process, cli_env, keep_output


async def run_cli(*args: str, url: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        DEXECUTOR, *args, "--url", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env=cli_env(),
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    keep_output(args, out.decode(errors="replace"))
    return int(proc.returncode or 0), out.decode()


async def test_client_submits_watches_and_reads_exact_amounts(server: Process) -> None:
    async with DexecutorClient(server.url) as client:
        accepted = await client.submit(
            user_id="client-user", token_in="SOL", token_out="USDC", amount_in="1.25"
        )
        statuses = [e["status"] async for e in client.watch(accepted.order_id)]
        record = await client.order(accepted.order_id)
        history = await client.orders("client-user")
    assert statuses == ["pending", "routing", "building", "submitted", "confirmed"]
    assert record["amountIn"] == Decimal("1.25")
    assert isinstance(record["amountOut"], Decimal)
    assert [o["orderId"] for o in history] == [accepted.order_id]


async def test_client_raises_the_api_error(server: Process) -> None:
    async with DexecutorClient(server.url) as client:
        with pytest.raises(ApiError) as caught:
            await client.submit(user_id="x", token_in="SOL", token_out="SOL", amount_in=1)
    assert (caught.value.status, caught.value.code) == (422, "validation_error")


async def test_cli_submit_watch_shows_the_lifecycle(server: Process) -> None:
    code, out = await run_cli(
        "submit", "SOL", "USDC", "1", "--watch", "--user", "cli-user", url=server.url
    )
    assert code == 0, out
    for status in ("pending", "routing", "building", "submitted", "confirmed"):
        assert status in out
    code, listing = await run_cli("orders", "--user", "cli-user", url=server.url)
    assert code == 0 and "confirmed" in listing and "SOL→USDC" in listing


async def test_cli_quote_and_errors(server: Process) -> None:
    code, out = await run_cli("quote", "SOL", "USDC", "2", url=server.url)
    assert code == 0 and "raydium" in out and "meteora" in out and "★" in out
    code, out = await run_cli("submit", "SOL", "DOGE", "1", url=server.url)
    assert code == 1 and "validation_error" in out


async def test_every_log_line_of_an_orders_work_carries_its_id(server: Process) -> None:
    async with DexecutorClient(server.url) as client:
        accepted = await client.submit(
            user_id="log-user", token_in="SOL", token_out="USDC", amount_in=1
        )
        async for _ in client.watch(accepted.order_id):
            pass
    lines = [
        json.loads(line)
        for line in server.log_path.read_text().splitlines()
        if line.startswith("{")
    ]
    mine = [line for line in lines if accepted.order_id in json.dumps(line)]
    routed = [line for line in mine if line["event"] == "routed"]
    assert routed and routed[0]["order_id"] == accepted.order_id and routed[0]["attempt"] == 1
    assert all(line.get("order_id") == accepted.order_id for line in mine)
