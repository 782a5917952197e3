"""Submissions answered by the HTTP protocol itself, below the ASGI layer.

`POST /api/orders/execute` is the one route under sustained load, and the ASGI path
costs it more than its own work: uvicorn's proxy-header layer, FastAPI's and
Starlette's dispatch, the server-error and body-limit layers, a `Request` and a
`JSONResponse` per order, `receive`/`send` round trips and two `write()` system calls
per answer (status line and headers, then the body). Here uvicorn's httptools protocol
hands a plain submission to `DirectSubmitter`, which reads the few headers it needs
from the parsed request, runs the same handler (`orders.submit`) and writes the whole
answer with one `write()`.

Only plain submissions come this way: no query string, a declared Content-Length
within the body limit, no `Expect: 100-continue`, no proxy headers, and no CORS
configured. Anything else (and every other route) goes through the ASGI application
as before, so its answers do not depend on this module. uvicorn's own bookkeeping
(pipelined requests, keep-alive, disconnects, shutdown) keeps working because the
request still has its uvicorn `RequestResponseCycle`; only the application call is
replaced. One difference, deliberate: a submission received whole is carried out even
when its client hangs up before the answer.
"""

from __future__ import annotations

from typing import Any

import structlog
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.protocols.utils import ClientDisconnected

from dexecutor import jsoncodec
from dexecutor.api.errors import (
    DATABASE_DOWN,
    ApiError,
    api_error_response,
    database_down_response,
)
from dexecutor.api.guard import Authenticator
from dexecutor.api.orders import SUBMIT_PATH, Submission, submit

log = structlog.get_logger(__name__)

SUBMITTER = "dexecutor.submitter"
"""Key of the `DirectSubmitter` in the application's lifespan state."""

# Headers that ask for more than a plain submission: the ASGI path handles them
# (proxy headers rewrite the client's address; 100-continue needs an interim answer).
_FULL_STACK = frozenset({b"x-forwarded-for", b"forwarded", b"expect", b"transfer-encoding"})
_INTERNAL_ERROR = (
    500,
    b"Internal Server Error",
    [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")],
)


class _Fields:
    """The headers a submission reads, first occurrence of each, as Starlette would."""

    __slots__ = ("api_key", "authorization", "content_type", "idempotency_key")

    def __init__(self) -> None:
        self.content_type: str | None = None
        self.idempotency_key: str | None = None
        self.api_key: str | None = None
        self.authorization: str | None = None


class DirectSubmitter:
    """Answers plain submissions for the HTTP protocol, with the application's state."""

    def __init__(self, state: Any, auth: Authenticator, max_body_bytes: int) -> None:
        self._state = state
        self._auth = auth
        self._max_body = max_body_bytes

    def fields(self, headers: list[tuple[bytes, bytes]]) -> _Fields | None:
        """The request's fields, or None when it must take the ASGI path."""
        fields = _Fields()
        length = None
        for name, value in headers:
            if name == b"content-type":
                if fields.content_type is None:
                    fields.content_type = value.decode("latin-1")
            elif name == b"content-length":
                if length is not None or not value.isdigit() or int(value) > self._max_body:
                    return None
                length = value
            elif name == b"idempotency-key":
                if fields.idempotency_key is None:
                    fields.idempotency_key = value.decode("latin-1")
            elif name == b"x-api-key":
                if fields.api_key is None:
                    fields.api_key = value.decode("latin-1")
            elif name == b"authorization":
                if fields.authorization is None:
                    fields.authorization = value.decode("latin-1")
            elif name in _FULL_STACK:
                return None
        return None if length is None else fields

    async def serve(self, cycle: RequestResponseCycle, fields: _Fields) -> None:
        """Read the body, run the submission and write its answer, in one write."""
        try:
            while cycle.more_body and not cycle.disconnected:
                cycle.flow.resume_reading()
                await cycle.message_event.wait()
                cycle.message_event.clear()
            if cycle.more_body:
                return  # the client left before its order was whole: nothing to do
            # A whole order is carried out even if its client has already gone: it may
            # have sent it and hung up, and learns the outcome by retrying with its
            # Idempotency-Key (the answer below is simply not written).
            client = cycle.scope["client"]
            try:
                principal = self._auth.principal_of(fields.api_key, fields.authorization or "")
                status, payload, headers = await submit(
                    self._state,
                    Submission(
                        body=bytes(cycle.body),
                        content_type=fields.content_type or "",
                        idempotency_key=fields.idempotency_key,
                        address=client[0] if client else None,
                        upgrade_ws=False,
                        principal=principal,
                    ),
                )
                body = jsoncodec.dumps(payload)
                raw = [(b"content-type", b"application/json")]
                raw.extend((k.lower().encode(), v.encode()) for k, v in headers.items())
            except ApiError as err:
                status, body, raw = _rendered(api_error_response(err))
            except DATABASE_DOWN as err:
                status, body, raw = _rendered(database_down_response(err))
        except Exception:
            log.exception("submission failed", path=SUBMIT_PATH)
            status, body, raw = _INTERNAL_ERROR
            cycle.keep_alive = False
        await _answer(cycle, status, body, raw)


def _rendered(response: Any) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """A Starlette response's status, body and headers (without its content-length)."""
    raw = [(k, v) for k, v in response.raw_headers if k != b"content-length"]
    return response.status_code, bytes(response.body), raw


async def _answer(
    cycle: RequestResponseCycle, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    """Write the status line, the server's default headers, `headers` and the body at once,
    then finish the cycle as uvicorn's own `send` does."""
    if cycle.flow.write_paused and not cycle.disconnected:
        try:
            await cycle.flow.drain()
        except ClientDisconnected:
            return
    if cycle.disconnected:
        return
    parts = [STATUS_LINE[status]]
    for name, value in (*cycle.default_headers, *headers):
        if name == b"connection" and value == b"close":
            cycle.keep_alive = False
            continue
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"content-length: %d\r\n" % len(body))
    if not cycle.keep_alive:
        parts.append(b"connection: close\r\n")
    parts += (b"\r\n", body)
    cycle.response_started = True
    cycle.transport.write(b"".join(parts))
    cycle.response_complete = True
    cycle.message_event.set()
    if not cycle.keep_alive:
        cycle.transport.close()
    cycle.on_response()


class SubmissionHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, handing plain submissions to `DirectSubmitter`."""

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        submitter: DirectSubmitter | None = self.app_state.get(SUBMITTER)
        scope = cycle.scope
        if (
            submitter is not None
            and app is self.app  # not uvicorn's 503 for the concurrency limit
            and scope["path"] == SUBMIT_PATH
            and scope["method"] == "POST"
            and not scope["query_string"]
        ):
            fields = submitter.fields(scope["headers"])  # type: ignore[arg-type]
            if fields is not None:
                task = self.loop.create_task(submitter.serve(cycle, fields))
                task.add_done_callback(self.tasks.discard)
                self.tasks.add(task)
                return
        super()._start_asgi_task(cycle, app)
