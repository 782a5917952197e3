"""Settings: every environment variable the service reads, validated once at start-up.

Nothing else in the code reads the environment; a `Settings` object is built here
and passed down. A bad value stops start-up with a message naming the variable.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote

from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from dexecutor.market.tokens import find_token

# An unconfirmed transaction is sent again this many slots apart unless REBROADCAST_MS
# says otherwise (2,000 ms at Solana's 400 ms slots).
REBROADCAST_SLOTS = 5


class ConfigError(Exception):
    """Configuration that cannot work; the message names the variable."""


class LatencyRange:
    """A latency in milliseconds written as `N` or `LOW-HIGH` (a uniform range)."""

    @staticmethod
    def parse(text: str) -> tuple[int, int]:
        parts = [p.strip() for p in str(text).split("-")]
        if len(parts) not in (1, 2) or not all(p.isdigit() for p in parts):
            raise ValueError(f"expected milliseconds as N or LOW-HIGH, got {text!r}")
        low, high = int(parts[0]), int(parts[-1])
        if low > high:
            raise ValueError(f"range {text!r} has its low end above its high end")
        return low, high


def parse_api_keys(text: str) -> dict[str, str]:
    """`API_KEYS=key1:user1,key2:user2` → {key: userId}."""
    keys: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, user = item.partition(":")
        if not sep or not key or not user:
            raise ValueError("expected key:userId pairs separated by commas")
        keys[key] = user
    return keys


_ORIGIN = re.compile(
    r"^https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$"
)


def parse_origins(text: str) -> list[str]:
    """`CORS_ORIGINS=https://app.example,http://localhost:5173` → the origins, or `*`.

    An origin is scheme://host[:port] exactly as a browser sends it: no path, no
    trailing slash (a browser would never match one).
    """
    origins = [p.strip() for p in text.split(",") if p.strip()]
    if "*" in origins:
        if len(origins) > 1:
            raise ValueError("`*` allows every origin; list origins or give `*` alone")
        return origins
    for origin in origins:
        if not _ORIGIN.match(origin):
            raise ValueError(
                f"{origin[:60]!r} is not an origin: expected scheme://host[:port], "
                "e.g. https://app.example or http://localhost:5173"
            )
    return origins


def _valid_origins(text: str) -> str:
    parse_origins(text)
    return text


DEV_FUNDING = "SOL:1000,USDC:100000"


def parse_funding(text: str) -> list[tuple[str, Decimal]]:
    """`DEV_FUNDING=SOL:1000,USDC:100000` → [(symbol, amount)]: a new wallet's faucet grant.

    Each token must be in the registry and each amount positive, in whole base units.
    """
    grants = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        symbol, sep, amount = item.partition(":")
        try:
            value = Decimal(amount.strip())
        except ArithmeticError:
            value = Decimal(0)
        if not sep or not value.is_finite() or value <= 0:
            raise ValueError(f"expected TOKEN:AMOUNT pairs with AMOUNT > 0, got {item!r}")
        token = find_token(symbol.strip())
        if token is None:
            raise ValueError(f"unknown token {symbol.strip()!r} in {item!r}")
        if value != value.quantize(token.quantum, rounding=ROUND_DOWN):
            raise ValueError(f"{item!r}: {token.symbol} has {token.decimals} decimals")
        grants.append((token.symbol, value))
    return grants


def parse_wallet_key(text: str) -> bytes:
    """WALLET_KEY: base64 of exactly 32 bytes (an AES-256 key)."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be base64 (e.g. from `openssl rand -base64 32`)") from None
    if len(key) != 32:
        raise ValueError(f"must be base64 of 32 bytes, got {len(key)} bytes")
    return key


def parse_launches(text: str) -> list[tuple[str, str, float]]:
    """`TOKEN:venue:seconds,…`: pools to open that many seconds after the chain starts."""
    schedule = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        parts = item.split(":")
        if len(parts) != 3 or parts[1] not in ("raydium", "meteora"):
            raise ValueError(f"expected TOKEN:raydium|meteora:SECONDS, got {item!r}")
        try:
            at = float(parts[2])
        except ValueError:
            raise ValueError(f"{parts[2]!r} is not a number of seconds") from None
        schedule.append((parts[0].upper(), parts[1], at))
    return schedule


