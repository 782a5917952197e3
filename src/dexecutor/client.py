"""A small typed async client for the dexecutor API (httpx + websockets).

Public API: the CLI uses it, the tests can, and so can user code:

    async with DexecutorClient("http://localhost:3000") as client:
        accepted = await client.submit(user_id="me", token_in="SOL", token_out="USDC",
                                       amount_in=Decimal("2"))
        async for event in client.watch(accepted.order_id):
            print(event["status"])

Amounts come back as `Decimal` (the API's numbers are decoded exactly, never as floats).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from types import TracebackType
from typing import Any, TypedDict, cast

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from dexecutor import jsoncodec


class ApiError(Exception):
    """An error answer of the API: HTTP status, error code and message."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


class VenueQuote(TypedDict, total=False):
    price: Decimal
    amountOut: Decimal
    fee: Decimal
    priceImpact: Decimal
    route: list[str]
    error: str
    message: str


class OrderRecord(TypedDict, total=False):
    orderId: str
    userId: str
    type: str
    tokenIn: str
    tokenOut: str
    amountIn: Decimal
    slippageBps: int
    status: str
    dexUsed: str | None
    route: list[str] | None
    executedPrice: Decimal | None
    amountOut: Decimal | None
    expectedAmountOut: Decimal | None
    minAmountOut: Decimal | None
    txHash: str | None
    failReason: str | None
    attempts: int
    quotes: dict[str, VenueQuote] | None
    limitPrice: Decimal | None
    expiresAt: str | None
    createdAt: str
    updatedAt: str


class OrderEvent(TypedDict, total=False):
    """One stream message: the envelope plus the status's own fields."""

    orderId: str
    seq: int
    status: str
    attempt: int
    at: str
    userId: str
    dex: str
    txHash: str
    quotes: dict[str, VenueQuote]
    expectedAmountOut: Decimal
    minAmountOut: Decimal
    executedPrice: Decimal
    amountOut: Decimal
    reason: str
    message: str
    retryable: bool
    nextAttempt: int
    delayMs: int
    trigger: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Accepted:
    order_id: str
    status: str
    replayed: bool


TERMINAL = frozenset({"confirmed", "failed", "cancelled", "expired"})


class DexecutorClient:
    def __init__(self, base_url: str = "http://localhost:3000", timeout: float = 30) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout)

    async def __aenter__(self) -> DexecutorClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._http.request(method, path, **kwargs)
        body = jsoncodec.loads(response.content) if response.content else None
        if response.is_error:
            error = body if isinstance(body, dict) else {}
            raise ApiError(
                response.status_code,
                str(error.get("error", "error")),
                str(error.get("message", response.text)),
                error.get("details"),
            )
        return body

    async def submit(
        self,
        *,
        user_id: str,
        token_in: str,
        token_out: str,
        amount_in: Decimal | int | str,
        type: str = "market",
        slippage_bps: int | None = None,
        limit_price: Decimal | str | None = None,
        ttl_seconds: int | None = None,
        quote_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Accepted:
        """Place an order; 202 means it is stored. Raises ApiError otherwise."""
        order: dict[str, Any] = {
            "userId": user_id,
            "type": type,
            "tokenIn": token_in,
            "tokenOut": token_out,
            "amountIn": Decimal(str(amount_in)),
        }
        optional = {
            "slippageBps": slippage_bps,
            "limitPrice": Decimal(str(limit_price)) if limit_price is not None else None,
            "ttlSeconds": ttl_seconds,
            "quoteId": quote_id,
        }
        order.update({k: v for k, v in optional.items() if v is not None})
        headers = {"content-type": "application/json"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        response = await self._http.post(
            "/api/orders/execute", content=jsoncodec.dumps(order), headers=headers
        )
        body = jsoncodec.loads(response.content) if response.content else {}
        if response.status_code != 202:
            raise ApiError(
                response.status_code,
                str(body.get("error", "error")),
                str(body.get("message", response.text)),
                body.get("details"),
            )
        return Accepted(
            str(body["orderId"]),
            str(body["status"]),
            response.headers.get("Idempotent-Replayed") == "true",
        )

    async def order(self, order_id: str) -> OrderRecord:
        return cast(OrderRecord, await self._call("GET", f"/api/orders/{order_id}"))

    async def status(self, order_id: str) -> dict[str, Any]:
        return cast(dict[str, Any], await self._call("GET", f"/api/orders/status/{order_id}"))

    async def events(self, order_id: str) -> list[OrderEvent]:
        body = await self._call("GET", f"/api/orders/{order_id}/events")
        return cast(list[OrderEvent], body["events"])

    async def orders(
        self, user_id: str, status: str | None = None, limit: int = 50, before: str | None = None
    ) -> list[OrderRecord]:
        params: dict[str, Any] = {"userId": user_id, "limit": limit}
        if status:
            params["status"] = status
        if before:
            params["before"] = before
        body = await self._call("GET", "/api/orders", params=params)
        return cast(list[OrderRecord], body["orders"])

    async def cancel(self, order_id: str) -> OrderRecord:
        return cast(OrderRecord, await self._call("DELETE", f"/api/orders/{order_id}"))

    async def quote(
        self, token_in: str, token_out: str, amount_in: Decimal | int | str
    ) -> dict[str, Any]:
        params = {"tokenIn": token_in, "tokenOut": token_out, "amountIn": str(amount_in)}
        return cast(dict[str, Any], await self._call("GET", "/api/quote", params=params))

    async def tokens(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], await self._call("GET", "/api/tokens"))

    def _ws(self, path: str) -> str:
        return self.base_url.replace("http://", "ws://").replace("https://", "wss://") + path

    async def watch(self, order_id: str, after: int = 0) -> AsyncIterator[OrderEvent]:
        """Every event of the order (replayed, then live) until its terminal one."""
        async with connect(self._ws(f"/ws/orders/{order_id}?after={after}")) as ws:
            try:
                async for raw in ws:
                    yield cast(OrderEvent, jsoncodec.loads(raw))
            except ConnectionClosed:
                pass
            if ws.close_code == 4404:
                raise ApiError(404, "not_found", f"order {order_id} does not exist")

    async def watch_user(self, user_id: str) -> AsyncIterator[OrderEvent]:
        """Every event of the user's orders, live, until the caller stops."""
        async with connect(self._ws(f"/ws/orders?userId={user_id}")) as ws:
            async for raw in ws:
                yield cast(OrderEvent, jsoncodec.loads(raw))
