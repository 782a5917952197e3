"""The event hub's fan-out to user watchers that wait: one check and one write per turn.

The hub is driven here without Redis (its dispatch of one published message), with
connections that record what is written to them; the direct writes run over the state
uvicorn's protocol keeps for a connection. The same paths run against a real server in
tests/e2e (test_lifecycle, test_lost_events, test_hostile_input).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast
from uuid import UUID, uuid4

import pytest
from redis.asyncio import Redis
from starlette.websockets import WebSocketDisconnect
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from dexecutor import jsoncodec
from dexecutor.api.wsdirect import DirectSocket, frame_of, text_frame
from dexecutor.bus.events import RESYNC, EventHub, Subscription, is_preframed
from dexecutor.domain.order import OrderEvent, OrderStatus


class Connection:
    """A watcher's connection: records each write; `full` makes it refuse writes."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.full = False

    frame = staticmethod(frame_of)

    def write(self, data: bytes) -> bool:
        if self.full:
            return False
        self.writes.append(data)
        return True


def parse_frames(data: bytes) -> list[Frame]:
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    frames = []
    while reader.buffer:
        parser = Frame.parse(reader.read_exact, mask=False)
        try:
            next(parser)
        except StopIteration as done:
            frames.append(done.value)
            continue
        raise AssertionError("incomplete frame")
    return frames


def event(order: str, seq: int, user: str = "u") -> bytes:
    return jsoncodec.dumps({"orderId": order, "seq": seq, "status": "routing", "userId": user})


def seqs_written(connection: Connection) -> list[tuple[str, int]]:
    out = []
    for data in connection.writes:
        for frame in parse_frames(data):
            message = jsoncodec.loads(bytes(frame.data))
            out.append((message["orderId"], message["seq"]))
    return out


class Watcher:
    """A user watcher as the WebSocket layer runs it: its task waits on its inbox."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.connection = Connection()
        sub.sink = self.connection
        self.task: asyncio.Task[list[dict[str, Any]]] | None = None

    async def wait(self) -> None:
        """Start its task's wait (where it starts to follow), one loop turn."""
        self.task = asyncio.ensure_future(self.sub.get_many())
        await asyncio.sleep(0)


@pytest.fixture
async def hub() -> EventHub:
    return EventHub(cast(Redis, None), "events")


@contextlib.contextmanager
def watchers(hub: EventHub, n: int, user: str = "u") -> Iterator[list[Watcher]]:
    with contextlib.ExitStack() as stack:
        yield [Watcher(stack.enter_context(hub.watch_user(user))) for _ in range(n)]


@contextlib.asynccontextmanager
async def waiting(hub: EventHub, n: int) -> AsyncIterator[list[Watcher]]:
    """`n` watchers of user u, each task waiting with nothing to send."""
    with watchers(hub, n) as ws:
        for w in ws:
            await w.wait()
        yield ws


async def left_behind(hub: EventHub, w: Watcher, message: bytes) -> list[dict[str, Any]]:
    """What `w`'s task gets when its connection cannot take the write of `message`."""
    w.connection.full = True
    hub._dispatch(message)
    await turn()
    assert w.task is not None
    return await w.task


async def turn() -> None:
    """One turn of the event loop: the hub writes what the previous turn queued."""
    await asyncio.sleep(0)


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65_535, 65_536, 70_000])
def test_a_text_frame_parses_as_one_final_unmasked_text_frame(size: int) -> None:
    payload = ("é" * size).encode()[:size]
    (frame,) = parse_frames(text_frame(payload))
    assert (frame.opcode, frame.fin, frame.data) == (Opcode.TEXT, True, payload)


