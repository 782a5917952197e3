"""REST routes of the order resource: submit, read, history, events, cancel."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from redis.exceptions import RedisError
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from dexecutor.api import examples as ex
from dexecutor.api import views
from dexecutor.api.deps import (
    IntakeDep,
    PrincipalDep,
    ServicesDep,
    limit_address,
    parse_order_id,
)
from dexecutor.api.errors import (
    DATABASE_DOWN,
    ApiError,
    api_error_response,
    database_down_response,
    error_response,
)
from dexecutor.api.guard import Principal
from dexecutor.api.responses import JSONResponse
from dexecutor.api.schemas import USER_ID_PATTERN, OrderRequest, order_view, parse_order_request
from dexecutor.bus.events import event_message
from dexecutor.domain.money import more_bps, quantize_up
from dexecutor.domain.order import Order, OrderStatus, OrderType
from dexecutor.engine.intake import NewOrder, Refused, expiry
from dexecutor.market.tokens import find_token
from dexecutor.market.types import MarketError
from dexecutor.market.venue import VenueError
from dexecutor.runtime import Services
from dexecutor.store.orders import IdempotencyConflict

router = APIRouter(prefix="/api/orders", tags=["orders"], dependencies=[Depends(limit_address)])

# An order id is a UUID. The schema says so (clients and fuzzers send real ids), while
# the route keeps its own check, so a malformed id gets the 400 `invalid_order_id`.
OrderId = Annotated[str, Path(json_schema_extra={"format": "uuid"}, examples=[ex.ORDER_ID])]


_ACCEPTED_EXAMPLE = {"orderId": "1f0c…", "status": "pending"}
_ORDER_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": OrderRequest.model_json_schema()}},
    }
}


async def new_order(req: OrderRequest, svc: Services) -> NewOrder:
    """The order to store. An ExactOut order's amountIn is the most it may spend: its
    maxAmountIn, or (when absent) the input the chain's route needs now plus
    slippageBps, read in one request."""
    options = req.options
    amount_in = req.amountIn
    if options.swap_mode == "ExactOut":
        amount_in = req.maxAmountIn or await exact_out_budget(svc, req)
        options = replace(options, max_amount_in=amount_in)  # stored as the bound it is
    assert amount_in is not None
    return NewOrder(
        user_id=req.user,
        type=OrderType(req.type),
        token_in=req.tokenIn,
        token_out=req.tokenOut,
        amount_in=amount_in,
        slippage_bps=req.slippageBps,
        quote_id=req.quoteId,
        limit_price=req.limitPrice,
        expires_at=expiry(req.ttlSeconds, req.expiresAt),
        routing=None if options.is_default else options.as_fields(),
    )


async def exact_out_budget(svc: Services, req: OrderRequest) -> Decimal:
    """maxAmountIn by default: the input the route needs for amountOut now, plus slippage."""
    assert req.amountOut is not None
    try:
        routed = await svc.chain.route(req.tokenIn, req.tokenOut, req.amountOut, req.options)
    except VenueError as err:
        raise ApiError(503, err.reason, err.message) from None
    except MarketError as err:
        raise ApiError(422, err.reason, err.message) from None
    token = find_token(req.tokenIn)
    assert token is not None
    budget = quantize_up(more_bps(routed.amount_in, req.slippageBps), token.decimals)
    if budget > svc.settings.max_amount_in:
        raise ApiError(
            422,
            "validation_error",
            f"amountOut: needs about {budget} {req.tokenIn}, above the maximum order size of "
            f"{svc.settings.max_amount_in}",
        )
    return budget


# Submission is the hot path: its handler takes the bare request and reads the one
# header and query parameter itself, because FastAPI's dependency solving cost a fifth
# of the API process's time under load. The parameters are declared for the docs here,
# and `SubmissionFastPath` calls the handler without the router in between.
SUBMIT_PATH = "/api/orders/execute"
IDEMPOTENCY_KEY_MAX = 200
_SUBMIT_PARAMETERS = [
    {
        "name": "upgrade",
        "in": "query",
        "required": False,
        "description": "ws: also return a websocketUrl",
        "schema": {"type": "string"},
    },
    {
        "name": "idempotency-key",
        "in": "header",
        "required": False,
        "description": "a retry with the same key and body returns the first order",
        "schema": {"type": "string", "maxLength": IDEMPOTENCY_KEY_MAX},
    },
]

submission = APIRouter(tags=["orders"])


@submission.post(
    SUBMIT_PATH,
    status_code=202,
    openapi_extra={**_ORDER_BODY, "parameters": _SUBMIT_PARAMETERS, "security": ex.SECURITY},
    summary="Submit an order",
    operation_id="submitOrder",
    response_model=views.AcceptedView,
    responses={
        202: {
            "content": {"application/json": {"example": _ACCEPTED_EXAMPLE}},
            "links": ex.order_links("$response.body#/orderId"),
            "headers": {
                "Idempotent-Replayed": {
                    "description": "`true` when an earlier request with this Idempotency-Key "
                    "created the order returned",
                    "schema": {"type": "string", "enum": ["true"]},
                }
            },
        },
        **ex.refusals(400, 401, 403, 409, 413, 415, 422, 429, 503),
    },
)
async def execute(request: Request) -> Response:
    """Validate, store (committed before the answer) and queue an order."""
    headers = request.headers
    query = request.scope["query_string"]
    submission = Submission(
        body=await request.body(),
        content_type=headers.get("content-type", ""),
        idempotency_key=headers.get("idempotency-key"),
        address=request.client.host if request.client else None,
        upgrade_ws=bool(query) and request.query_params.get("upgrade") == "ws",
        principal=request.app.state.auth.principal(request),
    )
    status, body_out, answer_headers = await submit(request.app.state, submission)
    return JSONResponse(body_out, status_code=status, headers=answer_headers)


@dataclass(frozen=True, slots=True)
class Submission:
    """What the submission handler reads of a request, whichever way it came in: through
    the ASGI stack (`execute`) or straight from the HTTP protocol (api/httpdirect.py)."""

    body: bytes
    content_type: str
    idempotency_key: str | None
    address: str | None
    upgrade_ws: bool
    principal: Principal


REPLAYED = {"Idempotent-Replayed": "true"}


async def submit(state: Any, submission: Submission) -> tuple[int, dict[str, Any], dict[str, str]]:
    """The answer to a submission: (status, body, headers), or ApiError for a refusal.

    `state` is the application's state (services, intake, limiter).
    """
    svc: Services = state.services
    address = submission.address
    try:
        req, idempotency_key = _submitted_order(submission, svc.settings.max_amount_in)
    except ApiError:
        await state.limiter.check(address, None)  # refused requests count too
        raise
    await state.limiter.check(address, req.user)
    await check_backlog(svc)
    try:
        # Only a retry with the same key compares fingerprints: without one, none is
        # computed (it was a tenth of the handler).
        fingerprint = req.fingerprint() if idempotency_key is not None else None
        order, created = await state.intake.accept(
            await new_order(req, svc), idempotency_key, fingerprint
        )
    except IdempotencyConflict as err:
        raise ApiError(
            409,
            "idempotency_conflict",
            "this Idempotency-Key was already used with a different order body",
            {"orderId": str(err.order_id)},
        ) from None
    except Refused as err:
        raise ApiError(err.status, err.code, err.message) from None
    body_out: dict[str, Any] = {"orderId": str(order.id), "status": order.status.value}
    if submission.upgrade_ws:
        body_out["websocketUrl"] = f"/ws/orders/{order.id}"
    return 202, body_out, {} if created else REPLAYED


class SubmissionFastPath:
    """ASGI middleware: `POST /api/orders/execute` goes straight to its handler.

    Routing, FastAPI's request wrapper and the exception middleware cost more than
    a third of an API process under submission load, for a route that needs none of
    them. The route stays declared on the router, for the OpenAPI document and any
    request this does not take; errors leave in the same shape as everywhere else,
    and anything unexpected still reaches the server-error middleware (500).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != SUBMIT_PATH:
            await self.app(scope, receive, send)
            return
        response: Response
        if scope["method"] != "POST":
            # Without this, `GET /api/orders/execute` would be read as order id "execute".
            await error_response(
                405, "method_not_allowed", "submit orders with POST", headers={"Allow": "POST"}
            )(scope, receive, send)
            return
        try:
            response = await execute(Request(scope, receive))
        except ApiError as err:
            response = api_error_response(err)
        except DATABASE_DOWN as err:
            response = database_down_response(err)
        await response(scope, receive, send)


