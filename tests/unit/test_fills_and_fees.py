"""What a fill cost and how a chain error reads: pure pieces of the send-and-confirm loop."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

from solders.rpc.config import RpcTransactionConfig
from solders.rpc.requests import GetTransaction, SendRawTransaction, batch_to_json
from solders.signature import Signature
from solders.transaction_status import (
    InstructionErrorCustom,
    InstructionErrorFieldless,
    TransactionErrorFieldless,
    TransactionErrorInstructionError,
    UiTransactionEncoding,
)

from dexecutor.chain import transaction as txn
from dexecutor.chain.client import _costs
from dexecutor.chain.rpc import (
    SEND_CONFIG,
    Landed,
    _batch_answers,
    _BatchBody,
    describe,
    percentile,
    reason_of,
)
from dexecutor.domain.order import Order, OrderStatus, OrderType
from dexecutor.market.fees import effective_price, fee_detail, venue_fee
from dexecutor.market.venue import NetworkFee

S = OrderStatus


def test_the_fee_bid_is_the_nearest_rank_percentile() -> None:
    fees = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90]
    assert percentile(fees, 75) == 70
    assert percentile(fees, 100) == 90
    assert percentile(fees, 0) == 0
    assert percentile(list(reversed(fees)), 50) == 40
    assert percentile([], 75) == 0


def test_chain_errors_map_to_reasons_a_client_can_act_on() -> None:
    def custom(code: int) -> TransactionErrorInstructionError:
        return TransactionErrorInstructionError(2, InstructionErrorCustom(code))

    assert reason_of(custom(6001)) == "slippage_exceeded"
    assert reason_of(custom(1)) == "insufficient_funds"
    assert reason_of(custom(6002)) == "tx_failed"
    assert reason_of(TransactionErrorInstructionError(2, InstructionErrorFieldless.InvalidArgument))
    assert reason_of(TransactionErrorFieldless.InsufficientFundsForFee) == "insufficient_funds"
    assert reason_of(TransactionErrorFieldless.BlockhashNotFound) == "blockhash_expired"
    assert reason_of(TransactionErrorFieldless.AccountInUse) == "tx_failed"
    # The code is in the words, in hex as explorers show it and in decimal.
    assert "0x1771 (6001)" in describe(custom(6001))
    assert "0x1772 (6002)" in describe(custom(6002))


def landed(
    delta: int,
    fee: int,
    *,
    units: int | None,
    err: object = None,
    opened: tuple[str, ...] = (),
    **tokens: int,
) -> Landed:
    return Landed(
        "sig",
        10,
        err,
        fee,
        delta,
        dict(tokens),
        units,
        False,
        frozenset(opened),  # type: ignore[arg-type]
    )


def swap(token_in: str, token_out: str, amount_in: str, *, exact_out: bool = False) -> txn.SwapTx:
    single = txn.SwapTx.single(
        "owner", "raydium", token_in, token_out, Decimal(amount_in), Decimal(0),
        uuid4(), 1, "11111111111111111111111111111111", compute_unit_price=1000,
    )  # fmt: skip
    return replace(single, exact_out=exact_out)


USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"


def test_the_network_fee_and_the_rent_come_from_the_owners_lamports() -> None:
    fee = 5000 + 140
    # SOL in, a new USDC account opened: the wallet lost the input, the fee and the rent.
    spent = 2 * 10**9 + fee + txn.TOKEN_ACCOUNT_RENT
    opened = landed(-spent, fee, units=190_000_000, opened=(USDC,), **{USDC: 190_000_000})
    network, amount_in, out = _costs(swap("SOL", "USDC", "2"), opened)
    assert network == NetworkFee(5000, 140, txn.TOKEN_ACCOUNT_RENT)
    assert (amount_in, out) == (Decimal(2), Decimal("190"))
    # The same without return data: the amount out is the owner's token account's gain.
    network, _, out = _costs(
        swap("SOL", "USDC", "2"), landed(-spent, fee, units=None, opened=(USDC,), **{USDC: 7})
    )
    assert (network.rent, out) == (txn.TOKEN_ACCOUNT_RENT, Decimal("0.000007"))
    # USDC in, SOL out: the wallet's lamports grew by the output less the fee; no rent.
    sold = landed(10**9 - fee, fee, units=None, **{USDC: -100_000_000})
    network, amount_in, out = _costs(swap("USDC", "SOL", "100"), sold)
    assert network == NetworkFee(5000, 140, 0) and (amount_in, out) == (100, 1)
    # Reverted: only the fee left the wallet, whatever the swap would have moved.
    failed = TransactionErrorInstructionError(2, InstructionErrorCustom(6001))
    network, amount_in, out = _costs(
        swap("SOL", "USDC", "2"), landed(-fee, fee, units=None, err=failed)
    )
    assert network == NetworkFee(5000, 140, 0) and amount_in == out == 0


def test_an_exact_out_fill_reads_what_it_spent_from_the_balances() -> None:
    fee = 5000 + 140
    # Sent with at most 2 SOL; the chain spent 1.5 for exactly 150 USDC (account existed).
    spent = 1_500_000_000 + fee
    network, amount_in, out = _costs(
        swap("SOL", "USDC", "2", exact_out=True),
        landed(-spent, fee, units=150_000_000, **{USDC: 150_000_000}),
    )
    assert network.rent == 0 and (amount_in, out) == (Decimal("1.5"), Decimal(150))
    # USDC in: the token account's loss, not the maximum sent.
    network, amount_in, out = _costs(
        swap("USDC", "SOL", "100", exact_out=True),
        landed(10**9 - fee, fee, units=None, **{USDC: -97_250_000}),
    )
    assert (amount_in, out) == (Decimal("97.25"), Decimal(1))


def test_the_effective_price_counts_every_fee() -> None:
    fee = NetworkFee(5000, 995_000, 0)  # 0.001 SOL
    paid_in_sol = effective_price("SOL", "USDC", Decimal(2), Decimal(190), fee)
    assert paid_in_sol == Decimal("94.952523738130")  # 190 / 2.001
    assert effective_price("USDC", "SOL", Decimal(100), Decimal(1), fee) == Decimal("0.00999")
    # Neither side SOL: the fee is valued at the fill's SOL price in tokenOut.
    valued = effective_price("USDC", "USDT", Decimal(100), Decimal(99), fee, Decimal(100))
    assert valued == Decimal("0.989")
    assert effective_price("USDC", "USDT", Decimal(100), Decimal(99), fee) == Decimal("0.99")
    assert venue_fee("SOL", Decimal(2), Decimal("0.0025")) == Decimal("0.005")
    assert venue_fee("USDC", Decimal("0.000001"), Decimal("0.0025")) == Decimal("0.000001")
    assert fee_detail(NetworkFee(5000, 1, 2_039_280)) == {
        "base": Decimal("0.000005"),
        "priority": Decimal("1E-9"),
        "rent": Decimal("0.00203928"),
    }


def test_the_order_record_keeps_the_fill_and_a_revert_s_fee() -> None:
    now = datetime.now(UTC)
    order = Order(uuid4(), "u", OrderType.MARKET, "SOL", "USDC", Decimal(1), 50, now, now, seq=1)
    order = order.apply(order.event(S.ROUTING, now))
    order = order.apply(
        order.event(
            S.BUILDING, now, dex="raydium", quotes={}, expectedAmountOut=Decimal(1),
            minAmountOut=Decimal(1),
        )
    )  # fmt: skip
    order = order.apply(order.event(S.SUBMITTED, now, dex="raydium", txHash="a"))
    reverted = order.apply(
        order.event(
            S.RETRYING, now, reason="slippage_exceeded", txHash="a", slot=9,
            networkFee=Decimal("0.000005"), nextAttempt=2, delayMs=1,
        )
    )  # fmt: skip
    assert reverted.fill == {"slot": 9, "networkFee": Decimal("0.000005")}
    again = reverted.apply(reverted.event(S.ROUTING, now))
    assert again.fill is None and again.tx_hash is None
    confirmed = order.apply(
        order.event(
            S.CONFIRMED, now, dex="raydium", txHash="a", executedPrice=Decimal(1),
            amountOut=Decimal(1), slot=12, commitment="confirmed", finalizedAtSlot=44,
            networkFee=Decimal("0.000005"), effectivePrice=Decimal("0.99"),
        )
    )  # fmt: skip
    assert confirmed.fill == {
        "slot": 12,
        "commitment": "confirmed",
        "finalizedAtSlot": 44,
        "networkFee": Decimal("0.000005"),
        "effectivePrice": Decimal("0.99"),
    }


def test_a_batch_body_is_the_json_rpc_array_solders_would_write() -> None:
    """The batch is written request by request; the text must stay solders' own."""
    config = RpcTransactionConfig(UiTransactionEncoding.Base64)
    requests = [
        SendRawTransaction(bytes(range(40)), SEND_CONFIG, id=0),
        GetTransaction(Signature.new_unique(), config, id=1),
        SendRawTransaction(b"\x01" * 70, SEND_CONFIG, id=2),
    ]
    assert _BatchBody(requests).to_json() == batch_to_json(requests)
    assert _BatchBody(requests[:1]).to_json() == batch_to_json(requests[:1])


def test_a_batch_answer_is_split_into_its_answers_as_they_came() -> None:
    text = (
        '[{"jsonrpc":"2.0","result":"5x","id":0},'
        '{"jsonrpc":"2.0","error":{"code":-32002,"message":"no"},"id":1},'
        '7,{"jsonrpc":"2.0","error":null,"id":2}]'
    )
    answers = _batch_answers(text)
    assert answers == [
        (0, False, '{"jsonrpc":"2.0","result":"5x","id":0}'),
        (1, True, '{"jsonrpc":"2.0","error":{"code":-32002,"message":"no"},"id":1}'),
        (2, True, '{"jsonrpc":"2.0","error":null,"id":2}'),
    ]
    assert _batch_answers('{"jsonrpc":"2.0","error":{"code":-32600},"id":null}') is None
    assert _batch_answers("not json") is None
