"""Finding secrets in logs: the wallets' keys and the API keys a test session used.

A secret leaks in whatever shape the code that logged it had in hand, so each wallet
secret is looked for in every encoding a log line could carry:

- the 64-byte keypair (seed then public key) in base58 (what `str(Keypair)` and the
  Solana tools print), hex and base64;
- the 32-byte seed in base58, hex and base64 (standard or URL-safe, padded or not);
- either as a JSON byte array (`[12, 201, ...]`, the Solana CLI's key file) or as a
  Python bytes literal (`b'\\x0c\\xc9...'`, also once escaped again inside a JSON line).

Text secrets (API keys, the configured WALLET_KEY) are looked for as they are.

Logs are large and a session makes many wallets, so the search does not try every
encoding at every offset: it cuts the text into the distinct maximal runs of each
encoding's alphabet (a key in a log sits between quotes, `=`, spaces or brackets), and
looks up short windows of each run, a few characters apart, in an index of the
encodings' windows (`_Index` says why no occurrence slips between two). A secret glued
to other characters of its own alphabet is found as well. A report names the file, the
line, the secret's label and the encoding, never the secret.
"""

from __future__ import annotations

import ast
import base64
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature

SEED_BYTES = 32
KEYPAIR_BYTES = 64
# A text secret shorter than this would match ordinary words: tests configure longer ones.
MIN_TEXT_SECRET = 8
_WINDOW = 16  # characters of an encoding looked up at once; every encoding is longer

_BASE58 = re.compile(r"[1-9A-HJ-NP-Za-km-z]{32,}")
_HEX = re.compile(r"[0-9a-fA-F]{64,}")  # both cases are indexed
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]{40,}")
_BYTE_ARRAY = re.compile(r"\[\s*(?:\d{1,3}\s*,\s*){31,}\d{1,3}\s*\]")  # 32 or more numbers
_BYTES_LITERAL = re.compile(r"""b'(?:[^'\\\n]|\\.){32,}'|b"(?:[^"\\\n]|\\.){32,}\"""")


@dataclass(frozen=True)
class Secret:
    """A secret to look for. `label` is what a report may print (a user id, a public
    key, a setting's name), `value` is the secret: bytes (a wallet seed or keypair, a
    raw encryption key) or text (an API key)."""

    label: str
    value: bytes | str


@dataclass(frozen=True, order=True)
class Finding:
    source: str
    line: int
    label: str
    encoding: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.label} ({self.encoding})"


def b58(data: bytes) -> str:
    """Base58 of a 32- or 64-byte value, the way Solana prints keys and signatures."""
    if len(data) == SEED_BYTES:
        return str(Pubkey.from_bytes(data))
    if len(data) == KEYPAIR_BYTES:
        return str(Signature.from_bytes(data))
    raise ValueError(f"base58 here is for 32 or 64 bytes, not {len(data)}")


def byte_encodings(value: bytes) -> dict[str, str]:
    """The text encodings of a byte secret that the token search looks for.

    A 32-byte value is taken for a wallet seed (or a raw key): its keypair's encodings
    are added, since a keypair's bytes are the seed followed by the public key.
    """
    found: dict[str, str] = {}
    shapes = [("", value)]
    if len(value) == SEED_BYTES:
        shapes.append(("keypair ", bytes(Keypair.from_seed(value))))
    for prefix, data in shapes:
        if len(data) in (SEED_BYTES, KEYPAIR_BYTES):
            found[f"{prefix}base58"] = b58(data)
        found[f"{prefix}hex"] = data.hex()
        found[f"{prefix}HEX"] = data.hex().upper()
        found[f"{prefix}base64"] = base64.b64encode(data).decode().rstrip("=")
        found[f"{prefix}url-safe base64"] = base64.urlsafe_b64encode(data).decode().rstrip("=")
    return found


