"""Sending and confirming transactions through the field's own JSON-RPC client.

The engine talks to the chain as it would to a real cluster: solana-py's
`AsyncClient`, solders' strict response types. Pointing the RPC URL at a real
cluster changes nothing here. What a real deployment's send-and-confirm loop has to
do, it does:

- one recent blockhash and one priority-fee bid per slot, however many
  transactions are built in it (the bid: a percentile of getRecentPrioritizationFees,
  capped);
- sends of many orders at once in one JSON-RPC batch (a lone send goes at once, alone;
  under load each batch takes the sends that queued while the one before it ran);
- one poll loop per process: every transaction awaited is asked about in one
  getSignatureStatuses call per poll (256 signatures a call, as the real RPC allows),
  and the confirmed ones are read in one JSON-RPC batch of getTransaction;
- while a transaction has no status and its blockhash is valid, its same signed bytes
  are sent again every `rebroadcast_s`: a broadcast can be lost, and a rebroadcast of
  the same signature can never run twice;
- it is given up only once the block height has passed its lastValidBlockHeight AND
  a status read made after that height was seen still finds nothing: only then can
  it never land, and only then may the order sign a new one.

AsyncClient's HTTP goes over an aiohttp pool (`_AiohttpTransport`); requests,
responses and errors stay solana-py's and solders'.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import time
from collections.abc import Awaitable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import httpx2
import msgspec
import structlog
from solana.exceptions import SolanaRpcException
from solana.rpc.async_api import AsyncClient
from solana.rpc.core import RPCException
from solana.rpc.models import TxOpts
from solders.commitment_config import CommitmentLevel
from solders.rpc.config import RpcSendTransactionConfig, RpcTransactionConfig
from solders.rpc.errors import SendTransactionPreflightFailureMessage
from solders.rpc.requests import Body, GetTransaction, SendRawTransaction
from solders.rpc.responses import (
    GetTransactionResp,
    RpcSimulateTransactionResult,
    SendTransactionResp,
)
from solders.signature import Signature
from solders.transaction_status import (
    InstructionErrorCustom,
    TransactionConfirmationStatus,
    TransactionErrorFieldless,
    TransactionErrorInstructionError,
    TransactionErrorType,
    UiTransactionEncoding,
)

from dexecutor.background import cancel_and_wait
from dexecutor.chain.protocol import CUSTOM_ERRORS, SLOT_MS
from dexecutor.domain.failures import FailureReason
from dexecutor.group_commit import GroupCommit, ItemFailed
from dexecutor.metrics import TX_BROADCASTS

log = structlog.get_logger(__name__)
T = TypeVar("T")

SLOT_S = SLOT_MS / 1000  # the default slot length (CHAIN_SLOT_MS)
MAX_SIGNATURES = 256  # per getSignatureStatuses call, as the real RPC allows
POLL_S = 0.02
RPC_CONNECTIONS = 32
# A landed transaction is finalized (rooted) this many slots after its slot, here as on
# mainnet in the common case; confirmed events name the slot by which it will be.
FINALIZED_AFTER_SLOTS = 32
CONFIRMED = (TransactionConfirmationStatus.Confirmed, TransactionConfirmationStatus.Finalized)
# Program error codes of a swap instruction: the chain's own table, so the two ends of
# the wire cannot disagree on a code.
SLIPPAGE_CODE = CUSTOM_ERRORS[FailureReason.SLIPPAGE_EXCEEDED]  # 6001 = 0x1771
TOKEN_INSUFFICIENT_FUNDS_CODE = CUSTOM_ERRORS[FailureReason.INSUFFICIENT_FUNDS]  # SPL token's 1
# No preflight (the engine checked funds; a simulation would only add a round trip) and
# no retries by the node: this loop rebroadcasts itself, and knows when to stop.
SEND_OPTS = TxOpts(skip_preflight=True, skip_confirmation=True, max_retries=0)
# The same options as a batched sendTransaction's config (what AsyncClient makes of them).
SEND_CONFIG = RpcSendTransactionConfig(
    skip_preflight=True, preflight_commitment=CommitmentLevel.Finalized, max_retries=0
)
# Sends of one JSON-RPC batch, and batches in flight at once: a flush waits for the
# chain to save its ledger, so two let the next batch gather while one is saved.
SEND_BATCH = 128
SEND_FLUSHES = 2


class RpcUnreachable(ConnectionError):
    """The RPC node did not answer. Transient (a ConnectionError: passing trouble)."""


class SendFailed(Exception):
    """The node refused the transaction. `reason` is a failure reason code, or None when
    the refusal is a fence (another live transaction of the order: SubmitRefused)."""

    def __init__(self, reason: str | None, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class Landed:
    """A transaction at `confirmed` (or finalized) commitment, as getTransaction shows it."""

    signature: str
    slot: int
    err: TransactionErrorType | None
    fee: int  # meta.fee: base + priority, lamports
    owner_lamports_delta: int  # the fee payer's (account 0) post - pre balance
    owner_token_deltas: dict[str, int]  # mint -> post - pre base units, the owner's accounts
    return_units: int | None  # the swap program's return data (u64 LE amount out)
    finalized: bool
    # Mints of the owner's token accounts the transaction opened (absent before it).
    opened: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Expired:
    """Never landed while its blockhash was valid: it never will."""

    signature: str
    last_valid_block_height: int
    block_height: int


Outcome = Landed | Expired


@dataclass(slots=True)
class _Watch:
    signature: Signature
    raw: bytes | None  # the signed bytes, sent again while unconfirmed (None: never)
    last_valid: int | None
    sent_at: float
    futures: list[asyncio.Future[Outcome]] = field(default_factory=list)
    owner: str | None = None  # the fee payer, whose balance changes are the fill's
    seen: bool = False  # a status has been seen: it landed, stop rebroadcasting
    finalized: bool = False


def reason_of(err: TransactionErrorType | None) -> str:
    """The failure reason of a transaction error (the chain's or a preflight's)."""
    if isinstance(err, TransactionErrorInstructionError):
        detail = err.err
        if isinstance(detail, InstructionErrorCustom):
            if detail.code == SLIPPAGE_CODE:
                return FailureReason.SLIPPAGE_EXCEEDED
            if detail.code == TOKEN_INSUFFICIENT_FUNDS_CODE:
                return FailureReason.INSUFFICIENT_FUNDS
        return FailureReason.TX_FAILED
    if err == TransactionErrorFieldless.BlockhashNotFound:
        return FailureReason.BLOCKHASH_EXPIRED
    if err == TransactionErrorFieldless.InsufficientFundsForFee:
        return FailureReason.INSUFFICIENT_FUNDS
    return FailureReason.TX_FAILED


def describe(err: TransactionErrorType | None) -> str:
    """A transaction error in words, with its program error code when it has one."""
    if isinstance(err, TransactionErrorInstructionError):
        detail = err.err
        if isinstance(detail, InstructionErrorCustom):
            return (
                f"instruction {err.index} failed with custom program error"
                f" {detail.code:#x} ({detail.code})"
            )
        return f"instruction {err.index} failed: {detail}"
    return str(err)


def percentile(values: Sequence[int], pct: int) -> int:
    """The nearest-rank percentile (0 for no values): a fee that many bids met or beat."""
    if not values:
        return 0
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


class _BatchBody:
    """Several requests as one JSON-RPC batch body, for AsyncClient's transport.

    The same text as solders' `batch_to_json`, made by joining each request's own
    `to_json`: `batch_to_json` cost about 80 us per request (2 us this way), a tenth
    of the worker's time at a hundred orders in flight.
    """

    def __init__(self, requests: Sequence[Body]) -> None:
        self._requests = requests

    def to_json(self) -> str:
        return "[" + ",".join(request.to_json() for request in self._requests) + "]"


class _AiohttpTransport(httpx2.AsyncBaseTransport):
    """AsyncClient's requests over an aiohttp connection pool.

    Everything above the socket stays solana-py's (request bodies, strict parsing,
    errors); only the pool changes: httpcore's scans every connection's socket for
    each request, which at hundreds of sends a second cost the worker more than the
    sends themselves.
    """

    def __init__(self, timeout_s: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(timeout_s, 3.0))
        self._session: aiohttp.ClientSession | None = None

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if self._session is None:  # made in the running loop, on first use
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=RPC_CONNECTIONS, ttl_dns_cache=300),
            )
        try:
            async with self._session.request(
                request.method,
                str(request.url),
                data=await request.aread(),
                headers={"content-type": "application/json"},
            ) as answer:
                body = await answer.read()
                return httpx2.Response(answer.status, content=body, request=request)
        except (aiohttp.ClientError, TimeoutError) as err:
            raise httpx2.TransportError(f"{err!r}", request=request) from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class Rpc:
    """One process's JSON-RPC side of the chain: build inputs, send, and confirm."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 10.0,
        poll_s: float = POLL_S,
        rebroadcast_s: float = 2.0,
        fee_percentile: int = 75,
        fee_cap: int = 1_000_000,
        slot_s: float = SLOT_S,
    ) -> None:
        self.url = url
        # The chain's slot length: a blockhash, a fee bid and the block height are read
        # again once a slot, however short the chain's slots are.
        self._slot_s = slot_s
        # A few dozen kept-alive connections (the transport's): RPC calls are short
        # (no latency is simulated on them), and a burst of a thousand sends opening a
        # thousand connections at once would only overflow the node's accept queue.
        self._client = AsyncClient(
            url,
            timeout=timeout_s,
            http2=False,
            max_connections=RPC_CONNECTIONS,
            max_keepalive_connections=RPC_CONNECTIONS,
            max_transport_retries=0,
        )
        self._transport = _AiohttpTransport(timeout_s)
        self._client._provider.session = httpx2.AsyncClient(transport=self._transport)
        self._poll_s = poll_s
        self._rebroadcast_s = rebroadcast_s
        self._fee_percentile = fee_percentile
        self._fee_cap = fee_cap
        self.slot = 0  # the latest slot any answer named
        self._blockhash: tuple[float, str, int] | None = None
        self._blockhash_call: asyncio.Task[tuple[str, int]] | None = None
        self._fee: tuple[float, int] | None = None
        self._fee_call: asyncio.Task[int] | None = None
        self._height: int | None = None
        self._height_seen_at = 0.0
        self._watching: dict[str, _Watch] = {}
        self._wake = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None
        self._complained_at = 0.0
        self._resends: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(RPC_CONNECTIONS)
        self._sends: GroupCommit[bytes, str] = GroupCommit(
            self._send_batch, max_batch=SEND_BATCH, max_flushes=SEND_FLUSHES
        )

    async def close(self) -> None:
        await cancel_and_wait(self._poller)
        for task in list(self._resends):
            await cancel_and_wait(task)
        for watch in self._watching.values():
            for future in watch.futures:
                future.cancel()
        await self._client.close()

    # -- what a transaction is built with ----------------------------------------------------

    async def latest_blockhash(self) -> tuple[str, int]:
        """The recent blockhash and its lastValidBlockHeight: asked once a slot."""
        cached = self._blockhash
        if cached is not None and time.monotonic() - cached[0] < self._slot_s:
            return cached[1], cached[2]
        if self._blockhash_call is None or self._blockhash_call.done():
            self._blockhash_call = _shared_task(self._fetch_blockhash())
        return await asyncio.shield(self._blockhash_call)

    async def _fetch_blockhash(self) -> tuple[str, int]:
        asked_at = time.monotonic()
        answer = await self._call(self._client.get_latest_blockhash())
        self._saw_slot(answer.context.slot)
        value = answer.value
        self._blockhash = (asked_at, str(value.blockhash), int(value.last_valid_block_height))
        return self._blockhash[1], self._blockhash[2]

    async def priority_fee(self) -> int:
        """The compute-unit price to bid (micro-lamports per CU): asked once a slot."""
        cached = self._fee
        if cached is not None and time.monotonic() - cached[0] < self._slot_s:
            return cached[1]
        if self._fee_call is None or self._fee_call.done():
            self._fee_call = _shared_task(self._fetch_fee())
        return await asyncio.shield(self._fee_call)

    async def _fetch_fee(self) -> int:
        asked_at = time.monotonic()
        try:
            answer = await self._call(self._client.get_recent_prioritization_fees())
            recent = [int(f.prioritization_fee) for f in answer.value]
        except RPCException as err:
            # A node without the method: bid nothing rather than fail every order.
            self._complain("no recent prioritization fees: bidding 0", err)
            recent = []
        bid = min(percentile(recent, self._fee_percentile), self._fee_cap)
        self._fee = (asked_at, bid)
        return bid

    # -- sending -------------------------------------------------------------------------------

    async def send(self, raw: bytes, *, again: bool = False) -> str:
        """Send signed bytes (no preflight); the signature. SendFailed when refused.

        `again`: a rebroadcast of bytes this process sent before (counted apart).
        """
        TX_BROADCASTS.labels("rebroadcast" if again else "send").inc()
        return await self._sends.submit(raw)

    async def _send_batch(self, raws: list[bytes]) -> list[str | ItemFailed]:
        """Send signed transactions: one alone as a plain request, several as a batch.

        Each answer is read as AsyncClient reads a sendTransaction's (solders' strict
        types); a refusal is that send's own SendFailed, the others go on.
        """
        if len(raws) == 1:
            try:
                sent = await self._call(self._client.send_raw_transaction(raws[0], SEND_OPTS))
            except RPCException as err:
                return [ItemFailed(_refusal(err))]
            return [str(sent.value)]
        requests = [SendRawTransaction(raw, SEND_CONFIG, id=i) for i, raw in enumerate(raws)]
        text = await self._call(self._client._provider.make_request_unparsed(_BatchBody(requests)))
        answers = _batch_answers(text)
        if answers is None:
            raise RpcUnreachable(f"the chain refused a sendTransaction batch: {text[:200]}")
        by_id = {index: answer for index, _, answer in answers if isinstance(index, int)}
        return [_sent(by_id.get(i)) for i in range(len(raws))]

    # -- confirming ----------------------------------------------------------------------------

    async def outcome(
        self,
        signature: str,
        raw: bytes | None,
        last_valid: int | None,
        owner: str | None = None,
    ) -> Outcome:
        """Wait until the transaction is confirmed, or can no longer land.

        While it has no status its `raw` bytes are sent again every rebroadcast
        period; `last_valid` None (a record that does not know it) waits for a status.
        """
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        watch = self._watching.get(signature)
        if watch is None:
            watch = _Watch(
                Signature.from_string(signature), raw, last_valid, time.monotonic(), owner=owner
            )
            self._watching[signature] = watch
        watch.futures.append(future)
        if self._poller is None or self._poller.done():
            self._poller = _shared_task(self._poll(), name="chain-confirm")
        self._wake.set()
        return await future

    async def _poll(self) -> None:
        while True:
            if not self._watching:
                self._wake.clear()
                await self._wake.wait()
            try:
                await self._poll_once()
            except (RpcUnreachable, RPCException) as err:
                self._complain("the chain did not answer a status poll", err)
            except BaseException as err:  # the one poller of the process must live on
                if _ends_the_task(err):
                    raise
                # Not only Exceptions: a panic in a native parser is a BaseException,
                # and one let through ended this task, every awaited outcome left waiting.
                log.exception("status poll failed")
            # One call a poll whatever the number awaited; with very many, a little less
            # often (each call then carries hundreds of signatures).
            await asyncio.sleep(max(self._poll_s, min(0.1, len(self._watching) / 10_000)))

    async def _poll_once(self) -> None:
        for sig, watch in list(self._watching.items()):
            watch.futures = [f for f in watch.futures if not f.done()]
            if not watch.futures:
                del self._watching[sig]
        if not self._watching:
            return
        # A null status counts as "never landed" only when this read began after a
        # block height past the transaction's validity was seen.
        height, height_seen_at = self._height, self._height_seen_at
        asked_at = time.monotonic()
        watches = list(self._watching.values())
        chunks = [watches[i : i + MAX_SIGNATURES] for i in range(0, len(watches), MAX_SIGNATURES)]
        answers = await asyncio.gather(
            *(
                self._call(
                    self._client.get_signature_statuses(
                        [w.signature for w in chunk], search_transaction_history=True
                    )
                )
                for chunk in chunks
            )
        )
        confirmed: list[_Watch] = []
        unseen: list[_Watch] = []
        for chunk, answer in zip(chunks, answers, strict=True):
            self._saw_slot(answer.context.slot)
            for watch, status in zip(chunk, answer.value, strict=True):
                if status is None:
                    unseen.append(watch)
                    continue
                watch.seen = True  # processed at least: it is in a block, stop resending
                if status.confirmation_status in CONFIRMED:
                    watch.finalized = (
                        status.confirmation_status == TransactionConfirmationStatus.Finalized
                    )
                    confirmed.append(watch)
        if confirmed:
            await self._read(confirmed)
        now = time.monotonic()
        stale_height = now - height_seen_at >= self._slot_s
        for watch in unseen:
            if watch.seen:
                continue  # it had a status: a node behind another; wait for it again
            last_valid = watch.last_valid
            if (
                last_valid is not None
                and height is not None
                and height > last_valid
                and height_seen_at < asked_at
            ):
                self._settle(watch, Expired(str(watch.signature), last_valid, height))
                continue
            if watch.raw is not None and now - watch.sent_at >= self._rebroadcast_s:
                watch.sent_at = now
                self._resend(watch)
        if unseen and stale_height:
            tip = await self._call(self._client.get_block_height())
            self._height = int(tip.value)
            self._height_seen_at = time.monotonic()

    async def _read(self, watches: list[_Watch]) -> None:
        """getTransaction for every confirmed one, in JSON-RPC batches of up to 256."""
        chunks = [watches[i : i + MAX_SIGNATURES] for i in range(0, len(watches), MAX_SIGNATURES)]
        await asyncio.gather(*(self._read_batch(chunk) for chunk in chunks))

    async def _read_batch(self, watches: list[_Watch]) -> None:
        # At confirmed commitment: by default a node answers only once it is finalized.
        config = RpcTransactionConfig(
            UiTransactionEncoding.Base64,
            CommitmentLevel.Confirmed,
            max_supported_transaction_version=0,
        )
        requests = [GetTransaction(w.signature, config, id=i) for i, w in enumerate(watches)]
        raw = await self._call(self._client._provider.make_request_unparsed(_BatchBody(requests)))
        answers = _batch_answers(raw)
        if answers is None:  # the whole batch refused: ask again next poll
            self._complain("the chain refused a getTransaction batch", ValueError(raw[:200]))
            return
        for index, failed, answer in answers:
            if not isinstance(index, int) or not 0 <= index < len(watches) or failed:
                continue  # not readable yet: asked again next poll
            parsed = GetTransactionResp.from_json(answer)
            if not isinstance(parsed, GetTransactionResp) or parsed.value is None:
                continue
            watch = watches[index]
            landed = _landed(str(watch.signature), parsed, watch.owner, watch.finalized)
            self._settle(watch, landed)

    def _settle(self, watch: _Watch, outcome: Outcome) -> None:
        self._watching.pop(str(watch.signature), None)
        for future in watch.futures:
            if not future.done():
                future.set_result(outcome)

    def _resend(self, watch: _Watch) -> None:
        assert watch.raw is not None
        raw = watch.raw

        async def resend() -> None:
            try:
                await self.send(raw, again=True)
            except SendFailed as err:
                # BlockhashNotFound: it expired (the poll will see it); anything else
                # the first send would have met already.
                log.debug("rebroadcast refused", signature=str(watch.signature), error=str(err))
            except RpcUnreachable as err:
                self._complain("a rebroadcast did not reach the chain", err)

        task = asyncio.create_task(resend())
        self._resends.add(task)
        task.add_done_callback(self._resends.discard)

    # -- plumbing ------------------------------------------------------------------------------

    async def _call(self, request: Awaitable[T]) -> T:
        """Await an AsyncClient call; transport trouble becomes RpcUnreachable.

        No more calls at once than the client has connections: requests queued inside
        its pool cost a scan of the whole queue each time a connection frees.
        """
        try:
            async with self._slots:
                return await request
        except SolanaRpcException as err:
            raise RpcUnreachable(f"the chain at {self.url} did not answer: {err}") from None
        except httpx2.HTTPError as err:
            raise RpcUnreachable(f"the chain at {self.url} did not answer: {err!r}") from None
        except BaseException as err:
            if _ends_the_task(err) or isinstance(err, Exception):
                raise
            # solders panics (pyo3's PanicException, a BaseException) on an answer its
            # strict types cannot read: passing trouble, like no answer at all.
            raise RpcUnreachable(
                f"the chain at {self.url} gave an answer the client cannot read: {err}"
            ) from None

    def _saw_slot(self, slot: int) -> None:
        self.slot = max(self.slot, int(slot))

    def _complain(self, what: str, err: BaseException) -> None:
        now = time.monotonic()
        if now - self._complained_at > 5:
            self._complained_at = now
            log.warning(what, error=str(err))


