"""A swap as a real, signed Solana transaction: how the engine builds it, how the chain reads it.

The layout follows what a swap on mainnet carries, so the bytes the engine records,
sends and re-sends are a transaction any Solana tool parses:

1. `ComputeBudget` SetComputeUnitLimit and SetComputeUnitPrice: the priority fee is
   their product (micro-lamports per compute unit times units).
2. The swap itself:
   - one leg on one venue: the venue's own program (Raydium AMM, Meteora DLMM) with
     data `[9, amount_in: u64 LE, minimum_amount_out: u64 LE]` (9 is the AMM's
     swap-base-in tag) and accounts `owner, input mint, output mint, pool…`;
   - several legs (a split route): one instruction of the router program (Jupiter's
     id) with the plan in its data and the minimum applying to the total, so the
     route fills entirely or not at all (a transaction is atomic).
3. A memo `dexecutor:<order id>:<attempt>`, so the chain (and anyone reading the
   ledger) can tell which order and attempt a transaction belongs to.

The fee payer and only signer is the user's wallet. An ed25519 signature is
deterministic: the same message signed by the same key gives the same signature,
which is why re-sending recorded bytes can never execute twice. The real programs'
account lists are out of scope; amounts travel in base units, tokens by mint.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

from solders import compute_budget
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import Transaction

from dexecutor.chain.protocol import (
    PROGRAMS,
    from_base_units,
    pool_address,
    to_base_units,
    token_by_mint,
)
from dexecutor.market.tokens import Token, find_token
from dexecutor.market.types import VENUES

LAMPORTS_PER_SOL = 1_000_000_000
LAMPORTS_PER_SIGNATURE = 5_000
# Rent-exempt minimum of an SPL token account (165 bytes), paid when a swap's output
# account has to be opened.
TOKEN_ACCOUNT_RENT = 2_039_280
MICRO_LAMPORTS = 1_000_000
# Compute units a swap asks for: a single-venue swap, and each extra hop or leg.
SWAP_COMPUTE_UNITS = 140_000
EXTRA_HOP_COMPUTE_UNITS = 80_000

MEMO_PROGRAM = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")
ROUTER_PROGRAM = Pubkey.from_string("JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4")
COMPUTE_BUDGET_PROGRAM = compute_budget.ID
_VENUE_PROGRAMS = {Pubkey.from_string(pid): venue for venue, pid in PROGRAMS.items()}
SWAP_BASE_IN = 9
SWAP_BASE_OUT = 11  # the AMM's swap-base-out: [11, max_amount_in, amount_out]
ROUTE = 1
EXACT_OUT_ROUTE = 2
MEMO_PREFIX = "dexecutor"


@dataclass(frozen=True, slots=True)
class Hop:
    """One swap on one venue. The venue routes the hop itself (it may go through SOL)."""

    venue: str
    token_in: str
    token_out: str


@dataclass(frozen=True, slots=True)
class Leg:
    """A share of the order's input, swapped through one or two hops in turn."""

    hops: tuple[Hop, ...]
    amount_in: Decimal


