"""Custodial wallets: one ed25519 keypair per user, held by the engine, and its balances.

The secret is stored only encrypted (AES-256-GCM under WALLET_KEY, the user and the
public key bound in as associated data, so a row copied onto another user does not
decrypt). It is decrypted in this process when a transaction is signed and kept in
memory for the next one; it never goes into a log, a response, an event or an error.

Balances live on the chain (lamports for SOL, token accounts for the rest). What a
user can spend is that total minus what their waiting limit and sniper orders hold
back: those reserve their input until they fire, are cancelled or expire, and the
reservation is read from PostgreSQL (the orders themselves), so there is no second
ledger to keep in step.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Generic, TypeVar
from uuid import UUID

import asyncpg
import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from solders.keypair import Keypair

from dexecutor.chain import transaction as txn
from dexecutor.chain.client import ChainClient, ChainUnreachable
from dexecutor.config import ConfigError, Settings, parse_wallet_key
from dexecutor.domain.failures import FailureReason
from dexecutor.domain.order import Order, OrderStatus
from dexecutor.jsoncodec import plain
from dexecutor.market.tokens import TOKENS, WSOL_MINT, Token, find_token
from dexecutor.market.types import MarketError

log = structlog.get_logger(__name__)
V = TypeVar("V")

KEY_FILE = "wallet.key"
NONCE_BYTES = 12
TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
SOL = "SOL"
# The priority fee the pre-trade check budgets for when none is configured: the
# engine never bids above its cap, so the cap is the worst case.
DEFAULT_PRIORITY_FEE_CAP_MICROLAMPORTS = 1_000_000
# A swap's compute-unit limit when its route is not known yet (the check runs before
# quoting): one swap and one further hop, the most a route here asks for on one leg.
ESTIMATED_COMPUTE_UNITS = txn.SWAP_COMPUTE_UNITS + txn.EXTRA_HOP_COMPUTE_UNITS
_CACHE_LIMIT = 100_000
_BY_MINT = {t.mint: t for t in TOKENS}


# -- the key that encrypts wallet secrets ---------------------------------------------------


def wallet_key(settings: Settings) -> bytes:
    """WALLET_KEY, or in development/test the one generated into DATA_DIR/wallet.key.

    Production without WALLET_KEY is a ConfigError: a key made up at start-up would
    leave every wallet unreadable after the next deploy. The generated file is made
    once, atomically (several processes of one deployment start together), mode 0600.
    """
    configured = settings.wallet_key.get_secret_value().strip()
    if configured:
        return parse_wallet_key(configured)
    if settings.env == "production":
        raise ConfigError(
            "WALLET_KEY: required in production (base64 of 32 bytes, e.g. from"
            " `openssl rand -base64 32`); it encrypts the custodial wallets' secrets"
        )
    return _development_key(Path(settings.data_dir) / KEY_FILE)


def _development_key(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(AESGCM.generate_key(bit_length=256))
            try:
                os.link(temporary, path)  # fails if another process made it first
                log.info("generated a development wallet key", path=str(path))
            except FileExistsError:
                pass
        finally:
            temporary.unlink(missing_ok=True)
    key = path.read_bytes()
    if len(key) != 32:
        raise ConfigError(f"{path}: a wallet key file holds 32 bytes, this one {len(key)}")
    return key


class SecretBox:
    """AES-256-GCM over wallet secrets. Its repr names nothing of the key."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"

    def seal(self, secret: bytes, context: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, secret, context)

    def open(self, sealed: bytes, context: bytes) -> bytes:
        return self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], context)


def secret_context(user_id: str, pubkey: str) -> bytes:
    """The associated data a secret is sealed with: a sealed secret moved to another
    user's row, or paired with another address, does not open."""
    return f"dexecutor-wallet:{user_id}:{pubkey}".encode()


# -- balances -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Balance:
    """One token of a wallet: on chain (`total`), held by waiting orders (`reserved`),
    and what a new order may spend (`available`, never below zero)."""

    total: Decimal
    reserved: Decimal

    @property
    def available(self) -> Decimal:
        return max(self.total - self.reserved, Decimal(0))

    def view(self) -> dict[str, Decimal]:
        return {"total": self.total, "available": self.available, "reserved": self.reserved}


@dataclass(frozen=True, slots=True)
class Holdings:
    """A wallet as the chain shows it: lamports and token accounts (base units by mint)."""

    lamports: int
    tokens: Mapping[str, int]

    def units(self, token: Token) -> int | None:
        """Base units of the token, or None when the wallet has no account for it."""
        return self.lamports if token.symbol == SOL else self.tokens.get(token.mint)