def _ends_the_task(err: BaseException) -> bool:
    """Cancellation and the process's own exit: never swallowed."""
    return isinstance(err, (asyncio.CancelledError, KeyboardInterrupt, SystemExit))


def _refusal(err: RPCException) -> SendFailed:
    """What a sendTransaction error means for the order."""
    detail = err.args[0] if err.args else err
    if isinstance(detail, SendTransactionPreflightFailureMessage):
        data = detail.data
        tx_err = data.err if isinstance(data, RpcSimulateTransactionResult) else None
        if tx_err is None or tx_err == TransactionErrorFieldless.AlreadyProcessed:
            # The chain's fence: another live transaction of this order.
            return SendFailed(None, detail.message)
        return SendFailed(reason_of(tx_err), f"{detail.message} ({describe(tx_err)})")
    message = getattr(detail, "message", None) or str(detail)
    return SendFailed(FailureReason.TX_FAILED, f"the chain refused the transaction: {message}")


class _Head(msgspec.Struct):
    """What the engine reads itself of one answer in a batch: its id, and whether it is
    an error (UNSET: no `error` member)."""

    id: Any = None
    error: Any = msgspec.UNSET


_HEAD = msgspec.json.Decoder(_Head)
_ITEMS = msgspec.json.Decoder(list[msgspec.Raw])


