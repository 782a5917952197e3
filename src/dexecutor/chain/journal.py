"""Group commit of the chain's changes, in the order the market saw them.

The market changes in memory at once (a fill must see the fill before it); the
journal then saves the changes in batches, in order, retrying a batch until
PostgreSQL takes it. A caller that must not answer before its change is durable (a
`sendTransaction`, a launch) awaits `durable()`; a transaction's outcome is shown to
clients only once saved, so nobody ever sees a fill a restart would undo.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

import asyncpg
import structlog

from dexecutor.background import cancel_and_wait
from dexecutor.chain.records import Action, ChainTx

log = structlog.get_logger(__name__)

RETRY_S = 0.5


class Store(Protocol):
    async def commit(
        self,
        actions: list[Action],
        txs: list[ChainTx],
        slot: int,
        accounts: dict[tuple[str, str], int] | None = None,
    ) -> None: ...


class Journal:
    def __init__(
        self,
        store: Store,
        next_action_id: int,
        slot: Callable[[], int],
        on_saved: Callable[[list[ChainTx]], None],
    ) -> None:
        self._store = store
        self._next_id = next_action_id
        self._slot = slot
        self._on_saved = on_saved
        self._actions: list[Action] = []
        self._txs: dict[str, ChainTx] = {}
        self._accounts: dict[tuple[str, str], int] = {}
        self._appended = 0  # changes appended so far
        self._saved = 0  # changes saved so far
        self._wake = asyncio.Event()
        self._saved_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.failing = False

    def action(self, slot: int, at: float, kind: str, data: dict[str, Any]) -> Action:
        action = Action(self._next_id, slot, at, kind, data)
        self._next_id += 1
        self._actions.append(action)
        self._bump()
        return action

    def tx(self, tx: ChainTx) -> None:
        self._txs.pop(tx.signature, None)  # keep the latest state, in order of change
        self._txs[tx.signature] = tx
        self._bump()

    def account(self, owner: str, mint: str, amount: int) -> None:
        """An account's new balance (saved in the batch of the change that made it)."""
        self._accounts[(owner, mint)] = amount
        self._bump()

    def touch(self) -> None:
        """Save the slot even when nothing else changed (so a restart resumes after it)."""
        self._bump()

    def _bump(self) -> None:
        self._appended += 1
        self._wake.set()

    @property
    def saved_all(self) -> bool:
        """Every change appended so far is saved (a reader need not wait)."""
        return self._saved >= self._appended

    async def durable(self) -> None:
        """Return once every change appended before this call is saved."""
        target = self._appended
        while self._saved < target:
            self._saved_event.clear()
            await self._saved_event.wait()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="chain-journal")

    async def stop(self) -> None:
        """Save what is left (a clean stop loses nothing), then stop."""
        if self._appended > self._saved and not self.failing:
            try:
                await asyncio.wait_for(self.durable(), 10)
            except TimeoutError:
                log.error("chain journal: changes left unsaved at stop")
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            target = self._appended
            actions, self._actions = self._actions, []
            txs, self._txs = list(self._txs.values()), {}
            accounts, self._accounts = self._accounts, {}
            while True:
                try:
                    await self._store.commit(actions, txs, self._slot(), accounts)
                    break
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
                    self.failing = True
                    log.warning("chain journal: save failed, retrying", error=str(err))
                    await asyncio.sleep(RETRY_S)
                except Exception:
                    # Any other failure is retried too, with its traceback: were this
                    # task to end, every sendTransaction would wait for a save that never
                    # comes (a chaos run's chain took no send for minutes after a
                    # PostgreSQL restart, its connections idle, nothing logged).
                    self.failing = True
                    log.exception("chain journal: save failed unexpectedly, retrying")
                    await asyncio.sleep(RETRY_S)
            self.failing = False
            self._saved = target
            self._saved_event.set()
            self._on_saved(txs)
