"""A small typed async client for the dexecutor API (httpx + websockets).

Public API: the CLI uses it, the tests can, and so can user code:

    async with DexecutorClient("http://localhost:3000") as client:
        accepted = await client.submit(user_id="me", token_in="SOL", token_out="USDC",
                                       amount_in=Decimal("2"))
        async for event in client.watch(accepted.order_id):
            print(event["status"])

Amounts come back as `Decimal` (the API's numbers are decoded exactly, never as floats).
With authentication on, pass `api_key=` (sent as `X-API-Key`); the key names the user,
so `user_id` may then be left out. A server that cannot be reached (refused, reset,
timed out) raises `Unreachable`, an error answer `ApiError`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from types import TracebackType
from typing import Any, TypedDict, cast

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from dexecutor import jsoncodec


class ApiError(Exception):
    """An error answer of the API: HTTP status, error code and message."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


class Unreachable(ConnectionError):
    """The API did not answer: nothing listens there, the connection broke or timed out."""

    def __init__(self, url: str, cause: BaseException) -> None:
        reason = str(cause) or type(cause).__name__
        super().__init__(f"cannot reach the API at {url}: {reason}")
        self.url = url


class AmbiguousId(ValueError):
    """An order-id prefix that matches more than one of the user's orders."""


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
# Close codes after which reconnecting cannot help (see docs/websocket.md).
_FINAL_CLOSES = {
    4401: (401, "unauthorized"),
    4403: (403, "forbidden"),
    4404: (404, "not_found"),
    4429: (429, "rate_limited"),
}
ORDER_ID_LENGTH = 36  # a UUID in its text form


@dataclass(frozen=True, slots=True)
class Routing:
    """An order's or a quote's routing options (SPEC §10)."""

    exact_out: bool = False
    max_amount_in: Decimal | None = None
    dexes: tuple[str, ...] | None = None
    exclude_dexes: tuple[str, ...] = ()
    only_direct_routes: bool = False

    def fields(self, amount: Decimal) -> dict[str, Any]:
        """The order body's fields for `amount` (the input, or the output wanted)."""
        body: dict[str, Any] = {"amountOut" if self.exact_out else "amountIn": amount}
        if self.exact_out:
            body["swapMode"] = "ExactOut"
        if self.max_amount_in is not None:
            body["maxAmountIn"] = self.max_amount_in
        if self.dexes is not None:
            body["dexes"] = list(self.dexes)
        if self.exclude_dexes:
            body["excludeDexes"] = list(self.exclude_dexes)
        if self.only_direct_routes:
            body["onlyDirectRoutes"] = True
        return body

    def query(self, amount: Decimal) -> dict[str, str]:
        """The same as query parameters (lists comma-separated)."""
        return {
            k: ",".join(v) if isinstance(v, list) else str(v).lower() if v is True else str(v)
            for k, v in self.fields(amount).items()
        }


