"""Example payloads for the OpenAPI document (`/docs`): one per endpoint and error."""

from __future__ import annotations

from typing import Any

from dexecutor.api.views import ErrorView

ORDER_ID = "7c0e4f5a-2b1d-4c3e-9f8a-1b2c3d4e5f60"
AT = "2026-11-21T10:00:03.100Z"

ORDER = {
    "orderId": ORDER_ID, "userId": "user1", "type": "market", "tokenIn": "SOL",
    "tokenOut": "USDC", "amountIn": 2, "slippageBps": 50, "status": "confirmed",
    "dexUsed": "meteora", "route": ["wSOL", "USDC"], "executedPrice": 98.7, "amountOut": 197.4,
    "expectedAmountOut": 197.31, "minAmountOut": 196.32, "txHash": "5xRq…",
    "slot": 1204, "commitment": "confirmed", "finalizedAtSlot": 1236,
    "venueFee": {"amount": 0.004, "token": "SOL"}, "networkFee": 0.000075,
    "networkFeeDetail": {"base": 0.000005, "priority": 0.00007, "rent": 0},
    "priceImpact": 0, "effectivePrice": 98.696299, "failReason": None, "attempts": 1,
    "quotes": {
        "raydium": {"price": 98.1, "amountOut": 196.2, "fee": 0.0025, "priceImpact": 0.0001,
                    "route": ["wSOL", "USDC"]},
        "meteora": {"price": 98.655, "amountOut": 197.31, "fee": 0.002, "priceImpact": 0,
                    "route": ["wSOL", "USDC"]},
    },
    "quoteId": None, "limitPrice": None, "expiresAt": None,
    "createdAt": "2026-11-21T10:00:00.000Z", "updatedAt": AT, "clientOrderId": "my-order-42",
    "timestamp": 1763719200000, "lastTradeTimestamp": 1763719203100, "filled": 2,
    "remaining": 0, "average": 98.7, "cost": 197.4,
    "fee": {"cost": 0.004, "currency": "SOL", "rate": 0.002},
    "swapMode": "ExactIn",
    "routing": {"swapMode": "ExactIn", "amountOut": None, "maxAmountIn": None, "dexes": None,
                "excludeDexes": [], "onlyDirectRoutes": False},
    "routePlan": [
        {"venue": "meteora", "path": ["wSOL", "USDC"], "percent": 100, "amountIn": 2,
         "amountOut": 197.31, "fee": 0.002, "priceImpact": 0},
    ],
    "bestSingle": {"venue": "meteora", "path": ["wSOL", "USDC"], "percent": 100, "amountIn": 2,
                   "amountOut": 197.31, "fee": 0.002, "priceImpact": 0},
    "splitGainBps": 0,
    "executionQuality": {"arrivalMid": 98.9, "amountIn": 2, "quotedAmountOut": 197.31,
                         "realisedAmountOut": 197.4, "shortfallBps": 20.22,
                         "bestSingleAmountOut": 197.31, "splitGainBps": 0},
}  # fmt: skip

EVENTS = {
    "orderId": ORDER_ID,
    "events": [
        {"orderId": ORDER_ID, "seq": 1, "status": "pending", "attempt": 0,
         "at": "2026-11-21T10:00:00.000Z", "type": "market", "tokenIn": "SOL",
         "tokenOut": "USDC", "amountIn": 2, "userId": "user1", "clientOrderId": "my-order-42"},
        {"orderId": ORDER_ID, "seq": 2, "status": "routing", "attempt": 1,
         "at": "2026-11-21T10:00:00.010Z", "userId": "user1", "clientOrderId": "my-order-42"},
        {"orderId": ORDER_ID, "seq": 5, "status": "confirmed", "attempt": 1, "at": AT,
         "dex": "meteora", "txHash": "5xRq…", "executedPrice": 98.7, "amountOut": 197.4,
         "slot": 1204, "commitment": "confirmed", "finalizedAtSlot": 1236,
         "venueFee": {"amount": 0.004, "token": "SOL"}, "networkFee": 0.000075,
         "networkFeeDetail": {"base": 0.000005, "priority": 0.00007, "rent": 0},
         "priceImpact": 0, "effectivePrice": 98.696299,
         "userId": "user1", "clientOrderId": "my-order-42"},
    ],
}  # fmt: skip

