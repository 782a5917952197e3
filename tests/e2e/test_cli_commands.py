"""The CLI as a script would use it: exit codes, --json, id prefixes, API keys, and
what it says when no server answers."""

from __future__ import annotations

import asyncio
import json
import subprocess
from uuid import uuid4

import httpx

from dexecutor import jsoncodec
from dexecutor.client import DexecutorClient
from dexecutor.console import num
from tests.e2e.test_client_cli_logs import run_cli
from tests.support import (
    DEXECUTOR,
    Process,
    TcpProxy,
    chained,
    cli_env,
    free_port,
    isolated,
    keep_output,
    serving,
)


async def cli_json(*args: str, url: str) -> object:
    code, out = await run_cli(*args, "--json", url=url)
    assert code == 0, out
    return jsoncodec.loads(out)


async def test_every_client_command_answers_one_line_when_nothing_listens() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # a port nobody listens on
    some_id = str(uuid4())
    commands = [
        ("submit", "SOL", "USDC", "1"),
        ("submit", "SOL", "USDC", "1", "--watch"),
        ("orders",),
        ("orders", "--json"),
        ("quote", "SOL", "USDC", "1"),
        ("balances",),
        ("show", some_id),
        ("show", some_id[:6]),
        ("cancel", some_id),
        ("watch", some_id),
        ("watch", some_id, "--json"),
    ]
    results = await asyncio.gather(*(run_cli(*c, url=url) for c in commands))
    for command, (code, out) in zip(commands, results, strict=True):
        assert code == 3, (command, out)
        assert out.count("\n") == 1 and "Traceback" not in out, (command, out)
        assert out.startswith(f"dexecutor: cannot reach the API at {url}"), (command, out)


async def test_version_and_choices_fail_with_the_valid_values() -> None:
    code, out = await run_cli_env("--version", env={})
    assert code == 0 and out.startswith("dexecutor 0."), out
    code, out = await run_cli("submit", "SOL", "USDC", "1", "--type", "limt", url="http://x")
    assert code == 2 and "market" in out and "sniper" in out, out
    code, out = await run_cli("orders", "--status", "confrimed", url="http://x")
    assert code == 2 and "confirmed" in out and "expired" in out, out


async def test_submit_watch_exit_codes_and_json(server: Process) -> None:
    user = f"cli-{uuid4().hex[:8]}"
    # confirmed: 0, and --watch --json prints each event as one JSON line
    code, out = await run_cli(
        "submit", "SOL", "USDC", "1", "--watch", "--json", "--user", user, url=server.url
    )
    assert code == 0, out
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["status"] for e in events] == [
        "pending", "routing", "building", "submitted", "confirmed",
    ]  # fmt: skip
    # expired: 4 (a limit far from the market, one second to live)
    code, out = await run_cli(
        "submit", "SOL", "USDC", "1", "--type", "limit", "--limit-price", "100000",
        "--ttl", "1", "--watch", "--user", user, url=server.url,
    )  # fmt: skip
    assert code == 4 and "expired" in out, out
    # failed: 1 (every venue refuses quotes for a while)
    async with httpx.AsyncClient(base_url=server.url) as http:
        armed = await http.post(
            "/api/mock/faults", json={"venue": "all", "kind": "error", "durationMs": 5000}
        )
        assert armed.status_code == 201, armed.text
        try:
            code, out = await run_cli(
                "submit", "SOL", "USDC", "1", "--watch", "--user", user, url=server.url
            )
        finally:
            await http.delete("/api/mock/faults")
    assert code == 1 and "failed" in out, out