class _Index:
    """Encodings of one alphabet, found in a run of that alphabet by sampling windows.

    Every encoding is at least `shortest` long. Windows of `_WINDOW` characters taken
    every `step = shortest - _WINDOW + 1` characters of a run land wholly inside any
    occurrence, at an offset below `step` into it; so each encoding's windows at those
    offsets are indexed, and a run costs one lookup per `step` characters.
    """

    def __init__(self) -> None:
        self.encodings: list[tuple[str, str, str]] = []
        self.windows: dict[str, list[tuple[int, str, str, str]]] = {}
        self.step = 0

    def add(self, encoded: str, label: str, encoding: str) -> None:
        assert len(encoded) >= _WINDOW, encoding
        self.encodings.append((encoded, label, encoding))
        self.windows.clear()

    def _build(self) -> None:
        self.step = min(len(e) for e, _, _ in self.encodings) - _WINDOW + 1
        for encoded, label, encoding in self.encodings:
            for offset in range(self.step):
                window = encoded[offset : offset + _WINDOW]
                self.windows.setdefault(window, []).append((offset, encoded, label, encoding))

    def search(self, run: str) -> Iterator[tuple[str, str]]:
        if not self.windows:
            self._build()
        for at in range(0, len(run) - _WINDOW + 1, self.step):
            for offset, encoded, label, encoding in self.windows.get(run[at : at + _WINDOW], ()):
                if at >= offset and run.startswith(encoded, at - offset):
                    yield label, encoding


@dataclass
class _Patterns:
    base58: _Index
    hex: _Index
    base64: _Index
    seeds: dict[bytes, str]  # the leading 32 bytes of every byte secret -> its label
    texts: list[Secret]


def _patterns(secrets: Iterable[Secret]) -> _Patterns:
    patterns = _Patterns(_Index(), _Index(), _Index(), {}, [])
    for secret in secrets:
        if isinstance(secret.value, str):
            if len(secret.value) >= MIN_TEXT_SECRET:
                patterns.texts.append(secret)
            continue
        patterns.seeds[secret.value[:SEED_BYTES]] = secret.label
        for encoding, encoded in byte_encodings(secret.value).items():
            family = encoding.rsplit(" ", 1)[-1].lower()
            getattr(patterns, family).add(encoded, secret.label, encoding)
    return patterns


def _line(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


def _byte_values(text: str) -> Iterator[tuple[bytes, int, str]]:
    """Byte strings written out as a JSON array or a Python bytes literal, with their line."""
    for match in _BYTE_ARRAY.finditer(text):
        numbers = [int(n) for n in re.findall(r"\d+", match.group())]
        if all(n < 256 for n in numbers):
            yield bytes(numbers), _line(text, match.start()), "byte array"
    # A bytes literal inside a JSON line has had its backslashes and quotes escaped again.
    for view in {text, text.replace("\\\\", "\\").replace('\\"', '"')}:
        for match in _BYTES_LITERAL.finditer(view):
            try:
                value = ast.literal_eval(match.group())
            except (ValueError, SyntaxError):
                continue
            yield value, _line(view, match.start()), "bytes literal"


def _scan(source: str, text: str, patterns: _Patterns) -> Iterator[Finding]:
    for regex, index in (
        (_BASE58, patterns.base58),
        (_HEX, patterns.hex),
        (_BASE64, patterns.base64),
    ):
        if not index.encodings:
            continue
        for run in set(regex.findall(text)):  # logs repeat keys and ids: each run once
            for label, encoding in index.search(run):
                yield Finding(source, _line(text, text.find(run)), label, encoding)
    if patterns.seeds:
        for value, line, encoding in _byte_values(text):
            for start in range(len(value) - SEED_BYTES + 1):
                owner = patterns.seeds.get(value[start : start + SEED_BYTES])
                if owner is not None:
                    yield Finding(source, line, owner, encoding)
    for secret in patterns.texts:
        assert isinstance(secret.value, str)
        position = text.find(secret.value)
        if position >= 0:
            yield Finding(source, _line(text, position), secret.label, "text")


def find_secrets(texts: Mapping[str, str], secrets: Iterable[Secret]) -> list[Finding]:
    """Every place (source name and line) where one of the secrets appears in the texts."""
    patterns = _patterns(secrets)
    found = {f for source, text in texts.items() for f in _scan(source, text, patterns)}
    return sorted(found)


def read_logs(folder: Path) -> dict[str, str]:
    """Every file under the folder, as text (undecodable bytes replaced), by its path."""
    return {
        str(path): path.read_text(errors="replace")
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }
