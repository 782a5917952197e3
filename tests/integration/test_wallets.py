"""Wallets against real PostgreSQL and a real chain: one wallet per user however many
processes make it at once, funded once, and balances read back from the chain."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import asyncpg
import pytest

from dexecutor.chain.client import ChainClient
from dexecutor.config import ConfigError
from dexecutor.market.types import MarketError
from dexecutor.store.migrate import migrate
from dexecutor.wallets import Funds, SecretBox, Wallets
from tests.integration.conftest import Chain

GRANT = [("SOL", Decimal(1000)), ("USDC", Decimal(100000))]


@pytest.fixture
async def pools(chain: Chain) -> AsyncIterator[list[asyncpg.Pool]]:
    """Two pools on the engine's tables: two processes of one deployment."""
    made = [await asyncpg.create_pool(chain.dsn, min_size=1, max_size=4) for _ in range(2)]
    async with made[0].acquire() as conn:
        await migrate(conn)
    yield made
    for pool in made:
        await pool.close()


@pytest.fixture
async def client(chain: Chain) -> AsyncIterator[ChainClient]:
    chain_client = ChainClient(chain.url)
    yield chain_client
    await chain_client.close()


async def test_two_processes_making_a_wallet_at_once_end_with_one_funded_once(
    pools: list[asyncpg.Pool], client: ChainClient
) -> None:
    key = bytes(range(32))
    processes = [Wallets(pool, client, SecretBox(key), GRANT) for pool in pools]
    addresses = await asyncio.gather(*(w.pubkey("twin") for w in processes for _ in range(5)))
    assert len(set(addresses)) == 1
    signers = {str((await w.keypair("twin")).pubkey()) for w in processes}
    assert signers == set(addresses)
    async with pools[0].acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM wallets WHERE user_id = 'twin'") == 1
    for wallets in processes:
        balances = await wallets.balances("twin")
        assert {s: b.total for s, b in balances.items()} == dict(GRANT)  # granted once


async def test_a_wallet_under_another_key_does_not_open(
    pools: list[asyncpg.Pool], client: ChainClient
) -> None:
    await Wallets(pools[0], client, SecretBox(bytes(32)), GRANT).pubkey("locked")
    other = Wallets(pools[1], client, SecretBox(bytes([7]) * 32), GRANT)
    with pytest.raises(ConfigError, match="does not decrypt with this WALLET_KEY"):
        await other.keypair("locked")


async def test_the_fee_budget_counts_the_rent_of_a_new_output_account(
    pools: list[asyncpg.Pool], client: ChainClient
) -> None:
    wallets = Wallets(pools[0], client, SecretBox(bytes(32)), [("SOL", Decimal("0.01"))])
    funds = Funds(wallets, priority_fee_cap_microlamports=0)
    await funds.check_spend("renter", "SOL", "USDC", Decimal("0.007"))
    # 0.009 SOL + 5,000 lamports fee + 2,039,280 lamports rent for the USDC account > 0.01
    with pytest.raises(MarketError) as short:
        await funds.check_spend("renter", "SOL", "USDC", Decimal("0.009"))
    assert short.value.reason == "insufficient_funds"
    assert "0.00204428 SOL network fee" in short.value.message
    # Selling into SOL opens no account: only the base fee.
    await wallets.airdrop("renter", "USDC", Decimal(5))
    await funds.check_spend("renter", "USDC", "SOL", Decimal(5))


async def test_balance_reads_of_one_wallet_at_once_are_shared_and_never_older_than_the_ask(
    pools: list[asyncpg.Pool], client: ChainClient
) -> None:
    """A thousand orders of one user checked at once must not cost a thousand chain
    reads; yet a check that starts after a balance changed sees the change."""
    wallets = Wallets(pools[0], client, SecretBox(bytes(32)), GRANT)
    pubkey = await wallets.pubkey("busy")
    reads = 0
    batch = client.rpc_batch

    async def counted(calls: list[tuple[str, list[object]]]) -> list[object]:
        nonlocal reads
        reads += 1
        return await batch(calls)

    client.rpc_batch = counted  # type: ignore[method-assign]
    seen = await asyncio.gather(*(wallets.holdings(pubkey) for _ in range(50)))
    assert reads <= 2
    assert {h.lamports for h in seen} == {1000 * 10**9}
    # A read under way when SOL arrives: a check asked after the airdrop sees it.
    first = asyncio.ensure_future(wallets.holdings(pubkey))
    await asyncio.sleep(0)
    await wallets.airdrop("busy", "SOL", Decimal(1))
    after = await wallets.holdings(pubkey)
    await first
    assert after.lamports == 1001 * 10**9
