"""The chain's quote routes like an aggregator: split across venues and paths, exact-out,
venue choice; and a route runs as one transaction, all legs or none (SPEC §10)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from dexecutor.chain import protocol as p
from dexecutor.chain.client import ChainClient
from dexecutor.chain.execution import run_swap
from dexecutor.chain.transaction import SwapTx
from dexecutor.engine.routing import RouteOptions, legs_of
from dexecutor.market.types import MarketError
from tests.integration.conftest import Chain

SOL = p.mint_of("SOL")
USDC = p.mint_of("USDC")
# 20,000 SOL against SOL/USDC pools of a few million USD: far above 1 % of their depth.
LARGE = str(20_000 * 10**9)
SMALL = str(10**8)  # 0.1 SOL


async def _quote(client: httpx.AsyncClient, **params: str) -> httpx.Response:
    base = {"inputMint": SOL, "outputMint": USDC, "slippageBps": "50"}
    return await client.get("/quote", params={**base, **params})


async def test_a_large_order_splits_and_gives_at_least_the_best_single_venue(
    chain: Chain,
) -> None:
    async with httpx.AsyncClient(base_url=chain.url) as client:
        body = (await _quote(client, amount=LARGE)).json()
    plan = body["plan"]
    legs = plan["routePlan"]
    assert len(legs) >= 2
    assert sum(leg["percent"] for leg in legs) == 100
    assert sum(Decimal(str(leg["amountIn"])) for leg in legs) == Decimal(20_000)
    assert Decimal(str(plan["amountOut"])) >= Decimal(str(plan["bestSingle"]["amountOut"]))
    assert int(body["outAmount"]) == p.to_base_units(Decimal(str(plan["amountOut"])), _t("USDC"))
    assert {"venue", "path", "percent", "amountIn", "amountOut", "fee", "priceImpact"} <= set(
        legs[0]
    )
    # Jupiter's shape: one routePlan entry per hop, the leg's percent on its first hop.
    assert sum(e["percent"] for e in body["routePlan"] if e["percent"] != 100) <= 100
    assert set(body["venueQuotes"]) == {"raydium", "meteora"}


async def test_a_small_order_is_one_leg(chain: Chain) -> None:
    async with httpx.AsyncClient(base_url=chain.url) as client:
        body = (await _quote(client, amount=SMALL)).json()
    assert len(body["plan"]["routePlan"]) == 1
    assert body["plan"]["routePlan"][0]["percent"] == 100


async def test_exact_out_delivers_the_amount_within_the_threshold(chain: Chain) -> None:
    wanted = 1_000 * 10**6  # 1,000 USDC
    async with httpx.AsyncClient(base_url=chain.url) as client:
        body = (await _quote(client, amount=str(wanted), swapMode="ExactOut")).json()
    assert body["swapMode"] == "ExactOut"
    assert int(body["outAmount"]) >= wanted
    assert int(body["otherAmountThreshold"]) == -(-int(body["inAmount"]) * 10_050 // 10_000)


@pytest.mark.parametrize(
    ("params", "allowed"),
    [
        ({"dexes": "meteora"}, {"meteora"}),
        ({"dexes": "Raydium"}, {"raydium"}),
        ({"excludeDexes": "Meteora DLMM"}, {"raydium"}),
    ],
)
async def test_the_venue_filters_are_honoured(
    chain: Chain, params: dict[str, str], allowed: set[str]
) -> None:
    async with httpx.AsyncClient(base_url=chain.url) as client:
        body = (await _quote(client, amount=LARGE, **params)).json()
    venues = {v for leg in body["plan"]["routePlan"] for v in leg["venue"].split("+")}
    assert venues == allowed
    assert set(body["venueQuotes"]) == allowed


async def test_only_direct_routes_has_no_hops(chain: Chain) -> None:
    params = {"inputMint": p.mint_of("BONK"), "outputMint": p.mint_of("USDT"), "amount": "10000000"}
    async with httpx.AsyncClient(base_url=chain.url) as client:
        hops = (await client.get("/quote", params=params)).json()
        direct = await client.get("/quote", params={**params, "onlyDirectRoutes": "true"})
    assert any(len(leg["path"]) == 3 for leg in hops["plan"]["routePlan"])
    if direct.status_code == 200:
        assert all(len(leg["path"]) == 2 for leg in direct.json()["plan"]["routePlan"])
    else:
        assert direct.json()["reason"] == "no_route"


@pytest.mark.parametrize(
    "params",
    [{"dexes": "orca"}, {"excludeDexes": "raydium,phoenix"}, {"swapMode": "ExactOutish"},
     {"onlyDirectRoutes": "maybe"}],
)  # fmt: skip
async def test_bad_routing_options_are_a_400(chain: Chain, params: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=chain.url) as client:
        answer = await _quote(client, amount=SMALL, **params)
    assert answer.status_code == 400
    assert answer.json()["errorCode"] == "INVALID_REQUEST"


async def test_the_engine_reads_a_route_in_one_request(chain: Chain) -> None:
    client = ChainClient(chain.url)
    try:
        routed = await client.route("SOL", "USDC", Decimal(20_000), RouteOptions())
        assert len(routed.plan["routePlan"]) >= 2 and routed.mid is not None
        assert set(routed.quotes) == {"raydium", "meteora"}
        narrowed = await client.route(
            "SOL", "USDC", Decimal(20_000), RouteOptions(exclude_dexes=("raydium",))
        )
        assert set(narrowed.quotes) == {"meteora"}
    finally:
        await client.close()


def _route_tx(plan: dict[str, Any], minimum: Decimal) -> SwapTx:
    legs = legs_of(plan["routePlan"])
    return SwapTx(
        owner="11111111111111111111111111111111",
        token_in="SOL",
        token_out="USDC",
        amount_in=sum((leg.amount_in for leg in legs), Decimal(0)),
        min_amount_out=minimum,
        legs=legs,
        order_id=__import__("uuid").uuid4(),
        attempt=1,
        recent_blockhash="11111111111111111111111111111111",
    )


async def test_a_split_route_that_misses_its_minimum_fills_no_leg_on_the_chain(
    chain: Chain,
) -> None:
    async with httpx.AsyncClient(base_url=chain.url) as client:
        plan = (await _quote(client, amount=LARGE)).json()["plan"]
    market = chain.cluster.market
    at = chain.cluster.now()
    spots = [pool.spot(pool.base) for _, pool in market.venue_pools()]
    too_much = Decimal(str(plan["amountOut"])) * 2
    with pytest.raises(MarketError) as refused:
        run_swap(market, _route_tx(plan, too_much), at)
    assert refused.value.reason == "slippage_exceeded"
    assert [pool.spot(pool.base) for _, pool in market.venue_pools()] == spots
    swapped = run_swap(market, _route_tx(plan, Decimal(0)), at)
    assert swapped.amount_in == Decimal(20_000) and len(swapped.legs) >= 2
    moved = [pool.spot(pool.base) for _, pool in market.venue_pools()]
    assert sum(a != b for a, b in zip(spots, moved, strict=True)) >= 2


def _t(symbol: str) -> Any:
    from dexecutor.market.tokens import find_token

    return find_token(symbol)
