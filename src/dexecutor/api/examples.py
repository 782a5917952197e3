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
    "expectedAmountOut": 197.31, "minAmountOut": 196.32, "txHash": "5xRq…", "failReason": None,
    "attempts": 1,
    "quotes": {
        "raydium": {"price": 98.1, "amountOut": 196.2, "fee": 0.0025, "priceImpact": 0.0001,
                    "route": ["wSOL", "USDC"]},
        "meteora": {"price": 98.655, "amountOut": 197.31, "fee": 0.002, "priceImpact": 0,
                    "route": ["wSOL", "USDC"]},
    },
    "quoteId": None, "limitPrice": None, "expiresAt": None,
    "createdAt": "2026-11-21T10:00:00.000Z", "updatedAt": AT,
}  # fmt: skip

EVENTS = {
    "orderId": ORDER_ID,
    "events": [
        {"orderId": ORDER_ID, "seq": 1, "status": "pending", "attempt": 0,
         "at": "2026-11-21T10:00:00.000Z", "type": "market", "tokenIn": "SOL",
         "tokenOut": "USDC", "amountIn": 2, "userId": "user1"},
        {"orderId": ORDER_ID, "seq": 2, "status": "routing", "attempt": 1,
         "at": "2026-11-21T10:00:00.010Z", "userId": "user1"},
        {"orderId": ORDER_ID, "seq": 5, "status": "confirmed", "attempt": 1, "at": AT,
         "dex": "meteora", "txHash": "5xRq…", "executedPrice": 98.7, "amountOut": 197.4,
         "userId": "user1"},
    ],
}  # fmt: skip

QUOTE = {
    "quoteId": "q_3vQk2nXoA1bC", "tokenIn": "SOL", "tokenOut": "USDC", "amountIn": 2,
    "slippageBps": 50, "quotes": ORDER["quotes"],
    "route": {"dex": "meteora", "path": ["wSOL", "USDC"], "amountOut": 197.31, "price": 98.655,
              "fee": 0.002, "priceImpact": 0},
    "expectedAmountOut": 197.31, "minAmountOut": 196.32, "expiresAt": AT,
}  # fmt: skip


def ok(example: Any, status: int = 200) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: its success example and the error envelope (4XX, 5XX)."""
    error: dict[str, Any] = {
        "model": ErrorView,
        "content": {
            "application/json": {
                "example": {"error": "validation_error", "message": "amountIn: must be a number"}
            }
        },
    }
    return {
        status: {"content": {"application/json": {"example": example}}},
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
    {"symbol": "NOVA", "mint": "NoVAx7mQ3hZpT9wKc2RfYb8uJdLs4gEv6nAyCqPt1pump", "decimals": 6,
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
    "armed": [{"venue": "raydium", "kind": "drop", "remaining": 2, "expiresInMs": None, "bps": 0}]
}
LAUNCH = {"token": "NOVA", "venue": "raydium", "launched": True, "alreadyOpen": False}
PRICE_MOVE = {"token": "SOL", "venues": ["raydium", "meteora"], "bps": 300}
CANCELLED = {**ORDER, "status": "cancelled", "failReason": "cancelled_by_user", "dexUsed": None}