def _submitted_order(
    submission: Submission, max_amount_in: Decimal
) -> tuple[OrderRequest, str | None]:
    """The order in the request and its Idempotency-Key, or ApiError (403, 415, 422)."""
    if "json" not in submission.content_type.split(";")[0].lower():
        raise ApiError(415, "unsupported_media_type", "send the order as application/json")
    key = submission.idempotency_key
    if key is not None and len(key) > IDEMPOTENCY_KEY_MAX:
        raise ApiError(
            422,
            "validation_error",
            f"idempotency-key: at most {IDEMPOTENCY_KEY_MAX} characters",
        )
    return parse_order_request(
        submission.body, max_amount_in, submission.principal.user_id
    ), key  # the body's size was bounded before it was read (413)


async def _visible_order(svc: Services, who: Principal, order_id: str) -> Order:
    """The order, if it exists and the caller may see it; 404 alike otherwise."""
    order = await svc.repo.get(parse_order_id(order_id))
    if order is None or not who.may_see(order.user_id):
        raise ApiError(404, "not_found", f"order {order_id} does not exist")
    return order


async def check_backlog(svc: Services) -> None:
    """429 instead of accepting hours of work: the queue's backlog has a ceiling."""
    limit = svc.settings.max_queue_depth
    try:
        backlog = await svc.queue.backlog()
    except (RedisError, OSError):
        return  # the queue is unreachable; the order can still be stored and reconciled
    if backlog >= limit:
        raise ApiError(
            429,
            "queue_full",
            f"{backlog} orders are waiting to execute (limit {limit}); retry later",
            headers={"Retry-After": str(max(1, (backlog - limit) // 100 + 1))},
        )


@router.get(
    "",
    summary="A user's order history, newest first",
    operation_id="listOrders",
    response_model=views.HistoryView,
    responses=ex.ok(ex.HISTORY, links=ex.order_links("$response.body#/orders/0/orderId")),
)
async def history(
    svc: ServicesDep,
    who: PrincipalDep,
    user_id: Annotated[
        str | None,
        Query(
            alias="userId",
            pattern=USER_ID_PATTERN,
            description="whose orders; optional with an API key, which names the user",
        ),
    ] = None,
    status: Annotated[
        str | None, Query(description="one status or several, comma-separated")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: Annotated[str | None, Query(description="orderId: return orders older than it")] = None,
    client_order_id: Annotated[
        str | None,
        Query(
            alias="clientOrderId",
            max_length=IDEMPOTENCY_KEY_MAX,
            description="the Idempotency-Key an order was placed with: that order only",
        ),
    ] = None,
) -> Response:
    if user_id is None:
        if who.user_id is None:
            raise ApiError(422, "validation_error", "userId: required without an API key")
        user_id = who.user_id
    elif who.user_id is not None and user_id != who.user_id:
        raise ApiError(403, "forbidden", "you can list only your own orders")
    statuses = None
    if status:
        statuses = [s.strip() for s in status.split(",") if s.strip()]
        valid = {s.value for s in OrderStatus}
        unknown = [s for s in statuses if s not in valid]
        if unknown:
            raise ApiError(422, "validation_error", f"status: unknown status {unknown[0][:30]!r}")
    cursor = None
    if before:
        anchor = await svc.repo.get(parse_order_id(before))
        if anchor is None or anchor.user_id != user_id:
            raise ApiError(422, "validation_error", "before: no such order of this user")
        cursor = (anchor.created_at, anchor.id)
    orders = await svc.repo.history(user_id, statuses, limit, cursor, client_order_id)
    next_before = str(orders[-1].id) if len(orders) == limit else None
    return JSONResponse({"orders": [order_view(o) for o in orders], "nextBefore": next_before})


@router.get(
    "/status/{order_id}",
    summary="An order's current status",
    operation_id="getOrderStatus",
    response_model=views.StatusView,
    responses=ex.ok(ex.STATUS),
)
async def status_of(order_id: OrderId, svc: ServicesDep, who: PrincipalDep) -> Response:
    order = await _visible_order(svc, who, order_id)
    return JSONResponse(
        {
            "orderId": str(order.id),
            "status": order.status.value,
            "attempt": order.attempts,
            "updatedAt": order.updated_at,
        }
    )


@router.get(
    "/{order_id}",
    summary="An order's full record",
    operation_id="getOrder",
    response_model=views.OrderView,
    responses=ex.ok(ex.ORDER),
)
async def get_order(order_id: OrderId, svc: ServicesDep, who: PrincipalDep) -> Response:
    order = await _visible_order(svc, who, order_id)
    return JSONResponse(order_view(order))


@router.get(
    "/{order_id}/events",
    summary="An order's whole event history, in order",
    operation_id="getOrderEvents",
    response_model=views.EventsView,
    responses=ex.ok(ex.EVENTS),
)
async def events(order_id: OrderId, svc: ServicesDep, who: PrincipalDep) -> Response:
    order = await _visible_order(svc, who, order_id)
    oid = order.id
    stored = await svc.repo.events(oid)
    messages = [event_message(e, order.user_id) for e in stored]
    if order.client_order_id is not None:  # every stored event carries the client's key
        for message in messages:
            message["clientOrderId"] = order.client_order_id
    return JSONResponse({"orderId": str(oid), "events": messages})


@router.delete(
    "/{order_id}",
    summary="Cancel an order that has not started routing",
    operation_id="cancelOrder",
    response_model=views.OrderView,
    responses=ex.ok(ex.CANCELLED),
)
async def cancel(
    order_id: OrderId, svc: ServicesDep, intake: IntakeDep, who: PrincipalDep
) -> Response:
    visible = await _visible_order(svc, who, order_id)
    try:
        order = await intake.cancel(visible.id)
    except Refused as err:
        raise ApiError(err.status, err.code, err.message) from None
    return JSONResponse(order_view(order))
