"""What stands between the API and clients it does not control.

- A request body over `MAX_BODY_BYTES` (16 KiB) is refused with 413 before it is read whole
  (a declared Content-Length is checked first; a chunked body is counted as it comes).
- Rate limits per user and per client address, counted in Redis so they hold across
  every API process: 429 with Retry-After.
- Authentication, off unless `API_KEYS` is set: each key maps to one userId, and a
  user may only place, read, stream and cancel their own orders (others' are 404).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dexecutor import jsoncodec
from dexecutor.api.errors import ApiError


class BodySizeLimit:
    """ASGI middleware: 413 for bodies over the limit, without buffering them first."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise ApiError(413, "payload_too_large", self._words())
            return message

        await self.app(scope, counted, send)

    def _words(self) -> str:
        return f"the request body is over the limit of {self.max_bytes} bytes"

    async def _refuse(self, send: Send) -> None:
        body = jsoncodec.dumps({"error": "payload_too_large", "message": self._words()})
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


# One window per second per key: INCR each key, set its expiry on the first hit.
_HIT = """
local counts = {}
for i, key in ipairs(KEYS) do
  counts[i] = redis.call('INCR', key)
  if counts[i] == 1 then redis.call('PEXPIRE', key, ARGV[1]) end
end
return counts
"""


class RateLimiter:
    """Fixed one-second windows in Redis, shared by every API process."""

    def __init__(self, redis: Redis, namespace: str, per_user: int, per_address: int) -> None:
        self._redis = redis
        self._ns = namespace
        self.per_user = per_user
        self.per_address = per_address
        self._hit = redis.register_script(_HIT)

    async def check(self, address: str | None, user_id: str | None) -> None:
        """Raise ApiError(429) when this client or user is over its limit this second.

        Both windows are counted in one round trip.
        """
        window = int(time.time())
        checks = []
        if self.per_address > 0 and address:
            checks.append((f"{self._ns}:rl:ip:{address}:{window}", self.per_address, "address"))
        if self.per_user > 0 and user_id:
            checks.append((f"{self._ns}:rl:user:{user_id}:{window}", self.per_user, "user"))
        if not checks:
            return
        try:
            counts = await self._hit(keys=[key for key, _, _ in checks], args=[1500])
        except RedisError:
            return  # the limiter must not turn a Redis hiccup into refused orders
        for (_, limit, who), count in zip(checks, counts, strict=True):
            if int(count) > limit:
                raise ApiError(
                    429,
                    "rate_limited",
                    f"more than {limit} requests per second from this {who}",
                    headers={"Retry-After": "1"},
                )


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the user a key belongs to, or nobody when auth is off."""

    user_id: str | None

    def may_see(self, owner: str) -> bool:
        return self.user_id is None or hmac.compare_digest(self.user_id, owner)


ANONYMOUS = Principal(None)


class Authenticator:
    """API keys → userId. Keys are kept only as SHA-256 digests in memory."""

    def __init__(self, keys: Mapping[str, str]) -> None:
        self._users = {self._digest(k): user for k, user in keys.items()}

    @property
    def enabled(self) -> bool:
        return bool(self._users)

    @staticmethod
    def _digest(key: str) -> bytes:
        return hashlib.sha256(key.encode()).digest()

    def principal(self, conn: HTTPConnection) -> Principal:
        """The caller, from `Authorization: Bearer <key>`, `X-API-Key` or `?apiKey=` (WebSocket)."""
        if not self.enabled:
            return ANONYMOUS
        return self.principal_of(
            conn.headers.get("x-api-key"),
            conn.headers.get("authorization", ""),
            conn.query_params.get("apiKey"),
        )

    def principal_of(
        self, key: str | None, authorization: str, query_key: str | None = None
    ) -> Principal:
        """The caller, from the X-API-Key header, the Authorization header and the
        `apiKey` query parameter, in that order; ApiError(401) without a valid key."""
        if not self.enabled:
            return ANONYMOUS
        if key is None and authorization.lower().startswith("bearer "):
            key = authorization[7:].strip()
        if key is None:
            key = query_key
        user = self._users.get(self._digest(key)) if key else None
        if user is None:
            raise ApiError(
                401,
                "unauthorized",
                "a valid API key is required (Authorization: Bearer <key> or X-API-Key)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return Principal(user)
