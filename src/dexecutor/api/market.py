"""Routes about the market rather than one order: tokens, quotes, the state machine,
and the mock controls that let a user script venue faults.

The market lives on the chain service: these routes read it and forward the mock
controls to it, so every API process shows and changes the same market. A chain that
does not answer is a 503 `chain_unavailable`.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.responses import Response

from dexecutor.api import examples as ex
from dexecutor.api import views
from dexecutor.api.deps import PrincipalDep, ServicesDep, limit_address
from dexecutor.api.errors import ApiError
from dexecutor.api.responses import JSONResponse
from dexecutor.api.schemas import route_options, validate_order
from dexecutor.chain.client import ChainUnreachable
from dexecutor.domain.failures import FailureReason
from dexecutor.domain.money import less_bps, more_bps, price_of, quantize_down, quantize_up
from dexecutor.domain.order import transition_table, type_refusals
from dexecutor.market.tokens import TOKENS, find_token
from dexecutor.market.types import VENUES, MarketError
from dexecutor.runtime import Services

_DECIMAL = r"^[0-9]+(\.[0-9]+)?$"
# The usual spellings of the venues, for the schema only: the route checks the names
# itself, so that another one is the 400 `unknown_venue` rather than a 422.
_VENUE = "(raydium|meteora|Raydium|Meteora DLMM)"
_VENUES: dict[str, Any] = {"pattern": f"^{_VENUE}(,{_VENUE})*$"}

router = APIRouter(tags=["market"], dependencies=[Depends(limit_address)])


@router.get(
    "/api/tokens",
    summary="The token registry",
    response_model=list[views.TokenView],
    responses=ex.ok(ex.TOKENS),
)
async def tokens(svc: ServicesDep) -> Response:
    """`launched` is live: a sniper target turns true once its pool opens."""
    async with _chain_call():
        snap = await svc.chain.snapshot([], [], [t.symbol for t in TOKENS])
    return JSONResponse(
        [
            {
                "symbol": t.symbol,
                "mint": t.mint,
                "decimals": t.decimals,
                "launched": snap.tradable[t.symbol],
                "name": t.name,
            }
            for t in TOKENS
        ]
    )


@router.get(
    "/api/state-machine",
    summary="Order statuses and their allowed transitions",
    response_model=views.StateMachineView,
    responses=ex.ok(ex.STATE_MACHINE),
)
async def state_machine() -> Response:
    table = transition_table()
    return JSONResponse(
        {
            "initial": "pending",
            "terminal": sorted(s for s, nxt in table.items() if not nxt),
            "transitions": table,
            "refusedByType": type_refusals(),
        }
    )


@router.get(
    "/api/market/prices",
    summary="Each venue's mid price of a pair now, and the reference",
    response_model=views.PricesView,
    responses=ex.ok(ex.PRICES),
)
async def prices(
    svc: ServicesDep,
    _who: PrincipalDep,
    token_in: Annotated[str, Query(alias="tokenIn", max_length=20)] = "SOL",
    token_out: Annotated[str, Query(alias="tokenOut", max_length=20)] = "USDC",
) -> Response:
    """Spot prices without fee or impact, for charts: the chain's, the same from any
    API process."""
    a, b = _registry_symbol(token_in), _registry_symbol(token_out)
    if a == b:
        raise ApiError(422, "validation_error", "tokenIn and tokenOut must be different tokens")
    async with _chain_call():
        snap = await svc.chain.snapshot([(a, b)], [], [], reference=True)
    mids = snap.mids[(a, b)]
    venues: dict[str, Any] = {
        venue: _display(mids[venue]) if mids.get(venue) is not None else None for venue in VENUES
    }
    reference = snap.reference[(a, b)]
    return JSONResponse(
        {"tokenIn": a, "tokenOut": b, "at": datetime.now(UTC), "venues": venues,
         "reference": reference.quantize(Decimal("1e-12")), "slot": snap.slot}
    )  # fmt: skip


def _symbol_query(alias: str, example: str) -> Any:
    """A token symbol parameter, documented like the order body's (schemas.Symbol)."""
    return Query(
        alias=alias,
        max_length=20,
        description="token symbol from GET /api/tokens, any case",
        json_schema_extra={"enum": [t.symbol for t in TOKENS]},
        examples=[example],
    )


