"""Prometheus metrics: what the engine did, how long stages took, what is executing,
how deep the queue is, who is watching.

One process keeps its figures in memory. Several API processes behind one port
(`API_PROCESSES` > 1) use prometheus-client's multiprocess mode instead: the parent
makes a fresh directory and names it in `PROMETHEUS_MULTIPROC_DIR` before it starts
the children (`shared_across_processes`), each child writes its figures to files
there, and `/metrics`, whichever child answers it, sums them (`exposition`). Gauges
say how they combine: a count of things open is summed over the living processes, the
queue depth (the same figure read by each) is the latest reading. A child that crashes
leaves its gauge files behind until the next start; counters and histograms are sums
and stay right.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from dexecutor.domain.order import EXECUTING, Order, OrderEvent

ORDER_EVENTS = Counter(
    "dexecutor_order_events", "Order status changes committed, by status", ["status"]
)
ORDERS_ACCEPTED = Counter(
    "dexecutor_orders_accepted", "Orders accepted (stored) over HTTP or WebSocket"
)
STAGE_SECONDS = Histogram(
    "dexecutor_stage_seconds",
    "Time an order spent in a status before leaving it",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60),
)
EXECUTING_NOW = Gauge(
    "dexecutor_orders_executing",
    "Orders in routing, building or submitted in this process",
    multiprocess_mode="livesum",
)
QUEUE_DEPTH = Gauge(
    "dexecutor_queue_depth",
    "Jobs in the order queue, by state",
    ["state"],
    multiprocess_mode="mostrecent",
)
WEBSOCKETS = Gauge(
    "dexecutor_websocket_connections",
    "Open WebSocket connections",
    ["kind"],
    multiprocess_mode="livesum",
)
VENUE_ERRORS = Counter("dexecutor_venue_errors", "Failed attempts by venue-side reason", ["reason"])
TX_BROADCASTS = Counter(
    "dexecutor_tx_broadcasts",
    "Transactions handed to the chain: first sends, and rebroadcasts of the same bytes"
    " while unconfirmed",
    ["kind"],
)
INTERNAL_ERRORS = Counter(
    "dexecutor_internal_errors",
    "Deterministic exceptions while executing an order (bugs, unprocessable rows);"
    " PostgreSQL or Redis being unreachable is not counted",
)


class EngineMetrics:
    """The engine's observer: turns each committed event into metric updates."""

    def event(self, before: Order, event: OrderEvent) -> None:
        STAGE_SECONDS.labels(before.status.value).observe(
            max(0.0, (event.at - before.updated_at).total_seconds())
        )
        was, now = before.status in EXECUTING, event.status in EXECUTING
        if now and not was:
            EXECUTING_NOW.inc()
        elif was and not now:
            EXECUTING_NOW.dec()
        reason = event.data.get("reason")
        if reason is not None and event.status.value in ("retrying", "failed"):
            VENUE_ERRORS.labels(str(reason)).inc()

    def internal_error(self) -> None:
        INTERNAL_ERRORS.inc()


# prometheus-client's own contract: set before the processes that count are started.
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def shared_across_processes() -> Iterator[str]:
    """A fresh directory for the figures of the processes started inside the block.

    Fresh per start, so counters never carry over from an earlier run (or from another
    deployment on the host), and removed afterwards.
    """
    folder = tempfile.mkdtemp(prefix="dexecutor-metrics-")
    previous = os.environ.get(MULTIPROC_DIR)
    os.environ[MULTIPROC_DIR] = folder
    try:
        yield folder
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_DIR, None)
        else:
            os.environ[MULTIPROC_DIR] = previous
        shutil.rmtree(folder, ignore_errors=True)


def exposition() -> bytes:
    """The Prometheus text of this process, or of all of them in multiprocess mode."""
    if os.environ.get(MULTIPROC_DIR):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()
