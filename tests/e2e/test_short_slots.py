"""A deployment whose chain runs short slots: CHAIN_SLOT_MS reaches every process.

The chain process and `dexecutor up` read the same environment: slots of 20 ms,
blockhashes valid 20 of them (0.4 s). An order confirms and its transaction is
finalized 32 slots later, well under a second; a dropped transaction's blockhash
expires, the engine sees the block height pass it and signs again, all within
seconds. At Solana's 400 ms the same takes 12.8 s and 8 s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from solana.rpc.async_api import AsyncClient
from solders.signature import Signature
from solders.transaction_status import TransactionConfirmationStatus

from tests.support import Process, deployed, executed

SLOT_MS = 20
BLOCKHASH_SLOTS = 20


@pytest.fixture(scope="module")
async def deployment() -> AsyncIterator[tuple[Process, Process]]:
    up_env = {"MAX_ATTEMPTS": "3", "BACKOFF_BASE_MS": "50"}
    slots = {"CHAIN_SLOT_MS": str(SLOT_MS), "CHAIN_BLOCKHASH_SLOTS": str(BLOCKHASH_SLOTS)}
    async with deployed("dxslot", up_env, **slots) as made:
        yield made


@pytest.fixture
async def api(deployment: tuple[Process, Process]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=deployment[1].url, timeout=30) as client:
        yield client
        await client.delete("/api/mock/faults")


async def confirmed_events(api: httpx.AsyncClient, user: str) -> list[dict[str, Any]]:
    events, record = await executed(api, timeout=30, userId=user)
    assert record["status"] == "confirmed", record
    return events


async def test_an_order_confirms_and_is_finalized_within_short_slots(
    api: httpx.AsyncClient, deployment: tuple[Process, Process]
) -> None:
    events = await confirmed_events(api, "quick")
    confirmed = events[-1]
    assert confirmed["finalizedAtSlot"] == confirmed["slot"] + 32
    signature = Signature.from_string(str(confirmed["txHash"]))
    rpc = AsyncClient(deployment[0].url)
    try:
        started = time.monotonic()
        async with asyncio.timeout(5):  # 32 slots of 20 ms (12.8 s at 400 ms)
            while True:
                (status,) = (await rpc.get_signature_statuses([signature])).value
                assert status is not None
                final = TransactionConfirmationStatus.Finalized
                if status.confirmation_status == final:
                    break
                await asyncio.sleep(SLOT_MS / 1000)
        assert time.monotonic() - started < 3
    finally:
        await rpc.close()


async def test_a_dropped_transaction_expires_and_is_signed_again_within_short_slots(
    api: httpx.AsyncClient,
) -> None:
    response = await api.post("/api/mock/faults", json={"venue": "all", "kind": "drop", "count": 1})
    assert response.status_code == 201, response.text
    started = time.monotonic()
    events = await confirmed_events(api, "dropped")
    elapsed = time.monotonic() - started
    assert [e["status"] for e in events] == [
        "pending", "routing", "building", "submitted", "retrying",
        "routing", "building", "submitted", "confirmed",
    ]  # fmt: skip
    first, retry, second = events[3], events[4], events[7]
    assert retry["reason"] == "blockhash_expired"
    assert second["slot"] > first["lastValidBlockHeight"]
    assert elapsed < 5  # 20 slots of 20 ms to expire (8 s at 400 ms)
