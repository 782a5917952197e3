"""WebSocket frames written straight to the connection, below the ASGI layer.

An event broadcast to thousands of watchers is the same bytes for each of them. Sent
through ASGI, every watcher wakes its own task for it, and every message goes through
Starlette's and uvicorn's send, websockets' framing and a `write()` system call of its
own: 6-11 µs a message, which one process cannot do 200,000 times in a tenth of a
second. Here the event is framed once (a server's text frame is a two- to ten-byte
header and the payload, unmasked), the same bytes are queued on each watcher's
connection from the event hub's own loop, and each connection is written once for all
it was queued in one turn of the event loop.

uvicorn is started with `FramedWebSocketProtocol` (uvicorn's websockets-sansio protocol
plus this extension), which offers each connection as `DirectSocket` in the ASGI scope.
Under any other server the extension is absent and watchers send through ASGI.
"""

from __future__ import annotations

import asyncio
import struct
import weakref
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

from dexecutor import jsoncodec
from dexecutor.bus.events import FRAME, RAW

EXTENSION = "dexecutor.direct"
"""Key of the connection's `DirectSocket` in the ASGI scope's extensions."""


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked text frame (RFC 6455 §5.2) carrying `payload` (UTF-8)."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, size) + payload
    return struct.pack("!BBQ", 0x81, 127, size) + payload


def frame_of(message: dict[str, Any]) -> bytes:
    """The message's frame: the published JSON text as it is, framed on first use."""
    frame: bytes | None = message.get(FRAME)
    if frame is None:
        raw: str | None = message.get(RAW)
        if raw is None:
            # Set beside the frame, so that nothing encodes the frame into the text.
            raw = message[RAW] = jsoncodec.dumps(message).decode()
        frame = message[FRAME] = text_frame(raw.encode())
    return frame


class _Flusher:
    """Writes every connection that has frames queued, once per turn of the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._due: list[DirectSocket] = []

    def add(self, socket: DirectSocket) -> None:
        if not self._due:
            self._loop.call_soon(self._run)
        self._due.append(socket)

    def _run(self) -> None:
        due, self._due = self._due, []
        for socket in due:
            socket.flush()


_flushers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Flusher] = (
    weakref.WeakKeyDictionary()
)


class DirectSocket:
    """One accepted WebSocket connection, written to without going through ASGI.

    Frames are queued and written with the others of the same moment in one `write()`.
    Frames written here and messages sent through ASGI (closes, mostly) stay in order:
    `flush` comes first in every ASGI send this module's callers make.
    """

    __slots__ = ("_flusher", "_protocol", "_queued")

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self._protocol = protocol
        self._queued: list[bytes] = []
        flusher = _flushers.get(protocol.loop)
        if flusher is None:
            flusher = _flushers[protocol.loop] = _Flusher(protocol.loop)
        self._flusher = flusher

    @property
    def open(self) -> bool:
        """Accepted, not closing, and not holding more unsent data than it should."""
        p = self._protocol
        return (
            p.handshake_complete
            and not p.close_sent
            and not p.disconnected
            and p.writable.is_set()
            and not p.transport.is_closing()
        )

    frame = staticmethod(frame_of)

    def put(self, frame: bytes) -> bool:
        """Queue `frame` for this turn's write; False (nothing queued) when not `open`:
        a connection whose client reads too slowly is left to its watcher's task, which
        waits for it, within the send timeout."""
        if not self.open:
            return False
        if not self._queued:
            self._flusher.add(self)
        self._queued.append(frame)
        return True

    def write(self, data: bytes) -> bool:
        """Write `data` (whole frames) now, after what is queued; False when not `open`.

        Called for every watcher of a broadcast: the checks of `open` are spelt out.
        """
        p = self._protocol
        if (
            p.close_sent
            or p.disconnected
            or not p.handshake_complete
            or not p.writable.is_set()
            or p.transport.is_closing()
        ):
            return False
        if self._queued:
            self.flush()
        p.transport.write(data)
        return True

    def flush(self) -> None:
        """Write what is queued now (nothing, if the connection closed meanwhile)."""
        if not self._queued:
            return
        frames, self._queued = self._queued, []
        p = self._protocol
        if p.close_sent or p.disconnected or p.transport.is_closing():
            return
        p.transport.write(frames[0] if len(frames) == 1 else b"".join(frames))

    async def send(self, frames: list[bytes]) -> None:
        """Write `frames` in one go once the connection can take them.

        WebSocketDisconnect if it closed, as an ASGI send raises; the caller bounds the
        wait (a client that does not read is dropped, not waited for).
        """
        p = self._protocol
        await p.writable.wait()
        if p.close_sent or p.disconnected or p.transport.is_closing():
            raise WebSocketDisconnect(1006)
        self._queued.extend(frames)
        self.flush()


def direct_socket(ws: WebSocket) -> DirectSocket | None:
    """The connection's `DirectSocket`, or None when the server does not offer one."""
    extensions = ws.scope.get("extensions") or {}
    found: DirectSocket | None = extensions.get(EXTENSION)
    return found


class FramedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol, offering each connection as `DirectSocket`."""

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # The scope exists only for an accepted upgrade; the application's task was
        # created with it but has not started yet, so the extension is there from its
        # first step.
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][EXTENSION] = DirectSocket(self)