def _batch_answers(text: str) -> list[tuple[Any, bool, str]] | None:
    """Each object of a JSON-RPC batch answer: its id, whether it is an error, and its
    own text for solders to parse as it came (decoding the whole batch into Python and
    encoding each answer again cost more than solders' parse). None: not an array."""
    try:
        items = _ITEMS.decode(text)
    except msgspec.DecodeError:
        return None
    answers = []
    for item in items:
        try:
            head = _HEAD.decode(item)
        except msgspec.DecodeError:
            continue  # not an object: no answer to anything
        answers.append((head.id, head.error is not msgspec.UNSET, bytes(item).decode()))
    return answers


def _sent(answer: str | None) -> str | ItemFailed:
    """One answer of a sendTransaction batch, read as AsyncClient reads a lone one's."""
    if answer is None:
        return ItemFailed(RpcUnreachable("the chain left a batched send unanswered"))
    try:
        parsed = SendTransactionResp.from_json(answer)
    except BaseException as err:
        if _ends_the_task(err):
            raise
        # solders panics (a BaseException) on an answer its strict types cannot read:
        # passing trouble for this send alone, like no answer at all.
        return ItemFailed(RpcUnreachable(f"a batched send's answer cannot be read: {err}"))
    if isinstance(parsed, SendTransactionResp):
        return str(parsed.value)
    return ItemFailed(_refusal(RPCException(parsed)))  # one of solders' RPC errors


