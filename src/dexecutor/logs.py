"""Structured logging: JSON lines (or a readable console) with context on every line.

Two paths lead to stderr, and both end in the same renderer, so every line is one
JSON object (or one console line with `LOG_JSON=false`):

- dexecutor's own `structlog` loggers render directly (a print per line: the order
  path logs a lot and must not pay for `logging`'s machinery);
- every standard-library logger (uvicorn, asyncio, BullMQ, asyncpg, …) propagates to
  one root handler whose `structlog.stdlib.ProcessorFormatter` adds the same level,
  timestamp and logger name and renders the same way.

uvicorn is started with `log_config=None` so that it installs no handlers of its own.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping

import structlog

_SECRET = re.compile(r"(apiKey=)[^&\s\"']+", re.IGNORECASE)


def _redact(value: object) -> object:
    return _SECRET.sub(r"\1***", value) if isinstance(value, str) else value


class RedactSecrets(logging.Filter):
    """uvicorn logs WebSocket paths with their query; an `apiKey=` there is a secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redact(a) for a in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {k: _redact(v) for k, v in record.args.items()}
        if isinstance(record.msg, str):
            record.msg = _SECRET.sub(r"\1***", record.msg)
        return True


class QuietWebSocketAccess(logging.Filter):
    """uvicorn logs each WebSocket handshake (`"WebSocket /ws/…" [accepted]`) on its error
    logger: an access log by another name, one line per watcher, dropped like the HTTP
    access log is."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.name == "uvicorn.error"
            and isinstance(record.msg, str)
            and record.msg.startswith('%s - "WebSocket ')
        )


def _renderer(json: bool) -> structlog.typing.Processor:
    return structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()


def _exceptions(json: bool) -> structlog.typing.Processor:
    """In JSON the traceback is a field of the line; the console renderer prints it itself."""
    return structlog.processors.format_exc_info if json else _keep


def _keep(
    _: structlog.typing.WrappedLogger, __: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    return event_dict


def configure(level: str = "info", json: bool = True) -> None:
    numeric = logging.getLevelName(level.upper())
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            stamp,
            _exceptions(json),
            _renderer(json),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(QuietWebSocketAccess())
    handler.addFilter(RedactSecrets())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                stamp,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _exceptions(json),
                _renderer(json),
            ],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        # Whatever configured them before (uvicorn's own dictConfig), they now only
        # propagate to the root handler above.
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True
    # uvicorn's access log is one line per request: too loud for an order engine.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # solana-py logs every sendTransaction at info: one line per send and rebroadcast,
    # which the engine's own events and metrics already tell.
    logging.getLogger("solana.rpc").setLevel(logging.WARNING)
    logging.captureWarnings(True)
