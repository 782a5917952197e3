"""The session's secret check reads real wallets: the table the services write, decrypted
with the key they generated, and finds a planted secret in a log folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg

from dexecutor.chain.client import ChainClient
from dexecutor.config import Settings
from dexecutor.wallets import SecretBox, Wallets, wallet_key
from tests.secret_scan import SessionSecrets, scan
from tests.support import ROOT, create_database, drop_database


async def _make_wallets(dsn: str, data_dir: Path, *users: str) -> dict[str, str]:
    """Wallets made by the product's own code (unfunded: no chain is called)."""
    box = SecretBox(wallet_key(Settings(env="test", data_dir=data_dir)))
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        wallets = Wallets(pool, ChainClient("http://127.0.0.1:9"), box)
        return {user: str(await wallets.keypair(user)) for user in users}
    finally:
        await pool.close()


async def test_the_wallets_of_a_test_database_are_read_and_looked_for(tmp_path: Path) -> None:
    dsn = await create_database()
    try:
        keypairs = await _make_wallets(dsn, tmp_path / "data", "alice", "bob")
        await _make_wallets(dsn, tmp_path / "elsewhere", "carol")  # a key nobody noted
        secrets = SessionSecrets()
        secrets.note_env({"DATA_DIR": str(tmp_path / "data"), "API_KEYS": "key-of-alice:alice"})
        await secrets.harvest(dsn)
    finally:
        await drop_database(dsn)
    assert sorted(secrets.wallets.values())[0].startswith("wallet of alice (")
    assert len(secrets.wallets) == 2 and secrets.unchecked == ["carol"]

    logs = tmp_path / "logs"
    logs.mkdir()
    leak = f'{{"keypair": "{keypairs["bob"]}"}}'
    (logs / "worker.log").write_text('{"event": "signed"}\n' + leak + "\n")
    (logs / "api.log").write_text("GET /api/orders?apiKey=key-of-alice 200\n")
    (logs / "clean.log").write_text(f'{{"wallet": "{keypairs["alice"][:20]}…"}}\n')
    report = scan(logs, secrets)
    assert [(Path(f.source).name, f.line, f.label.split(" (")[0]) for f in report.findings] == [
        ("api.log", 1, "API key of alice"),
        ("worker.log", 2, "wallet of bob"),
    ]
    assert report.files == 3
    assert all(keypairs["bob"] not in line for line in report.lines())


INNER_TEST = """
import asyncpg
from dexecutor.chain.client import ChainClient
from dexecutor.config import Settings
from dexecutor.wallets import SecretBox, Wallets, wallet_key


async def test_a_wallet(database: str) -> None:
    box = SecretBox(wallet_key(Settings(env="test")))
    pool = await asyncpg.create_pool(database, min_size=1, max_size=1)
    try:
        keypair = await Wallets(pool, ChainClient("http://127.0.0.1:9"), box).keypair("leaky")
    finally:
        await pool.close()
    print({SHAPE})
"""


def _session(folder: Path, shape: str) -> tuple[int, str]:
    """A whole pytest session of its own (the suite's conftest as a plugin, its own log
    folder and data directory) whose one test makes a wallet and prints `shape`."""
    folder.mkdir()
    (folder / "test_inner.py").write_text(INNER_TEST.replace("{SHAPE}", shape))
    env = {**os.environ, "DEXECUTOR_TEST_LOGS": str(folder / "logs"),
           "DATA_DIR": str(folder / "data")}  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT), str(folder / "test_inner.py")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=100,
    )  # fmt: skip
    return run.returncode, run.stdout + run.stderr


def test_a_session_whose_logs_hold_a_wallet_secret_fails(tmp_path: Path) -> None:
    code, out = _session(tmp_path / "clean", "'nothing secret'")
    assert code == 0 and "1 passed" in out and ": none found" in out, out
    code, out = _session(tmp_path / "leaky", "keypair")
    assert code == 1 and "1 passed" in out, out
    (leak,) = [line for line in out.splitlines() if "LEAK " in line]
    assert "pytest-captured.log:" in leak and "wallet of leaky (" in leak, leak
    assert leak.endswith("(keypair base58)"), leak