def _units(amount: Decimal, token: Token) -> int:
    return int(amount.scaleb(token.decimals))


def _amount(units: int, token: Token) -> Decimal:
    return Decimal(units).scaleb(-token.decimals)


def _token(symbol: str) -> Token:
    token = find_token(symbol)
    if token is None:
        raise ValueError(f"unknown token {symbol!r}")
    return token


@dataclass(slots=True)
class _Wallet:
    pubkey: str
    keypair: Keypair

    def __repr__(self) -> str:  # the keypair's own repr would not do in a log line
        return f"_Wallet({self.pubkey})"


class Wallets:
    """Each user's wallet: made (and, in development, funded) on first use."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        chain: ChainClient,
        box: SecretBox,
        funding: Sequence[tuple[str, Decimal]] = (),
    ) -> None:
        self._pool = pool
        self._chain = chain
        self._box = box
        self._funding = [(_token(s), amount) for s, amount in funding]
        self._cache: dict[str, _Wallet] = {}
        self._loading: dict[str, asyncio.Task[_Wallet]] = {}
        self._holdings_reads: SharedReads[Holdings] = SharedReads()
        self._reserved_reads: SharedReads[dict[str, Decimal]] = SharedReads()

    def __repr__(self) -> str:
        return f"Wallets({len(self._cache)} cached)"

    async def pubkey(self, user_id: str) -> str:
        """The user's wallet address (base58), made on first use."""
        return (await self._wallet(user_id)).pubkey

    async def keypair(self, user_id: str) -> Keypair:
        """The user's signing keypair, made on first use. Keep it out of log calls."""
        return (await self._wallet(user_id)).keypair

    async def _wallet(self, user_id: str) -> _Wallet:
        cached = self._cache.get(user_id)
        if cached is not None:
            return cached
        # Concurrent first uses in this process share one load (and one funding).
        task = self._loading.get(user_id)
        if task is None:
            task = asyncio.ensure_future(self._load(user_id))
            self._loading[user_id] = task
            task.add_done_callback(lambda _: self._loading.pop(user_id, None))
        wallet = await asyncio.shield(task)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[user_id] = wallet
        return wallet

    async def _load(self, user_id: str) -> _Wallet:
        row = await self._pool.fetchrow(
            "SELECT pubkey, secret, funded FROM wallets WHERE user_id = $1", user_id
        )
        if row is None:
            fresh = Keypair()
            pubkey = str(fresh.pubkey())
            # Two processes may make the same user's wallet at once: one row wins, and
            # both go on with the one stored.
            await self._pool.execute(
                "INSERT INTO wallets (user_id, pubkey, secret, funded) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (user_id) DO NOTHING",
                user_id,
                pubkey,
                self._box.seal(bytes(fresh.secret()), secret_context(user_id, pubkey)),
                not self._funding,
            )
            del fresh
            row = await self._pool.fetchrow(
                "SELECT pubkey, secret, funded FROM wallets WHERE user_id = $1", user_id
            )
            assert row is not None
        wallet = self._open(user_id, row["pubkey"], row["secret"])
        if not row["funded"]:
            await self._fund(user_id, wallet.pubkey)
        return wallet

    def _open(self, user_id: str, pubkey: str, sealed: bytes) -> _Wallet:
        try:
            seed = self._box.open(sealed, secret_context(user_id, pubkey))
        except InvalidTag:
            raise ConfigError(
                f"the wallet of user {user_id!r} does not decrypt with this WALLET_KEY"
            ) from None
        keypair = Keypair.from_seed(seed)
        if str(keypair.pubkey()) != pubkey:
            raise ConfigError(f"the wallet of user {user_id!r} does not match its address")
        return _Wallet(pubkey, keypair)

    async def _fund(self, user_id: str, pubkey: str) -> None:
        """The faucet's starting grant, once: the row lock makes every other process
        wait until the wallet is funded, and a failed grant rolls back to try again."""
        async with self._pool.acquire() as conn, conn.transaction():
            funded = await conn.fetchval(
                "SELECT funded FROM wallets WHERE user_id = $1 FOR UPDATE", user_id
            )
            if funded:
                return
            for token, amount in self._funding:
                await self._chain.airdrop(pubkey, token.mint, _units(amount, token))
            await conn.execute("UPDATE wallets SET funded = true WHERE user_id = $1", user_id)
        log.info("funded a new wallet", user_id=user_id, wallet=pubkey)

    # -- balances -----------------------------------------------------------------------

    async def holdings(self, pubkey: str) -> Holdings:
        """The wallet's lamports and token accounts, read after this call began
        (calls for one wallet that arrive together share reads: `SharedReads`)."""
        return await self._holdings_reads.get(pubkey, lambda: self._read_holdings(pubkey))

    async def _read_holdings(self, pubkey: str) -> Holdings:
        """One read: lamports and token accounts in one JSON-RPC batch.

        Asked once more at once when the chain did not answer: a shared read that
        fails fails every check waiting on it, and the usual cause is passing (a
        kept-alive connection the chain had just closed).
        """
        try:
            return await self._read_holdings_once(pubkey)
        except ChainUnreachable:
            return await self._read_holdings_once(pubkey)

    async def _read_holdings_once(self, pubkey: str) -> Holdings:
        lamports, accounts = await self._chain.rpc_batch(
            [
                ("getBalance", [pubkey, {"commitment": "confirmed"}]),
                (
                    "getTokenAccountsByOwner",
                    [
                        pubkey,
                        {"programId": TOKEN_PROGRAM},
                        {"encoding": "jsonParsed", "commitment": "confirmed"},
                    ],
                ),
            ]
        )
        for answer in (lamports, accounts):
            if isinstance(answer, Exception):
                raise answer
        tokens: dict[str, int] = {}
        for account in accounts["value"]:
            info = account["account"]["data"]["parsed"]["info"]
            if info["mint"] == WSOL_MINT:
                continue  # SOL is counted as native lamports
            tokens[info["mint"]] = tokens.get(info["mint"], 0) + int(info["tokenAmount"]["amount"])
        return Holdings(int(lamports["value"]), tokens)

    async def reserved(
        self, user_id: str, except_order: UUID | None = None, except_key: str | None = None
    ) -> dict[str, Decimal]:
        """What the user's waiting orders hold back, per input token (leaving out one
        order: by id, or by the Idempotency-Key it was placed with).

        Leaving none out, calls for one user that arrive together share reads
        (`SharedReads`): a thousand orders of one user checked at once.
        """
        if except_order is None and except_key is None:
            return await self._reserved_reads.get(user_id, lambda: self._reserved(user_id))
        return await self._reserved(user_id, except_order, except_key)

    async def _reserved(
        self, user_id: str, except_order: UUID | None = None, except_key: str | None = None
    ) -> dict[str, Decimal]:
        rows = await self._pool.fetch(
            # The status is written out (not a parameter) so that the partial index
            # orders_waiting_by_user matches the query's predicate in every plan.
            "SELECT token_in, sum(amount_in) AS held FROM orders"
            " WHERE user_id = $1 AND status = 'waiting' AND id IS DISTINCT FROM $2"
            " AND ($3::text IS NULL OR idempotency_key IS DISTINCT FROM $3)"
            " GROUP BY token_in",
            user_id,
            except_order,
            except_key,
        )
        return {r["token_in"]: Decimal(r["held"]) for r in rows}

    async def balances(self, user_id: str) -> dict[str, Balance]:
        """Every token the wallet holds or has reserved; SOL and USDC always."""
        pubkey = await self.pubkey(user_id)
        held, reserved = await asyncio.gather(self.holdings(pubkey), self.reserved(user_id))
        symbols = {SOL, "USDC", *reserved}
        symbols.update(_BY_MINT[m].symbol for m in held.tokens if m in _BY_MINT)
        ordered = [t for t in TOKENS if t.symbol in symbols]
        return {
            t.symbol: Balance(_amount(held.units(t) or 0, t), reserved.get(t.symbol, Decimal(0)))
            for t in ordered
        }

    async def airdrop(self, user_id: str, symbol: str, amount: Decimal) -> None:
        """Development faucet: add `amount` of the token to the user's wallet."""
        token = _token(symbol)
        pubkey = await self.pubkey(user_id)
        await self._chain.airdrop(pubkey, token.mint, _units(amount, token))