async def test_one_turns_events_go_to_every_waiting_watcher_in_one_write(hub: EventHub) -> None:
    async with waiting(hub, 3) as ws:
        for seq in (1, 2, 3):
            hub._dispatch(event("a", seq))
        hub._dispatch(event("b", 1))
        await turn()
        first = ws[0].connection.writes
        assert len(first) == 1, "one write for the turn's four events"
        assert all(w.connection.writes == first for w in ws), "the same bytes to each"
        assert seqs_written(ws[0].connection) == [("a", 1), ("a", 2), ("a", 3), ("b", 1)]
        assert not any(w.task and w.task.done() for w in ws), "no watcher's task woke"
        assert all(w.sub.seqs == {"a": 3, "b": 1} for w in ws)


async def test_an_event_sent_before_is_not_sent_again(hub: EventHub) -> None:
    async with waiting(hub, 2) as ws:
        hub._dispatch(event("a", 1))
        hub._dispatch(event("a", 1))
        await turn()
        hub._dispatch(event("a", 1))
        await turn()
        assert all(seqs_written(w.connection) == [("a", 1)] for w in ws)


async def test_an_event_ahead_of_an_earlier_one_waits_for_it_and_goes_out_after_it(
    hub: EventHub,
) -> None:
    async with waiting(hub, 3) as ws:
        hub._dispatch(event("a", 1))
        await turn()
        hub._dispatch(event("a", 3))  # a's seq 2 is late
        hub._dispatch(event("b", 2))  # and b's seq 1 (a worker's event before the API's)
        await turn()
        assert all(seqs_written(w.connection) == [("a", 1)] for w in ws)
        hub._dispatch(event("a", 2))
        hub._dispatch(event("b", 1))
        await turn()
        expected = [("a", 1), ("a", 2), ("a", 3), ("b", 1), ("b", 2)]
        assert all(seqs_written(w.connection) == expected for w in ws)
        assert not any(w.task and w.task.done() for w in ws), "no watcher's task woke"
        assert all(w.sub.followers is ws[0].sub.followers for w in ws)


async def test_a_gap_that_stays_open_sends_each_watcher_to_its_task_to_fill_it(
    hub: EventHub,
) -> None:
    hub.gap_wait_s = 0.01
    async with waiting(hub, 2) as ws:
        hub._dispatch(event("a", 1))
        hub._dispatch(event("a", 3))  # seq 2 never comes: the task reads it from the store
        hub._dispatch(event("a", 4))
        await turn()
        assert all(seqs_written(w.connection) == [("a", 1)] for w in ws)
        assert not any(w.task and w.task.done() for w in ws)
        for w in ws:
            assert w.task is not None
            assert [m["seq"] for m in await w.task] == [3, 4]
            assert w.sub.followers is None and w.sub.seqs == {"a": 1}


async def test_events_held_for_a_gap_are_not_lost_to_a_resync(hub: EventHub) -> None:
    async with waiting(hub, 2) as ws:
        hub._dispatch(event("a", 2))
        hub._resync_all()
        for w in ws:
            assert w.task is not None
            held, resync = await w.task
            assert held["seq"] == 2 and resync is RESYNC


async def test_a_connection_that_cannot_take_a_write_leaves_and_holds_up_nobody(
    hub: EventHub,
) -> None:
    async with waiting(hub, 3) as ws:
        slow = ws[1]
        (due,) = await left_behind(hub, slow, event("a", 1))
        assert frame_of(due) == ws[0].connection.writes[0]
        assert slow.sub.followers is None and slow.sub.seqs == {"a": 1}
        hub._dispatch(event("a", 2))  # now for its task
        await turn()
        assert (await slow.sub.get())["seq"] == 2
        assert seqs_written(ws[0].connection) == seqs_written(ws[2].connection)
        assert seqs_written(ws[2].connection) == [("a", 1), ("a", 2)]


async def test_a_watcher_that_caught_up_follows_again_with_the_others(hub: EventHub) -> None:
    async with waiting(hub, 2) as ws:
        behind = ws[1]
        await left_behind(hub, behind, event("a", 1))  # its task sent what it was due
        behind.connection.full = False
        await behind.wait()
        assert behind.sub.followers is ws[0].sub.followers
        hub._dispatch(event("a", 2))
        await turn()
        assert behind.connection.writes == ws[0].connection.writes[1:]
        assert behind.task is not None and not behind.task.done()


