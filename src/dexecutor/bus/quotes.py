"""Quotes handed out by `GET /api/quote`, kept in Redis so any process can honour them."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from redis.asyncio import Redis

from dexecutor import jsoncodec
from dexecutor.bus.redis import Keys

# Keep the record a while past its expiry so a late order learns "expired", not "unknown".
_GRACE_MS = 3_600_000


class QuoteBook:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def put(self, quote_id: str, record: dict[str, Any], ttl_ms: int) -> None:
        await self._redis.set(
            self._keys.quote(quote_id), jsoncodec.dumps(record), px=ttl_ms + _GRACE_MS
        )

    async def get(self, quote_id: str) -> dict[str, Any] | None:
        raw = await self._redis.get(self._keys.quote(quote_id))
        if raw is None:
            return None
        record: dict[str, Any] = jsoncodec.loads(raw)
        record["minAmountOut"] = Decimal(str(record["minAmountOut"]))
        record["amountIn"] = Decimal(str(record["amountIn"]))
        record["expiresAt"] = datetime.fromisoformat(record["expiresAt"].replace("Z", "+00:00"))
        return record