@router.get(
    "/api/quote",
    summary="Every venue's quote and the route an order would take",
    response_model=views.QuoteView,
    responses=ex.ok(ex.QUOTE),
)
async def quote(
    svc: ServicesDep,
    _who: PrincipalDep,
    token_in: Annotated[str, _symbol_query("tokenIn", "SOL")],
    token_out: Annotated[str, _symbol_query("tokenOut", "USDC")],
    amount_in: Annotated[
        str | None,
        Query(
            alias="amountIn",
            max_length=64,
            pattern=_DECIMAL,
            description="exact decimal > 0, at most the token's decimals (ExactIn)",
            examples=["2"],
        ),
    ] = None,
    slippage_bps: Annotated[int, Query(alias="slippageBps", ge=0, le=5000)] = 50,
    swap_mode: Annotated[
        Literal["ExactIn", "ExactOut"],
        Query(alias="swapMode", description="ExactOut: give amountOut instead of amountIn"),
    ] = "ExactIn",
    amount_out: Annotated[
        str | None,
        Query(
            alias="amountOut",
            max_length=64,
            pattern=_DECIMAL,
            description="ExactOut: the output wanted",
        ),
    ] = None,
    max_amount_in: Annotated[
        str | None,
        Query(
            alias="maxAmountIn",
            max_length=64,
            pattern=_DECIMAL,
            description="ExactOut: the most to spend (default: the quoted input plus slippage)",
        ),
    ] = None,
    dexes: Annotated[
        str | None,
        Query(
            max_length=200,
            description="only these venues, comma-separated (names or Jupiter labels, any "
            "case); an unknown one is a 400",
            examples=["meteora"],
            json_schema_extra=_VENUES,
        ),
    ] = None,
    exclude_dexes: Annotated[
        str | None,
        Query(
            alias="excludeDexes",
            max_length=200,
            description="never these venues, comma-separated",
            json_schema_extra=_VENUES,
        ),
    ] = None,
    only_direct_routes: Annotated[
        bool, Query(alias="onlyDirectRoutes", description="no hops through SOL or USDC")
    ] = False,
) -> Response:
    body: dict[str, Any] = {
        "userId": "quote",
        "tokenIn": token_in,
        "tokenOut": token_out,
        "swapMode": swap_mode,
        "onlyDirectRoutes": only_direct_routes,
    }
    for name, raw in (
        ("amountIn", amount_in),
        ("amountOut", amount_out),
        ("maxAmountIn", max_amount_in),
    ):
        if raw is not None:
            try:
                body[name] = Decimal(raw)
            except InvalidOperation:
                raise ApiError(422, "validation_error", f"{name}: must be a number") from None
    options = route_options(
        swap_mode, None, None, dexes, exclude_dexes, only_direct_routes
    )  # a 400 for an unknown venue, before the body's other rules
    req = validate_order(
        {**body, "dexes": options.dexes, "excludeDexes": list(options.exclude_dexes)},
        svc.settings.max_amount_in,
    )
    options = req.options
    exact_out = options.swap_mode == "ExactOut"
    wanted = req.amountOut if exact_out else req.amountIn
    assert wanted is not None
    try:
        routed = await svc.chain.route(req.tokenIn, req.tokenOut, wanted, options)
    except MarketError as refusal:
        transient = refusal.reason in (FailureReason.VENUE_UNAVAILABLE, FailureReason.VENUE_TIMEOUT)
        raise ApiError(503 if transient else 422, refusal.reason, refusal.message) from None
    t_in, t_out = find_token(req.tokenIn), find_token(req.tokenOut)
    assert t_in is not None and t_out is not None
    plan = routed.plan
    if exact_out:
        assert req.amountOut is not None
        min_out = req.amountOut
        max_in = req.maxAmountIn or quantize_up(
            more_bps(routed.amount_in, slippage_bps), t_in.decimals
        )
        if routed.amount_in > max_in:
            raise ApiError(
                422,
                FailureReason.SLIPPAGE_EXCEEDED,
                f"{min_out} {req.tokenOut} takes {routed.amount_in} {req.tokenIn}, "
                f"above maxAmountIn {max_in}",
            )
    else:
        min_out = quantize_down(less_bps(routed.amount_out, slippage_bps), t_out.decimals)
        max_in = None
    quote_id = "q_" + secrets.token_urlsafe(12)
    expires_at = datetime.now(UTC) + timedelta(milliseconds=svc.settings.quote_ttl_ms)
    if not exact_out:  # an order may carry it (same pair and amountIn) to be held to it
        await svc.quotes.put(
            quote_id,
            {
                "tokenIn": req.tokenIn,
                "tokenOut": req.tokenOut,
                "amountIn": req.amountIn,
                "minAmountOut": min_out,
                "expiresAt": expires_at,
                "dex": routed.dex,
            },
            svc.settings.quote_ttl_ms,
        )
    legs = plan["routePlan"]
    top = max(legs, key=lambda leg: leg["percent"])
    return JSONResponse(
        {
            "quoteId": quote_id,
            "tokenIn": req.tokenIn,
            "tokenOut": req.tokenOut,
            "swapMode": options.swap_mode,
            "amountIn": routed.amount_in,
            "amountOut": routed.amount_out,
            **({"maxAmountIn": max_in} if max_in is not None else {}),
            "slippageBps": slippage_bps,
            "quotes": routed.quotes,
            "route": {
                "dex": routed.dex,
                "path": top["path"],
                "amountOut": routed.amount_out,
                "price": price_of(routed.amount_out, routed.amount_in),
                "fee": top["fee"],
                "priceImpact": top["priceImpact"],
            },
            "routePlan": legs,
            "bestSingle": plan.get("bestSingle"),
            "splitGainBps": plan.get("splitGainBps"),
            "expectedAmountOut": routed.amount_out,
            "minAmountOut": min_out,
            "expiresAt": expires_at,
        }
    )


