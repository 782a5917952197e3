"""The chain's accounts: each owner's lamports and token accounts, in base units.

SOL is the owner's native balance (lamports): a swap with SOL on one side moves
lamports, as a real one does once it has unwrapped. Every other token lives in the
owner's associated token account, which exists from its first receipt: a swap that
opens it charges the owner the account's rent (`TOKEN_ACCOUNT_RENT` lamports), the
faucet opens it at its own expense. Amounts are ints (base units), never floats.

Pure: no I/O. Every change is reported to `on_change(owner, mint, amount)`, which the
cluster hands to its journal so PostgreSQL holds the same balances.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from solders.pubkey import Pubkey
from solders.token import ID as TOKEN_PROGRAM_ID
from solders.token.associated import get_associated_token_address

from dexecutor.chain.transaction import TOKEN_ACCOUNT_RENT
from dexecutor.market.tokens import WSOL_MINT

NATIVE = WSOL_MINT  # the key under which an owner's lamports are kept
TOKEN_PROGRAM = str(TOKEN_PROGRAM_ID)  # the SPL token program every token account belongs to

U64_MAX = 2**64 - 1  # what an account's amount (and lamports) can hold
Key = tuple[str, str]  # (owner, mint)
Changed = Callable[[str, str, int], None]


def token_account(owner: str, mint: str) -> str:
    """The owner's associated token account for `mint` (its address on a real cluster)."""
    return str(get_associated_token_address(Pubkey.from_string(owner), Pubkey.from_string(mint)))


@dataclass(frozen=True, slots=True)
class Settled:
    """What a landed swap moved: rent paid for opening the output account, if any."""

    rent: int


class Accounts:
    def __init__(self, balances: dict[Key, int] | None = None) -> None:
        self._balances: dict[Key, int] = dict(balances or {})
        self._mints: dict[str, set[str]] = {}  # owner -> mints of its token accounts
        for owner, mint in self._balances:
            if mint != NATIVE:
                self._mints.setdefault(owner, set()).add(mint)
        self.on_change: Changed = lambda owner, mint, amount: None

    # -- reads -------------------------------------------------------------------------

    def lamports(self, owner: str) -> int:
        return self._balances.get((owner, NATIVE), 0)

    def token(self, owner: str, mint: str) -> int | None:
        """The owner's balance of a token (SOL: lamports); None when it has no account."""
        if mint == NATIVE:
            return self.lamports(owner)
        return self._balances.get((owner, mint))

    def token_mints(self, owner: str) -> list[str]:
        """The mints of the owner's token accounts, in a stable order."""
        return sorted(self._mints.get(owner, ()))

    def owners(self) -> int:
        return len({owner for owner, _ in self._balances})

    # -- changes -----------------------------------------------------------------------

    def _set(self, owner: str, mint: str, amount: int) -> None:
        if not 0 <= amount <= U64_MAX:
            raise ValueError(f"{owner}'s {mint} would leave the range of a u64")
        self._balances[(owner, mint)] = amount
        if mint != NATIVE:
            self._mints.setdefault(owner, set()).add(mint)
        self.on_change(owner, mint, amount)

    def airdrop(self, owner: str, mint: str, units: int) -> int:
        """The faucet credits `units` (opening the account at its own cost); the new balance."""
        if units <= 0:
            raise ValueError("an airdrop must be positive")
        balance = (self.token(owner, mint) or 0) + units
        if balance > U64_MAX:
            raise ValueError("the balance would exceed what an account holds (a u64)")
        self._set(owner, mint, balance)
        return balance

    def charge(self, owner: str, lamports: int) -> bool:
        """Take a fee from the owner's lamports; False (nothing taken) when it cannot pay."""
        have = self.lamports(owner)
        if have < lamports:
            return False
        if lamports:
            self._set(owner, NATIVE, have - lamports)
        return True

    def can_swap(self, owner: str, mint_in: str, units_in: int, mint_out: str) -> bool:
        """Whether the owner holds the input and, when the output account must be opened,
        the lamports for its rent (after the input, when the input is SOL)."""
        rent = self.rent_for(owner, mint_out)
        if mint_in == NATIVE:
            return self.lamports(owner) >= units_in + rent
        held = self.token(owner, mint_in)
        return held is not None and held >= units_in and self.lamports(owner) >= rent

    def rent_for(self, owner: str, mint_out: str) -> int:
        """Rent a receipt of `mint_out` costs: an account to open, or nothing."""
        if mint_out == NATIVE or (owner, mint_out) in self._balances:
            return 0
        return TOKEN_ACCOUNT_RENT

    def swap(
        self, owner: str, mint_in: str, units_in: int, mint_out: str, units_out: int
    ) -> Settled:
        """Move a landed swap's amounts (the caller checked `can_swap`)."""
        rent = self.rent_for(owner, mint_out)
        if rent:
            self._set(owner, NATIVE, self.lamports(owner) - rent)
        held = self.token(owner, mint_in)
        assert held is not None
        self._set(owner, mint_in, held - units_in)
        self._set(owner, mint_out, (self.token(owner, mint_out) or 0) + units_out)
        return Settled(rent)


__all__ = ["NATIVE", "TOKEN_PROGRAM", "Accounts", "Settled", "token_account"]
