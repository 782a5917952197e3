"""Routes about a user's wallet: its balances, and the development faucet.

A wallet is made on first use, so asking for a new user's balances makes (and, in
development, funds) their wallet. The balances are read from the chain; a chain that
does not answer is a 503 `chain_unavailable`, as for the market routes.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from dexecutor import jsoncodec
from dexecutor.api import examples as ex
from dexecutor.api import views
from dexecutor.api.deps import PrincipalDep, ServicesDep, limit_address
from dexecutor.api.errors import ApiError
from dexecutor.api.guard import Principal
from dexecutor.api.market import _chain_call, _controls
from dexecutor.api.responses import JSONResponse
from dexecutor.api.schemas import USER_ID_PATTERN
from dexecutor.market.tokens import TOKENS, Token, find_token
from dexecutor.runtime import Services
from dexecutor.wallets import describe

router = APIRouter(tags=["wallets"], dependencies=[Depends(limit_address)])

_USER_ID = re.compile(USER_ID_PATTERN)
# The faucet's ceiling per call: far above any test or demo, far below a u64 of units.
MAX_AIRDROP = Decimal("1000000000")


def _whose(who: Principal, user_id: str | None) -> str:
    """The user asked about: the query's, or the API key's; never someone else's."""
    if user_id is None:
        if who.user_id is None:
            raise ApiError(400, "validation_error", "userId: required without an API key")
        return who.user_id
    if who.user_id is not None and user_id != who.user_id:
        raise ApiError(403, "user_mismatch", "you can see only your own wallet")
    return user_id


async def _answer(svc: Services, user_id: str) -> Response:
    async with _chain_call():
        pubkey = await svc.wallets.pubkey(user_id)
        balances = await svc.wallets.balances(user_id)
    return JSONResponse({"userId": user_id, "wallet": pubkey, "balances": describe(balances)})


@router.get(
    "/api/balances",
    summary="A user's wallet: available and reserved per token",
    response_model=views.BalancesView,
    responses=ex.ok(ex.BALANCES),
)
async def balances(
    svc: ServicesDep,
    who: PrincipalDep,
    user_id: Annotated[
        str | None,
        Query(
            alias="userId",
            pattern=USER_ID_PATTERN,
            description="whose wallet; optional with an API key, which names the user",
        ),
    ] = None,
) -> Response:
    """`reserved`: the input of the user's waiting limit and sniper orders, held until
    they fire, are cancelled or expire. Every token the wallet holds or has reserved
    is listed; SOL and USDC always."""
    return await _answer(svc, _whose(who, user_id))


_AIRDROP_EXAMPLE = {"userId": "user1", "token": "USDC", "amount": 500}


@router.post(
    "/api/mock/airdrop",
    summary="Development faucet: add tokens to a user's wallet",
    response_model=views.BalancesView,
    responses=ex.ok(ex.BALANCES),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["token", "amount"],
                        "properties": {
                            "userId": {"type": "string", "pattern": USER_ID_PATTERN},
                            "token": {"type": "string", "enum": [t.symbol for t in TOKENS]},
                            "amount": {
                                "type": "number",
                                "exclusiveMinimum": 0,
                                "description": "at most the token's decimals",
                            },
                        },
                        "additionalProperties": False,
                    },
                    "example": _AIRDROP_EXAMPLE,
                }
            },
        }
    },
)
async def airdrop(request: Request, svc: ServicesDep, who: PrincipalDep) -> Response:
    """Every mistake in the body is a 400 and gives nothing; the answer is the wallet's
    balances after the airdrop."""
    _controls(svc)
    user_id, token, amount = _airdrop_request(await request.body(), who)
    async with _chain_call():
        await svc.wallets.airdrop(user_id, token.symbol, amount)
    return await _answer(svc, user_id)


def _airdrop_request(body: bytes, who: Principal) -> tuple[str, Token, Decimal]:
    def refuse(message: str) -> ApiError:
        return ApiError(400, "validation_error", message)

    try:
        data: Any = jsoncodec.loads(body)
    except (msgspec.DecodeError, RecursionError):
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise refuse("the body must be a JSON object")
    unknown = sorted(set(data) - {"userId", "token", "amount"})
    if unknown:
        raise refuse(f"{unknown[0][:30]}: unknown field")
    user_id = data.get("userId")
    if user_id is not None and (not isinstance(user_id, str) or not _USER_ID.match(user_id)):
        raise refuse("userId: 1-64 letters, digits or . _ : -")
    symbol = data.get("token")
    token = find_token(symbol) if isinstance(symbol, str) else None
    if token is None:
        raise refuse(f"token: unknown token {str(symbol)[:20]!r}")
    raw = data.get("amount")
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str, Decimal)):
        raise refuse("amount: a number is required")
    try:
        amount = Decimal(str(raw))
    except InvalidOperation:
        raise refuse("amount: must be a number") from None
    if not amount.is_finite() or amount <= 0:
        raise refuse("amount: must be greater than 0")
    if amount > MAX_AIRDROP:
        raise refuse(f"amount: at most {MAX_AIRDROP} a call")
    if amount != amount.quantize(token.quantum):  # bounded above: quantize is exact
        raise refuse(f"amount: {token.symbol} has at most {token.decimals} decimals")
    return _whose(who, user_id), token, amount