class FaultRequest(BaseModel):
    """Script a venue fault: for the next `count` calls, or for `durationMs`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"venue": "raydium", "kind": "drop", "count": 2}]},
    )

    venue: Literal["raydium", "meteora", "all"]
    kind: Literal["error", "timeout", "drop", "expire", "late", "price"] = Field(
        description="error: quote answers 503 (venue_unavailable); timeout: quote hangs "
        "(venue_timeout); drop: every broadcast of the transaction is lost, so it never "
        "lands and its blockhash expires (blockhash_expired); expire: the same as drop; "
        "late: the transaction lands only `slots` slots (default 20) after it was sent, "
        "however often it is rebroadcast; price: the venue's price of tokenIn moves by "
        "bps before the fill"
    )
    count: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    durationMs: Annotated[int, Field(ge=1, le=86_400_000)] | None = None
    bps: Annotated[int, Field(ge=-9000, le=100_000)] = 0
    slots: Annotated[int, Field(ge=1, le=10_000)] | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> FaultRequest:
        if (self.count is None) == (self.durationMs is None):
            raise ValueError("give exactly one of count or durationMs")
        if self.kind == "price" and self.bps == 0:
            raise ValueError("a price fault needs a non-zero bps")
        return self


class LaunchRequest(BaseModel):
    """Open a pool for an unlaunched token (paired with SOL) on one venue."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"token": "NOVA", "venue": "raydium"}]}
    )

    token: Annotated[str, Field(max_length=20)]
    venue: Literal["raydium", "meteora"] = "raydium"


