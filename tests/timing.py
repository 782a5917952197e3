"""Time budgets for tests that assert speed: generous while a tracer (coverage) runs."""

from __future__ import annotations

import sys
import time

# Line tracing (coverage.py on Python 3.11) makes pure-Python loops several times slower;
# a budget still catches an algorithm gone quadratic, which is what these tests guard.
TRACED_SLOWDOWN = 5.0


def budget(seconds: float) -> float:
    return seconds * TRACED_SLOWDOWN if sys.gettrace() is not None else seconds


def cpu_seconds() -> float:
    """This thread's CPU time: what the code costs, whatever else the shared machine runs.

    Wall time on a loaded 2-core machine counts the time other processes held the core,
    which made these budgets fail for reasons outside the code under test.
    """
    return time.thread_time()
