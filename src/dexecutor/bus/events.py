"""Live order events over Redis pub/sub.

Workers publish each event after it is committed to PostgreSQL. Every API process
holds one subscription and fans events out to its own WebSocket watchers, by order
and by user. Redis only carries news: a watcher that may have missed something
(a reconnect, a full queue) is told to re-read the stored history instead.

Redis may also never carry an event at all: a writer that crashed between its commit
and its publish leaves the event only in PostgreSQL. While watchers are connected, the
hub therefore looks at the store every few seconds: an order watcher behind the stored
order is resynced, and a user watcher is offered the recent events of its user it has
not sent yet. Every watcher thus ends with its order's terminal event, whatever Redis lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

import asyncpg
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from dexecutor import jsoncodec
from dexecutor.background import Loops, cancel_and_wait
from dexecutor.domain.order import WAIT_BOUNDARY, OrderEvent
from dexecutor.group_commit import GroupCommit
from dexecutor.metrics import ORDER_EVENTS

log = structlog.get_logger(__name__)

RAW = "_raw"
"""Key of a live message's original JSON text, which watchers send unchanged."""

RESYNC: dict[str, Any] = {"resync": True}
"""Put on a watcher's queue when events may have been missed: re-read from the store."""

FRAME = "_frame"
"""Key of a message's bytes as written to a `Sink` (framed once, shared by all)."""


def preframed(data: bytes) -> dict[str, Any]:
    """A message of frames already made: what a follower was due but could not take."""
    return {FRAME: data}


def is_preframed(message: dict[str, Any]) -> bool:
    return "orderId" not in message and FRAME in message


class Sink(Protocol):
    """A user watcher's connection, written from the hub's own turn (no task of its own)."""

    def frame(self, message: dict[str, Any]) -> bytes:
        """The bytes that carry `message` (the same for every sink of its kind)."""
        ...

    def write(self, data: bytes) -> bool:
        """Write `data` now; False (nothing written) if the connection cannot take it."""
        ...


def event_message(event: OrderEvent, user_id: str | None = None) -> dict[str, Any]:
    """The stream's JSON shape: orderId, seq, status, attempt, at, then status fields."""
    message: dict[str, Any] = {
        "orderId": str(event.order_id),
        "seq": event.seq,
        "status": event.status.value,
        "attempt": event.attempt,
        "at": event.at,
    }
    message.update(event.data)
    if user_id is not None:
        message["userId"] = user_id
    return message


class EventPublisher:
    """Publishes committed events, one PUBLISH each, pipelined with the others of the moment.

    A worker carrying a hundred orders publishes from a hundred tasks; their events
    share one pipeline (group commit) instead of a round trip each. A caller still
    returns only once its event was handed to Redis.
    """

    def __init__(self, redis: Redis, channel: str, wait_channel: str | None = None) -> None:
        self._redis = redis
        self._channel = channel
        self._wait_channel = wait_channel
        self._batches: GroupCommit[tuple[OrderEvent, str], None] = GroupCommit(
            self._send, max_flushes=1
        )

    async def publish(self, event: OrderEvent, user_id: str) -> None:
        await self._batches.submit((event, user_id))

    async def publish_many(self, events: Sequence[tuple[OrderEvent, str]]) -> None:
        await self._send(events)

    async def _send(self, events: Sequence[tuple[OrderEvent, str]]) -> list[None]:
        """One message per channel for the whole batch: its events' JSON texts, one per
        line, in commit order (see `split_events`). A message each cost every
        subscribed process a pub/sub message to parse per event, heard or not."""
        texts = [self._encode(event, user_id) for event, user_id in events]
        pipe = self._redis.pipeline(transaction=False)
        pipe.publish(self._channel, b"\n".join(texts))
        if self._wait_channel is not None:
            waits = [
                text
                for (event, _), text in zip(events, texts, strict=True)
                if event.status in WAIT_BOUNDARY
            ]
            if waits:
                pipe.publish(self._wait_channel, b"\n".join(waits))
        await pipe.execute()
        return [None] * len(events)

    @staticmethod
    def _encode(event: OrderEvent, user_id: str) -> bytes:
        # Every committed event passes here once, whoever made it (intake, engine,
        # cancel, expiry): the one place to count them.
        ORDER_EVENTS.labels(event.status.value).inc()
        return jsoncodec.dumps(event_message(event, user_id))


