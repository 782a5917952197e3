"""The log scanner of the secret check: a planted secret is found in every shape a log
line could carry it, and public keys, signatures and other wallets' secrets are not."""

from __future__ import annotations

import base64
import json

import pytest
from solders.keypair import Keypair

from tests.leaks import Finding, Secret, b58, find_secrets

WALLET = Keypair.from_seed(bytes(range(7, 39)))
SEED = WALLET.secret()
OTHER = Keypair.from_seed(bytes(range(100, 132)))


def _line(text: str) -> str:
    """A JSON log line around the text, as the services write them."""
    return '{"level": "info", "event": "signed", ' + text + ', "order": "a1"}'


SHAPES = {
    "keypair base58": f'"keypair": "{WALLET}"',
    "keypair base58 glued": f'"k": "Keypair{b58(bytes(WALLET))}"',
    "keypair hex": f'"k": "{bytes(WALLET).hex()}"',
    "keypair base64": f'"k": "{base64.b64encode(bytes(WALLET)).decode()}"',
    "keypair byte array": f'"k": {json.dumps(list(bytes(WALLET)))}',
    "keypair bytes literal": f'"k": {json.dumps(repr(bytes(WALLET)))}',
    "seed base58": f'"seed": "{b58(SEED)}"',
    "seed hex": f'"seed": "{SEED.hex()}"',
    "seed hex upper": f'"seed": "0x{SEED.hex().upper()}"',
    "seed base64": f'"seed": "{base64.b64encode(SEED).decode()}"',
    "seed base64 url": f'"seed": "{base64.urlsafe_b64encode(SEED).decode().rstrip("=")}"',
    "seed byte array": f'"seed": "{list(SEED)}"',
    "seed byte array tight": f'"seed": {json.dumps(list(SEED), separators=(",", ":"))}',
    "seed bytes literal": f'"seed": {json.dumps(repr(SEED))}',
    "seed bytes literal raw": f"seed={SEED!r}",
}


@pytest.mark.parametrize("shape", SHAPES)
def test_a_planted_wallet_secret_is_found_in_each_encoding(shape: str) -> None:
    log = "\n".join([_line('"slot": 1'), _line(SHAPES[shape]), _line('"slot": 2')])
    secrets = [Secret("wallet of alice", SEED), Secret("wallet of bob", OTHER.secret())]
    findings = find_secrets({"worker.log": log}, secrets)
    assert findings, shape
    assert {(f.source, f.line, f.label) for f in findings} == {("worker.log", 2, "wallet of alice")}
    assert all(str(SEED.hex()) not in str(f) and str(WALLET) not in str(f) for f in findings)


def test_the_full_keypair_is_found_when_only_the_keypair_was_registered() -> None:
    log = _line(f'"keypair": "{WALLET}"')
    assert find_secrets({"a.log": log}, [Secret("w", bytes(WALLET))]) == [
        Finding("a.log", 1, "w", "base58")
    ]


def test_public_values_and_other_wallets_are_not_reported() -> None:
    signature = WALLET.sign_message(b"swap")
    log = "\n".join(
        [
            _line(f'"wallet": "{WALLET.pubkey()}", "txHash": "{signature}"'),
            _line(f'"pubkey bytes": {list(bytes(WALLET.pubkey()))}'),
            _line(f'"other": "{OTHER}", "seed": "{OTHER.secret().hex()}"'),
            repr(WALLET),  # solders' repr shows the public key only
        ]
    )
    assert find_secrets({"api.log": log}, [Secret("wallet of alice", SEED)]) == []


def test_text_secrets_are_found_as_written_and_short_ones_are_ignored() -> None:
    logs = {"api.log": "ok\nGET /ws?apiKey=alice-key-0123456789 401\n", "b.log": "key: k1\n"}
    secrets = [Secret("API key of alice", "alice-key-0123456789"), Secret("short", "k1")]
    assert find_secrets(logs, secrets) == [Finding("api.log", 2, "API key of alice", "text")]


def test_a_raw_encryption_key_is_found_in_its_base64_and_hex() -> None:
    key = bytes(range(200, 232))
    logs = {
        "a.log": f"WALLET_KEY={base64.b64encode(key).decode()}",
        "b.log": f"key {key.hex()}",
    }
    found = find_secrets(logs, [Secret("WALLET_KEY", key)])
    assert [(f.source, f.encoding) for f in found] == [("a.log", "base64"), ("b.log", "hex")]
