"""Request validation and response shapes of the REST API.

Order bodies are decoded by us, not by FastAPI, so that amounts arrive as exact
decimals instead of floats; the pydantic model then checks every rule of the spec
and also documents the body in the OpenAPI schema.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Annotated, Any, Literal

import msgspec
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    model_validator,
)

from dexecutor import jsoncodec
from dexecutor.api.errors import ApiError
from dexecutor.domain.money import decimal_places, math_context, quantize_up
from dexecutor.domain.order import FILL_FIELDS, Order, OrderStatus
from dexecutor.engine.routing import RouteOptions, venue_list
from dexecutor.market.tokens import TOKENS, find_token

USER_ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,64}$"


def _number(value: Any) -> Any:
    """Amounts must be JSON numbers: not strings, not booleans, finite."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValueError("must be a number")
    if isinstance(value, Decimal) and not value.is_finite():
        raise ValueError("must be a finite number")
    return Decimal(value)


def _integer(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be an integer")
    return value


def _boolean(value: Any) -> Any:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _symbol(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("must be a token symbol")
    token = find_token(value)
    if token is None:
        raise ValueError(f"unknown token {value[:20]!r} (see GET /api/tokens)")
    return token.symbol


Amount = Annotated[Decimal, BeforeValidator(_number)]
# The schema lists the registry's symbols, so clients (and fuzzers) know the valid
# values; the validator still takes them in any case.
Symbol = Annotated[
    str,
    BeforeValidator(_symbol),
    Field(
        description="token symbol from GET /api/tokens, any case",
        json_schema_extra={"enum": [t.symbol for t in TOKENS]},
    ),
]
UserId = Annotated[str, StringConstraints(pattern=USER_ID_PATTERN)]


class OrderRequest(BaseModel):
    """The body of `POST /api/orders/execute`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "userId": "user1",
                    "type": "market",
                    "tokenIn": "SOL",
                    "tokenOut": "USDC",
                    "amountIn": 2,
                    "slippageBps": 50,
                }
            ]
        },
    )

    userId: UserId | None = Field(
        None,
        description="1-64 letters, digits, _ . : -. Required, unless an API key is sent: "
        "the key names the user, and a different userId is a 403 (`user_mismatch`)",
    )
    type: Literal["market", "limit", "sniper"] = "market"
    tokenIn: Symbol
    tokenOut: Symbol
    amountIn: Amount | None = Field(
        None,
        description="exact decimal > 0, at most the token's decimals; required unless "
        "swapMode is ExactOut",
    )
    swapMode: Literal["ExactIn", "ExactOut"] = Field(
        "ExactIn",
        description="ExactIn: spend amountIn. ExactOut: receive amountOut for the least "
        "input, at most maxAmountIn",
    )
    amountOut: Amount | None = Field(
        None, description="ExactOut: the output wanted (tokenOut), exact decimal > 0"
    )
    maxAmountIn: Amount | None = Field(
        None,
        description="ExactOut: the most to spend; by default the quoted input plus slippageBps",
    )
    dexes: list[str] | None = Field(
        None,
        description="route only on these venues (names or Jupiter labels: raydium, "
        "meteora, Raydium, Meteora DLMM); an unknown venue is a 400",
    )
    excludeDexes: list[str] | None = Field(None, description="never route on these venues")
    onlyDirectRoutes: Annotated[bool, BeforeValidator(_boolean)] = Field(
        False, description="no hops through SOL or USDC: direct pools only"
    )
    slippageBps: Annotated[int, BeforeValidator(_integer), Field(ge=0, le=5000)] = 50
    quoteId: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    limitPrice: Amount | None = None
    expiresAt: datetime | None = None
    ttlSeconds: Annotated[int, BeforeValidator(_integer), Field(ge=1, le=30 * 86400)] | None = None

    @model_validator(mode="after")
    def _rules(self) -> OrderRequest:
        if self.tokenIn == self.tokenOut:
            raise ValueError("tokenIn and tokenOut must be different tokens")
        if self.swapMode == "ExactIn":
            if self.amountIn is None:
                raise ValueError("amountIn is required (or swapMode ExactOut with amountOut)")
            if self.amountOut is not None or self.maxAmountIn is not None:
                raise ValueError("amountOut and maxAmountIn apply to swapMode ExactOut")
            _check_amount("amountIn", self.amountIn, self.tokenIn)
        else:
            if self.amountIn is not None:
                raise ValueError(
                    "an ExactOut order gives amountOut (and maxAmountIn), not amountIn"
                )
            if self.amountOut is None:
                raise ValueError("amountOut is required with swapMode ExactOut")
            _check_amount("amountOut", self.amountOut, self.tokenOut)
            if self.maxAmountIn is not None:
                _check_amount("maxAmountIn", self.maxAmountIn, self.tokenIn)
            if self.type != "market":
                raise ValueError("swapMode ExactOut applies to market orders")
            if self.quoteId is not None:
                raise ValueError("quoteId applies to ExactIn orders")
        if self.type == "market" and (
            self.limitPrice is not None or self.expiresAt is not None or self.ttlSeconds is not None
        ):
            raise ValueError(
                "limitPrice, expiresAt and ttlSeconds apply to limit and sniper orders"
            )
        if self.type == "limit":
            if self.limitPrice is None:
                raise ValueError("limitPrice is required for a limit order")
            if self.limitPrice <= 0 or decimal_places(self.limitPrice) > 18:
                raise ValueError("limitPrice must be > 0 with at most 18 decimal places")
        elif self.limitPrice is not None:
            raise ValueError("limitPrice applies to limit orders only")
        if self.type == "sniper":
            target = find_token(self.tokenOut)
            assert target is not None
            if target.launched:
                raise ValueError(
                    f"tokenOut {target.symbol} is already tradable; sniper orders target "
                    "unlaunched tokens (see GET /api/tokens)"
                )
        if self.expiresAt is not None and self.ttlSeconds is not None:
            raise ValueError("give expiresAt or ttlSeconds, not both")
        if self.expiresAt is not None:
            if self.expiresAt.tzinfo is None:
                raise ValueError("expiresAt must carry a timezone (e.g. 2026-11-21T10:00:00Z)")
            if self.expiresAt <= datetime.now(UTC):
                raise ValueError("expiresAt is in the past")
        return self

    # The routing options, checked (venue names resolved) by `validate_order`.
    _options: RouteOptions = PrivateAttr(default_factory=RouteOptions)

    @property
    def options(self) -> RouteOptions:
        return self._options

    @property
    def user(self) -> str:
        """The userId: always set once `validate_order` accepted the order."""
        assert self.userId is not None
        return self.userId

    def fingerprint(self) -> str:
        """A stable hash of the request, to tell a retried submission from a different one."""
        return hashlib.sha256(jsoncodec.dumps(self.model_dump(mode="python"))).hexdigest()


def _check_amount(name: str, amount: Decimal, symbol: str) -> None:
    token = find_token(symbol)
    assert token is not None
    if amount <= 0:
        raise ValueError(f"{name} must be greater than 0")
    if decimal_places(amount) > token.decimals:
        raise ValueError(
            f"{name} has more than {token.decimals} decimal places, the precision of {token.symbol}"
        )


def route_options(
    swap_mode: str = "ExactIn",
    amount_out: Decimal | None = None,
    max_amount_in: Decimal | None = None,
    dexes: str | list[str] | None = None,
    exclude_dexes: str | list[str] | None = None,
    only_direct_routes: bool = False,
) -> RouteOptions:
    """The routing options of a quote or an order; ApiError 400 for an unknown venue or
    filters that leave no venue at all."""
    try:
        allowed = venue_list(dexes, "dexes")
        excluded = venue_list(exclude_dexes, "excludeDexes") or ()
    except ValueError as err:
        raise ApiError(400, "unknown_venue", str(err)) from None
    options = RouteOptions(
        swap_mode="ExactOut" if swap_mode == "ExactOut" else "ExactIn",
        amount_out=amount_out,
        max_amount_in=max_amount_in,
        dexes=allowed,
        exclude_dexes=excluded,
        only_direct_routes=only_direct_routes,
    )
    if not options.venues():
        raise ApiError(400, "no_venue", "dexes and excludeDexes leave no venue to route on")
    return options


def parse_order_request(
    body: bytes, max_amount: Decimal, key_user: str | None = None
) -> OrderRequest:
    """Decode and validate an order body; raise ApiError (4xx) on anything wrong.

    `key_user` is the user of the caller's API key, if any: it fills in a missing
    userId, and any other userId is refused.
    """
    if not body.strip():
        raise ApiError(400, "invalid_json", "the request body is empty; send an order as JSON")
    try:
        data = jsoncodec.loads(body)
    except (msgspec.DecodeError, RecursionError) as err:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {err}") from None
    return validate_order(data, max_amount, key_user)


def validate_order(data: Any, max_amount: Decimal, key_user: str | None = None) -> OrderRequest:
    if not isinstance(data, dict):
        raise ApiError(422, "validation_error", "the order must be a JSON object")
    if key_user is not None:
        data.setdefault("userId", key_user)
    try:
        order = OrderRequest.model_validate(data)
    except ValidationError as err:
        details = [
            {
                "field": ".".join(str(p) for p in e["loc"]) or "body",
                "message": e["msg"].removeprefix("Value error, "),
            }
            for e in err.errors(include_url=False, include_input=False)
        ]
        first = details[0]
        prefix = f"{first['field']}: " if first["field"] != "body" else ""
        raise ApiError(422, "validation_error", prefix + first["message"], details) from None
    if key_user is not None and order.userId != key_user:
        raise ApiError(
            403,
            "user_mismatch",
            "userId is not the user of the API key; leave it out or send the key's own",
        )
    if order.userId is None:
        raise ApiError(
            422,
            "validation_error",
            "userId: required (or send an API key, which names the user)",
            [{"field": "userId", "message": "required without an API key"}],
        )
    for name, amount in (("amountIn", order.amountIn), ("maxAmountIn", order.maxAmountIn)):
        if amount is not None and amount > max_amount:
            raise ApiError(
                422,
                "validation_error",
                f"{name}: exceeds the maximum order size of {max_amount}",
                [{"field": name, "message": f"at most {max_amount}"}],
            )
    order._options = route_options(
        order.swapMode,
        order.amountOut,
        order.maxAmountIn,
        order.dexes,
        order.excludeDexes,
        order.onlyDirectRoutes,
    )
    return order


def iso(at: datetime | None) -> str | None:
    return jsoncodec.iso(at) if at is not None else None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_ms(at: datetime) -> int:
    """Milliseconds since the Unix epoch, as CCXT's `timestamp` (integer arithmetic)."""
    return (at - _EPOCH) // timedelta(milliseconds=1)


def ccxt_fields(order: Order) -> dict[str, Any]:
    """CCXT's unified order fields, for a spot order selling tokenIn (the base) for
    tokenOut (the quote); the mapping is written down in the README.

    A swap fills all at once or not at all, so `filled` is amountIn once confirmed and
    0 before or without a fill; `cost` is what was received (amountOut, in tokenOut)
    and `average` the executed price. `fee` is the venue fee the chosen route quoted,
    as a share of amountIn, charged in tokenIn.
    """
    filled = order.status is OrderStatus.CONFIRMED
    zero = Decimal(0)
    return {
        "timestamp": epoch_ms(order.created_at),
        "lastTradeTimestamp": epoch_ms(order.updated_at) if filled else None,
        "filled": order.amount_in if filled else zero,
        "remaining": zero if filled else order.amount_in,
        "average": order.executed_price if filled else None,
        "cost": order.amount_out if filled and order.amount_out is not None else zero,
        "fee": _venue_fee(order) if filled else None,
    }


def _venue_fee(order: Order) -> dict[str, Any] | None:
    chosen = (order.quotes or {}).get(order.dex_used or "")
    rate = chosen.get("fee") if isinstance(chosen, dict) else None
    token = find_token(order.token_in)
    if not isinstance(rate, Decimal | int) or token is None:
        return None
    cost = quantize_up(order.amount_in * Decimal(rate), token.decimals)
    return {"cost": cost, "currency": order.token_in, "rate": Decimal(rate)}


def fill_view(order: Order) -> dict[str, Any]:
    """Where the swap landed and what it cost; null until it landed (a swap that
    reverted shows its slot and the network fee it still paid)."""
    fill = order.fill or {}
    return {name: fill.get(name) for name in FILL_FIELDS}


def execution_quality(order: Order) -> dict[str, Any] | None:
    """How well a filled order was executed (SPEC §10), None before a fill.

    Against the arrival mid (the best venue's spot price when the order was first
    routed, before fees and impact): `shortfallBps` is what the fill gave up against
    amountIn × arrivalMid, in bps of it (positive: a cost). `splitGainBps` is what the
    route's quote gave over the best single venue for the same input.
    """
    route = order.route or {}
    if order.status is not OrderStatus.CONFIRMED or order.amount_out is None:
        return None
    mid = route.get("arrivalMid")
    # The input the swap spent, read from the chain (an exact-out swap spends at most
    # its maximum); the route's planned input for fills recorded without it.
    amount_in = (order.fill or {}).get("amountIn", route.get("amountIn", order.amount_in))
    single = route.get("bestSingle") or {}
    shortfall = None
    if mid is not None and Decimal(mid) > 0:
        with localcontext(math_context()):
            ideal = Decimal(amount_in) * Decimal(mid)
            shortfall = ((ideal - order.amount_out) / ideal * 10_000).quantize(Decimal("0.01"))
    return {
        "arrivalMid": mid,
        "amountIn": amount_in,
        "quotedAmountOut": order.expected_amount_out,
        "realisedAmountOut": order.amount_out,
        "shortfallBps": shortfall,
        "bestSingleAmountOut": single.get("amountOut"),
        "splitGainBps": route.get("splitGainBps"),
    }


def order_view(order: Order) -> dict[str, Any]:
    """The full order record of `GET /api/orders/{id}`."""
    route = None
    if order.quotes and order.dex_used and isinstance(order.quotes.get(order.dex_used), dict):
        route = order.quotes[order.dex_used].get("route")
    plan = order.route or {}
    routing = dict(order.routing) if order.routing else RouteOptions().as_fields()
    return {
        "orderId": str(order.id),
        "userId": order.user_id,
        "type": order.type.value,
        "tokenIn": order.token_in,
        "tokenOut": order.token_out,
        "amountIn": order.amount_in,
        "slippageBps": order.slippage_bps,
        "status": order.status.value,
        "dexUsed": order.dex_used,
        "route": route,
        "executedPrice": order.executed_price,
        "amountOut": order.amount_out,
        "expectedAmountOut": order.expected_amount_out,
        "minAmountOut": order.min_amount_out,
        "txHash": order.tx_hash,
        **fill_view(order),
        "failReason": order.fail_reason,
        "attempts": order.attempts,
        "quotes": order.quotes,
        "quoteId": order.quote_id,
        "limitPrice": order.limit_price,
        "expiresAt": iso(order.expires_at),
        "createdAt": iso(order.created_at),
        "updatedAt": iso(order.updated_at),
        "clientOrderId": order.client_order_id,
        "swapMode": routing["swapMode"],
        "routing": routing,
        "routePlan": plan.get("routePlan"),
        "bestSingle": plan.get("bestSingle"),
        "splitGainBps": plan.get("splitGainBps"),
        "executionQuality": execution_quality(order),
        **ccxt_fields(order),
    }


def now() -> datetime:
    return datetime.now(UTC)
