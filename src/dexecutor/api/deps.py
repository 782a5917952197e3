"""FastAPI dependencies: the process's services and small parsers shared by routes."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPBearer
from starlette.requests import HTTPConnection

from dexecutor.api.errors import ApiError
from dexecutor.api.guard import Authenticator, Principal, RateLimiter
from dexecutor.engine.intake import Intake
from dexecutor.runtime import Services


# Dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in a
# thread pool, and that hand-off cost more than the rest of a submission put together.
async def services(conn: HTTPConnection) -> Services:
    svc: Services = conn.app.state.services
    return svc


async def intake(request: Request) -> Intake:
    svc: Intake = request.app.state.intake
    return svc


# The two ways to send a key, declared for the OpenAPI document (the Authorize button
# of /docs); the Authenticator reads the headers itself and decides.
_KEY_DOCS = "Only when the server sets API_KEYS: the key names the user."
api_key_header = APIKeyHeader(
    name="X-API-Key", scheme_name="ApiKey", description=_KEY_DOCS, auto_error=False
)
bearer = HTTPBearer(scheme_name="Bearer", description=_KEY_DOCS, auto_error=False)


async def principal(
    conn: HTTPConnection,
    _key: Annotated[object, Security(api_key_header)],
    _bearer: Annotated[object, Security(bearer)],
) -> Principal:
    """The caller (raises 401 when authentication is on and no valid key was sent)."""
    auth: Authenticator = conn.app.state.auth
    return auth.principal(conn)


async def limit_address(conn: HTTPConnection) -> None:
    """Per client address rate limit, on every API route."""
    limiter: RateLimiter = conn.app.state.limiter
    await limiter.check(conn.client.host if conn.client else None, None)


ServicesDep = Annotated[Services, Depends(services)]
IntakeDep = Annotated[Intake, Depends(intake)]
PrincipalDep = Annotated[Principal, Depends(principal)]


def parse_order_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise ApiError(
            400, "invalid_order_id", f"{text[:60]!r} is not an order id (a UUID)"
        ) from None
