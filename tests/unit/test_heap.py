"""The garbage-collector policy: frozen regularly, and nothing frozen is kept for good."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections.abc import Callable

from dexecutor.heap import HeapKeeper


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the cyclic collector can reclaim it


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll a condition the keeper's timer makes true; there is no event to await."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def test_live_objects_are_frozen_out_of_collections() -> None:
    keeper = HeapKeeper(freeze_every_s=0.01, full_every_s=3600)
    keeper.start()
    try:
        assert await until(lambda: gc.get_freeze_count() > 0)
    finally:
        await keeper.stop()
    assert gc.get_freeze_count() == 0  # stopping gives everything back to the collector


async def test_cycles_frozen_as_garbage_are_reclaimed_by_the_full_collection() -> None:
    keeper = HeapKeeper(freeze_every_s=0.01, full_every_s=0.2)
    node = Node()
    gone = weakref.ref(node)
    keeper.start()
    try:
        assert await until(lambda: gc.get_freeze_count() > 0)  # the node is frozen, alive
        del node  # now garbage, inside the frozen generation
        assert await until(lambda: gone() is None)
    finally:
        await keeper.stop()


async def test_a_keeper_can_make_young_collections_rarer_for_its_process() -> None:
    before = gc.get_threshold()
    keeper = HeapKeeper(freeze_every_s=3600, full_every_s=3600, young_threshold=12_345)
    keeper.start()
    try:
        assert gc.get_threshold() == (12_345, *before[1:])
    finally:
        await keeper.stop()
    assert gc.get_threshold() == before  # stopping gives the process its thresholds back