class Settings(BaseSettings):
    """The service's configuration. Field names map to upper-case variables."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    env: Literal["development", "test", "production"] = "development"
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 3000
    database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = Path(".data")
    # Filled in at start-up: "configured" or "embedded" per backend (not read from the env).
    backend_modes: dict[str, str] = {}
    namespace: Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]{1,40}$")] = "dexecutor"

    max_concurrent_orders: Annotated[int, Field(ge=1, le=100_000)] = 10
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 3
    internal_error_limit: Annotated[int, Field(ge=1, le=1_000)] = 5
    # How long a starting process waits for a configured PostgreSQL or Redis to answer
    # (they may be starting beside it, or restarting), then exits 3 naming the one that
    # did not. 0: fail at once.
    startup_wait_s: Annotated[float, Field(ge=0, le=3_600)] = 30
    backoff_base_ms: Annotated[int, Field(ge=0, le=600_000)] = 500
    quote_timeout_ms: Annotated[int, Field(ge=1, le=60_000)] = 1500
    max_amount_in: Annotated[Decimal, Field(gt=0)] = Decimal("1000000000000")
    max_queue_depth: Annotated[int, Field(ge=1)] = 10_000
    pg_pool_size: Annotated[int, Field(ge=2, le=500)] = 20
    metrics_port: Annotated[int, Field(ge=0, le=65535)] | None = None  # 0: any free port
    api_processes: Annotated[int, Field(ge=1, le=64)] = 1

    # Hostile input: limits and authentication (off unless API_KEYS is set).
    max_body_bytes: Annotated[int, Field(ge=1024, le=10_485_760)] = 16_384
    rate_limit_per_user: Annotated[int, Field(ge=0)] = 200
    rate_limit_per_address: Annotated[int, Field(ge=0)] = 2_000
    ws_max_connections: Annotated[int, Field(ge=1)] = 20_000
    ws_send_timeout_s: Annotated[float, Field(gt=0, le=600)] = 10.0
    ws_first_message_timeout_s: Annotated[float, Field(gt=0, le=600)] = 30.0
    api_keys: SecretStr = SecretStr("")
    # Browser origins allowed to call the API (CORS), comma separated; none by default.
    cors_origins: Annotated[str, AfterValidator(_valid_origins)] = ""
    reconcile_interval_ms: Annotated[int, Field(ge=100, le=600_000)] = 5_000

    # The chain service (one market for every process). Unset: `up` starts one for
    # itself; `api` and `worker` use http://127.0.0.1:CHAIN_PORT.
    chain_url: str | None = None
    chain_port: Annotated[int, Field(ge=1, le=65535)] = 8899
    # How transactions land (docs/chain.md): `model` draws each broadcast's delay (or its
    # loss) from its priority fee against the congestion; `latency` lands every
    # broadcast after MOCK_SWAP_LATENCY_MS (fast tests). Unset: `latency` when
    # MOCK_SWAP_LATENCY_MS is set, the model otherwise.
    chain_landing: Literal["model", "latency"] | None = None
    # Blocks a blockhash stays valid for (Solana: 150, about a minute).
    chain_blockhash_slots: Annotated[int, Field(ge=2, le=100_000)] = 150
    # The length of a slot, in ms (Solana: 400). The chain's clock, its landing model
    # and commitment steps, blockhash validity and the engine's once-a-slot reads all
    # count in slots of this length; every process must be given the same value.
    chain_slot_ms: Annotated[int, Field(ge=1, le=60_000)] = 400

    # Custodial wallets. WALLET_KEY encrypts their secrets (base64 of 32 bytes); without
    # it, development and test generate one into DATA_DIR/wallet.key and production
    # refuses to start. DEV_FUNDING: what the faucet gives a new wallet, `TOKEN:AMOUNT,…`
    # (unset: 1,000 SOL and 100,000 USDC, but nothing in production).
    wallet_key: SecretStr = SecretStr("")
    dev_funding: str | None = None

    # Sending and confirming. The priority fee bid is this percentile of the chain's
    # recent prioritization fees (micro-lamports per compute unit), never above the cap;
    # an unconfirmed transaction's same bytes are sent again every REBROADCAST_MS (unset:
    # every 5 slots, 2,000 ms at 400 ms slots) until it is confirmed or its blockhash
    # has expired.
    priority_fee_percentile: Annotated[int, Field(ge=0, le=100)] = 75
    priority_fee_max_microlamports: Annotated[int, Field(ge=0, le=1_000_000_000)] = 1_000_000
    rebroadcast_ms: Annotated[int, Field(ge=50, le=60_000)] | None = None

    mock_quote_latency_ms: str = "150-250"
    mock_swap_latency_ms: str = "2000-3000"
    mock_failure_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    mock_seed: int | None = None
    mock_market: Literal["normal", "calm", "violent", "wide"] = "normal"
    mock_controls: bool | None = None

    quote_ttl_ms: Annotated[int, Field(ge=100, le=600_000)] = 10_000
    trigger_interval_ms: Annotated[int, Field(ge=10, le=60_000)] = 1_000
    mock_launches: str = ""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = True

    @field_validator("mock_quote_latency_ms", "mock_swap_latency_ms")
    @classmethod
    def _latency(cls, value: str) -> str:
        LatencyRange.parse(value)
        return value

    @field_validator("api_keys")
    @classmethod
    def _api_keys(cls, value: SecretStr) -> SecretStr:
        parse_api_keys(value.get_secret_value())
        return value

    @field_validator("wallet_key")
    @classmethod
    def _wallet_key(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value().strip():
            parse_wallet_key(value.get_secret_value())
        return value

    @field_validator("dev_funding")
    @classmethod
    def _dev_funding(cls, value: str | None) -> str | None:
        if value is not None:
            parse_funding(value)
        return value

    @property
    def funding(self) -> list[tuple[str, Decimal]]:
        """The faucet grant of a new wallet (none in production unless DEV_FUNDING says)."""
        if self.dev_funding is not None:
            return parse_funding(self.dev_funding)
        return [] if self.env == "production" else parse_funding(DEV_FUNDING)

    @property
    def cors_origin_list(self) -> list[str]:
        return parse_origins(self.cors_origins)

    @field_validator("mock_launches")
    @classmethod
    def _launches(cls, value: str) -> str:
        parse_launches(value)
        return value

    @property
    def launch_schedule(self) -> list[tuple[str, str, float]]:
        return parse_launches(self.mock_launches)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("chain_url")
    @classmethod
    def _chain_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @property
    def chain(self) -> str:
        """CHAIN_URL, or the local chain on CHAIN_PORT."""
        return self.chain_url or f"http://127.0.0.1:{self.chain_port}"

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("postgres://", "postgresql://")):
            raise ValueError("must start with postgresql://")
        return value or None

    @model_validator(mode="after")
    def _controls_default(self) -> Settings:
        if self.mock_controls is None:
            self.mock_controls = self.env != "production"
        return self

    @property
    def quote_latency(self) -> tuple[int, int]:
        return LatencyRange.parse(self.mock_quote_latency_ms)

    @property
    def swap_latency(self) -> tuple[int, int]:
        return LatencyRange.parse(self.mock_swap_latency_ms)

    @property
    def slot_s(self) -> float:
        """CHAIN_SLOT_MS in seconds."""
        return self.chain_slot_ms / 1000

    @property
    def rebroadcast_s(self) -> float:
        """REBROADCAST_MS, or 5 slots (a real client's pace: a few sends a blockhash)."""
        if self.rebroadcast_ms is not None:
            return self.rebroadcast_ms / 1000
        return REBROADCAST_SLOTS * self.slot_s

    @property
    def landing_mode(self) -> str:
        """`model` or `latency` (CHAIN_LANDING, or what MOCK_SWAP_LATENCY_MS implies)."""
        if self.chain_landing is not None:
            return self.chain_landing
        return "latency" if "mock_swap_latency_ms" in self.model_fields_set else "model"

    @property
    def controls_enabled(self) -> bool:
        return bool(self.mock_controls)

    @property
    def redis(self) -> str:
        """REDIS_URL, once start-up has resolved it (embedded when none was configured)."""
        return self.redis_url or "redis://localhost:6379"

    def postgres_configured(self) -> bool:
        env = os.environ
        return bool(self.database_url or env.get("PGHOST") or env.get("PGDATABASE"))

    def dsn(self) -> str:
        """DATABASE_URL, or one built from the libpq PG* variables with local defaults."""
        if self.database_url:
            return self.database_url
        env = os.environ
        user = quote(env.get("PGUSER", "postgres"))
        password = env.get("PGPASSWORD")
        auth = f"{user}:{quote(password)}" if password else user
        host = env.get("PGHOST", "127.0.0.1")
        port = env.get("PGPORT", "5432")
        database = quote(env.get("PGDATABASE", "dexecutor"))
        if host.startswith("/"):
            return f"postgresql://{auth}@/{database}?host={quote(host)}&port={port}"
        return f"postgresql://{auth}@{host}:{port}/{database}"


def load_settings(**overrides: object) -> Settings:
    """Build and validate settings; turn pydantic's report into one readable line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = str(err["loc"][0]).upper() if err["loc"] else "configuration"
            problems.append(f"{name}: {err['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