# A large order (20,000 SOL against pools of a few million USD): split across both
# venues and a path through USDT, beating the best single venue by some 150 bps.
QUOTE = {
    "quoteId": "q_3vQk2nXoA1bC", "tokenIn": "SOL", "tokenOut": "USDC", "swapMode": "ExactIn",
    "amountIn": 20000, "amountOut": 1846211.52, "slippageBps": 50,
    "quotes": {
        "raydium": {"price": 90.3, "amountOut": 1806000.11, "fee": 0.0025,
                    "priceImpact": 0.081, "route": ["wSOL", "USDC"]},
        "meteora": {"price": 91.1, "amountOut": 1822000.4, "fee": 0.0031,
                    "priceImpact": 0.072, "route": ["wSOL", "USDC"]},
    },
    "route": {"dex": "raydium", "path": ["wSOL", "USDC"], "amountOut": 1846211.52,
              "price": 92.3105, "fee": 0.0025, "priceImpact": 0.031},
    "routePlan": [
        {"venue": "raydium", "path": ["wSOL", "USDC"], "percent": 52, "amountIn": 10400,
         "amountOut": 962008.1, "fee": 0.0025, "priceImpact": 0.033},
        {"venue": "meteora", "path": ["wSOL", "USDC"], "percent": 33, "amountIn": 6600,
         "amountOut": 610300.22, "fee": 0.0031, "priceImpact": 0.029},
        {"venue": "raydium+meteora", "path": ["wSOL", "USDT", "USDC"], "percent": 15,
         "amountIn": 3000, "amountOut": 273903.2, "fee": 0.0035, "priceImpact": 0.027},
    ],
    "bestSingle": {"venue": "meteora", "path": ["wSOL", "USDC"], "percent": 100,
                   "amountIn": 20000, "amountOut": 1822000.4, "fee": 0.0031,
                   "priceImpact": 0.072},
    "splitGainBps": 132.8815,
    "expectedAmountOut": 1846211.52, "minAmountOut": 1836980.46, "expiresAt": AT,
}  # fmt: skip
# Exact-out: 1,000 USDC for the least SOL, at most maxAmountIn.
QUOTE_EXACT_OUT = {
    **QUOTE, "swapMode": "ExactOut", "amountIn": 10.1377, "amountOut": 1000.000012,
    "maxAmountIn": 10.188389, "quotes": {},
    "route": {"dex": "meteora", "path": ["wSOL", "USDC"], "amountOut": 1000.000012,
              "price": 98.642, "fee": 0.002, "priceImpact": 0.0002},
    "routePlan": [
        {"venue": "meteora", "path": ["wSOL", "USDC"], "percent": 100, "amountIn": 10.1377,
         "amountOut": 1000.000012, "fee": 0.002, "priceImpact": 0.0002},
    ],
    "bestSingle": {"venue": "meteora", "path": ["wSOL", "USDC"], "percent": 100,
                   "amountIn": 10.1377, "amountOut": 1000.000012, "fee": 0.002,
                   "priceImpact": 0.0002},
    "splitGainBps": 0, "expectedAmountOut": 1000.000012, "minAmountOut": 1000,
}  # fmt: skip


# Every refusal a route can send, in words: the statuses are documented one by one
# where a route's refusals are known (submission), and as 4XX / 5XX elsewhere.
REFUSALS = {
    400: "The body is not JSON, or an order id is not a UUID",
    401: "API keys are on (API_KEYS) and no valid key was sent",
    403: "The userId is not the user of the API key (`user_mismatch`)",
    404: "No such order, or one the caller may not see",
    409: "The Idempotency-Key was used with a different body (details.orderId: the first)",
    413: "The body is over MAX_BODY_BYTES",
    415: "The body was not sent as application/json",
    422: "The request breaks a rule; `details` names each field",
    429: "Rate limit or queue backlog: retry after the Retry-After seconds",
    503: "PostgreSQL is unreachable: nothing was stored; retry after Retry-After",
}

# Operations that authenticate: either scheme when API_KEYS is set (see app.py, which
# makes them optional in the document of a server without keys).
SECURITY: list[dict[str, list[str]]] = [{"ApiKey": []}, {"Bearer": []}]


def _error(example: dict[str, Any]) -> dict[str, Any]:
    return {"model": ErrorView, "content": {"application/json": {"example": example}}}


