"""Structured logging: JSON lines (or a readable console) with context on every line."""

from __future__ import annotations

import logging
import re
import sys

import structlog

_SECRET = re.compile(r"(apiKey=)[^&\s\"']+", re.IGNORECASE)


class RedactSecrets(logging.Filter):
    """uvicorn logs WebSocket paths with their query; an `apiKey=` there is a secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(
                _SECRET.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args
            )
        if isinstance(record.msg, str):
            record.msg = _SECRET.sub(r"\1***", record.msg)
        return True


def configure(level: str = "info", json: bool = True) -> None:
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format="%(message)s")
    # uvicorn's access log is one line per request: too loud for an order engine.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    for name in ("uvicorn.error", "uvicorn.access", "uvicorn"):
        logging.getLogger(name).addFilter(RedactSecrets())
