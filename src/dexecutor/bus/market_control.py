"""Market changes made on request (launches, price moves): done on the chain, announced here.

The chain holds the one market; this forwards a change to it and then announces it
on Redis, so every worker's trigger book looks at the market at once instead of at
its next tick (a sniper fires as soon as its pool opens).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from dexecutor import jsoncodec
from dexecutor.bus.redis import Keys
from dexecutor.chain.client import ChainClient


class MarketControl:
    def __init__(self, redis: Redis, keys: Keys, chain: ChainClient) -> None:
        self._redis = redis
        self._keys = keys
        self._chain = chain
        self._on_change: Callable[[], None] | None = None

    def on_change(self, hook: Callable[[], None]) -> None:
        """Call `hook` whenever a launch or price move is announced (here or elsewhere)."""
        self._on_change = hook

    async def launch(self, token: str, venue: str) -> bool:
        """Open the pool on the chain; True when it was open already."""
        already = await self._chain.launch(token, venue)
        await self._announce({"kind": "launch", "token": token, "venue": venue})
        return already

    async def jump(self, venue: str, token: str, bps: int) -> None:
        await self._chain.jump(venue, token, bps)
        await self._announce({"kind": "jump", "token": token, "venue": venue, "bps": bps})

    async def _announce(self, message: dict[str, Any]) -> None:
        await self._redis.publish(self._keys.market, jsoncodec.dumps(message))

    def receive(self, _message: dict[str, Any]) -> None:
        """An announcement from the channel (the hub's handler)."""
        if self._on_change is not None:
            self._on_change()