async def test_watchers_that_sent_different_events_are_checked_apart(hub: EventHub) -> None:
    with watchers(hub, 1) as (early,):
        await early.wait()
        hub._dispatch(event("a", 1))
        await turn()
        with watchers(hub, 1) as (late,):
            await late.wait()  # opened after a's first event
            assert late.sub.followers is not early.sub.followers
            hub._dispatch(event("a", 2))
            await turn()
            assert seqs_written(early.connection) == [("a", 1), ("a", 2)]
            # New to the late one, past seq 1: its task decides what to fill in.
            assert late.task is not None
            assert [m["seq"] for m in await late.task] == [2]
            assert late.connection.writes == []


async def test_a_closed_watcher_leaves_its_group(hub: EventHub) -> None:
    async with waiting(hub, 2) as ws:
        with watchers(hub, 1) as (gone,):
            await gone.wait()
            assert gone.sub.followers is ws[0].sub.followers
        hub._dispatch(event("a", 1))
        await turn()
        assert gone.connection.writes == []
        assert hub.watchers == 2
        assert len(ws[0].connection.writes) == 1
        if gone.task is not None:
            gone.task.cancel()


async def test_a_resync_sends_each_watcher_back_to_its_task(hub: EventHub) -> None:
    async with waiting(hub, 2) as ws:
        hub._dispatch(event("a", 1))
        hub._resync_all()  # as after a Redis reconnect
        for w in ws:
            assert w.task is not None
            due, resync = await w.task
            assert is_preframed(due) and resync is RESYNC
            assert w.sub.followers is None


async def test_watchers_without_a_direct_connection_get_everything_from_their_task(
    hub: EventHub,
) -> None:
    with hub.watch_user("u") as sub:
        task = asyncio.ensure_future(sub.get_many())
        await asyncio.sleep(0)
        hub._dispatch(event("a", 1))
        assert [m["seq"] for m in await task] == [1]
        assert sub.followers is None


class Store:
    """The events PostgreSQL holds that Redis never carried."""

    def __init__(self, *events: tuple[str, OrderEvent]) -> None:
        self.events = list(events)

    async def seqs(self, order_ids: Sequence[UUID]) -> dict[UUID, int]:
        return {}

    async def user_events(
        self, user_ids: Sequence[str], since: datetime
    ) -> list[tuple[str, OrderEvent]]:
        return [(u, e) for u, e in self.events if u in user_ids and e.at >= since]


def stored(order: UUID, seq: int, at: datetime) -> OrderEvent:
    return OrderEvent(order, seq, OrderStatus.ROUTING, 1, at)


async def test_an_event_found_only_in_the_store_reaches_the_watchers_it_is_new_to(
    hub: EventHub,
) -> None:
    order = uuid4()
    async with waiting(hub, 2) as ws:
        hub._dispatch(event(str(order), 1))
        await turn()
        lost = stored(order, 2, datetime.now(UTC))
        hub.reread_from(Store(("u", lost)))
        await hub.reread()
        await turn()
        assert all(seqs_written(w.connection) == [(str(order), 1), (str(order), 2)] for w in ws)
        await hub.reread()  # found again on the next pass: sent once only
        await turn()
        assert all(len(seqs_written(w.connection)) == 2 for w in ws)


async def test_an_event_from_before_a_watcher_opened_is_not_sent_to_it(hub: EventHub) -> None:
    order = uuid4()
    with watchers(hub, 1) as (early,):
        early.sub.since -= timedelta(minutes=1)
        await early.wait()
        with watchers(hub, 1) as (late,):
            await late.wait()
            assert late.sub.followers is early.sub.followers  # both have sent nothing
            before = stored(order, 1, late.sub.since - timedelta(seconds=1))
            hub.reread_from(Store(("u", before)))
            await hub.reread()
            assert early.task is not None and late.task is not None
            assert [m["seq"] for m in await early.task] == [1]
            assert not late.task.done()
            late.task.cancel()


class Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closing


def server_side() -> tuple[DirectSocket, Any, Transport]:
    """A DirectSocket over the state uvicorn's protocol keeps for an accepted socket."""
    transport = Transport()
    writable = asyncio.Event()
    writable.set()
    protocol = SimpleNamespace(
        loop=asyncio.get_running_loop(),
        transport=transport,
        writable=writable,
        handshake_complete=True,
        close_sent=False,
        disconnected=False,
    )
    return DirectSocket(cast(Any, protocol)), protocol, transport


async def test_frames_put_this_turn_go_out_in_one_write_before_anything_sent_after() -> None:
    socket, _, transport = server_side()
    assert socket.put(b"a") and socket.put(b"b")
    assert transport.written == []
    assert socket.write(b"c")  # a group's write comes after what was put before it
    await turn()
    assert transport.written == [b"ab", b"c"]


async def test_a_socket_whose_client_does_not_read_takes_no_write_and_send_waits() -> None:
    socket, protocol, transport = server_side()
    protocol.writable.clear()  # uvicorn's protocol: the transport's buffer is over its mark
    assert not socket.write(b"x") and not socket.put(b"x")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):  # the watcher's send timeout, in small
            await socket.send([b"y"])
    sending = asyncio.ensure_future(socket.send([b"y", b"z"]))
    await turn()
    protocol.writable.set()  # the client read
    await sending
    assert transport.written == [b"yz"]


async def test_nothing_is_written_to_a_closed_socket() -> None:
    socket, protocol, transport = server_side()
    assert socket.put(b"a")
    protocol.close_sent = True
    await turn()
    assert not socket.write(b"b")
    with pytest.raises(WebSocketDisconnect):
        await socket.send([b"c"])
    assert transport.written == []


async def test_a_connection_that_fails_to_write_costs_the_others_nothing(hub: EventHub) -> None:
    async with waiting(hub, 3) as ws:
        broken = ws[0]

        def fail(data: bytes) -> bool:
            raise OSError("connection reset")

        broken.connection.write = fail  # type: ignore[method-assign]
        hub._dispatch(event("a", 1))
        await turn()
        assert all(seqs_written(w.connection) == [("a", 1)] for w in ws[1:])
        assert broken.task is not None
        (due,) = await broken.task  # its task sends it, or finds the connection gone
        assert is_preframed(due)


async def test_frames_stay_few_while_a_users_events_never_pause(hub: EventHub) -> None:
    """A pass over many members spans turns, and an event lands during nearly every one:
    what every member already has is let go at each pass's end all the same."""
    async with waiting(hub, 300) as ws:  # several turns a pass
        group = ws[0].sub.followers
        for seq in range(1, 101):
            hub._dispatch(event("a", seq))
            await turn()
        assert group is not None and len(group.frames) <= 10
        for _ in range(50):  # let the passes finish
            await turn()
        expected = [("a", seq) for seq in range(1, 101)]
        assert all(seqs_written(w.connection) == expected for w in ws)


async def test_a_member_that_leaves_while_its_group_holds_an_event_gets_it(
    hub: EventHub,
) -> None:
    async with waiting(hub, 3) as ws:
        hub._dispatch(event("a", 1))
        await turn()
        hub._dispatch(event("a", 3))  # held: a's seq 2 is late
        slow = ws[1]
        due, held = await left_behind(hub, slow, event("b", 1))
        assert frame_of(due) == ws[0].connection.writes[-1]  # b's seq 1, as the others got
        assert (held["orderId"], held["seq"]) == ("a", 3)  # its task fills seq 2 from the store
        assert slow.sub.followers is None and slow.sub.seqs == {"a": 1, "b": 1}