async def test_submit_watch_shows_the_signature_slot_and_fees(server: Process) -> None:
    """The live view names the transaction as the chain knows it, and what the fill cost."""
    user = f"cli-{uuid4().hex[:8]}"
    code, out = await run_cli(
        "submit", "SOL", "USDC", "1", "--watch", "--user", user, url=server.url
    )
    assert code == 0 and "confirmed" in out, out
    async with DexecutorClient(server.url) as client:
        (record,) = await client.orders(user)
        events = await client.events(record["orderId"])
    (submitted,) = [e for e in events if e["status"] == "submitted"]
    assert record["txHash"] in out  # the whole base58 signature
    sent = f"slot {submitted['slot']} · valid to block {submitted['lastValidBlockHeight']}"
    assert sent in out and f"priority {submitted['computeUnitPrice']} µlamports/CU" in out
    assert f"slot {record['slot']} ({record['commitment']}" in out
    venue = record["venueFee"]
    assert f"venue fee {num(venue['amount'])} {venue['token']}" in out, out
    assert f"effective price {num(record['effectivePrice'])}" in out, out
    assert f"network fee {num(record['networkFee'])} SOL (base 0.000005 + priority " in out, out
    # `show` gives the same fill field by field.
    code, out = await run_cli("show", record["orderId"], "--user", user, url=server.url)
    assert code == 0, out
    for name in ("venueFee", "networkFee", "priceImpact", "effectivePrice", "slot"):
        assert f"{name} " in out, (name, out)


async def test_show_cancel_watch_by_prefix(server: Process) -> None:
    user = f"cli-{uuid4().hex[:8]}"
    waiting = await cli_json(
        "submit", "SOL", "USDC", "1", "--type", "limit", "--limit-price", "100000",
        "--user", user, url=server.url,
    )  # fmt: skip
    assert isinstance(waiting, dict)
    order_id = str(waiting["orderId"])
    code, out = await run_cli(
        "submit", "SOL", "USDC", "2", "--watch", "--json", "--user", user, url=server.url
    )
    done = json.loads(out.splitlines()[-1])  # one event a line, the last is terminal
    assert code == 0 and done["status"] == "confirmed", out

    listed = await cli_json("orders", "--user", user, url=server.url)
    assert isinstance(listed, list) and {o["orderId"] for o in listed} >= {order_id}
    code, out = await run_cli("orders", "--user", user, "--wide", url=server.url)
    assert code == 0 and order_id in out, out
    code, out = await run_cli("orders", "--user", user, url=server.url)
    assert code == 0 and order_id not in out and order_id[:8] in out, out
    code, out = await run_cli("orders", "--user", user, "-s", "confirmed", url=server.url)
    assert code == 0 and done["orderId"][:8] in out and order_id[:8] not in out, out

    shown = await cli_json("show", order_id[:8], "--user", user, url=server.url)
    assert isinstance(shown, dict)
    assert shown["order"]["orderId"] == order_id and shown["order"]["status"] == "waiting"
    assert [e["status"] for e in shown["events"]] == ["pending", "waiting"]
    filled = await cli_json("show", done["orderId"][:8], "--user", user, url=server.url)
    assert isinstance(filled, dict) and filled["order"]["amountOut"] > 0
    code, out = await run_cli("show", done["orderId"][:8], "--user", user, url=server.url)
    assert code == 0 and "amountOut" in out and "txHash" in out and "confirmed" in out, out

    # "" is a prefix of both orders: ambiguous is a usage error
    code, out = await run_cli("show", "", "--user", user, url=server.url)
    assert code == 2 and "several" in out and "Traceback" not in out, out
    code, out = await run_cli("show", "ffffffffff", "--user", user, url=server.url)
    assert code == 1 and "404" in out, out

    code, out = await run_cli("cancel", order_id[:10], "--user", user, url=server.url)
    assert code == 0 and f"order {order_id} cancelled" in out, out
    code, out = await run_cli("cancel", order_id[:10], "--user", user, url=server.url)
    assert code == 1 and "409" in out, out
    code, out = await run_cli("watch", order_id[:10], "--user", user, url=server.url)
    assert code == 4 and "cancelled" in out, out
    code, out = await run_cli("watch", done["orderId"], "--json", url=server.url)
    assert code == 0 and json.loads(out.splitlines()[-1])["status"] == "confirmed", out