class SharedReads(Generic[V]):
    """Reads of one key that arrive together share one read, none older than its ask.

    With a read of the key under way, a caller waits for the next read, which starts
    when that one ends: no caller gets a value read before it asked (a pre-trade check
    sees at least what its own read would have), and there are at most two reads of a
    key at a time however many callers ask at once (a thousand orders of one user).
    """

    def __init__(self) -> None:
        self._reading: dict[str, asyncio.Future[V]] = {}
        self._queued: dict[str, asyncio.Future[V]] = {}

    async def get(self, key: str, read: Callable[[], Awaitable[V]]) -> V:
        queued = self._queued.get(key)
        if queued is not None:
            return await asyncio.shield(queued)
        reading = self._reading.get(key)
        if reading is None:
            return await asyncio.shield(self._start(key, read))
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._queued[key] = future

        def start_next(_: object) -> None:
            del self._queued[key]
            self._start(key, read).add_done_callback(lambda done: _pass_on(done, future))

        reading.add_done_callback(start_next)
        return await asyncio.shield(future)

    def _start(self, key: str, read: Callable[[], Awaitable[V]]) -> asyncio.Future[V]:
        task = asyncio.ensure_future(read())
        self._reading[key] = task
        task.add_done_callback(lambda _: self._reading.pop(key, None))
        return task


