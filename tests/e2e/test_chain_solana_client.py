"""solana-py's AsyncClient against a real chain process: every answer in Solana's real shapes.

solana-py parses each response with solders' strict types, so a field missing, extra
in the wrong place or of the wrong type fails here, as it would for any Solana client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from uuid import uuid4

import pytest
from solana.exceptions import SolanaRpcException
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solana.rpc.core import RPCException
from solana.rpc.models import TokenAccountOpts, TxOpts
from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction_status import TransactionConfirmationStatus

from dexecutor.chain import transaction
from dexecutor.chain.accounts import TOKEN_PROGRAM, token_account
from tests.support import (
    Process,
    chain_process,
    create_database,
    drop_database,
    free_port,
    service_env,
    serving,
)

USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
RAYDIUM = Pubkey.from_string("675kPX9MHTjS2zt1qfr1NYHuzeLXfQM9H24wFSUt1Mp8")


@pytest.fixture
async def chain() -> AsyncIterator[Process]:
    """A chain process that lands by the landing model, as `make run` does."""
    dsn = await create_database()
    env = service_env(dsn, "unused", CHAIN_LANDING="model", CHAIN_BLOCKHASH_SLOTS="150")
    proc = chain_process(env, free_port())
    try:
        async with serving(proc):
            yield proc
    finally:
        await drop_database(dsn)


async def test_solana_py_sends_confirms_and_reads_balances(chain: Process) -> None:
    wallet = Keypair()
    owner = wallet.pubkey()
    async with AsyncClient(chain.url, commitment=Confirmed) as rpc:
        airdrop = await rpc.request_airdrop(owner, 5 * 10**9)
        assert isinstance(airdrop.value, Signature)
        assert (await rpc.get_balance(owner)).value == 5 * 10**9

        fees = (await rpc.get_recent_prioritization_fees([RAYDIUM])).value
        assert 1 <= len(fees) <= 150
        bid = max(f.prioritization_fee for f in fees) * 2 + 1  # outbid every recent slot
        latest = (await rpc.get_latest_blockhash()).value
        height = (await rpc.get_block_height()).value
        assert latest.last_valid_block_height >= height + 149
        swap = transaction.SwapTx.single(
            str(owner), "raydium", "SOL", "USDC", Decimal(2), Decimal(1), uuid4(), 1,
            str(latest.blockhash), bid,
        )  # fmt: skip
        tx = transaction.build(swap, wallet)
        raw = bytes(tx)
        sent = await rpc.send_raw_transaction(raw, TxOpts(preflight_commitment=Confirmed))
        assert sent.value == tx.signatures[0]

        status = None
        async with asyncio.timeout(30):
            while status is None or status.confirmation_status in (
                None,
                TransactionConfirmationStatus.Processed,
            ):
                answer = await rpc.get_signature_statuses([sent.value], True)
                (status,) = answer.value
                if status is None:
                    await rpc.send_raw_transaction(raw)  # rebroadcast: same bytes
                await asyncio.sleep(0.2)
        assert status.err is None and status.slot > 0
        assert status.confirmation_status == TransactionConfirmationStatus.Confirmed

        got = (
            await rpc.get_transaction(sent.value, "json", max_supported_transaction_version=0)
        ).value
        assert got is not None and got.slot == status.slot
        meta = got.transaction.meta
        assert meta is not None and meta.err is None
        priority = -(-transaction.SWAP_COMPUTE_UNITS * bid // 10**6)
        assert meta.fee == 5_000 + priority
        spent = 2 * 10**9 + meta.fee + transaction.TOKEN_ACCOUNT_RENT
        assert meta.pre_balances[0] - meta.post_balances[0] == spent
        assert meta.pre_token_balances == []
        (usdc,) = meta.post_token_balances or []
        assert str(usdc.mint) == USDC and usdc.ui_token_amount.decimals == 6
        assert meta.return_data is not None
        out = int.from_bytes(meta.return_data.data, "little")
        assert int(usdc.ui_token_amount.amount) == out > 0
        as_base64 = (
            await rpc.get_transaction(sent.value, "base64", max_supported_transaction_version=0)
        ).value
        assert as_base64 is not None and as_base64.slot == got.slot

        assert (await rpc.get_balance(owner)).value == 5 * 10**9 - spent
        accounts = (
            await rpc.get_token_accounts_by_owner_json_parsed(
                owner, TokenAccountOpts(program_id=Pubkey.from_string(TOKEN_PROGRAM))
            )
        ).value
        (account,) = accounts
        assert str(account.pubkey) == token_account(str(owner), USDC)
        info = account.account.data.parsed["info"]
        assert info["tokenAmount"]["amount"] == str(out)
        by_mint = await rpc.get_token_accounts_by_owner_json_parsed(
            owner, TokenAccountOpts(mint=Pubkey.from_string(USDC))
        )
        assert len(by_mint.value) == 1

        # A refusal arrives as the RPC error a real node sends, and parses as one.
        stale = transaction.SwapTx.single(
            str(owner), "raydium", "SOL", "USDC", Decimal(1), Decimal(1), uuid4(), 1,
            str(Hash.new_unique()), 0,
        )  # fmt: skip
        with pytest.raises((RPCException, SolanaRpcException)) as refused:
            await rpc.send_raw_transaction(bytes(transaction.build(stale, wallet)))
        assert "BlockhashNotFound" in repr(refused.value)
