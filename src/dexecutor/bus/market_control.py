"""Market changes that every process must see: pool launches and scripted price moves.

Each process simulates its own copy of the market, so a launch or a price move made
through one API process is broadcast to all of them. Launches are also remembered in
Redis, so a process that starts later opens the same pools.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import uuid4

import structlog
from redis.asyncio import Redis

from dexecutor import jsoncodec
from dexecutor.bus.redis import Keys
from dexecutor.market.simulation import Market

log = structlog.get_logger(__name__)


class MarketControl:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        market: Market,
        clock: Callable[[], float],
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._market = market
        self._clock = clock
        self._on_change: Callable[[], None] | None = None
        self._origin = uuid4().hex  # our own broadcasts come back to us: skip them

    def on_change(self, hook: Callable[[], None]) -> None:
        """Call `hook` after every launch or price move applied here."""
        self._on_change = hook

    async def restore(self) -> None:
        """Open every pool launched before this process started."""
        for field in await self._redis.hkeys(self._keys.launches):
            text = field.decode() if isinstance(field, bytes) else field
            token, venue = text.split(":")
            self._market.launch(token, venue, self._clock())

    async def launch(self, token: str, venue: str) -> None:
        await self._redis.hset(self._keys.launches, f"{token}:{venue}", "1")
        await self._broadcast({"kind": "launch", "token": token, "venue": venue})

    async def jump(self, venue: str, token: str, bps: int) -> None:
        await self._broadcast({"kind": "jump", "token": token, "venue": venue, "bps": bps})

    async def _broadcast(self, message: dict[str, Any]) -> None:
        self.apply(message)  # at once here; the others when the message reaches them
        await self._redis.publish(
            self._keys.market, jsoncodec.dumps({**message, "origin": self._origin})
        )

    def receive(self, message: dict[str, Any]) -> None:
        """A message from the channel (the hub's handler)."""
        if message.get("origin") != self._origin:
            self.apply(message)

    def apply(self, message: dict[str, Any]) -> None:
        now = self._clock()
        if message["kind"] == "launch":
            self._market.launch(message["token"], message["venue"], now)
        elif message["kind"] == "jump":
            self._market.jump(message["venue"], message["token"], int(message["bps"]), now)
        else:
            log.warning("unknown market message", message=message)
            return
        if self._on_change is not None:
            self._on_change()
