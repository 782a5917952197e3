"""What `submit --watch` and `show` print about a transaction: its signature, slot and
fees when the server sends them, and the same lines without them when it does not."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rich.console import Console

from dexecutor.console import fee_lines, lifecycle_table, record_table

SIGNATURE = "5" + "K" * 86  # a base58 signature's length; shown whole, never cut
SUBMITTED = {
    "seq": 4, "status": "submitted", "attempt": 1, "at": "2026-11-29T12:00:00.100Z",
    "dex": "raydium", "txHash": SIGNATURE, "slot": 1200, "lastValidBlockHeight": 1350,
    "computeUnitPrice": 25000, "computeUnitLimit": 150000,
}  # fmt: skip
CONFIRMED = {
    "seq": 5, "status": "confirmed", "attempt": 1, "at": "2026-11-29T12:00:01.300Z",
    "dex": "raydium", "txHash": SIGNATURE, "executedPrice": Decimal("98.1"),
    "amountOut": Decimal("196.2"), "slot": 1203, "commitment": "confirmed",
    "finalizedAtSlot": 1235,
    "venueFee": {"amount": Decimal("0.005"), "token": "SOL"},
    "networkFee": Decimal("0.00204303"),
    "networkFeeDetail": {"base": Decimal("0.000005"), "priority": Decimal("0.00000375"),
                         "rent": Decimal("0.00203928")},
    "priceImpact": Decimal("0.00012"), "effectivePrice": Decimal("98.0985"),
}  # fmt: skip


def rendered(renderable: Any) -> str:
    console = Console(width=300, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_the_watch_shows_the_signature_slot_and_fees() -> None:
    out = rendered(lifecycle_table("o1", [SUBMITTED, CONFIRMED]))
    assert SIGNATURE in out
    assert "slot 1200" in out and "valid to block 1350" in out
    assert "priority 25000 µlamports/CU" in out
    assert "slot 1203 (confirmed, final by slot 1235)" in out
    assert "venue fee 0.005 SOL · impact 0.012% · effective price 98.0985" in out
    detail = "base 0.000005 + priority 0.00000375 + rent 0.00203928"
    assert f"network fee 0.00204303 SOL ({detail})" in out


def test_a_reverted_transaction_shows_what_it_cost() -> None:
    failed = {
        "seq": 5, "status": "failed", "attempt": 1, "at": "2026-11-29T12:00:01Z",
        "reason": "slippage_exceeded", "message": "custom program error: 0x1771",
        "txHash": SIGNATURE, "slot": 1203, "networkFee": Decimal("0.00000875"),
    }  # fmt: skip
    out = rendered(lifecycle_table("o1", [failed]))
    assert "slippage_exceeded: custom program error: 0x1771" in out
    assert SIGNATURE in out and "slot 1203" in out and "network fee 0.00000875 SOL" in out


def test_events_without_the_new_fields_still_render() -> None:
    bare = [
        {"seq": 4, "status": "submitted", "attempt": 1, "at": "", "dex": "meteora",
         "txHash": "abc"},
        {"seq": 5, "status": "confirmed", "attempt": 1, "at": "", "dex": "meteora",
         "amountOut": 1, "executedPrice": 2},
        {"seq": 6, "status": "failed", "attempt": 1, "at": "", "reason": "no_route",
         "message": "no venue"},
    ]  # fmt: skip
    out = rendered(lifecycle_table("o1", bare))
    assert "meteora tx abc" in out and "1 at 2 on meteora" in out
    assert "no_route: no venue" in out
    assert "slot" not in out and "fee" not in out
    assert fee_lines({}) == []


def test_the_record_shows_the_fill_and_its_fees() -> None:
    record = {
        "orderId": "o1", "status": "confirmed", "amountOut": Decimal("196.2"),
        **{k: v for k, v in CONFIRMED.items() if k not in ("seq", "status", "at", "attempt")},
    }  # fmt: skip
    out = rendered(record_table(record))  # type: ignore[arg-type]
    lines = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in out.splitlines()
             if line.count("│") >= 3}  # fmt: skip
    assert lines["venueFee"] == "0.005 SOL"
    assert lines["networkFee"].startswith("0.00204303 SOL (base 0.000005 + priority")
    assert lines["priceImpact"] == "0.012%"
    assert lines["effectivePrice"] == "98.0985"
    assert lines["slot"] == "1203" and lines["commitment"] == "confirmed"
    assert "networkFeeDetail" not in lines  # it is part of the networkFee line
