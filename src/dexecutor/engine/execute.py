"""Running one order through one attempt: routing → building → submitted → confirmed.

The engine picks up an order in whatever status it was left (a crashed worker leaves
it mid-flight) and carries it on: each step commits its event, then publishes it.
A step after `building` first asks the chain whether this order already sent a
transaction, so a retry never swaps twice. Failures become `retrying` (with the
backoff the queue should wait) or `failed`.

A swap is recorded (write-ahead, in the outbox) before it is sent, fenced by the
order's sequence number: a worker whose job lock lapsed while another carries the same
order gets no record in (SubmitRefused), the store refuses its events, and it leaves
the order to its new owner. A resumed order sends its recorded transaction again,
with the same signature, and the chain runs a signature once.

`submitted` waits for the transaction's outcome, the venue rebroadcasting the same
bytes meanwhile. A new attempt (and so a new signature) follows only an outcome that
rules the first out for good: it reverted on chain (its fee paid, the event says so),
or its blockhash expired with the transaction still unseen (`blockhash_expired`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from typing import Any, Protocol
from uuid import UUID

import asyncpg
import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dexecutor.domain.failures import FailureReason, backoff_ms, is_retryable
from dexecutor.domain.money import less_bps, limit_floor, math_context, quantize_down
from dexecutor.domain.order import Order, OrderEvent, OrderStatus, OrderType
from dexecutor.engine.routing import (
    Routed,
    RouteOptions,
    Router,
    decide,
    single_route,
    swap_terms,
)
from dexecutor.engine.triggers import expired_because, trigger_of
from dexecutor.group_commit import GroupCommit, ItemFailed
from dexecutor.market.fees import effective_price, fee_detail, lamports_to_sol, venue_fee
from dexecutor.market.tokens import find_token
from dexecutor.market.types import MarketError
from dexecutor.market.venue import Fill, Reverted, SignedTx, SubmitRefused, Venue
from dexecutor.store.orders import StaleOrder

log = structlog.get_logger(__name__)
S = OrderStatus


class Repository(Protocol):
    async def get(self, order_id: UUID) -> Order | None: ...
    async def append_many(
        self, steps: Sequence[tuple[Order, OrderEvent]]
    ) -> list[Order | ItemFailed]: ...
    async def count_internal_error(self, order_id: UUID) -> int | None: ...


class Outbox(Protocol):
    async def record(self, order_id: UUID, attempt: int, seq: int, tx: SignedTx) -> SignedTx: ...
    async def recorded(self, order_id: UUID, attempt: int) -> SignedTx | None: ...


class Publisher(Protocol):
    async def publish(self, event: OrderEvent, user_id: str) -> None: ...
    async def publish_many(self, events: Sequence[tuple[OrderEvent, str]]) -> None: ...


class Funds(Protocol):
    """The pre-trade check: raises MarketError(insufficient_funds) when the user's wallet
    cannot pay the order's input and network fee (the order's own reservation excluded)."""

    async def check(self, order: Order) -> None: ...


class Observer(Protocol):
    """Hooks for metrics; the engine reports, it does not know Prometheus."""

    def event(self, before: Order, event: OrderEvent) -> None: ...
    def internal_error(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Policy:
    max_attempts: int
    backoff_base_ms: int
    quote_timeout_s: float
    # Deterministic exceptions (bugs, rows the engine cannot process) an order may
    # suffer before it fails with `internal_error` instead of being retried forever.
    internal_error_limit: int


# Trouble reaching PostgreSQL or Redis, or a transaction PostgreSQL asked to repeat.
# It is retried for as long as it lasts and never held against the order: the order
# did nothing wrong, and while PostgreSQL is away no count could be stored anyway.
PASSING_TROUBLE: tuple[type[BaseException], ...] = (
    OSError,  # ConnectionError and TimeoutError among them (sockets, pool acquire)
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # connection closed or pool closing under the query
    # A connection whose protocol state a database outage broke mid-statement (a known
    # asyncpg failure after the server restarts); the next attempt gets another one.
    asyncpg.InternalClientError,
    asyncpg.OperatorInterventionError,  # admin shutdown, cannot connect now, query canceled
    asyncpg.InsufficientResourcesError,  # too many connections, disk full
    asyncpg.TransactionRollbackError,  # deadlock, serialization failure
    RedisConnectionError,
    RedisTimeoutError,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Engine:
    def __init__(
        self,
        repo: Repository,
        publisher: Publisher,
        venues: Mapping[str, Venue],
        outbox: Outbox,
        policy: Policy,
        observer: Observer | None = None,
        clock: Callable[[], datetime] = utcnow,
        funds: Funds | None = None,
        router: Router | None = None,
    ) -> None:
        self._repo = repo
        self._publisher = publisher
        self._venues = venues
        self._outbox = outbox
        self._policy = policy
        self._observer = observer
        self._clock = clock
        self._funds = funds
        # The split router (the chain's quote): one request per routing. Without it the
        # engine quotes each venue for the whole order (one leg).
        self._router = router
        # The steps of all the orders in flight, stored and then published in batches:
        # one statement and one pipeline for every step taken meanwhile.
        self._steps: GroupCommit[tuple[Order, OrderEvent], Order] = GroupCommit(
            self._commit_steps, max_flushes=1
        )

    async def process(self, order_id: UUID) -> int | None:
        """Carry the order as far as it goes now. Returns a retry delay (ms) or None when done.

        Every log line written while this runs (here, in the venues, the store) carries
        the order id and attempt: they are bound to this task's logging context.
        """
        with structlog.contextvars.bound_contextvars(order_id=str(order_id)):
            try:
                return await self._process(order_id)
            except (SubmitRefused, StaleOrder) as err:
                # The order moved on without this worker: another one carries it now (this
                # one's job lock lapsed) or a cancel ended it. Anything more from here
                # could only contradict that.
                log.warning("order moved on elsewhere: leaving it", error=str(err))
                return None
            except PASSING_TROUBLE:
                raise
            except Exception as err:
                return await self._internal_error(order_id, err)

    async def _process(self, order_id: UUID) -> int | None:
        order = await self._repo.get(order_id)
        if order is None:
            log.warning("job for unknown order")
            return None
        if order.is_terminal:
            return None
        if order.type is not OrderType.MARKET and order.status in (S.PENDING, S.WAITING):
            # Only a trigger starts a limit or sniper order. One still pending (stored
            # before such orders were born waiting) waits first; one picked up after
            # its expiry expires. Once routing, it is too late to expire: it runs on.
            if order.status is S.PENDING:
                await self._step(order, S.WAITING, trigger=trigger_of(order))
                return None
            if order.expires_at is not None and order.expires_at <= self._clock():
                await self._step(order, S.EXPIRED, **expired_because(order))
                return None
        # A waiting order's job exists only once its trigger fired.
        if order.status in (S.PENDING, S.RETRYING, S.WAITING):
            order = await self._step(order, S.ROUTING)
        structlog.contextvars.bind_contextvars(attempt=order.attempts)
        sent: SignedTx | None = None
        try:
            if order.status is S.ROUTING:
                order = await self._route(order)
            if order.status is S.BUILDING:
                order, sent = await self._submit(order)
            if order.status is S.SUBMITTED:
                order = await self._confirm(order, sent)
        except MarketError as err:
            log.info("attempt failed", reason=err.reason, message=err.message)
            landed: dict[str, Any] = {}
            if isinstance(err, Reverted):
                # It landed and failed: on chain for good, its fee paid.
                landed = {
                    "txHash": err.tx_hash,
                    "slot": err.slot,
                    "networkFee": lamports_to_sol(err.network_fee.lamports),
                    "networkFeeDetail": fee_detail(err.network_fee),
                }
            return await self._fail_attempt(order, err.reason, err.message, **landed)
        return None

    async def _step(self, order: Order, status: OrderStatus, **data: Any) -> Order:
        event = order.event(status, self._clock(), **data)
        return await self._steps.submit((order, event))

    async def _commit_steps(
        self, steps: list[tuple[Order, OrderEvent]]
    ) -> list[Order | ItemFailed]:
        """Store a batch of steps in one statement, then publish the stored ones' events.

        Every event is committed before it is published, and a step refused (the order
        moved on, an illegal transition) is neither published nor counted. If the publish
        fails, each stored step's caller gets that error (passing trouble: it carries on
        from the stored order) and each refused one still its own.
        """
        answers = await self._repo.append_many(steps)
        stored = [
            (order, event)
            for (order, event), answer in zip(steps, answers, strict=True)
            if not isinstance(answer, ItemFailed)
        ]
        if not stored:
            return answers
        if self._observer is not None:
            for order, event in stored:
                self._observer.event(order, event)
        try:
            await self._publisher.publish_many([(event, order.user_id) for order, event in stored])
        except Exception as err:
            return [a if isinstance(a, ItemFailed) else ItemFailed(err) for a in answers]
        return answers

    async def _route(self, order: Order) -> Order:
        if order.quote_expires_at_passed(self._clock()):
            raise MarketError(
                FailureReason.QUOTE_EXPIRED,
                f"quote {order.quote_id} expired before the order could be routed",
            )
        if self._funds is not None:
            # Before any quote: an order the wallet cannot pay fails here, not on chain
            # (where it would still cost its fee). A limit or sniper order that fires
            # unfunded fails the same way.
            await self._funds.check(order)
        options = RouteOptions.from_fields(order.routing)
        if self._router is not None:
            routed = await self._ask_router(order, options)
        else:
            routed = await self._ask_venues(order, options)
        token_out = find_token(order.token_out)
        assert token_out is not None
        exact_out = options.swap_mode == "ExactOut"
        extra: dict[str, Any] = {}
        if exact_out:
            # The exact output is the minimum; the input is bounded by maxAmountIn
            # (stored as the order's amountIn), which the transaction may not exceed.
            assert options.amount_out is not None
            min_out = options.amount_out
            if routed.amount_in > order.amount_in:
                raise MarketError(
                    FailureReason.SLIPPAGE_EXCEEDED,
                    f"{min_out} {order.token_out} now takes {routed.amount_in} "
                    f"{order.token_in}, above the maximum of {order.amount_in}",
                )
            extra["maxAmountIn"] = order.amount_in
        else:
            min_out = quantize_down(
                less_bps(routed.amount_out, order.slippage_bps), token_out.decimals
            )
        if order.quote_min_amount_out is not None:
            min_out = max(min_out, order.quote_min_amount_out)
        if order.limit_price is not None:
            min_out = max(
                min_out, limit_floor(order.limit_price, order.amount_in, token_out.decimals)
            )
        if routed.amount_out < min_out:
            # Sending it would only buy a revert (and, on a real chain, its fee).
            raise MarketError(
                FailureReason.SLIPPAGE_EXCEEDED,
                f"the best route ({routed.amount_out} {order.token_out} on {routed.dex})"
                f" is below the required minimum of {min_out}",
            )
        plan = routed.plan
        # The arrival mid is the one read when the order was first routed: a retry
        # keeps it, so the shortfall counts every attempt's cost.
        arrival = (order.route or {}).get("arrivalMid", routed.mid)
        table = routed.quotes
        legs = plan["routePlan"]
        log.info(
            "routed",
            dex=routed.dex,
            legs=len(legs),
            amount_out=str(routed.amount_out),
            split_gain_bps=str(plan.get("splitGainBps")),
            quotes={v: str(q.get("amountOut", q.get("error"))) for v, q in table.items()},
        )
        top = max(legs, key=lambda leg: leg["percent"])
        return await self._step(
            order,
            S.BUILDING,
            dex=routed.dex,
            route=list(top["path"]),
            quotes=table,
            expectedAmountOut=routed.amount_out,
            minAmountOut=min_out,
            swapMode=options.swap_mode,
            amountIn=routed.amount_in,
            amountOut=routed.amount_out,
            routePlan=legs,
            bestSingle=plan.get("bestSingle"),
            splitGainBps=plan.get("splitGainBps", Decimal(0)),
            arrivalMid=arrival,
            **extra,
        )

    def _wanted(self, order: Order, options: RouteOptions) -> Decimal:
        """What the route is asked for: the input, or the output of an ExactOut order."""
        if options.swap_mode == "ExactOut":
            assert options.amount_out is not None
            return options.amount_out
        return order.amount_in

    async def _ask_router(self, order: Order, options: RouteOptions) -> Routed:
        """One request to the router (the chain): the whole plan, split or not."""
        assert self._router is not None
        try:
            return await asyncio.wait_for(
                self._router.route(
                    order.token_in, order.token_out, self._wanted(order, options), options
                ),
                self._policy.quote_timeout_s,
            )
        except TimeoutError:
            raise MarketError(
                FailureReason.VENUE_TIMEOUT,
                f"the router did not answer within {self._policy.quote_timeout_s:g}s",
            ) from None

    async def _ask_venues(self, order: Order, options: RouteOptions) -> Routed:
        """Without a router: every allowed venue's quote for the whole order, one leg."""
        if options.swap_mode == "ExactOut":
            raise MarketError(FailureReason.NO_ROUTE, "ExactOut needs the chain's router")
        allowed = options.venues()
        decision = await decide(
            [v for name, v in self._venues.items() if name in allowed],
            order.token_in,
            order.token_out,
            order.amount_in,
            self._policy.quote_timeout_s,
        )
        best = decision.best
        if best is None:
            raise decision.failure()
        return single_route(best, decision.table())

    async def _submit(self, order: Order) -> tuple[Order, SignedTx]:
        assert order.dex_used is not None and order.min_amount_out is not None
        venue = self._venues[order.dex_used]
        # The route as planned: its legs go in one transaction (the router's instruction
        # when split, multi-hop or exact-out); an order routed before plans were kept has
        # none and goes whole to its venue.
        terms = swap_terms(order) if (order.route or {}).get("routePlan") else None
        built = await venue.build(
            order.id,
            order.attempts,
            order.user_id,
            order.token_in,
            order.token_out,
            terms.amount_in if terms is not None else order.amount_in,
            order.min_amount_out,
            legs=terms.legs if terms is not None else None,
            exact_out=terms.exact_out if terms is not None else False,
        )
        # Write-ahead, fenced by the building event's seq (SubmitRefused if the order
        # moved on). A worker that died after recording hands its transaction on: the
        # record returns that one, and it is sent again as is (same signature).
        tx = await self._outbox.record(order.id, order.attempts, order.seq, built)
        sent = await venue.send(tx)
        after = await self._step(
            order,
            S.SUBMITTED,
            dex=tx.venue,
            txHash=tx.signature,
            slot=sent.slot,
            lastValidBlockHeight=tx.last_valid_block_height,
            computeUnitPrice=sent.compute_unit_price,
            computeUnitLimit=sent.compute_unit_limit,
        )
        return after, tx

    async def _confirm(self, order: Order, tx: SignedTx | None) -> Order:
        """Wait for the attempt's transaction: confirmed, reverted, or expired unlanded.

        A resumed order (`tx` None: another worker sent it) waits on the recorded bytes,
        asking the chain first and rebroadcasting them while they can still land.
        """
        assert order.dex_used is not None and order.tx_hash is not None
        if tx is None:
            tx = await self._outbox.recorded(order.id, order.attempts)
        if tx is None or tx.signature != order.tx_hash:  # recorded before the outbox was
            tx = SignedTx(order.tx_hash, order.dex_used, "")
        fill = await self._venues[order.dex_used].confirm(tx)
        return await self._step(order, S.CONFIRMED, **self._fill_fields(order, fill))

    @staticmethod
    def _fill_fields(order: Order, fill: Fill) -> dict[str, Any]:
        """The confirmed event's fields: the fill, where it landed, and every fee.

        The venue fee and price impact are the route's (its legs' fees summed, the
        impact weighted by input); the amounts are what the wallet's balances moved
        (an exact-out swap spends at most its maximum).
        """
        amount_in = fill.amount_in if fill.amount_in is not None else order.amount_in
        fee, impact = _route_costs(order, amount_in)
        return {
            "dex": fill.venue,
            "txHash": fill.tx_hash,
            "executedPrice": fill.executed_price,
            "amountIn": amount_in,
            "amountOut": fill.amount_out,
            "slot": fill.slot,
            "commitment": fill.commitment,
            "finalizedAtSlot": fill.finalized_at_slot,
            "venueFee": {"amount": fee, "token": order.token_in} if fee is not None else None,
            "networkFee": lamports_to_sol(fill.network_fee.lamports),
            "networkFeeDetail": fee_detail(fill.network_fee),
            "priceImpact": impact,
            "effectivePrice": effective_price(
                order.token_in,
                order.token_out,
                amount_in,
                fill.amount_out,
                fill.network_fee,
                fill.sol_price,
            ),
        }

    async def _fail_attempt(
        self, order: Order, reason: str, message: str, **landed: Any
    ) -> int | None:
        retryable = is_retryable(reason)
        if retryable and order.attempts < self._policy.max_attempts:
            delay = backoff_ms(self._policy.backoff_base_ms, order.attempts)
            await self._step(
                order,
                S.RETRYING,
                reason=reason,
                message=message,
                retryable=True,
                nextAttempt=order.attempts + 1,
                delayMs=delay,
                **landed,
            )
            return delay
        if retryable:
            message = f"{message}; gave up after {order.attempts} attempts"
        await self._step(
            order, S.FAILED, reason=reason, message=message, retryable=retryable, **landed
        )
        return None

    async def _internal_error(self, order_id: UUID, err: Exception) -> int | None:
        """Count a deterministic exception against the order; at the bound, fail the order.

        Below the bound the exception goes back to the queue, which runs the job again
        after its backoff: a transient bug, or a row repaired meanwhile, lets the order
        carry on. The count lives in PostgreSQL, so it survives restarts and Redis loss.
        """
        log.error("internal error while executing the order", exc_info=err)
        if self._observer is not None:
            self._observer.internal_error()
        count = await self._repo.count_internal_error(order_id)
        limit = self._policy.internal_error_limit
        if count is None or count < limit:
            raise err
        order = await self._repo.get(order_id)
        if order is None or order.is_terminal:
            return None
        log.error("giving the order up after repeated internal errors", internal_errors=count)
        if order.status in (S.PENDING, S.WAITING):  # failed is reached through routing
            order = await self._step(order, S.ROUTING)
        await self._step(
            order,
            S.FAILED,
            reason=FailureReason.INTERNAL_ERROR,
            message=f"gave up after {count} internal errors ({type(err).__name__})",
            retryable=False,
        )
        return None