class DexecutorClient:
    def __init__(
        self,
        base_url: str = "http://localhost:3000",
        timeout: float = 30,
        api_key: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"X-API-Key": api_key} if api_key else {}
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, headers=self._headers
        )

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

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kwargs)
        except httpx.TransportError as err:
            raise Unreachable(self.base_url, err) from err

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._request(method, path, **kwargs)
        body = _decoded(response)
        if response.is_error:
            raise _api_error(response, body)
        return body

    async def submit(
        self,
        *,
        user_id: str | None = None,
        token_in: str,
        token_out: str,
        amount_in: Decimal | int | str,
        type: str = "market",
        slippage_bps: int | None = None,
        limit_price: Decimal | str | None = None,
        ttl_seconds: int | None = None,
        quote_id: str | None = None,
        idempotency_key: str | None = None,
        routing: Routing | None = None,
    ) -> Accepted:
        """Place an order; 202 means it is stored. Raises ApiError otherwise.

        Without `user_id` the body carries none: the API key names the user. With
        `routing.exact_out`, `amount_in` is the output wanted (the body's `amountOut`).
        """
        order: dict[str, Any] = {"type": type, "tokenIn": token_in, "tokenOut": token_out}
        order.update((routing or Routing()).fields(Decimal(str(amount_in))))
        optional = {
            "userId": user_id,
            "slippageBps": slippage_bps,
            "limitPrice": Decimal(str(limit_price)) if limit_price is not None else None,
            "ttlSeconds": ttl_seconds,
            "quoteId": quote_id,
        }
        order.update({k: v for k, v in optional.items() if v is not None})
        headers = {"content-type": "application/json"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        response = await self._request(
            "POST", "/api/orders/execute", content=jsoncodec.dumps(order), headers=headers
        )
        body = _decoded(response)
        if response.status_code != 202 or not isinstance(body, dict):
            raise _api_error(response, body)
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
        self,
        user_id: str | None = None,
        status: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[OrderRecord]:
        """A user's orders, newest first (without `user_id`: the API key's user)."""
        params: dict[str, Any] = {"limit": limit}
        if user_id is not None:
            params["userId"] = user_id
        if status:
            params["status"] = status
        if before:
            params["before"] = before
        body = await self._call("GET", "/api/orders", params=params)
        return cast(list[OrderRecord], body["orders"])

    async def resolve(self, id_or_prefix: str, user_id: str | None = None) -> str:
        """The full id of the user's one order whose id starts with `id_or_prefix`.

        A full id is returned as it is. Raises `ApiError` (404) when no order of the
        user matches and `AmbiguousId` when several do.
        """
        prefix = id_or_prefix.strip().lower()
        if len(prefix) == ORDER_ID_LENGTH:
            return prefix
        matches: list[str] = []
        before: str | None = None
        while True:
            page = await self.orders(user_id, limit=200, before=before)
            matches += [o["orderId"] for o in page if o["orderId"].startswith(prefix)]
            if len(matches) > 1:
                shown = ", ".join(m[:12] for m in matches[:5])
                raise AmbiguousId(f"{id_or_prefix!r} matches several orders ({shown}, …)")
            if len(page) < 200:
                break
            before = page[-1]["orderId"]
        if not matches:
            whose = f"user {user_id}" if user_id else "this API key's user"
            raise ApiError(404, "not_found", f"no order of {whose} starts with {id_or_prefix!r}")
        return matches[0]

    async def cancel(self, order_id: str) -> OrderRecord:
        return cast(OrderRecord, await self._call("DELETE", f"/api/orders/{order_id}"))

    async def quote(
        self,
        token_in: str,
        token_out: str,
        amount_in: Decimal | int | str,
        routing: Routing | None = None,
    ) -> dict[str, Any]:
        """The route for `amount_in` (or, with `routing.exact_out`, for that output)."""
        params = {"tokenIn": token_in, "tokenOut": token_out}
        params.update((routing or Routing()).query(Decimal(str(amount_in))))
        return cast(dict[str, Any], await self._call("GET", "/api/quote", params=params))

    async def balances(self, user_id: str | None = None) -> dict[str, Any]:
        """The user's wallet: total, available and reserved per token (without
        `user_id`: the API key's user)."""
        params = {"userId": user_id} if user_id is not None else {}
        return cast(dict[str, Any], await self._call("GET", "/api/balances", params=params))

    async def airdrop(
        self, token: str, amount: Decimal | int | str, user_id: str | None = None
    ) -> dict[str, Any]:
        """Development faucet: add `amount` of `token` to the wallet; its new balances."""
        body: dict[str, Any] = {"token": token, "amount": str(amount)}
        if user_id is not None:
            body["userId"] = user_id
        return cast(dict[str, Any], await self._call("POST", "/api/mock/airdrop", json=body))

    async def tokens(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], await self._call("GET", "/api/tokens"))

    def _ws(self, path: str) -> str:
        return self.base_url.replace("http://", "ws://").replace("https://", "wss://") + path

    async def watch(
        self, order_id: str, after: int = 0, resume_for: float = 60
    ) -> AsyncIterator[OrderEvent]:
        """Every event of the order (replayed, then live) until its terminal one.

        When an open stream drops (a restarting server, a network blip), it reconnects
        with `?after=` the last sequence number it delivered, for up to `resume_for`
        seconds, so no event is lost or repeated. A first connection that fails raises
        `Unreachable` at once.
        """
        last = after
        connected_once = False
        gave_up_at: float | None = None
        pause = 0.2
        while True:
            try:
                async with connect(
                    self._ws(f"/ws/orders/{order_id}?after={last}"),
                    additional_headers=self._headers,
                ) as ws:
                    connected_once, gave_up_at, pause = True, None, 0.2
                    try:
                        async for raw in ws:
                            event = cast(OrderEvent, jsoncodec.loads(raw))
                            last = int(event.get("seq", last))
                            yield event
                            if event.get("status") in TERMINAL:
                                return
                    except ConnectionClosed:
                        pass
                    code = ws.close_code
                    if code in _FINAL_CLOSES:
                        status, error = _FINAL_CLOSES[code]
                        raise ApiError(status, error, ws.close_reason or f"closed {code}")
                    if code == 1000:
                        return
            except InvalidStatus as err:
                raise ApiError(err.response.status_code, "error", str(err)) from None
            except (OSError, TimeoutError, InvalidHandshake) as err:
                if not connected_once:
                    raise Unreachable(self.base_url, err) from err
                gave_up_at = gave_up_at or time.monotonic() + resume_for
                if time.monotonic() > gave_up_at:
                    raise Unreachable(self.base_url, err) from err
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)

    async def watch_user(self, user_id: str) -> AsyncIterator[OrderEvent]:
        """Every event of the user's orders, live, until the caller stops."""
        async with connect(
            self._ws(f"/ws/orders?userId={user_id}"), additional_headers=self._headers
        ) as ws:
            async for raw in ws:
                yield cast(OrderEvent, jsoncodec.loads(raw))


def _decoded(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return jsoncodec.loads(response.content)
    except ValueError:
        return None  # not JSON (a proxy's error page): the status says enough


def _api_error(response: httpx.Response, body: Any) -> ApiError:
    error = body if isinstance(body, dict) else {}
    return ApiError(
        response.status_code,
        str(error.get("error", "error")),
        str(error.get("message", response.text[:200])),
        error.get("details"),
    )
