"""Scripted venue faults in Redis, so a fault set through any API process reaches the
worker that next calls that venue, and "the next N calls" counts across all of them."""

from __future__ import annotations

import time
from typing import Any

from redis.asyncio import Redis

from dexecutor.bus.redis import Keys
from dexecutor.market.venue import Fault

# Take the first armed fault among KEYS: decrement its count (-1 = until it expires).
_TAKE = """
for i = 1, #KEYS do
  local remaining = tonumber(redis.call('HGET', KEYS[i], 'remaining'))
  if remaining then
    local bps = redis.call('HGET', KEYS[i], 'bps') or '0'
    if remaining == 1 or remaining == 0 then
      redis.call('DEL', KEYS[i])
    elseif remaining > 1 then
      redis.call('HINCRBY', KEYS[i], 'remaining', -1)
    end
    if remaining ~= 0 then
      return {i, bps}
    end
  end
end
return nil
"""


# How long "nothing armed here" is trusted without asking Redis again. Arming or
# clearing anywhere is broadcast and forgets it at once; this bounds the case where a
# broadcast was missed.
QUIET_FOR_S = 1.0


class RedisFaultBoard:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._take = redis.register_script(_TAKE)
        # (venue, kinds) -> when Redis last said none of them is armed. Faults are rare;
        # without this every quote and swap would cost a script call.
        self._quiet: dict[tuple[str, tuple[str, ...]], float] = {}

    def forget(self, _message: object = None) -> None:
        """Something was armed or cleared (here or in another process): ask Redis again."""
        self._quiet.clear()

    async def _changed(self) -> None:
        self.forget()
        await self._redis.publish(self._keys.faults_changed, b"{}")

    async def arm(
        self, venue: str, kind: str, count: int | None, duration_ms: int | None, bps: int
    ) -> None:
        """Make `venue` suffer `kind` for the next `count` calls or for `duration_ms`."""
        key = self._keys.fault(venue, kind)
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(key)
        pipe.hset(key, mapping={"remaining": count if count is not None else -1, "bps": bps})
        if duration_ms is not None:
            pipe.pexpire(key, duration_ms)
        await pipe.execute()
        await self._changed()

    async def clear(self, venue: str, kinds: tuple[str, ...]) -> None:
        await self._redis.delete(*(self._keys.fault(venue, k) for k in kinds))
        await self._changed()

    async def armed(self, venues: tuple[str, ...], kinds: tuple[str, ...]) -> list[dict[str, Any]]:
        """What is armed now, for `GET /api/mock/faults`."""
        out: list[dict[str, Any]] = []
        for venue in venues:
            for kind in kinds:
                key = self._keys.fault(venue, kind)
                fields = await self._redis.hgetall(key)
                if not fields:
                    continue
                ttl = await self._redis.pttl(key)
                remaining = int(fields[b"remaining"])
                out.append(
                    {
                        "venue": venue,
                        "kind": kind,
                        "remaining": remaining if remaining >= 0 else None,
                        "expiresInMs": ttl if ttl >= 0 else None,
                        "bps": int(fields[b"bps"]),
                    }
                )
        return out

    async def take(self, venue: str, kinds: tuple[str, ...]) -> Fault | None:
        quiet_since = self._quiet.get((venue, kinds))
        if quiet_since is not None and time.monotonic() - quiet_since < QUIET_FOR_S:
            return None
        found = await self._take(keys=[self._keys.fault(venue, k) for k in kinds])
        if not found:
            self._quiet[(venue, kinds)] = time.monotonic()
            return None
        index, bps = found
        return Fault(kinds[int(index) - 1], int(bps))