def _pass_on(done: asyncio.Future[V], future: asyncio.Future[V]) -> None:
    """A finished read's result (or error) to the callers queued for it."""
    if future.done():
        return
    if done.cancelled():
        future.cancel()
    elif (err := done.exception()) is not None:
        future.set_exception(err)
    else:
        future.set_result(done.result())


# -- the pre-trade check --------------------------------------------------------------------


class Funds:
    """The engine's pre-trade check: can the wallet pay this order's input and fees?

    The network fee is budgeted at its worst: the base fee, the priority fee at the
    engine's cap, and the rent of the output token account when the wallet has none.
    """

    def __init__(
        self,
        wallets: Wallets,
        priority_fee_cap_microlamports: int = DEFAULT_PRIORITY_FEE_CAP_MICROLAMPORTS,
    ) -> None:
        self._wallets = wallets
        self._priority_lamports = -(
            -ESTIMATED_COMPUTE_UNITS * priority_fee_cap_microlamports // txn.MICRO_LAMPORTS
        )

    async def check(self, order: Order) -> None:
        """Raise MarketError(insufficient_funds) when the wallet cannot pay the order
        (its own reservation excluded: it is the one about to spend it).

        An order past `waiting` (routing, as the engine checks it) holds no
        reservation: there is none of its own to leave out, and the read of what the
        user's waiting orders hold is shared with the user's other checks."""
        own = order.id if order.status is OrderStatus.WAITING else None
        await self.check_spend(order.user_id, order.token_in, order.token_out, order.amount_in, own)

    async def check_spend(
        self,
        user_id: str,
        token_in: str,
        token_out: str,
        amount_in: Decimal,
        order_id: UUID | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        """The same check for an order not stored yet (placement) or a stored one."""
        t_in, t_out = _token(token_in), _token(token_out)
        pubkey = await self._wallets.pubkey(user_id)
        held, reserved = await asyncio.gather(
            self._wallets.holdings(pubkey),
            self._wallets.reserved(user_id, order_id, idempotency_key),
        )
        fee = txn.LAMPORTS_PER_SIGNATURE + self._priority_lamports
        if t_out.symbol != SOL and held.units(t_out) is None:
            fee += txn.TOKEN_ACCOUNT_RENT
        sol = _token(SOL)
        fee_sol = _amount(fee, sol)
        need = {t_in.symbol: amount_in}
        need[SOL] = need.get(SOL, Decimal(0)) + fee_sol
        for symbol, wanted in need.items():
            token = _token(symbol)
            balance = Balance(
                _amount(held.units(token) or 0, token), reserved.get(symbol, Decimal(0))
            )
            if wanted > balance.available:
                raise MarketError(
                    FailureReason.INSUFFICIENT_FUNDS,
                    _shortfall(symbol, wanted, balance, t_in.symbol, amount_in, fee_sol),
                )


def _shortfall(
    symbol: str, wanted: Decimal, balance: Balance, token_in: str, amount_in: Decimal, fee: Decimal
) -> str:
    parts = []
    if symbol == token_in:
        parts.append(f"{_show(amount_in)} {symbol} in")
    if symbol == SOL:
        parts.append(f"up to {_show(fee)} SOL network fee")
    held = (
        f"; {_show(balance.reserved)} {symbol} reserved by waiting orders"
        if balance.reserved
        else ""
    )
    return (
        f"insufficient funds: the order needs {_show(wanted)} {symbol}"
        f" ({' + '.join(parts)}) but the wallet has {_show(balance.available)} {symbol}"
        f" available ({_show(balance.total)} on chain{held})"
    )


def _show(amount: Decimal) -> str:
    """An amount in words: plain digits, no trailing zeros."""
    return format(plain(amount), "f")


def funds_of(settings: Settings, pool: asyncpg.Pool, chain: ChainClient) -> tuple[Wallets, Funds]:
    """The wallets and the pre-trade check of a process, from its settings."""
    wallets = Wallets(pool, chain, SecretBox(wallet_key(settings)), settings.funding)
    return wallets, Funds(wallets, settings.priority_fee_max_microlamports)


def describe(balances: Mapping[str, Balance]) -> dict[str, Any]:
    """The balances as the API shows them."""
    return {symbol: b.view() for symbol, b in balances.items()}
