"""The token registry: which symbols exist, their mints, decimals and launch state.

Pure data. Reference prices here are only the starting point of the simulated market;
the market's random walk moves them from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

WSOL_MINT = "So11111111111111111111111111111111111111112"


@dataclass(frozen=True, slots=True)
class Token:
    """A tradable (or, for sniper orders, not yet tradable) SPL token."""

    symbol: str
    mint: str
    decimals: int
    launched: bool
    reference_usd: Decimal
    name: str

    @property
    def quantum(self) -> Decimal:
        """The smallest representable amount of the token (one base unit)."""
        return Decimal(1).scaleb(-self.decimals)


# One token per line reads as a table; the long mint addresses cannot be wrapped.
# fmt: off
TOKENS: tuple[Token, ...] = (
    Token("SOL", WSOL_MINT, 9, True, Decimal("98.50"), "Solana (routed as wrapped SOL)"),
    Token("USDC", "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", 6, True, Decimal("1"), "USD Coin"),  # noqa: E501
    Token("USDT", "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB", 6, True, Decimal("1.0002"), "Tether USD"),  # noqa: E501
    Token("BONK", "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263", 5, True, Decimal("0.0000185"), "Bonk"),  # noqa: E501
    Token("JUP", "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN", 6, True, Decimal("0.92"), "Jupiter"),  # noqa: E501
    Token("RAY", "4k3Dyjzvzp8eMZWUXbBCjEvwSkkk59S5iCNLY3QrkX6R", 6, True, Decimal("1.85"), "Raydium"),  # noqa: E501
    # Not yet launched: no pool exists until the market launches one (sniper orders).
    Token("NOVA", "NoVAx7mQ3hZpT9wKc2RfYb8uJdLs4gEv6nAyCqPpump", 6, False, Decimal("0.0042"), "Nova"),  # noqa: E501
    Token("WARP", "WaRPk3sTz8yHq5mNcV2bXf7gLd9uJe4rAp6wKsQpump", 6, False, Decimal("0.0135"), "Warp"),  # noqa: E501
    Token("FLUX", "FLuXq9wEr4tYu2iPa8sDf6gHj3kLz7xCv5bNm1Qwpump", 9, False, Decimal("0.00077"), "Flux"),  # noqa: E501
)
# fmt: on

_BY_SYMBOL = {t.symbol: t for t in TOKENS}


def find_token(symbol: str) -> Token | None:
    """Look a token up by symbol, case-insensitively (clients write `sol` and `SOL`)."""
    return _BY_SYMBOL.get(symbol.upper())


def route_name(symbol: str) -> str:
    """How a token appears in a route: native SOL trades as wrapped SOL (wSOL)."""
    return "wSOL" if symbol == "SOL" else symbol
