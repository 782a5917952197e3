"""Time budgets for tests that assert speed: generous while a tracer (coverage) runs."""

from __future__ import annotations

import sys

# Line tracing (coverage.py on Python 3.11) makes pure-Python loops several times slower;
# a budget still catches an algorithm gone quadratic, which is what these tests guard.
TRACED_SLOWDOWN = 5.0


def budget(seconds: float) -> float:
    return seconds * TRACED_SLOWDOWN if sys.gettrace() is not None else seconds