@dataclass(frozen=True, slots=True)
class SwapTx:
    """What a swap transaction says, in the engine's units (tokens by symbol, Decimals)."""

    owner: str  # the wallet's public key (base58): fee payer and signer
    token_in: str
    token_out: str
    amount_in: Decimal  # the legs' sum
    min_amount_out: Decimal  # for the whole route
    legs: tuple[Leg, ...]
    order_id: UUID
    attempt: int
    recent_blockhash: str
    compute_unit_limit: int = SWAP_COMPUTE_UNITS
    compute_unit_price: int = 0  # micro-lamports per compute unit
    # ExactOut: `min_amount_out` is the exact output wanted and `amount_in` (and each
    # leg's) the most it may spend; the program spends the least input that delivers.
    exact_out: bool = False

    @staticmethod
    def single(
        owner: str,
        venue: str,
        token_in: str,
        token_out: str,
        amount_in: Decimal,
        min_amount_out: Decimal,
        order_id: UUID,
        attempt: int,
        recent_blockhash: str,
        compute_unit_price: int = 0,
    ) -> SwapTx:
        """A whole order on one venue (one leg, one hop)."""
        return SwapTx(
            owner=owner,
            token_in=token_in,
            token_out=token_out,
            amount_in=amount_in,
            min_amount_out=min_amount_out,
            legs=(Leg((Hop(venue, token_in, token_out),), amount_in),),
            order_id=order_id,
            attempt=attempt,
            recent_blockhash=recent_blockhash,
            compute_unit_price=compute_unit_price,
        )

    @property
    def venue(self) -> str:
        """The venue of a single-venue swap; for a split, the first venue of its largest leg.

        The same rule names the order's `dex` when it is routed, so the order, its events
        and the chain's ledger agree on one venue for a split route.
        """
        return max(self.legs, key=lambda leg: leg.amount_in).hops[0].venue

    @property
    def is_split(self) -> bool:
        return len(self.legs) > 1 or len(self.legs[0].hops) > 1

    @property
    def memo(self) -> str:
        return f"{MEMO_PREFIX}:{self.order_id}:{self.attempt}"

    @property
    def priority_fee_lamports(self) -> int:
        """What the compute-budget price costs: micro-lamports times units, rounded up."""
        return -(-self.compute_unit_limit * self.compute_unit_price // MICRO_LAMPORTS)

    @property
    def base_fee_lamports(self) -> int:
        return LAMPORTS_PER_SIGNATURE  # one signature: the owner's


def compute_units_for(legs: tuple[Leg, ...]) -> int:
    """The compute-unit limit a route asks for: one swap, plus each further hop."""
    hops = sum(len(leg.hops) for leg in legs)
    return SWAP_COMPUTE_UNITS + EXTRA_HOP_COMPUTE_UNITS * (hops - 1)


def build(swap: SwapTx, keypair: Keypair) -> Transaction:
    """The signed transaction. ValueError when the keypair is not the swap's owner."""
    if str(keypair.pubkey()) != swap.owner:
        raise ValueError("the keypair does not own this swap")
    owner = keypair.pubkey()
    instructions = [
        compute_budget.set_compute_unit_limit(swap.compute_unit_limit),
        compute_budget.set_compute_unit_price(swap.compute_unit_price),
        _swap_instruction(swap, owner),
        Instruction(MEMO_PROGRAM, swap.memo.encode(), []),
    ]
    blockhash = Hash.from_string(swap.recent_blockhash)
    message = Message.new_with_blockhash(instructions, owner, blockhash)
    return Transaction([keypair], message, blockhash)


def encode(tx: Transaction) -> str:
    """The wire form sendTransaction takes with `encoding: base64`."""
    return base64.b64encode(bytes(tx)).decode()


def signature(tx: Transaction) -> str:
    return str(tx.signatures[0])


def decode(encoded: str) -> tuple[SwapTx, Transaction]:
    """Parse a swap transaction. ValueError when it is not one this chain can run.

    The signature is not checked here (see `verify`): a transaction with a bad
    signature is still a transaction, and the chain refuses it with its own error.
    """
    try:
        tx = Transaction.from_bytes(base64.b64decode(encoded, validate=True))
    except Exception as err:  # solders raises its own error types for bad bytes
        raise ValueError(f"not a transaction: {err}") from None
    try:
        return _parse(tx), tx
    except (ValueError, KeyError, IndexError, struct.error, UnicodeDecodeError) as err:
        raise ValueError(f"not a swap transaction this chain can run: {err}") from None


def verify(tx: Transaction) -> bool:
    """True when every signature verifies against its signer and the message."""
    message = bytes(tx.message)
    keys = tx.message.account_keys
    return all(
        sig.verify(keys[i], message) and sig != Signature.default()
        for i, sig in enumerate(tx.signatures)
    )


# -- encoding ---------------------------------------------------------------------------


def _token(symbol: str) -> Token:
    token = find_token(symbol)
    if token is None:
        raise ValueError(f"unknown token {symbol!r}")
    return token


def _mint(symbol: str) -> Pubkey:
    return Pubkey.from_string(_token(symbol).mint)


def _pools(hops: tuple[Hop, ...]) -> list[Pubkey]:
    return [
        Pubkey.from_string(pool_address(h.venue, *sorted((h.token_in, h.token_out)))) for h in hops
    ]


def _swap_instruction(swap: SwapTx, owner: Pubkey) -> Instruction:
    units_in = to_base_units(swap.amount_in, _token(swap.token_in))
    min_out = to_base_units(swap.min_amount_out, _token(swap.token_out))
    if not swap.is_split:
        hop = swap.legs[0].hops[0]
        accounts = [
            AccountMeta(owner, is_signer=True, is_writable=True),
            AccountMeta(_mint(swap.token_in), is_signer=False, is_writable=False),
            AccountMeta(_mint(swap.token_out), is_signer=False, is_writable=False),
            *(AccountMeta(pool, False, True) for pool in _pools(swap.legs[0].hops)),
        ]
        tag = SWAP_BASE_OUT if swap.exact_out else SWAP_BASE_IN
        packed = struct.pack("<BQQ", tag, units_in, min_out)
        return Instruction(Pubkey.from_string(PROGRAMS[hop.venue]), packed, accounts)
    # A route: accounts are the owner then every mint it touches; hops name mints by index.
    mints: list[str] = [swap.token_in, swap.token_out]
    for leg in swap.legs:
        for hop in leg.hops:
            for symbol in (hop.token_in, hop.token_out):
                if symbol not in mints:
                    mints.append(symbol)
    tag = EXACT_OUT_ROUTE if swap.exact_out else ROUTE
    data = bytearray(struct.pack("<BQQB", tag, units_in, min_out, len(swap.legs)))
    for leg in swap.legs:
        if not 1 <= len(leg.hops) <= 2:
            raise ValueError("a leg has one or two hops")
        data += struct.pack("<B", len(leg.hops))
        for hop in leg.hops:
            data += struct.pack(
                "<BBB",
                VENUES.index(hop.venue),
                1 + mints.index(hop.token_in),
                1 + mints.index(hop.token_out),
            )
        data += struct.pack("<Q", to_base_units(leg.amount_in, _token(leg.hops[0].token_in)))
    accounts = [
        AccountMeta(owner, is_signer=True, is_writable=True),
        *(AccountMeta(_mint(s), is_signer=False, is_writable=False) for s in mints),
        *(
            AccountMeta(pool, False, True)
            for pool in dict.fromkeys(p for leg in swap.legs for p in _pools(leg.hops))
        ),
    ]
    return Instruction(ROUTER_PROGRAM, bytes(data), accounts)


# -- decoding ---------------------------------------------------------------------------


def _symbol(key: Pubkey) -> str:
    token = token_by_mint(str(key))
    if token is None:
        raise ValueError(f"unknown mint {key}")
    return token.symbol


def _parse(tx: Transaction) -> SwapTx:
    message = tx.message
    keys = message.account_keys
    if message.header.num_required_signatures != 1 or len(tx.signatures) != 1:
        raise ValueError("a swap has exactly one signer")
    owner = keys[0]
    cu_limit, cu_price = 200_000, 0  # Solana's defaults when the budget is not set
    swap: tuple[str, str, Decimal, Decimal, tuple[Leg, ...]] | None = None
    exact_out = False
    memo: str | None = None
    for ix in message.instructions:
        program = keys[ix.program_id_index]
        data = bytes(ix.data)
        accounts = [keys[i] for i in bytes(ix.accounts)]
        if program == COMPUTE_BUDGET_PROGRAM:
            if data[0] == 2:
                (cu_limit,) = struct.unpack("<I", data[1:5])
            elif data[0] == 3:
                (cu_price,) = struct.unpack("<Q", data[1:9])
        elif program == MEMO_PROGRAM:
            memo = data.decode()
        elif program in _VENUE_PROGRAMS:
            tag, units_in, min_out = struct.unpack("<BQQ", data[:17])
            if tag not in (SWAP_BASE_IN, SWAP_BASE_OUT) or accounts[0] != owner:
                raise ValueError("not a swap by the fee payer")
            exact_out = tag == SWAP_BASE_OUT
            t_in, t_out = _symbol(accounts[1]), _symbol(accounts[2])
            amount_in = from_base_units(units_in, _token(t_in))
            hop = Hop(_VENUE_PROGRAMS[program], t_in, t_out)
            legs: tuple[Leg, ...] = (Leg((hop,), amount_in),)
            swap = (t_in, t_out, amount_in, from_base_units(min_out, _token(t_out)), legs)
        elif program == ROUTER_PROGRAM:
            swap = _parse_route(data, accounts, owner)
            exact_out = data[0] == EXACT_OUT_ROUTE
        else:
            raise ValueError(f"unexpected program {program}")
    if swap is None or memo is None:
        raise ValueError("no swap, or no memo naming its order")
    prefix, order, attempt = memo.split(":")
    if prefix != MEMO_PREFIX:
        raise ValueError("the memo is not an order's")
    t_in, t_out, amount_in, min_out, legs = swap
    return SwapTx(
        owner=str(owner),
        token_in=t_in,
        token_out=t_out,
        amount_in=amount_in,
        min_amount_out=min_out,
        legs=legs,
        order_id=UUID(order),
        attempt=int(attempt),
        recent_blockhash=str(message.recent_blockhash),
        compute_unit_limit=cu_limit,
        compute_unit_price=cu_price,
        exact_out=exact_out,
    )


def _parse_route(
    data: bytes, accounts: list[Pubkey], owner: Pubkey
) -> tuple[str, str, Decimal, Decimal, tuple[Leg, ...]]:
    tag, units_in, min_out, n_legs = struct.unpack("<BQQB", data[:18])
    if tag not in (ROUTE, EXACT_OUT_ROUTE) or accounts[0] != owner or n_legs < 1:
        raise ValueError("not a route by the fee payer")
    t_in, t_out = _symbol(accounts[1]), _symbol(accounts[2])
    at = 18
    legs: list[Leg] = []
    for _ in range(n_legs):
        (n_hops,) = struct.unpack("<B", data[at : at + 1])
        at += 1
        hops: list[Hop] = []
        for _ in range(n_hops):
            venue, a, b = struct.unpack("<BBB", data[at : at + 3])
            at += 3
            hops.append(Hop(VENUES[venue], _symbol(accounts[a]), _symbol(accounts[b])))
        (leg_units,) = struct.unpack("<Q", data[at : at + 8])
        at += 8
        legs.append(Leg(tuple(hops), from_base_units(leg_units, _token(hops[0].token_in))))
    amount_in = from_base_units(units_in, _token(t_in))
    if sum(leg.amount_in for leg in legs) != amount_in:
        raise ValueError("the legs do not add up to the route's input")
    if any(leg.hops[0].token_in != t_in or leg.hops[-1].token_out != t_out for leg in legs):
        raise ValueError("a leg does not go from the input to the output")
    return t_in, t_out, amount_in, from_base_units(min_out, _token(t_out)), tuple(legs)


__all__ = [
    "LAMPORTS_PER_SIGNATURE",
    "LAMPORTS_PER_SOL",
    "TOKEN_ACCOUNT_RENT",
    "Hop",
    "Leg",
    "SwapTx",
    "build",
    "compute_units_for",
    "decode",
    "encode",
    "signature",
    "verify",
]
