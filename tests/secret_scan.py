"""The secret check of a test session: no wallet secret and no API key in any log.

Every process a test starts writes its output into the session's log folder (see
`tests.support.SESSION_LOGS`), and so do the CLI runs and the output pytest captured
from the tests themselves. What the session configured or created is noted here as it
goes by:

- the API keys and the WALLET_KEY of every process environment (`note_env`);
- the data directories, whose `wallet.key` the services generate in development;
- the wallets: every test database is read before it is dropped (`harvest`), each
  secret decrypted with the keys above.

At the end of the session `scan` looks for all of them in every file of the folder
(tests/leaks.py says in which encodings). A wallet no known key opens is reported as
unchecked: a wallet a test made in its own process with a key of its own, most likely.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from cryptography.exceptions import InvalidTag
from solders.keypair import Keypair

from dexecutor.config import parse_api_keys
from dexecutor.wallets import KEY_FILE, SecretBox
from dexecutor.wallets import secret_context as wallet_context
from tests.leaks import Finding, Secret, find_secrets, read_logs

# Where the services keep their generated wallet key when a test gives them no DATA_DIR
# of their own: the environment's (they inherit it), else the default.
DEFAULT_DATA_DIR = Path(os.environ.get("DATA_DIR") or ".data")


def _base64_key(text: str) -> bytes | None:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return key if len(key) == 32 else None


def _open(boxes: list[SecretBox], user_id: str, pubkey: str, sealed: bytes) -> bytes | None:
    for box in boxes:
        try:
            seed = box.open(sealed, wallet_context(user_id, pubkey))
        except InvalidTag:
            continue
        if str(Keypair.from_seed(seed).pubkey()) == pubkey:
            return seed
    return None


@dataclass
class SessionSecrets:
    """What a test session must not find in its logs, gathered while it runs."""

    texts: dict[str, str] = field(default_factory=dict)  # secret text -> label
    keys: dict[bytes, str] = field(default_factory=dict)  # wallet encryption keys -> label
    data_dirs: set[Path] = field(default_factory=lambda: {DEFAULT_DATA_DIR.resolve()})
    wallets: dict[bytes, str] = field(default_factory=dict)  # seed -> "wallet of <user>"
    unchecked: list[str] = field(default_factory=list)  # wallets no known key opened

    def note_env(self, env: Mapping[str, str]) -> None:
        """The secrets a process (or a CLI run) is given in its environment."""
        try:
            users = parse_api_keys(env.get("API_KEYS", ""))
        except ValueError:  # a test of a bad setting: the process refuses to start
            users = {}
        for api_key, user in users.items():
            self.texts[api_key] = f"API key of {user}"
        if env.get("DEXECUTOR_API_KEY"):
            self.texts[env["DEXECUTOR_API_KEY"]] = "DEXECUTOR_API_KEY"
        if env.get("WALLET_KEY"):
            self.texts[env["WALLET_KEY"].strip()] = "WALLET_KEY"
            key = _base64_key(env["WALLET_KEY"])
            if key is not None:
                self.keys[key] = "WALLET_KEY"
        if env.get("DATA_DIR"):
            self.data_dirs.add(Path(env["DATA_DIR"]).resolve())

    def wallet_keys(self) -> list[bytes]:
        """The configured keys and the generated ones found in the data directories."""
        for folder in self.data_dirs:
            path = folder / KEY_FILE
            if path.is_file() and len(data := path.read_bytes()) == 32:
                self.keys.setdefault(data, f"{path}")
        return list(self.keys)

    async def harvest(self, dsn: str) -> None:
        """Note the wallets of a test database (it is about to be dropped): each secret,
        decrypted the way the services do, checked against its public key."""
        conn = await asyncpg.connect(dsn)
        try:
            if await conn.fetchval("SELECT to_regclass('wallets')") is None:
                return
            rows = await conn.fetch("SELECT user_id, pubkey, secret FROM wallets")
        finally:
            await conn.close()
        boxes = [SecretBox(key) for key in self.wallet_keys()]
        for row in rows:
            seed = _open(boxes, row["user_id"], row["pubkey"], row["secret"])
            if seed is None:
                self.unchecked.append(row["user_id"])
            else:
                self.wallets[seed] = f"wallet of {row['user_id']} ({row['pubkey']})"

    def secrets(self) -> list[Secret]:
        self.wallet_keys()
        return [
            *(Secret(label, text) for text, label in self.texts.items()),
            *(Secret(f"wallet encryption key ({label})", key) for key, label in self.keys.items()),
            *(Secret(label, seed) for seed, label in self.wallets.items()),
        ]


@dataclass(frozen=True)
class Report:
    folder: Path
    findings: list[Finding]
    files: int
    secrets: int
    unchecked: list[str]

    def lines(self) -> list[str]:
        summary = f"{self.secrets} secrets looked for in {self.files} files under {self.folder}"
        verdict = f"{len(self.findings)} LEAKS" if self.findings else "none found"
        lines = [f"{summary}: {verdict}"]
        lines += [f"  LEAK {finding}" for finding in self.findings]
        if self.unchecked:
            lines.append(
                f"  {len(self.unchecked)} wallets no known key opens, not looked for:"
                f" {', '.join(self.unchecked[:5])}"
            )
        return lines


def scan(folder: Path, secrets: SessionSecrets) -> Report:
    logs = read_logs(folder) if folder.is_dir() else {}
    wanted = secrets.secrets()
    return Report(folder, find_secrets(logs, wanted), len(logs), len(wanted), secrets.unchecked)
