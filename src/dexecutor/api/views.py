"""Response shapes, for the OpenAPI document and for checking answers against it.

Documentation models: routes build their JSON directly (with exact decimals), and
these describe it, so `/docs` shows real schemas and the fuzz test can verify that
every answer matches. Amounts are JSON numbers carrying exact decimals.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

Num = Annotated[Decimal, WithJsonSchema({"type": "number"})]


class View(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorView(View):
    error: str
    message: str
    details: Any = None


class AcceptedView(View):
    orderId: str
    status: str
    websocketUrl: str | None = None


class VenueQuoteView(View):
    price: Num | None = None
    amountOut: Num | None = None
    fee: Num | None = None
    priceImpact: Num | None = None
    route: list[str] | None = None
    error: str | None = None
    message: str | None = None


class FeeView(View):
    cost: Num
    currency: str
    rate: Num


class VenueFeeView(View):
    amount: Num
    token: str


class NetworkFeeDetailView(View):
    base: Num = Field(description="5,000 lamports a signature, in SOL")
    priority: Num = Field(description="compute-unit limit x price, in SOL")
    rent: Num = Field(description="deposit of an output token account the swap opened, in SOL")


class RouteLegView(View):
    """One leg of a route (SPEC §10): a share of the input through one path."""

    venue: str = Field(description='the venue, or the hops\' venues joined by "+"')
    path: list[str] = Field(description="tokens as traded (native SOL as wSOL)")
    percent: int = Field(description="share of the input, whole percents summing to 100")
    amountIn: Num
    amountOut: Num
    fee: Num = Field(description="the hops' combined fee rate")
    priceImpact: Num


class RoutingView(View):
    """How the order asked to be routed."""

    swapMode: str = Field(description="ExactIn (spend amountIn) or ExactOut")
    amountOut: Num | None = Field(description="ExactOut: the output wanted")
    maxAmountIn: Num | None = Field(description="ExactOut: the most it may spend")
    dexes: list[str] | None = Field(description="only these venues (null: every venue)")
    excludeDexes: list[str]
    onlyDirectRoutes: bool


class ExecutionQualityView(View):
    """How well a filled order was executed; see the README's order section."""

    arrivalMid: Num | None = Field(description="best venue spot price when first routed")
    amountIn: Num = Field(description="what the fill spent (exact-out: at most maxAmountIn)")
    quotedAmountOut: Num | None = Field(description="what the route quoted (expectedAmountOut)")
    realisedAmountOut: Num = Field(description="what the fill gave (amountOut)")
    shortfallBps: Num | None = Field(
        description="(amountIn x arrivalMid - realised) / (amountIn x arrivalMid), in bps"
    )
    bestSingleAmountOut: Num | None = Field(description="the best single venue's quote")
    splitGainBps: Num | None = Field(description="the route's quote over the best single")


class OrderView(View):
    orderId: str
    userId: str
    type: str
    tokenIn: str
    tokenOut: str
    amountIn: Num
    slippageBps: int
    status: str
    dexUsed: str | None
    route: list[str] | None
    executedPrice: Num | None
    amountOut: Num | None
    expectedAmountOut: Num | None
    minAmountOut: Num | None
    txHash: str | None
    slot: int | None = Field(description="the slot the swap landed in")
    commitment: str | None = Field(description="the confirmation level it was reported at")
    finalizedAtSlot: int | None = Field(
        description="the slot by which it is finalized (32 slots after landing)"
    )
    venueFee: VenueFeeView | None
    networkFee: Num | None = Field(description="SOL the wallet paid: base + priority + rent")
    networkFeeDetail: NetworkFeeDetailView | None
    priceImpact: Num | None
    effectivePrice: Num | None = Field(description="tokenOut per tokenIn after all fees")
    failReason: str | None
    attempts: int
    quotes: dict[str, VenueQuoteView] | None
    quoteId: str | None
    limitPrice: Num | None
    expiresAt: str | None
    createdAt: str
    updatedAt: str
    clientOrderId: str | None = Field(
        description="the Idempotency-Key the order was placed with, if any"
    )
    timestamp: int = Field(description="createdAt in milliseconds since the epoch (CCXT)")
    lastTradeTimestamp: int | None = Field(description="when it filled, in ms; null unfilled")
    filled: Num = Field(description="tokenIn sold: amountIn once confirmed, else 0")
    remaining: Num = Field(description="amountIn - filled")
    average: Num | None = Field(description="executed price, tokenOut per tokenIn")
    cost: Num = Field(description="tokenOut received (amountOut), 0 unfilled")
    fee: FeeView | None = Field(description="the venue fee of the fill, in tokenIn")
    swapMode: str
    routing: RoutingView
    routePlan: list[RouteLegView] | None = Field(description="the latest attempt's legs")
    bestSingle: RouteLegView | None = Field(description="the best one-leg route beside it")
    splitGainBps: Num | None = Field(description="the route's quoted gain over bestSingle")
    executionQuality: ExecutionQualityView | None = Field(description="null until filled")