class PriceMoveRequest(BaseModel):
    """Move a venue's price of a token now (positive bps: the token gets dearer)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"venue": "all", "token": "SOL", "bps": 300}]},
    )

    venue: Literal["raydium", "meteora", "all"]
    token: Annotated[str, Field(max_length=20)]
    bps: Annotated[int, Field(ge=-9000, le=100_000)]


def _display(price: Decimal | None) -> Decimal | None:
    return price.quantize(Decimal("1e-12")) if price is not None else None


@asynccontextmanager
async def _chain_call() -> AsyncIterator[None]:
    """A chain that does not answer is the server's trouble, not the client's: 503."""
    try:
        yield
    except ChainUnreachable as err:
        raise ApiError(
            503, "chain_unavailable", f"the chain service did not answer: {err}"
        ) from None


def _registry_symbol(text: str) -> str:
    token = find_token(text)
    if token is None:
        raise ApiError(422, "validation_error", f"token: unknown token {text[:20]!r}")
    return token.symbol


def _controls(svc: Services) -> None:
    if not svc.settings.controls_enabled:
        raise ApiError(403, "mock_controls_disabled", "mock controls are off in this deployment")


@router.post(
    "/api/mock/faults",
    status_code=201,
    summary="Script a venue fault",
    response_model=views.FaultsView,
    responses=ex.ok(ex.FAULTS, 201),
)
async def arm_fault(body: FaultRequest, svc: ServicesDep, _who: PrincipalDep) -> Response:
    _controls(svc)
    async with _chain_call():
        armed = await svc.chain.arm_fault(body.model_dump())
    return JSONResponse({"armed": armed}, status_code=201)


@router.post(
    "/api/mock/launch",
    summary="Launch a token's pool on a venue",
    response_model=views.LaunchView,
    responses=ex.ok(ex.LAUNCH),
)
async def launch(body: LaunchRequest, svc: ServicesDep, _who: PrincipalDep) -> Response:
    _controls(svc)
    symbol = _registry_symbol(body.token)
    if symbol == "SOL":
        raise ApiError(422, "validation_error", "token: SOL is the quote side of every launch")
    async with _chain_call():
        already = await svc.control.launch(symbol, body.venue)
    return JSONResponse(
        {"token": symbol, "venue": body.venue, "launched": True, "alreadyOpen": already}
    )


@router.post(
    "/api/mock/price",
    summary="Move a venue's price of a token now",
    response_model=views.PriceMoveView,
    responses=ex.ok(ex.PRICE_MOVE),
)
async def move_price(body: PriceMoveRequest, svc: ServicesDep, _who: PrincipalDep) -> Response:
    _controls(svc)
    symbol = _registry_symbol(body.token)
    venues = VENUES if body.venue == "all" else (body.venue,)
    async with _chain_call():
        for venue in venues:
            await svc.control.jump(venue, symbol, body.bps)
    return JSONResponse({"token": symbol, "venues": list(venues), "bps": body.bps})


@router.get(
    "/api/mock/faults",
    summary="Faults armed now",
    response_model=views.FaultsView,
    responses=ex.ok(ex.FAULTS),
)
async def list_faults(svc: ServicesDep, _who: PrincipalDep) -> Response:
    _controls(svc)
    async with _chain_call():
        armed = await svc.chain.faults()
    return JSONResponse({"armed": armed})


@router.delete(
    "/api/mock/faults",
    summary="Clear every scripted fault",
    response_model=views.FaultsView,
    responses=ex.ok({"armed": []}),
)
async def clear_faults(svc: ServicesDep, _who: PrincipalDep) -> Response:
    _controls(svc)
    async with _chain_call():
        await svc.chain.clear_faults()
    return JSONResponse({"armed": []})
