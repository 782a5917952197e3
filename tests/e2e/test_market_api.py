"""Quotes, tokens, the state machine, health and docs, as a client sees them."""

from __future__ import annotations

from decimal import Decimal

import httpx

from dexecutor import jsoncodec
from tests.support import order_body, wait_terminal


async def test_tokens_registry(client: httpx.AsyncClient) -> None:
    tokens = {t["symbol"]: t for t in (await client.get("/api/tokens")).json()}
    assert {"SOL", "USDC", "USDT", "BONK", "JUP", "RAY"} <= set(tokens)
    assert tokens["SOL"]["mint"] == "So11111111111111111111111111111111111111112"
    assert tokens["SOL"]["decimals"] == 9 and tokens["USDC"]["decimals"] == 6
    assert any(not t["launched"] for t in tokens.values())


async def test_state_machine_as_data(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/state-machine")).json()
    assert body["transitions"]["pending"] == ["cancelled", "routing", "waiting"]
    assert set(body["terminal"]) == {"confirmed", "failed", "cancelled", "expired"}
    assert body["refusedByType"] == {
        "limit": {"pending": ["routing"]},
        "sniper": {"pending": ["routing"]},
    }


async def test_quote_shows_both_venues_and_the_route(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/api/quote", params={"tokenIn": "SOL", "tokenOut": "USDC", "amountIn": "2"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body["quotes"]) == {"raydium", "meteora"}
    for quote in body["quotes"].values():
        assert {"price", "amountOut", "fee", "priceImpact"} <= set(quote)
    best = max(body["quotes"].items(), key=lambda kv: kv[1]["amountOut"])
    assert body["route"]["dex"] == best[0]
    assert body["minAmountOut"] <= body["expectedAmountOut"] == best[1]["amountOut"]
    assert body["quoteId"] and body["expiresAt"].endswith("Z")


async def test_multi_hop_route_when_no_direct_pool(client: httpx.AsyncClient) -> None:
    body = (
        await client.get(
            "/api/quote", params={"tokenIn": "BONK", "tokenOut": "USDC", "amountIn": "1000000"}
        )
    ).json()
    assert len(body["route"]["path"]) >= 2
    assert body["route"]["path"][0] == "BONK" and body["route"]["path"][-1] == "USDC"


async def test_quote_validation(client: httpx.AsyncClient) -> None:
    for params in (
        {"tokenIn": "SOL", "tokenOut": "USDC", "amountIn": "abc"},
        {"tokenIn": "SOL", "tokenOut": "SOL", "amountIn": "1"},
        {"tokenIn": "SOL", "tokenOut": "USDC"},
    ):
        response = await client.get("/api/quote", params=params)
        assert response.status_code == 422
        assert response.json()["error"] == "validation_error"


async def test_order_with_quote_id_fills_at_least_the_quoted_minimum(
    client: httpx.AsyncClient,
) -> None:
    quote = (
        await client.get(
            "/api/quote", params={"tokenIn": "SOL", "tokenOut": "USDC", "amountIn": "3"}
        )
    ).json()
    response = await client.post(
        "/api/orders/execute",
        json=order_body(amountIn=3, quoteId=quote["quoteId"], slippageBps=5000),
    )
    assert response.status_code == 202
    record = await wait_terminal(client, response.json()["orderId"])
    quoted_min = jsoncodec.loads(jsoncodec.dumps(quote["minAmountOut"]))
    assert record["minAmountOut"] >= Decimal(str(quoted_min))
    if record["status"] == "confirmed":
        assert record["amountOut"] >= record["minAmountOut"]
    else:
        assert record["failReason"] in ("slippage_exceeded", "quote_expired")


async def test_quote_id_must_match_pair_and_amount(client: httpx.AsyncClient) -> None:
    quote = (
        await client.get(
            "/api/quote", params={"tokenIn": "SOL", "tokenOut": "USDC", "amountIn": "3"}
        )
    ).json()
    wrong = await client.post(
        "/api/orders/execute", json=order_body(amountIn=4, quoteId=quote["quoteId"])
    )
    assert (wrong.status_code, wrong.json()["error"]) == (422, "quote_mismatch")
    unknown = await client.post("/api/orders/execute", json=order_body(quoteId="q_nope"))
    assert (unknown.status_code, unknown.json()["error"]) == (422, "unknown_quote")


async def test_health_readiness_metrics_docs(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = (await client.get("/readyz")).json()
    assert ready["checks"] == {"postgres": "ok", "redis": "ok", "chain": "ok"}
    assert ready["chain"].startswith("http://127.0.0.1:")  # the chain `up` started beside it
    metrics = (await client.get("/metrics")).text
    assert "dexecutor_order_events_total" in metrics and "dexecutor_queue_depth" in metrics
    for status in ("pending", "routing", "confirmed"):  # intake's events count too
        assert f'dexecutor_order_events_total{{status="{status}"}}' in metrics
    assert (await client.get("/docs")).status_code == 200
    schema = (await client.get("/openapi.json")).json()
    assert "/api/orders/execute" in schema["paths"]
