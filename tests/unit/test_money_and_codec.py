"""Exact decimals end to end: rounding, bps, JSON in and out, failure codes, settings."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from dexecutor import jsoncodec
from dexecutor.config import ConfigError, load_settings
from dexecutor.domain.failures import FailureReason, backoff_ms, is_retryable
from dexecutor.domain.money import decimal_places, less_bps, quantize_down


def test_quantize_rounds_toward_zero_at_token_precision() -> None:
    assert quantize_down(Decimal("1.23456789"), 6) == Decimal("1.234567")
    assert decimal_places(Decimal("2.500")) == 1
    assert decimal_places(Decimal("100")) == 0


def test_slippage_floor_is_exact() -> None:
    assert less_bps(Decimal("197.4"), 50) == Decimal("196.413")


def test_json_decodes_numbers_as_decimal_and_writes_them_back_exactly() -> None:
    data = jsoncodec.loads(b'{"a": 0.1, "b": 123456789.123456789, "c": 3}')
    assert data == {"a": Decimal("0.1"), "b": Decimal("123456789.123456789"), "c": 3}
    assert jsoncodec.dumps({"x": Decimal("1E+2"), "y": Decimal("0.10")}) == b'{"x":100,"y":0.1}'


def test_timestamps_are_utc_with_milliseconds() -> None:
    at = datetime(2026, 11, 21, 10, 0, 3, 100_000, tzinfo=UTC)
    assert jsoncodec.iso(at) == "2026-11-21T10:00:03.100Z"


@pytest.mark.parametrize(
    ("reason", "retryable"),
    [
        ("slippage_exceeded", True),
        ("venue_timeout", True),
        ("failed_to_land", True),
        ("no_route", False),
        ("insufficient_liquidity", False),
        ("denied", False),
        ("bogus", False),
    ],
)
def test_which_failures_are_retried(reason: str, retryable: bool) -> None:
    assert is_retryable(reason) is retryable


def test_backoff_doubles() -> None:
    assert [backoff_ms(100, a) for a in (1, 2, 3)] == [100, 200, 400]
    assert {r.value for r in FailureReason} >= {"quote_expired", "tx_expired", "internal_error"}


def test_bad_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_CONCURRENT_ORDERS", "many")
    with pytest.raises(ConfigError, match="MAX_CONCURRENT_ORDERS"):
        load_settings()


@pytest.mark.parametrize("value", ["0", "-3", "1001", "five"])
def test_internal_error_limit_is_validated(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("INTERNAL_ERROR_LIMIT", value)
    with pytest.raises(ConfigError, match="INTERNAL_ERROR_LIMIT"):
        load_settings()
    monkeypatch.setenv("INTERNAL_ERROR_LIMIT", "7")
    assert load_settings().internal_error_limit == 7


def test_bad_latency_range_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOCK_SWAP_LATENCY_MS", "3000-2000")
    with pytest.raises(ConfigError, match="MOCK_SWAP_LATENCY_MS"):
        load_settings()


@pytest.mark.parametrize(
    "value", ["example.com", "https://app.example/", "https://app.example/path", "*,https://a.b"]
)
def test_bad_cors_origins_are_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CORS_ORIGINS", value)
    with pytest.raises(ConfigError, match="CORS_ORIGINS"):
        load_settings()


def test_cors_origins_are_a_list(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().cors_origin_list == []
    monkeypatch.setenv("CORS_ORIGINS", " https://app.example, http://localhost:5173 ,")
    assert load_settings().cors_origin_list == ["https://app.example", "http://localhost:5173"]
    monkeypatch.setenv("CORS_ORIGINS", "*")
    assert load_settings().cors_origin_list == ["*"]


@pytest.mark.parametrize(("name", "value"), [("CHAIN_URL", "ftp://x"), ("CHAIN_PORT", "0")])
def test_chain_settings_are_validated(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()


def test_the_chain_is_local_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHAIN_URL", raising=False)
    monkeypatch.setenv("CHAIN_PORT", "9100")
    assert load_settings().chain == "http://127.0.0.1:9100"
    monkeypatch.setenv("CHAIN_URL", "http://chain:8899/")
    assert load_settings().chain == "http://chain:8899"