def split_events(data: bytes) -> list[bytes]:
    """The events of one published message, in order. A message holds one event's JSON
    text or several, one per line: JSON text never holds a raw line break."""
    return data.split(b"\n")


class EventStore(Protocol):
    """What the hub reads from PostgreSQL to find events Redis never carried."""

    async def seqs(self, order_ids: Sequence[UUID]) -> dict[UUID, int]: ...

    async def user_events(
        self, user_ids: Sequence[str], since: datetime
    ) -> list[tuple[str, OrderEvent]]: ...


# An event is stamped just before its commit; a re-read looks this far behind its last
# pass so that an event committed late is still found.
_REREAD_OVERLAP = timedelta(seconds=5)
# A user watcher counts as watching from a little before it subscribed: the client may
# have submitted an order while the socket was being set up, and clocks of processes
# differ a little. An earlier event of an order sent twice is worse than one too many.
_WATCH_SLACK = timedelta(seconds=2)


class Subscription:
    """A watcher's inbox. Bounded: a consumer that falls behind is resynced, not waited for.

    The watcher records here what it has sent (`last` for one order, `seqs` per order
    for a user), so the hub can tell from the store which watchers are behind.
    """

    def __init__(self, maxsize: int = 256) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize)
        self.resync_pending = False
        self.last = 0
        self.behind: int | None = None
        self.seqs: dict[str, int] = {}
        self.since = datetime.now(UTC) - _WATCH_SLACK
        self.take: Callable[[dict[str, Any]], bool] | None = None
        """Set by a watcher that can pass a message on at once, from the hub's own turn:
        True when it did (or had sent it before). Asked only while nothing is queued, so
        what it takes never overtakes what its task still has to send."""
        self.sink: Sink | None = None
        """Set by a user watcher whose connection the hub may write to itself."""
        self.followers: Followers | None = None
        self.written = 0
        """While it follows: how many of its group's frames it was written."""
        self._park: Callable[[Subscription], None] | None = None

    def offer(self, message: dict[str, Any]) -> None:
        if self.resync_pending:
            return
        if self.take is not None and self.queue.empty():
            try:
                if self.take(message):
                    return
            except Exception:  # one watcher's fault must not stop the hub for all others
                log.exception("watcher could not take an event; it goes to its task")
                self.take = None
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.resync_pending = True

    def resync(self) -> None:
        self.resync_pending = True
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(RESYNC)

    async def get(self) -> dict[str, Any]:
        if self.resync_pending and self.queue.empty():
            self.resync_pending = False
            return RESYNC
        if self._park is not None and self.queue.empty():
            # Everything is sent and the task is about to wait: until something needs
            # the task again, the hub sends this watcher's events with its followers'.
            self._park(self)
        message = await self.queue.get()
        if message is RESYNC:
            self.resync_pending = False
        return message

    async def get_many(self) -> list[dict[str, Any]]:
        """The next message and all that queued up behind it, up to a resync."""
        out = [await self.get()]
        while out[-1] is not RESYNC and not self.queue.empty():
            message = self.queue.get_nowait()
            if message is RESYNC:
                self.resync_pending = False
            out.append(message)
        return out


