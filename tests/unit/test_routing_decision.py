"""Which refusal an order gets when no venue quoted: transient if any venue's was."""

from __future__ import annotations

from dexecutor.domain.failures import FailureReason, is_retryable
from dexecutor.engine.routing import Decision
from dexecutor.market.types import MarketError
from dexecutor.market.venue import VenueError

R = FailureReason


def failure_of(*errors: MarketError) -> MarketError:
    names = ("raydium", "meteora", "orca")
    return Decision(dict(zip(names, errors, strict=False)), None).failure()


def test_one_venue_short_of_liquidity_and_one_timing_out_is_transient() -> None:
    shallow = MarketError(R.INSUFFICIENT_LIQUIDITY, "raydium: not enough liquidity")
    late = VenueError(R.VENUE_TIMEOUT, "meteora did not quote within 1.5s")
    for errors in ((shallow, late), (late, shallow)):
        failure = failure_of(*errors)
        assert failure.reason == R.VENUE_TIMEOUT and is_retryable(failure.reason)
        # The user still learns what the other venue said.
        assert "not enough liquidity" in failure.message


def test_the_most_telling_transient_reason_wins() -> None:
    failure = failure_of(
        MarketError(R.NO_ROUTE, "no route"),
        VenueError(R.VENUE_UNAVAILABLE, "meteora answered 503"),
        VenueError(R.VENUE_TIMEOUT, "orca did not quote"),
    )
    assert failure.reason == R.VENUE_TIMEOUT


def test_permanent_only_when_every_venue_refused_for_good() -> None:
    shallow = MarketError(R.INSUFFICIENT_LIQUIDITY, "raydium: not enough liquidity")
    failure = failure_of(shallow, MarketError(R.NO_ROUTE, "meteora: no route"))
    assert failure is shallow and not is_retryable(failure.reason)
    failure = failure_of(MarketError(R.NO_ROUTE, "a"), MarketError(R.NO_ROUTE, "b"))
    assert failure.reason == R.NO_ROUTE and failure.message == "no venue has a route for this pair"
    late = VenueError(R.VENUE_TIMEOUT, "both late")
    assert failure_of(late, VenueError(R.VENUE_TIMEOUT, "again")) is late
