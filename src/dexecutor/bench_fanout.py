"""The fan-out scenario's measuring client: thousands of light WebSocket readers.

A full WebSocket client per watcher costs the measuring side more CPU than the server
spends sending, on the same two cores, and the figure would measure the client. These
readers do only what a watcher must: the opening handshake, reading unmasked text
frames, answering pings, and noting when each event arrived. Each is decoded only
once all arrived, so decoding one does not delay reading the next; then every
watcher's events are checked (each event of each order once, in seq order, all of
them), and a watcher that got anything else fails the run. They run in several
processes (`spawn`), each with its own share of the connections.
"""

from __future__ import annotations

import asyncio
import base64
import multiprocessing
import os
import resource
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

import msgspec


class _Event(msgspec.Struct):
    at: str
    orderId: str
    seq: int
    status: str


# An order's last event. Told from the frame's bytes as it arrives (cheaper than
# decoding it there); the decoded events are checked against it at the end.
_TERMINAL = ("confirmed", "failed", "cancelled", "expired")
_ENDS = tuple(f'"status":"{status}"'.encode() for status in _TERMINAL)

_decode_event = msgspec.json.Decoder(_Event).decode


class Reader(asyncio.Protocol):
    """One watcher: notes the arrival time of each event it receives, decoded later.
    Done once `orders` orders have ended: an order that retries has more events."""

    def __init__(self, request: bytes, orders: int) -> None:
        self._request = request
        self._orders = orders
        self._ended = 0
        self.arrivals: list[tuple[float, bytes]] = []
        self._buffer = b""
        self._upgraded = False
        self._transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def received(self) -> int:
        return len(self.arrivals)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tcp: asyncio.Transport = transport  # type: ignore[assignment]  # a TCP transport
        self._transport = tcp
        tcp.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        for future in (self.opened, self.done):
            if not future.done():
                future.set_exception(ConnectionError(f"closed after {self.received} events"))

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if self._buffer:
            data = self._buffer + data
        if not self._upgraded:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self._buffer = data
                return
            if not data.startswith(b"HTTP/1.1 101"):
                self.opened.set_exception(ConnectionError(data[:200].decode()))
                return
            data = data[end + 4 :]
            self._upgraded = True
            self.opened.set_result(None)
        # Every frame of the read is noted with the read's time; what is left of a frame
        # cut by the read waits for the next one.
        self._buffer = data[self._frames(data, now) :]

    def _frames(self, buf: bytes, now: float) -> int:
        """Note the whole frames in `buf`; how many bytes they took."""
        at, size = 0, len(buf)
        while size - at >= 2:
            opcode, length, start = buf[at] & 0x0F, buf[at + 1] & 0x7F, at + 2
            if length == 126:
                if size - at < 4:
                    break
                length, start = struct.unpack_from("!H", buf, at + 2)[0], at + 4
            elif length == 127:
                if size - at < 10:
                    break
                length, start = struct.unpack_from("!Q", buf, at + 2)[0], at + 10
            if size < start + length:
                break
            at = start + length
            if opcode == 0x1:
                # Decoded once all arrived: decoding here would delay the next reads.
                payload = buf[start:at]
                self.arrivals.append((now, payload))
                if any(end in payload for end in _ENDS):
                    self._ended += 1
                    if self._ended == self._orders and not self.done.done():
                        self.done.set_result(None)
            elif opcode == 0x9 and self._transport is not None:  # ping: a masked pong
                self._transport.write(bytes([0x8A, 0x80 | length]) + b"\0\0\0\0" + buf[start:at])
        return at

    def delays_ms(self) -> list[float]:
        """Each event's delay, once all arrived; ValueError unless this watcher got each
        event of each of its orders once, in seq order from the first, every order to
        its end (an order that retried has more events than the five of a first try)."""
        events = [(now, _decode_event(payload)) for now, payload in self.arrivals]
        last: dict[str, _Event] = {}
        for _, event in events:
            previous = last.get(event.orderId)
            expected = 1 if previous is None else previous.seq + 1
            if event.seq != expected or (previous is not None and previous.status in _TERMINAL):
                raise ValueError(f"order {event.orderId}: seq {event.seq}, {expected} expected")
            last[event.orderId] = event
        ended = sum(event.status in _TERMINAL for event in last.values())
        if (len(last), ended) != (self._orders, self._orders):
            raise ValueError(f"{len(last)} orders, {ended} ended; {self._orders} expected")
        return [_delay_ms(now, event.at) for now, event in events]

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def _factory(reader: Reader) -> Callable[[], Reader]:
    return lambda: reader


def _request(host: str, port: int, path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def _watch(host: str, port: int, paths: list[str], orders: int, pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    readers: list[Reader] = []
    for i in range(0, len(paths), 250):  # in batches, so the listen backlog never overflows
        batch = [Reader(_request(host, port, path), orders) for path in paths[i : i + 250]]
        await asyncio.gather(*(loop.create_connection(_factory(r), host, port) for r in batch))
        await asyncio.gather(*(r.opened for r in batch))
        readers.extend(batch)
    pipe.send("open")
    cpu_before = time.process_time()
    try:
        await asyncio.wait_for(asyncio.gather(*(r.done for r in readers)), 300)
    finally:
        for r in readers:
            r.close()
    cpu = time.process_time() - cpu_before
    pipe.send(([delay for r in readers for delay in r.delays_ms()], cpu))


def _delay_ms(arrived: float, at: str) -> float:
    """From the event's time (stamped by its writer) to its arrival here."""
    return (arrived - datetime.fromisoformat(at).timestamp()) * 1000


def _process_main(host: str, port: int, paths: list[str], orders: int, pipe: Connection) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(_watch(host, port, paths, orders, pipe))
    except BaseException as err:  # the parent must hear of it rather than wait
        pipe.send(f"error: {err!r}")


def _receive(pipe: Connection) -> Any:
    try:
        return pipe.recv()
    except EOFError:
        return "error: the watcher process died"


@dataclass
class Watchers:
    """Watcher processes: open them, then collect every delay once all events arrived."""

    processes: list[Any]
    pipes: list[Connection]
    cpu_s: float = 0.0

    @classmethod
    async def open(
        cls, host: str, port: int, paths: list[str], orders: int, processes: int
    ) -> Watchers:
        """One watcher per path, each watching `orders` orders to their end, over
        `processes`."""
        ctx = multiprocessing.get_context("spawn")
        procs, pipes = [], []
        for share in (paths[i::processes] for i in range(processes)):
            mine, theirs = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_process_main, args=(host, port, share, orders, theirs))
            proc.start()
            theirs.close()  # so a child that dies is an EOF here, not a wait forever
            procs.append(proc)
            pipes.append(mine)
        self = cls(procs, pipes)
        for pipe in pipes:
            answer = await asyncio.to_thread(_receive, pipe)
            if answer != "open":
                self.stop()
                raise RuntimeError(f"a watcher process failed to connect: {answer}")
        return self

    async def delays(self) -> list[float]:
        """Every delivery's delay; `cpu_s` then holds the watcher processes' CPU seconds
        from the first order to the last delivery."""
        out: list[float] = []
        self.cpu_s = 0.0
        for pipe in self.pipes:
            answer = await asyncio.to_thread(_receive, pipe)
            if isinstance(answer, str):
                raise RuntimeError(f"a watcher process failed: {answer}")
            delays, cpu = answer
            out.extend(delays)
            self.cpu_s += cpu
        for proc in self.processes:
            proc.join()
        return out

    def stop(self) -> None:
        for proc in self.processes:
            proc.kill()
            proc.join()
