"""Scripted venue faults, held by the chain: the one place every quote and swap passes.

A fault armed through any API process is forwarded here, so "the next N calls" counts
across every worker without any shared store: the chain serves them all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from dexecutor.market.types import VENUES
from dexecutor.market.venue import FAULT_KINDS, Fault


@dataclass(slots=True)
class _Armed:
    remaining: int | None  # None: until it expires
    expires_at: float | None  # time.monotonic(); None: until used up
    bps: int
    slots: int = 0


class FaultBoard:
    def __init__(self) -> None:
        self._armed: dict[tuple[str, str], _Armed] = {}

    def arm(
        self,
        venue: str,
        kind: str,
        count: int | None,
        duration_ms: int | None,
        bps: int,
        slots: int = 0,
    ) -> None:
        """Make `venue` suffer `kind` for the next `count` calls or for `duration_ms`.

        A swap fault counts transactions (their first broadcast), not rebroadcasts.
        """
        expires = time.monotonic() + duration_ms / 1000 if duration_ms is not None else None
        self._armed[(venue, kind)] = _Armed(count, expires, bps, slots)

    def clear(self) -> None:
        self._armed.clear()

    def take(self, venue: str, kinds: tuple[str, ...]) -> Fault | None:
        """Consume the first armed fault of `kinds` on `venue`, if any."""
        if not self._armed:
            return None
        now = time.monotonic()
        for kind in kinds:
            armed = self._armed.get((venue, kind))
            if armed is None:
                continue
            if armed.expires_at is not None and armed.expires_at <= now:
                del self._armed[(venue, kind)]
                continue
            if armed.remaining is not None:
                armed.remaining -= 1
                if armed.remaining <= 0:
                    del self._armed[(venue, kind)]
            return Fault(kind, armed.bps, armed.slots)
        return None

    def armed(self) -> list[dict[str, Any]]:
        """What is armed now, for `GET /api/mock/faults`."""
        now = time.monotonic()
        out: list[dict[str, Any]] = []
        for (venue, kind), armed in list(self._armed.items()):
            if armed.expires_at is not None and armed.expires_at <= now:
                del self._armed[(venue, kind)]
                continue
            left = None if armed.expires_at is None else int((armed.expires_at - now) * 1000)
            out.append(
                {
                    "venue": venue,
                    "kind": kind,
                    "remaining": armed.remaining,
                    "expiresInMs": left,
                    "bps": armed.bps,
                    "slots": armed.slots,
                }
            )
        out.sort(key=lambda a: (VENUES.index(a["venue"]), FAULT_KINDS.index(a["kind"])))
        return out