class StatusView(View):
    orderId: str
    status: str
    attempt: int
    updatedAt: str


class EventView(BaseModel):
    """The envelope; each status adds its own fields (docs/websocket.md)."""

    model_config = ConfigDict(extra="allow")
    orderId: str
    seq: int
    status: str
    attempt: int
    at: str
    clientOrderId: str | None = Field(
        None, description="the order's Idempotency-Key, on GET …/events (not on the streams)"
    )


class EventsView(View):
    orderId: str
    events: list[EventView]


class HistoryView(View):
    orders: list[OrderView]
    nextBefore: str | None


class TokenView(View):
    symbol: str
    mint: str
    decimals: int
    launched: bool
    name: str


class StateMachineView(View):
    initial: str
    terminal: list[str]
    transitions: dict[str, list[str]]
    # Edges of `transitions` an order type may not take (limit and sniper orders
    # never route straight from pending: only their trigger starts them).
    refusedByType: dict[str, dict[str, list[str]]]


class PricesView(View):
    tokenIn: str
    tokenOut: str
    at: str
    venues: dict[str, Num | None]
    reference: Num
    slot: int  # the chain's slot they were read at


class RouteView(View):
    dex: str
    path: list[str]
    amountOut: Num
    price: Num
    fee: Num
    priceImpact: Num


class QuoteView(View):
    quoteId: str
    tokenIn: str
    tokenOut: str
    swapMode: str
    amountIn: Num = Field(description="the route's input (ExactOut: the least it needs)")
    amountOut: Num = Field(description="the route's total output")
    maxAmountIn: Num | None = Field(None, description="ExactOut: the most an order may spend")
    slippageBps: int
    quotes: dict[str, VenueQuoteView]
    route: RouteView
    routePlan: list[RouteLegView]
    bestSingle: RouteLegView | None
    splitGainBps: Num
    expectedAmountOut: Num
    minAmountOut: Num
    expiresAt: str


class ArmedFaultView(View):
    venue: str
    kind: str
    remaining: int | None
    expiresInMs: int | None
    bps: int
    slots: int = 0  # a `late` fault's delay in slots


class FaultsView(View):
    armed: list[ArmedFaultView]


class LaunchView(View):
    token: str
    venue: str
    launched: bool
    alreadyOpen: bool


class PriceMoveView(View):
    token: str
    venues: list[str]
    bps: int


class HealthView(View):
    status: str


class ReadyView(View):
    status: str
    checks: dict[str, str]
    mode: dict[str, str]
    chain: str


class BalanceView(View):
    total: Num = Field(description="on chain")
    available: Num = Field(description="total minus reserved: what a new order may spend")
    reserved: Num = Field(description="held by the user's waiting limit and sniper orders")


class BalancesView(View):
    userId: str
    wallet: str = Field(description="the wallet's address (base58 public key)")
    balances: dict[str, BalanceView]
