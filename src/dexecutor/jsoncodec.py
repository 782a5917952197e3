"""JSON with exact decimals, used at every edge (HTTP, WebSocket, Redis, jsonb).

Amounts are JSON numbers on the wire, but they must never pass through a binary
float: decoding turns every non-integer number into a `Decimal`, and encoding writes
a `Decimal` as a plain number literal.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec


def plain(value: Decimal) -> Decimal:
    """The same value without trailing zeros or a positive exponent (`1E+2` → `100`).

    Very small values keep their negative exponent (`1E-8`): a valid JSON number that
    every JSON parser reads exactly as written.
    """
    normal = value.normalize()
    exponent = normal.as_tuple().exponent
    if isinstance(exponent, int) and exponent > 0:
        return normal.quantize(Decimal(1))
    return normal


def iso(at: datetime) -> str:
    """UTC timestamp with milliseconds and a `Z`, as clients expect."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


# Every event and response passes through `_normalise`, so it dispatches on the exact
# type first (a dict lookup) and falls back to isinstance only for subclasses.
_AS_IS = frozenset({str, int, bool, float, type(None), UUID})


def _normalise(value: Any) -> Any:
    kind = type(value)
    if kind in _AS_IS:
        return value
    if kind is dict:
        return {k: v if type(v) in _AS_IS else _normalise(v) for k, v in value.items()}
    if kind is Decimal:
        return plain(value)
    if kind is datetime:
        return iso(value)
    if kind is list or kind is tuple:
        return [_normalise(v) for v in value]
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Mapping):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    return value


def _enc_hook(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


_decoder = msgspec.json.Decoder(float_hook=Decimal)
_encoder = msgspec.json.Encoder(decimal_format="number", enc_hook=_enc_hook)


def dumps(value: Any) -> bytes:
    """Encode to JSON bytes: decimals as plain numbers, datetimes as ISO-8601 UTC."""
    return _encoder.encode(_normalise(value))


def loads(data: bytes | str) -> Any:
    """Decode JSON; non-integer numbers become `Decimal`. Raises msgspec.DecodeError."""
    return _decoder.decode(data)