def _route_costs(order: Order, amount_in: Decimal) -> tuple[Decimal | None, Decimal | None]:
    """The venue fee (in tokenIn) and price impact of the route the order took.

    Each leg pays its venues' fee rate on its share of the input (scaled to what was
    spent, for an exact-out swap that spent less than planned); the impact is the legs'
    impacts weighted by their inputs. Without a plan (an order routed before plans were
    kept), the chosen venue's quote.
    """
    legs = (order.route or {}).get("routePlan")
    if not legs:
        chosen = (order.quotes or {}).get(order.dex_used or "")
        chosen = chosen if isinstance(chosen, Mapping) else {}
        rate, impact = chosen.get("fee"), chosen.get("priceImpact")
        fee = venue_fee(order.token_in, amount_in, Decimal(rate)) if rate is not None else None
        return fee, Decimal(impact) if impact is not None else None
    planned = sum((Decimal(leg["amountIn"]) for leg in legs), Decimal(0))
    if planned <= 0:
        return None, None
    with localcontext(math_context()):
        scale = amount_in / planned
        fee = sum(
            (
                venue_fee(order.token_in, Decimal(leg["amountIn"]) * scale, Decimal(leg["fee"]))
                for leg in legs
            ),
            Decimal(0),
        )
        impact = sum(
            (Decimal(leg["priceImpact"]) * Decimal(leg["amountIn"]) / planned for leg in legs),
            Decimal(0),
        )
    return fee, impact.normalize()