def refusals(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for the error envelope with these statuses."""
    return {
        status: {
            "description": REFUSALS[status],
            **_error({"error": ERROR_CODES[status], "message": REFUSALS[status]}),
        }
        for status in statuses
    }


ERROR_CODES = {
    400: "invalid_json",
    401: "unauthorized",
    403: "user_mismatch",
    404: "not_found",
    409: "idempotency_conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "database_unavailable",
}


def order_links(order_id: str) -> dict[str, Any]:
    """OpenAPI links from an answer that names an order (`order_id`: a runtime
    expression) to the operations on that order, for clients and stateful fuzzers."""
    return {
        name: {"operationId": operation, "parameters": {"order_id": order_id}}
        for name, operation in (
            ("GetOrder", "getOrder"),
            ("GetOrderStatus", "getOrderStatus"),
            ("GetOrderEvents", "getOrderEvents"),
            ("CancelOrder", "cancelOrder"),
        )
    }


def ok(
    example: Any, status: int = 200, links: dict[str, Any] | None = None
) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: its success example and the error envelope (4XX, 5XX)."""
    error = _error({"error": "validation_error", "message": "amountIn: must be a number"})
    return {
        status: {
            "content": {"application/json": {"example": example}},
            **({"links": links} if links else {}),
        },
        "4XX": {"description": "The client's mistake: nothing was stored", **error},
        "5XX": {"description": "The server's trouble (503: a dependency is down)", **error},
    }


HEALTH = {"status": "ok"}
READY = {
    "status": "ready",
    "checks": {"postgres": "ok", "redis": "ok", "chain": "ok"},
    "mode": {"postgres": "embedded", "redis": "embedded"},
    "chain": "http://127.0.0.1:8899",
}
STATUS = {"orderId": ORDER_ID, "status": "submitted", "attempt": 1, "updatedAt": AT}
HISTORY = {"orders": [ORDER], "nextBefore": None}
TOKENS = [
    {"symbol": "SOL", "mint": "So11111111111111111111111111111111111111112", "decimals": 9,
     "launched": True, "name": "Solana (routed as wrapped SOL)"},
    {"symbol": "NOVA", "mint": "NoVAx7mQ3hZpT9wKc2RfYb8uJdLs4gEv6nAyCqPpump", "decimals": 6,
     "launched": False, "name": "Nova"},
]  # fmt: skip
STATE_MACHINE = {
    "initial": "pending",
    "terminal": ["cancelled", "confirmed", "expired", "failed"],
    "transitions": {
        "pending": ["cancelled", "routing", "waiting"],
        "routing": ["building", "failed", "retrying"],
    },
    "refusedByType": {"limit": {"pending": ["routing"]}, "sniper": {"pending": ["routing"]}},
}
PRICES = {"tokenIn": "SOL", "tokenOut": "USDC", "at": AT,
          "venues": {"raydium": 98.42, "meteora": 97.95}, "reference": 98.1,
          "slot": 1234}  # fmt: skip
FAULTS = {
    "armed": [
        {
            "venue": "raydium",
            "kind": "drop",
            "remaining": 2,
            "expiresInMs": None,
            "bps": 0,
            "slots": 0,
        }
    ]
}
LAUNCH = {"token": "NOVA", "venue": "raydium", "launched": True, "alreadyOpen": False}
PRICE_MOVE = {"token": "SOL", "venues": ["raydium", "meteora"], "bps": 300}
CANCELLED = {
    **ORDER, "status": "cancelled", "failReason": "cancelled_by_user", "dexUsed": None,
    "route": None, "executedPrice": None, "amountOut": None, "expectedAmountOut": None,
    "minAmountOut": None, "txHash": None, "quotes": None, "attempts": 0,
    "lastTradeTimestamp": None, "filled": 0, "remaining": 2, "average": None, "cost": 0,
    "fee": None, "routePlan": None, "bestSingle": None, "splitGainBps": None,
    "executionQuality": None,
}  # fmt: skip


BALANCES = {
    "userId": "user1",
    "wallet": "9wFFyRfZBsuAha4YcuxcXLKwMxJR43S7fPfQLusDBzvT",
    "balances": {
        "SOL": {"total": 998.004, "available": 996.004, "reserved": 2},
        "USDC": {"total": 100197.4, "available": 100197.4, "reserved": 0},
    },
}
