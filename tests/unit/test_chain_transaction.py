"""The swap transaction: real Solana bytes that round-trip and verify."""

from __future__ import annotations

from decimal import Decimal
from uuid import uuid4

import pytest
from solders.keypair import Keypair
from solders.signature import Signature

from dexecutor.chain import transaction as t

BLOCKHASH = "4sGjMW1sUnHzSxGspuhpqLDx6wiyjNtZAMdL4VZHirAn"


def single(owner: Keypair, price: int = 0, attempt: int = 1) -> t.SwapTx:
    return t.SwapTx.single(
        str(owner.pubkey()), "raydium", "SOL", "USDC", Decimal("1.5"), Decimal("200.25"),
        uuid4(), attempt, BLOCKHASH, compute_unit_price=price,
    )  # fmt: skip


def test_a_single_venue_swap_round_trips_and_its_signature_verifies() -> None:
    owner = Keypair()
    swap = single(owner, price=25_000)
    tx = t.build(swap, owner)
    parsed, raw = t.decode(t.encode(tx))
    assert parsed == swap
    assert t.verify(raw)
    sig = Signature.from_string(t.signature(tx))
    assert sig.verify(owner.pubkey(), bytes(raw.message))
    assert swap.priority_fee_lamports == 3_500  # 140,000 CU at 25,000 micro-lamports


def test_the_same_swap_signed_again_has_the_same_signature_and_another_attempt_not() -> None:
    owner = Keypair()
    swap = single(owner)
    assert t.signature(t.build(swap, owner)) == t.signature(t.build(swap, owner))
    other = t.SwapTx(**{**{f: getattr(swap, f) for f in swap.__slots__}, "attempt": 2})
    assert t.signature(t.build(other, owner)) != t.signature(t.build(swap, owner))


def test_a_tampered_transaction_does_not_verify_and_a_stranger_cannot_sign() -> None:
    owner = Keypair()
    raw = bytearray(bytes(t.build(single(owner), owner)))
    raw[1] ^= 1  # the signature's first byte (byte 0 counts the signatures)
    import base64

    parsed = t.decode(base64.b64encode(bytes(raw)).decode())[1]
    assert not t.verify(parsed)
    with pytest.raises(ValueError, match="does not own"):
        t.build(single(owner), Keypair())


def test_a_split_route_round_trips_with_its_legs_and_total_minimum() -> None:
    owner = Keypair()
    legs = (
        t.Leg((t.Hop("raydium", "SOL", "USDC"),), Decimal("600")),
        t.Leg((t.Hop("meteora", "SOL", "USDC"),), Decimal("300")),
        t.Leg((t.Hop("meteora", "SOL", "BONK"), t.Hop("raydium", "BONK", "USDC")), Decimal("100")),
    )
    swap = t.SwapTx(
        str(owner.pubkey()), "SOL", "USDC", Decimal(1000), Decimal("150000"), legs, uuid4(), 3,
        BLOCKHASH, t.compute_units_for(legs), 1_000,
    )  # fmt: skip
    parsed, raw = t.decode(t.encode(t.build(swap, owner)))
    assert parsed == swap
    assert parsed.is_split and t.verify(raw)


@pytest.mark.parametrize("junk", ["", "bm90IGEgdHg=", "%%%"])
def test_what_is_not_a_swap_transaction_is_refused(junk: str) -> None:
    with pytest.raises(ValueError, match="not a"):
        t.decode(junk)


@pytest.mark.parametrize("split", [False, True])
def test_an_exact_out_swap_round_trips_as_swap_base_out_or_an_exact_out_route(
    split: bool,
) -> None:
    from dataclasses import replace

    owner = Keypair()
    swap = single(owner)
    if split:
        legs = (
            t.Leg((t.Hop("raydium", "SOL", "USDC"),), Decimal("1")),
            t.Leg(
                (t.Hop("meteora", "SOL", "USDT"), t.Hop("meteora", "USDT", "USDC")), Decimal("0.5")
            ),
        )
        swap = replace(swap, legs=legs)
    exact = replace(swap, exact_out=True)
    parsed, _ = t.decode(t.encode(t.build(exact, owner)))
    assert parsed == exact and parsed.exact_out
    assert t.decode(t.encode(t.build(swap, owner)))[0].exact_out is False
    assert t.signature(t.build(exact, owner)) != t.signature(t.build(swap, owner))


def test_legs_of_a_route_plan_names_each_hop_and_reads_wsol_as_sol() -> None:
    from dexecutor.engine.routing import legs_of

    plan = [
        {"venue": "raydium", "path": ["wSOL", "USDC"], "percent": 70, "amountIn": Decimal(7)},
        {"venue": "meteora+raydium", "path": ["wSOL", "USDT", "USDC"], "percent": 30,
         "amountIn": Decimal(3)},
        {"venue": "meteora", "path": ["wSOL", "USDT", "USDC"], "percent": 1,
         "amountIn": Decimal("0.1")},
    ]  # fmt: skip
    legs = legs_of(plan)
    assert legs[0] == t.Leg((t.Hop("raydium", "SOL", "USDC"),), Decimal(7))
    assert legs[1].hops == (t.Hop("meteora", "SOL", "USDT"), t.Hop("raydium", "USDT", "USDC"))
    assert [h.venue for h in legs[2].hops] == ["meteora", "meteora"]
    with pytest.raises(ValueError, match="one venue per hop"):
        legs_of([{"venue": "a+b+c", "path": ["wSOL", "USDC"], "amountIn": 1}])


def test_a_split_is_named_for_the_venue_of_its_largest_leg() -> None:
    """The order's `dex`, its events and the chain's ledger name one venue for a split."""
    owner = Keypair()
    legs = (
        t.Leg((t.Hop("raydium", "SOL", "USDC"),), Decimal("120")),
        t.Leg((t.Hop("meteora", "SOL", "USDC"),), Decimal("880")),
    )
    swap = t.SwapTx(
        str(owner.pubkey()), "SOL", "USDC", Decimal(1000), Decimal(1), legs, uuid4(), 1, BLOCKHASH
    )
    assert swap.venue == "meteora"
    assert t.decode(t.encode(t.build(swap, owner)))[0].venue == "meteora"