class Followers:
    """User watchers of one user that have sent exactly the same events, and wait.

    Their per-order sequence numbers are one dict, shared: an event is checked once for
    all of them, and framed once. The hub writes the group's frames to its members in
    passes of a few dozen connections per turn of the event loop (`EventHub._walk`),
    each member getting every frame it has not had in one write: events that arrive
    while a pass is under way go to the members it has not reached yet in the same
    write, and to the others in the next pass. A member leaves (back to its own task,
    with its own copy of the dict and whatever it was due) when an event needs more than
    sending (a gap, to fill from the store) or its connection cannot take a write.
    """

    __slots__ = (
        "base",
        "frames",
        "held",
        "lag",
        "members",
        "pos",
        "seqs",
        "since",
        "timer",
        "user_id",
        "walk",
    )

    def __init__(self, user_id: str, seqs: dict[str, int]) -> None:
        self.user_id = user_id
        self.seqs = seqs
        self.members: dict[Subscription, Sink] = {}  # in joining order
        # Frames not yet written to every member; frames[0] is the group's frame number
        # `base`, and a member's `written` counts the frames it was written.
        self.frames: list[bytes] = []
        self.base = 0
        self.since = datetime.min.replace(tzinfo=UTC)  # the latest `since` of its members
        # The pass under way: the members as it started, how far it got, and the
        # number of frames when it last wrote (None: the pass wrote nothing yet).
        self.walk: list[Subscription] | None = None
        self.pos = 0
        self.lag: int | None = None
        # Events that came ahead of an earlier one of their order, by order and seq,
        # and the timer after which the members fill the gap on their own.
        self.held: dict[str, dict[int, dict[str, Any]]] = {}
        self.timer: asyncio.TimerHandle | None = None

    @property
    def end(self) -> int:
        return self.base + len(self.frames)

    def due(self, sub: Subscription) -> bytes | None:
        """The frames `sub` was not written yet, as one write (None: it has them all)."""
        at = sub.written - self.base
        if at >= len(self.frames):
            return None
        return self.frames[at] if at == len(self.frames) - 1 else b"".join(self.frames[at:])


def _held_messages(group: Followers) -> list[dict[str, Any]]:
    """The events `group` holds for gaps, each order's in seq order."""
    return [m for seqs in group.held.values() for _, m in sorted(seqs.items())]


_VISITS_PER_STEP = 64
"""Members a write pass visits per turn of the event loop, before the loop reads what
arrived meanwhile: each turn's wait is what every other awaited step of the process
(a submission's commit, publish and answer; the next events from Redis) pays once per
hop while a broadcast is under way. With 64 (half a millisecond or so of writes on a
free core) a submission's `pending` event reached the hub 13-32 ms after its stamp on a
loaded machine, against up to 160 ms with 256, at no more CPU a delivery."""


