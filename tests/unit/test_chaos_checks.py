"""The chaos run's swap invariants on hand-made ledgers: two landed swaps, or a second
signature sent while the first could still land, are caught; a rebroadcast history
that waited for expiry, or a reverted first try, is not."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.chaos.checks import Snapshot, _exactly_one_swap, _resigned_only_when_dead

ORDER = "0b5e0000-0000-0000-0000-000000000001"


def tx(sig: str, status: str, sent: int, valid: int, slot: int | None = None) -> dict[str, Any]:
    return {
        "oid": ORDER, "signature": sig, "venue": "raydium", "attempt": 1, "status": status,
        "received_slot": sent, "last_valid": valid, "slot": slot, "fault": None,
    }  # fmt: skip


def snapshot(status: str, *txs: dict[str, Any], tx_hash: str | None = None) -> Snapshot:
    order = {"oid": ORDER, "type": "market", "status": status, "dex_used": "raydium",
             "tx_hash": tx_hash}  # fmt: skip
    return Snapshot({ORDER: order}, {}, {ORDER: list(txs)}, [], datetime.now(UTC))  # type: ignore[dict-item]


def whys(invariant: Any) -> list[str]:
    return [f["why"] for f in invariant.failures]


def test_a_dropped_then_resigned_order_with_one_swap_passes() -> None:
    snap = snapshot(
        "confirmed",
        tx("sigA", "dropped", sent=100, valid=130),
        tx("sigB", "landed", sent=131, valid=161, slot=133),
        tx_hash="sigB",
    )
    assert whys(_exactly_one_swap(snap)) == []
    assert whys(_resigned_only_when_dead(snap)) == []


def test_a_reverted_try_may_be_followed_at_once() -> None:
    snap = snapshot(
        "confirmed",
        tx("sigA", "reverted", sent=100, valid=130, slot=102),
        tx("sigB", "landed", sent=102, valid=132, slot=104),
        tx_hash="sigB",
    )
    assert whys(_resigned_only_when_dead(snap)) == []


def test_two_landed_swaps_are_caught_whatever_the_status() -> None:
    for status in ("confirmed", "submitted", "failed"):
        snap = snapshot(
            status,
            tx("sigA", "landed", sent=100, valid=130, slot=120),
            tx("sigB", "landed", sent=110, valid=140, slot=112),
            tx_hash="sigB",
        )
        assert any("landed swap" in why for why in whys(_exactly_one_swap(snap))), status


def test_a_signature_sent_before_the_last_one_expired_is_caught() -> None:
    snap = snapshot(
        "confirmed",
        tx("sigA", "expired", sent=100, valid=130),
        tx("sigB", "landed", sent=125, valid=155, slot=127),  # sigA could still have landed
        tx_hash="sigB",
    )
    assert whys(_exactly_one_swap(snap)) == []  # one swap: luck, not design
    (why,) = whys(_resigned_only_when_dead(snap))
    assert why.startswith("sigB sent at slot 125 while sigA was expired (valid to 130")


def test_ledger_rows_of_no_stored_order_are_caught() -> None:
    snap = snapshot("confirmed", tx("sigA", "landed", 1, 30, 2), tx_hash="sigA")
    snap.ledger["ffffffff-0000-0000-0000-000000000000"] = [tx("sigZ", "landed", 1, 30, 2)]
    assert whys(_exactly_one_swap(snap)) == ["chain transactions of no stored order"]
