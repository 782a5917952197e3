"""Redis connections and key names, shared by the bus and the quote book."""

from __future__ import annotations

from redis.asyncio import Redis


def connect(url: str) -> Redis:
    """A client that reconnects by itself; callers decide what a failure means."""
    return Redis.from_url(url, health_check_interval=15, socket_keepalive=True)


class Keys:
    """Every Redis key and channel name, under one namespace so deployments can share Redis."""

    def __init__(self, namespace: str) -> None:
        self.ns = namespace

    @property
    def events(self) -> str:
        return f"{self.ns}:events"

    @property
    def wait_events(self) -> str:
        """Channel repeating the events that start or end a wait (for trigger books).

        A worker process has no watchers; listening here instead of on `events` spares
        it decoding four of every five events.
        """
        return f"{self.ns}:events:wait"

    @property
    def market(self) -> str:
        """Channel announcing launches and price moves made on the chain (wakes trigger books)."""
        return f"{self.ns}:market"

    def quote(self, quote_id: str) -> str:
        return f"{self.ns}:quote:{quote_id}"

    @property
    def crash_hub(self) -> str:
        """Channel whose messages make the event hub's loop raise (ENV=test only).

        The fault tests use it to kill the loop for real and watch it come back.
        """
        return f"{self.ns}:test:crash-hub"