class EventHub:
    """This process's single Redis subscription and its local watchers."""

    def __init__(self, redis: Redis, channel: str, loops: Loops | None = None) -> None:
        self._redis = redis
        self._channel = channel
        self._loops = loops or Loops()
        self._stored: EventStore | None = None
        self._reread_s = 2.0
        self._reread_task: asyncio.Task[None] | None = None
        self._last_reread: datetime | None = None
        self._subscribed_once = False
        self._by_order: dict[str, set[Subscription]] = defaultdict(set)
        self._by_user: dict[str, set[Subscription]] = defaultdict(set)
        self._followers: dict[str, list[Followers]] = {}
        self._following: dict[str, int] = defaultdict(int)  # members of a user's groups
        self._due: list[Followers] = []  # groups with frames to write, in turn
        self._walking = False
        self.gap_wait_s = 0.5
        """How long a user's followers hold an event that came ahead of an earlier one."""
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self._channels: dict[str, Callable[[dict[str, Any]], None]] = {}
        self._resync_hooks: list[Callable[[], None]] = []
        self.connected = False

    def listen(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Call `listener` with every order event this process hears (before start)."""
        self._listeners.append(listener)

    def on_channel(self, channel: str, handler: Callable[[dict[str, Any]], None]) -> None:
        """Also subscribe to `channel` and hand each decoded message to `handler`."""
        self._channels[channel] = handler

    def on_resync(self, hook: Callable[[], None]) -> None:
        """Call `hook` after a reconnect, when messages may have been missed."""
        self._resync_hooks.append(hook)

    def reread_from(self, stored: EventStore, every_s: float = 2.0) -> None:
        """Look in the store every `every_s` seconds for events Redis lost (before start)."""
        self._stored = stored
        self._reread_s = every_s

    @property
    def watchers(self) -> int:
        return sum(len(s) for s in self._by_order.values()) + sum(
            len(s) for s in self._by_user.values()
        )

    async def start(self) -> None:
        self._task = self._loops.start("event-hub", self._run)
        if self._stored is not None:
            self._reread_task = self._loops.start("event-reread", self._reread_forever)
        await asyncio.wait_for(self._ready.wait(), timeout=10)

    async def stop(self) -> None:
        await cancel_and_wait(self._reread_task)
        await cancel_and_wait(self._task)

    @contextlib.contextmanager
    def watch_order(self, order_id: str) -> Iterator[Subscription]:
        with self._watch(self._by_order, order_id) as sub:
            yield sub

    @contextlib.contextmanager
    def watch_user(self, user_id: str) -> Iterator[Subscription]:
        with self._watch(self._by_user, user_id) as sub:
            sub._park = lambda s: self._park(user_id, s)
            try:
                yield sub
            finally:
                sub._park = None
                if sub.followers is not None:
                    self._leave(sub, sub.followers)

    def _park(self, user_id: str, sub: Subscription) -> None:
        """Let `sub` follow with the others of its user that have sent what it has sent."""
        if sub.sink is None or sub.followers is not None:
            return
        groups = self._followers.setdefault(user_id, [])
        for group in groups:
            if not group.frames and not group.held and group.seqs == sub.seqs:
                break
        else:
            group = Followers(user_id, sub.seqs)
            groups.append(group)
        self._join(sub, group)

    def _join(self, sub: Subscription, group: Followers) -> None:
        assert sub.sink is not None
        group.members[sub] = sub.sink
        self._following[group.user_id] += 1
        group.since = max(group.since, sub.since)
        sub.followers = group
        sub.seqs = group.seqs
        sub.written = group.end

    def _leave(self, sub: Subscription, group: Followers) -> None:
        del group.members[sub]
        self._following[group.user_id] -= 1
        sub.followers = None
        sub.seqs = dict(group.seqs)
        if not group.members:
            self._drop(group)

    def _drop(self, group: Followers) -> None:
        groups = self._followers[group.user_id]
        groups.remove(group)
        if not groups:
            del self._followers[group.user_id]
            del self._following[group.user_id]

    def _unpark(self, sub: Subscription, due: bytes | None = None) -> None:
        """Back to its own task, which first sends `due` (or what it was not written),
        then has the events the group holds for a gap (its task fills the gap)."""
        group = sub.followers
        assert group is not None
        if due is None:
            due = group.due(sub)
        held = _held_messages(group)
        self._leave(sub, group)
        if due is not None:
            sub.offer(preframed(due))
        for message in held:
            sub.offer(message)

    def _disband(self, group: Followers) -> list[Subscription]:
        """Every member back to its task, with what it was due and the held events."""
        if group.timer is not None:
            group.timer.cancel()
            group.timer = None
        members = list(group.members)
        for sub in members:
            self._unpark(sub)  # each with the held events
        group.held = {}
        return members

    def _merge(self, group: Followers) -> None:
        """Groups that have come to the same state (a member that caught up on its own
        formed a group of its own meanwhile) become one. A group holding events for a
        gap stays as it is: its members are due what it holds, the other's are not."""
        if group.held:
            return
        for other in self._followers.get(group.user_id, ())[:]:
            if other is group or other.frames or other.held or other.seqs != group.seqs:
                continue
            small, large = sorted((group, other), key=lambda g: len(g.members))
            for sub in small.members:
                self._join(sub, large)
            self._following[group.user_id] -= len(small.members)
            small.members.clear()
            self._drop(small)
            group = large

    def _follow(self, group: Followers, message: dict[str, Any]) -> None:
        """What `Subscription`s of a user stream do with an event, once for all members."""
        order_id, seq = message["orderId"], message["seq"]
        known = group.seqs.get(order_id)
        if known is not None and seq <= known:
            return  # sent before
        if seq != (known or 0) + 1:
            # Ahead of an earlier event of its order, which is most often only late: an
            # event the worker published overtook the `pending` the API publishes, or
            # one writer's publish overtook another's. It waits for it a little; then
            # each member fills the gap from the store on its own.
            group.held.setdefault(order_id, {})[seq] = message
            if group.timer is None:
                group.timer = asyncio.get_running_loop().call_later(
                    self.gap_wait_s, self._gap_open, group
                )
            return
        sink = next(iter(group.members.values()))
        if not group.frames:
            self._due.append(group)
            if not self._walking:
                self._walking = True
                asyncio.get_running_loop().call_soon(self._walk)
        group.seqs[order_id] = seq
        group.frames.append(sink.frame(message))
        held = group.held.get(order_id)
        while held and seq + 1 in held:  # what waited for this one goes out after it
            seq += 1
            group.seqs[order_id] = seq
            group.frames.append(sink.frame(held.pop(seq)))
        if held is not None and not held:
            del group.held[order_id]
            if not group.held and group.timer is not None:
                group.timer.cancel()
                group.timer = None

    def _gap_open(self, group: Followers) -> None:
        """Held events whose gap stayed open: the members fill it from the store."""
        group.timer = None
        if group.held:
            self._disband(group)

    def _walk(self) -> None:
        """Write groups' frames to their members, a few dozen connections per turn.

        Between steps the event loop reads what arrived (the next events of a burst,
        requests): a member not reached yet gets those in the same write as the rest,
        so a burst of events costs each connection a few writes, not one per event.
        """
        budget = _VISITS_PER_STEP
        while self._due and budget > 0:
            group = self._due[0]
            budget = self._step(group, budget)
            if group.walk is not None:
                break  # the budget ran out mid-pass
            del self._due[0]
            if group.frames:
                self._due.append(group)  # members written before later frames: again
            elif group.members and len(self._followers.get(group.user_id, ())) > 1:
                self._merge(group)
        if self._due:
            asyncio.get_running_loop().call_soon(self._walk)
        else:
            self._walking = False

    def _step(self, group: Followers, budget: int) -> int:
        """Go on with `group`'s pass over at most `budget` members; what is left of it."""
        if group.walk is None:
            # The members only, not (member, sink) pairs: 10,000 new tuples a pass would
            # set off the garbage collector's passes over the whole heap mid-broadcast.
            group.walk, group.pos, group.lag = list(group.members), 0, None
        walk, pos, frames, base = group.walk, group.pos, group.frames, group.base
        end = base + len(frames)
        stop = min(len(walk), pos + budget)
        if group.lag is not None and group.lag != end:
            group.lag = -1  # frames came after some members' writes: another pass
        elif group.lag is None:
            group.lag = end
        joined: dict[int, bytes] = {}  # the same bytes for every member at the same frame
        while pos < stop:
            sub = walk[pos]
            pos += 1
            at = sub.written
            if at == end or sub.followers is not group:
                continue
            sink = sub.sink
            assert sink is not None  # a member has one
            data = joined.get(at)
            if data is None:
                data = joined[at] = (
                    frames[at - base] if at == end - 1 else b"".join(frames[at - base :])
                )
            try:
                written = sink.write(data)
            except Exception:  # one broken connection must not cost the others theirs
                log.exception("write to a watcher failed; its task takes over")
                written = False
            if written:
                sub.written = end
            else:
                # A client that does not read: its task waits for it, within the send
                # timeout, and holds up nobody else.
                self._unpark(sub, data)
        budget -= stop - group.pos
        group.pos = pos
        if pos == len(walk):
            group.walk = None
            if group.lag != -1 or not group.members:
                # Every member was written all frames: they need not be kept.
                group.base, group.frames = end, []
            else:
                # Frames came during the pass: keep only those some member still lacks,
                # or a user whose events never pause would grow them without end.
                low = min(sub.written for sub in group.members)
                if low > group.base:
                    del group.frames[: low - group.base]
                    group.base = low
        return budget

    @contextlib.contextmanager
    def _watch(self, index: dict[str, set[Subscription]], key: str) -> Iterator[Subscription]:
        sub = Subscription()
        index[key].add(sub)
        try:
            yield sub
        finally:
            subs = index.get(key)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del index[key]

    def _dispatch(self, data: bytes) -> None:
        if not (self._listeners or self._by_order or self._by_user):
            return  # nobody here to tell: an API process under load skips the decoding
        for text in split_events(data):
            self._dispatch_one(text)

    def _dispatch_one(self, data: bytes) -> None:
        message = jsoncodec.loads(data)
        # Watchers forward the published text as it is: encoding once per event, not
        # once per watcher, is what lets one process feed thousands of them.
        message[RAW] = data.decode()
        for listener in self._listeners:
            listener(message)
        for sub in self._by_order.get(message["orderId"], ()):
            sub.offer(message)
        user_id = message.get("userId", "")
        # Watchers on their own first: a group's members that go back to their tasks
        # below are handed the message as they go.
        subs = self._by_user.get(user_id, ())
        if len(subs) > self._following.get(user_id, 0):
            for sub in subs:
                if sub.followers is None:
                    sub.offer(message)
        for group in self._followers.get(user_id, ())[:]:
            self._follow(group, message)

    def _resync_all(self) -> None:
        for hook in self._resync_hooks:
            hook()
        for groups in list(self._followers.values()):
            for group in groups[:]:
                self._disband(group)
        for subs in (*self._by_order.values(), *self._by_user.values()):
            for sub in subs:
                sub.resync()

    async def _run(self) -> None:
        delay = 0.1
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel, *self._channels)
                self.connected = True
                self._ready.set()
                if self._subscribed_once:  # a reconnect, or a restart after a crash
                    log.info("event hub resubscribed", channel=self._channel)
                    self._resync_all()
                self._subscribed_once = True
                delay = 0.1
                while True:
                    msg = await pubsub.get_message(timeout=30)
                    if msg is None or msg["type"] != "message":
                        continue
                    channel = msg["channel"].decode()
                    if channel == self._channel:
                        self._dispatch(msg["data"])
                    else:
                        self._channels[channel](jsoncodec.loads(msg["data"]))
            except (RedisError, OSError) as err:
                log.warning("event hub lost redis", error=str(err), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                self.connected = False
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _reread_forever(self) -> None:
        while True:
            await asyncio.sleep(self._reread_s)
            try:
                await self.reread()
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
                log.warning("re-read of stored events skipped", error=str(err))

    async def reread(self) -> None:
        """One look at the store for events the watchers here never got from Redis.

        One statement per kind of watcher and pass, whatever their number, and none
        while nobody watches.
        """
        assert self._stored is not None
        if self._by_order:
            stored = await self._stored.seqs([UUID(i) for i in self._by_order])
            for order_id, seq in stored.items():
                for sub in self._by_order.get(str(order_id), ()):
                    if sub.last >= seq:
                        sub.behind = None
                    elif sub.behind == sub.last:
                        # Behind the store at two passes in a row without moving: what it
                        # waits for is not coming. It replays from its last seq.
                        sub.behind = None
                        sub.resync()
                    else:
                        sub.behind = sub.last  # maybe only busy sending: look again
        if not self._by_user:
            self._last_reread = None
            return
        started = datetime.now(UTC)
        since = min(sub.since for subs in self._by_user.values() for sub in subs)
        if self._last_reread is not None:
            since = max(since, self._last_reread - _REREAD_OVERLAP)
        found = await self._stored.user_events(list(self._by_user), since)
        self._last_reread = started
        for user_id, event in found:
            key = str(event.order_id)
            for sub in self._by_user.get(user_id, ()):
                if (
                    sub.followers is None
                    and event.at >= sub.since
                    and event.seq > sub.seqs.get(key, 0)
                ):
                    sub.offer(event_message(event, user_id))
            for group in self._followers.get(user_id, ())[:]:
                if event.seq <= group.seqs.get(key, 0):
                    continue
                if event.at >= group.since:
                    self._follow(group, event_message(event, user_id))
                    continue
                # New to some of its members only: each decides on its own.
                for sub in self._disband(group):
                    if event.at >= sub.since:
                        sub.offer(event_message(event, user_id))