def _landed(signature: str, answer: GetTransactionResp, owner: str | None, final: bool) -> Landed:
    value = answer.value
    assert value is not None
    meta = value.transaction.meta
    assert meta is not None, f"{signature}: getTransaction without meta"
    delta = int(meta.post_balances[0]) - int(meta.pre_balances[0])
    tokens: dict[str, int] = {}
    held: dict[int, set[str]] = {-1: set(), 1: set()}
    for sign, balances in ((-1, meta.pre_token_balances), (1, meta.post_token_balances)):
        for b in balances or []:
            if owner is None or b.owner is None or str(b.owner) == owner:
                mint = str(b.mint)
                held[sign].add(mint)
                tokens[mint] = tokens.get(mint, 0) + sign * int(b.ui_token_amount.amount)
    units: int | None = None
    data = meta.return_data
    if data is not None and len(data.data) == 8:
        units = int.from_bytes(data.data, "little")
    return Landed(
        signature=signature,
        slot=int(value.slot),
        err=meta.err,
        fee=int(meta.fee),
        owner_lamports_delta=delta,
        owner_token_deltas=tokens,
        return_units=units,
        finalized=final,
        opened=frozenset(held[1] - held[-1]),
    )


def _shared_task(coro: Coroutine[Any, Any, T], name: str | None = None) -> asyncio.Task[T]:
    """A task that serves every order of the process, started outside any order's context.

    A task copies its creator's context, so one started while an order runs would carry
    that order's id (bound for logging) onto every line it writes for all the others.
    """
    return asyncio.create_task(coro, name=name, context=contextvars.Context())
