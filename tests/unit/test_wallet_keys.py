"""The wallets' key and secrets at rest: configuration, the development key file, AES-GCM."""

from __future__ import annotations

import base64
import re
import stat
from decimal import Decimal
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from solders.pubkey import Pubkey

from dexecutor.config import ConfigError, load_settings, parse_funding
from dexecutor.market.tokens import TOKENS
from dexecutor.wallets import Balance, SecretBox, wallet_key


def test_development_generates_one_key_file_readable_only_by_its_owner(tmp_path: Path) -> None:
    settings = load_settings(env="development", data_dir=tmp_path / "data", wallet_key="")
    key = wallet_key(settings)
    path = tmp_path / "data" / "wallet.key"
    assert len(key) == 32 and path.read_bytes() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert wallet_key(settings) == key  # the same key on every start
    assert [p.name for p in path.parent.iterdir()] == ["wallet.key"]  # no temporary left


def test_a_configured_key_wins_and_production_needs_one(tmp_path: Path) -> None:
    raw = bytes(range(32))
    configured = load_settings(
        env="production", data_dir=tmp_path, wallet_key=base64.b64encode(raw).decode()
    )
    assert wallet_key(configured) == raw
    with pytest.raises(ConfigError, match="WALLET_KEY: required in production"):
        wallet_key(load_settings(env="production", data_dir=tmp_path, wallet_key=""))
    assert not (tmp_path / "wallet.key").exists()


@pytest.mark.parametrize("text", ["not base64!", base64.b64encode(b"short").decode()])
def test_a_malformed_key_stops_start_up_without_echoing_it(text: str) -> None:
    with pytest.raises(ConfigError, match="WALLET_KEY") as caught:
        load_settings(wallet_key=text)
    assert text not in str(caught.value)


def test_funding_defaults_by_environment() -> None:
    assert load_settings(env="development").funding == [
        ("SOL", Decimal(1000)),
        ("USDC", Decimal(100000)),
    ]
    assert load_settings(env="test").funding == load_settings(env="development").funding
    assert load_settings(env="production").funding == []
    assert load_settings(env="production", dev_funding="sol:5").funding == [("SOL", Decimal(5))]
    assert load_settings(env="development", dev_funding="").funding == []


@pytest.mark.parametrize("text", ["SOL", "SOL:0", "SOL:-1", "DOGE:1", "USDC:0.0000001", "SOL:x"])
def test_bad_funding_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(text.split(":")[0])):
        parse_funding(text)
    with pytest.raises(ConfigError, match="DEV_FUNDING"):
        load_settings(dev_funding=text)


def test_a_sealed_secret_opens_only_for_its_own_wallet() -> None:
    box = SecretBox(bytes(32))
    sealed = box.seal(b"s" * 32, b"user-a:pk")
    assert b"s" * 32 not in sealed
    assert box.open(sealed, b"user-a:pk") == b"s" * 32
    assert box.seal(b"s" * 32, b"user-a:pk") != sealed  # a fresh nonce each time
    with pytest.raises(InvalidTag):
        box.open(sealed, b"user-b:pk")
    with pytest.raises(InvalidTag):
        SecretBox(bytes([1]) * 32).open(sealed, b"user-a:pk")
    assert "00" not in repr(box)


def test_available_is_total_less_reserved_never_negative() -> None:
    assert Balance(Decimal(10), Decimal(4)).view() == {
        "total": Decimal(10),
        "available": Decimal(6),
        "reserved": Decimal(4),
    }
    assert Balance(Decimal(1), Decimal(4)).available == 0


def test_every_mint_is_an_address_a_wallet_can_hold() -> None:
    """A wallet's token account is derived from the mint: an unlaunched token's mint
    that is not a 32-byte address would make its holders' balances unreadable."""
    for token in TOKENS:
        assert str(Pubkey.from_string(token.mint)) == token.mint, token.symbol
