"""The fan-out bench's readers (bench_fanout.py) accept what a watcher may see and
nothing else: every order to its end, retries included, each event once, in order."""

from __future__ import annotations

from typing import Any

import pytest

from dexecutor import jsoncodec
from dexecutor.api.wsdirect import text_frame
from dexecutor.bench_fanout import Reader

FIRST_TRY = ["pending", "routing", "building", "submitted", "confirmed"]
RETRIED = ["pending", "routing", "building", "submitted", "retrying", "routing", "building",
           "submitted", "confirmed"]  # fmt: skip


def frames(order: str, statuses: list[str], seqs: list[int] | None = None) -> bytes:
    events: list[dict[str, Any]] = [
        {"orderId": order, "seq": seq, "status": status, "at": "2026-11-29T18:00:00.000Z"}
        for seq, status in zip(seqs or range(1, len(statuses) + 1), statuses, strict=True)
    ]
    return b"".join(text_frame(jsoncodec.dumps(e)) for e in events)


async def read(orders: int, data: bytes) -> Reader:
    reader = Reader(b"", orders)
    reader._upgraded = True
    reader.data_received(data)
    return reader


async def test_an_order_that_retried_counts_whole_and_ends_the_watch() -> None:
    reader = await read(2, frames("a", RETRIED) + frames("b", FIRST_TRY))
    assert reader.done.done()
    assert len(reader.delays_ms()) == len(RETRIED) + len(FIRST_TRY)


async def test_the_watch_is_not_done_before_every_order_ended() -> None:
    reader = await read(2, frames("a", RETRIED))
    assert not reader.done.done()
    with pytest.raises(ValueError, match="1 orders, 1 ended; 2 expected"):
        reader.delays_ms()


@pytest.mark.parametrize(
    ("seqs", "problem"),
    [([1, 2, 2, 3, 4], "seq 2, 3 expected"), ([2, 3, 4, 5, 6], "seq 2, 1 expected")],
    ids=["a duplicate", "a missing first event"],
)
async def test_a_duplicate_or_a_gap_fails_the_run(seqs: list[int], problem: str) -> None:
    reader = await read(1, frames("a", FIRST_TRY, seqs))
    with pytest.raises(ValueError, match=problem):
        reader.delays_ms()


async def test_an_event_after_the_end_fails_the_run() -> None:
    reader = await read(1, frames("a", [*FIRST_TRY, "routing"]))
    with pytest.raises(ValueError, match="seq 6, 6 expected"):
        reader.delays_ms()
