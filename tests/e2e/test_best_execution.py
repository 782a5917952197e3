"""Best execution as a client sees it (SPEC §10): split quotes, exact-out, venue choice,
and the execution quality of a filled order."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from dexecutor import jsoncodec
from tests.e2e.test_client_cli_logs import run_cli
from tests.support import Process, order_body, wait_terminal

LEG_FIELDS = {"venue", "path", "percent", "amountIn", "amountOut", "fee", "priceImpact"}


async def _quote(client: httpx.AsyncClient, **params: str) -> httpx.Response:
    return await client.get("/api/quote", params={"tokenIn": "SOL", "tokenOut": "USDC", **params})


def _body(response: httpx.Response) -> Any:
    return jsoncodec.loads(response.content)


async def test_a_large_order_is_split_and_beats_the_best_single_venue(
    client: httpx.AsyncClient,
) -> None:
    response = await _quote(client, amountIn="20000")
    assert response.status_code == 200, response.text
    body = _body(response)
    legs = body["routePlan"]
    assert len(legs) >= 2
    assert all(set(leg) >= LEG_FIELDS for leg in legs)
    assert sum(leg["percent"] for leg in legs) == 100
    assert sum(leg["amountIn"] for leg in legs) == Decimal(20000)
    assert body["amountOut"] == sum(leg["amountOut"] for leg in legs)
    assert body["amountOut"] >= body["bestSingle"]["amountOut"]
    assert body["amountOut"] >= max(q["amountOut"] for q in body["quotes"].values())
    assert body["splitGainBps"] > 0
    assert body["expectedAmountOut"] == body["amountOut"] > body["minAmountOut"]


async def test_a_small_order_stays_on_one_leg(client: httpx.AsyncClient) -> None:
    body = _body(await _quote(client, amountIn="0.5"))
    assert len(body["routePlan"]) == 1 and body["routePlan"][0]["percent"] == 100
    assert body["splitGainBps"] == 0


@pytest.mark.parametrize(
    ("params", "venues"),
    [
        ({"dexes": "meteora"}, {"meteora"}),
        ({"dexes": "Raydium"}, {"raydium"}),
        ({"excludeDexes": "raydium"}, {"meteora"}),
        ({"dexes": "raydium,meteora", "excludeDexes": "Meteora DLMM"}, {"raydium"}),
    ],
)
async def test_the_venue_filters_are_honoured(
    client: httpx.AsyncClient, params: dict[str, str], venues: set[str]
) -> None:
    response = await _quote(client, amountIn="20000", **params)
    assert response.status_code == 200, response.text
    body = _body(response)
    used = {v for leg in body["routePlan"] for v in leg["venue"].split("+")}
    assert used == venues and set(body["quotes"]) == venues


async def test_only_direct_routes_takes_no_hop(client: httpx.AsyncClient) -> None:
    params = {"tokenIn": "BONK", "tokenOut": "USDC", "amountIn": "1000000000"}
    hops = _body(await client.get("/api/quote", params=params))
    assert any(len(leg["path"]) == 3 for leg in [*hops["routePlan"], hops["bestSingle"]])
    direct = await client.get("/api/quote", params={**params, "onlyDirectRoutes": "true"})
    if direct.status_code == 200:
        assert all(len(leg["path"]) == 2 for leg in _body(direct)["routePlan"])
    else:
        assert direct.status_code == 422 and direct.json()["error"] == "no_route"


@pytest.mark.parametrize(
    "params",
    [{"dexes": "orca"}, {"excludeDexes": "raydium,phoenix"},
     {"dexes": "meteora", "excludeDexes": "meteora"}],
)  # fmt: skip
async def test_an_unknown_venue_is_a_400(client: httpx.AsyncClient, params: dict[str, str]) -> None:
    response = await _quote(client, amountIn="1", **params)
    assert response.status_code == 400
    assert response.json()["error"] in ("unknown_venue", "no_venue")


@pytest.mark.parametrize(
    "fields",
    [
        {"dexes": ["orca"]},
        {"excludeDexes": ["raydium", "lifinity"]},
        {"dexes": ["raydium"], "excludeDexes": ["raydium"]},
    ],
)
async def test_an_order_naming_an_unknown_venue_is_a_400_and_stores_nothing(
    client: httpx.AsyncClient, fields: dict[str, Any]
) -> None:
    user = "venue-checker"
    response = await client.post("/api/orders/execute", json=order_body(userId=user, **fields))
    assert response.status_code == 400, response.text
    assert response.json()["error"] in ("unknown_venue", "no_venue")
    history = (await client.get("/api/orders", params={"userId": user})).json()
    assert history["orders"] == []


@pytest.mark.parametrize(
    "fields",
    [
        {"swapMode": "ExactOut"},  # no amountOut
        {"swapMode": "ExactOut", "amountIn": None, "amountOut": 0},
        {"swapMode": "ExactOut", "amountIn": None, "amountOut": "5"},
        {"swapMode": "ExactOut", "amountIn": None, "amountOut": Decimal("1.0000001")},
        {"swapMode": "ExactOut", "amountIn": None, "amountOut": 5, "maxAmountIn": -1},
        {"amountOut": 5},  # ExactIn takes amountIn only
        {"swapMode": "exactout"},
        {"onlyDirectRoutes": "yes"},
        {"dexes": "raydium"},  # a list in JSON
    ],
)
async def test_bad_routing_fields_are_refused(
    client: httpx.AsyncClient, fields: dict[str, Any]
) -> None:
    body = {**order_body(userId="mode-checker"), **fields}
    body = {k: v for k, v in body.items() if v is not None}
    response = await client.post(
        "/api/orders/execute",
        content=jsoncodec.dumps(body),
        headers={"content-type": "application/json"},
    )
    assert response.status_code in (400, 422), response.text
    assert "error" in response.json()


async def test_an_exact_out_order_delivers_the_amount_within_its_maximum(
    client: httpx.AsyncClient,
) -> None:
    body = order_body(amountIn=None, swapMode="ExactOut", amountOut=150, slippageBps=100)
    response = await client.post("/api/orders/execute", json=body)
    assert response.status_code == 202, response.text
    record = await wait_terminal(client, response.json()["orderId"])
    assert record["status"] == "confirmed", record
    assert record["swapMode"] == "ExactOut"
    routing = record["routing"]
    assert routing["amountOut"] == 150 and routing["maxAmountIn"] == record["amountIn"]
    assert record["amountOut"] >= 150
    assert record["minAmountOut"] == 150
    # amountIn is the most the order may spend: the quoted input plus slippage.
    planned = sum(leg["amountIn"] for leg in record["routePlan"])
    assert planned <= record["amountIn"] <= planned * Decimal("1.0101")
    quality = record["executionQuality"]
    assert quality["realisedAmountOut"] == record["amountOut"]


async def test_an_exact_out_order_above_its_maximum_fails_and_spends_nothing(
    client: httpx.AsyncClient,
) -> None:
    body = order_body(amountIn=None, swapMode="ExactOut", amountOut=150, maxAmountIn=0.5)
    response = await client.post("/api/orders/execute", json=body)
    assert response.status_code == 202, response.text
    record = await wait_terminal(client, response.json()["orderId"])
    assert record["status"] == "failed"
    assert record["failReason"] == "slippage_exceeded"
    assert record["txHash"] is None and record["amountOut"] is None


async def test_a_filled_order_reports_its_route_and_execution_quality(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/api/orders/execute", json=order_body(amountIn=3))
    order_id = response.json()["orderId"]
    record = await wait_terminal(client, order_id)
    assert record["status"] == "confirmed"
    assert record["routePlan"] and set(record["routePlan"][0]) >= LEG_FIELDS
    assert record["bestSingle"]["amountOut"] <= record["expectedAmountOut"]
    quality = record["executionQuality"]
    assert set(quality) == {
        "arrivalMid", "amountIn", "quotedAmountOut", "realisedAmountOut", "shortfallBps",
        "bestSingleAmountOut", "splitGainBps",
    }  # fmt: skip
    assert quality["quotedAmountOut"] == record["expectedAmountOut"]
    assert quality["realisedAmountOut"] == record["amountOut"]
    ideal = Decimal(str(quality["arrivalMid"])) * 3
    expected = ((ideal - Decimal(str(record["amountOut"]))) / ideal * 10_000).quantize(
        Decimal("0.01")
    )
    assert Decimal(str(quality["shortfallBps"])) == expected
    assert 0 < quality["shortfallBps"] < 100  # a fee and a little impact, not more
    events = _body(await client.get(f"/api/orders/{order_id}/events"))["events"]
    building = next(e for e in events if e["status"] == "building")
    assert building["routePlan"] == record["routePlan"]
    assert building["arrivalMid"] == quality["arrivalMid"]
    assert {"swapMode", "amountIn", "amountOut", "bestSingle", "splitGainBps"} <= set(building)


async def test_a_pending_order_has_no_execution_quality_yet(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/orders/execute",
        json=order_body(
            type="limit", limitPrice=10_000, ttlSeconds=60, dexes=["meteora"], onlyDirectRoutes=True
        ),
    )
    assert response.status_code == 202, response.text
    record = (await client.get(f"/api/orders/{response.json()['orderId']}")).json()
    assert record["executionQuality"] is None and record["routePlan"] is None
    assert record["routing"]["dexes"] == ["meteora"] and record["routing"]["onlyDirectRoutes"]
    await client.delete(f"/api/orders/{record['orderId']}")


async def test_the_cli_quotes_a_split_and_places_an_exact_out_order(server: Process) -> None:
    code, out = await run_cli("quote", "SOL", "USDC", "20000", "--json", url=server.url)
    assert code == 0, out
    assert len(jsoncodec.loads(out)["routePlan"]) >= 2
    code, out = await run_cli("quote", "SOL", "USDC", "20000", "--dexes", "meteora", url=server.url)
    assert code == 0 and "leg" in out and "raydium" not in out.split("quoteId")[1], out
    code, out = await run_cli("quote", "SOL", "USDC", "1", "--dexes", "orca", url=server.url)
    assert code != 0 and "unknown venue" in out, out
    code, out = await run_cli(
        "submit", "SOL", "USDC", "120", "--exact-out", "--watch", "--json", "--user", "cli-best",
        url=server.url,
    )  # fmt: skip
    assert code == 0, out
    order_id = jsoncodec.loads(out.splitlines()[0])["orderId"]
    code, out = await run_cli("show", order_id, "--user", "cli-best", url=server.url)
    assert code == 0 and "shortfallBps" in out and "leg 100%" in out, out