async def run_cli_env(*args: str, env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        DEXECUTOR, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env=cli_env(**env),
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    keep_output(args, out.decode(errors="replace"))
    return int(proc.returncode or 0), out.decode()


async def test_cli_with_an_api_key_and_a_worker_metrics_port() -> None:
    async with isolated("dxkey") as iso:
        chain, env = chained(iso.env())
        api = Process("api", {**env, "API_KEYS": "key-alice:alice,key-bob:bob"}, port=free_port())
        worker = Process("worker", {**env, "METRICS_PORT": "0"})
        async with serving(chain, api, worker):
            env = {"DEXECUTOR_URL": api.url}
            code, out = await run_cli_env("submit", "SOL", "USDC", "1", "--user", "alice", env=env)
            assert code == 1 and "401 unauthorized" in out, out
            code, out = await run_cli_env(
                "submit", "SOL", "USDC", "1", "--watch", "--user", "alice",
                "--api-key", "key-alice", env=env,
            )  # fmt: skip
            assert code == 0 and "confirmed" in out, out
            keyed = {**env, "DEXECUTOR_API_KEY": "key-alice"}
            code, out = await run_cli_env("orders", "--user", "alice", "--json", env=keyed)
            assert code == 0, out
            (order,) = jsoncodec.loads(out)
            assert order["status"] == "confirmed"
            # The key alone names the user: no --user to submit or to list.
            code, out = await run_cli_env("submit", "SOL", "USDC", "1", "--watch", env=keyed)
            assert code == 0 and "confirmed" in out, out
            code, out = await run_cli_env("orders", "--json", env=keyed)
            assert code == 0, out
            listed = jsoncodec.loads(out)
            assert len(listed) == 2 and {o["userId"] for o in listed} == {"alice"}
            code, out = await run_cli_env("show", order["orderId"][:8], "-u", "alice", env=keyed)
            assert code == 0 and "confirmed" in out, out
            code, out = await run_cli_env("watch", order["orderId"], "--json", env=keyed)
            assert code == 0 and "confirmed" in out, out
            # bob's key does not read alice's orders
            bobs = {**env, "DEXECUTOR_API_KEY": "key-bob"}
            code, out = await run_cli_env("watch", order["orderId"], env=bobs)
            assert code == 1 and "404" in out, out
            code, out = await run_cli_env("orders", "--user", "alice", env=bobs)
            assert code == 1 and "403" in out, out

            # the worker picked a free port for its metrics and said which
            port = await _logged_metrics_port(worker)
            async with httpx.AsyncClient() as http:
                scraped = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            assert 'dexecutor_order_events_total{status="confirmed"} 2.0' in scraped


async def _logged_metrics_port(worker: Process) -> int:
    for line in worker.log_path.read_text().splitlines():
        record = json.loads(line)
        if record["event"] == "metrics listening":
            return int(record["port"])
    raise AssertionError(f"no 'metrics listening' line: {worker.log_path.read_text()[-2000:]}")


def test_environment_key_is_not_in_the_help() -> None:
    """The key may sit in the environment: --help names the variable, never its value."""
    env = cli_env(DEXECUTOR_API_KEY="s3cret-value")
    out = subprocess.run(
        [DEXECUTOR, "submit", "--help"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "DEXECUTOR_API_KEY" in out and "s3cret-value" not in out


async def test_watch_resumes_after_a_dropped_connection(server: Process) -> None:
    """The stream breaks mid-order; the client reconnects with ?after= and misses nothing."""
    proxy = TcpProxy(("127.0.0.1", server.port or 0))
    await proxy.up()
    try:
        async with (
            DexecutorClient(f"http://127.0.0.1:{proxy.port}") as via_proxy,
            DexecutorClient(server.url) as direct,
        ):
            accepted = await direct.submit(
                user_id="resume-user", token_in="SOL", token_out="USDC", amount_in=1,
                type="limit", limit_price="100000",
            )  # fmt: skip
            stream = via_proxy.watch(accepted.order_id)
            seen = [await anext(stream), await anext(stream)]
            assert [e["status"] for e in seen] == ["pending", "waiting"]
            await proxy.down()  # every connection through it is cut
            await proxy.up()
            await direct.cancel(accepted.order_id)
            seen += [event async for event in stream]
    finally:
        await proxy.down()
    assert [e["status"] for e in seen] == ["pending", "waiting", "cancelled"]
    assert [e["seq"] for e in seen] == [1, 2, 3]
