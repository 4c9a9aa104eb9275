"""Kraken symbol spellings, and conversions between them.

Kraken names one spot market three ways (kraken-api.md sections 3, 4 and 6):

===============  ============  ==========================================================
form             example       used by
===============  ============  ==========================================================
pair             ``BTC/USD``   WS v2 and FIX 55 Symbol; the gateway's canonical form
REST altname     ``XBTUSD``    REST ``pair=`` parameter and ``AssetPairs`` ``altname``
WS v1 name       ``XBT/USD``   WS v1 and ``AssetPairs`` ``wsname``
===============  ============  ==========================================================

The legacy forms use Kraken's old asset codes (``XBT`` for BTC, ``XDG`` for DOGE). The REST
altname has no separator, so splitting it needs a list of known quote currencies; the
authoritative mapping is the ``AssetPairs`` response (``altname``/``wsname``), and these helpers
are for the common cases (config files, logs, tests) and fail loudly when they would have to
guess.

Futures symbols (kraken-api.md section 5) are ``<TYPE>_<BASE><QUOTE>[_<YYMMDD>]`` with the legacy
asset codes, e.g. ``PF_XBTUSD`` (linear perpetual) or ``FI_XBTUSD_180615`` (inverse fixed
maturity). Kraken sometimes writes them in lower case; we normalise to upper case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "FuturesKind",
    "FuturesSymbol",
    "SpotPair",
    "futures_base",
    "parse_futures_symbol",
    "parse_spot_pair",
    "perpetual_symbol",
    "rest_altname",
    "to_canonical_asset",
    "to_kraken_asset",
    "ws_v1_name",
]

# Kraken legacy asset code <-> common code. Only the renames that appear in tradable pair names.
_LEGACY_TO_CANONICAL = {"XBT": "BTC", "XDG": "DOGE"}
_CANONICAL_TO_LEGACY = {v: k for k, v in _LEGACY_TO_CANONICAL.items()}

# Quote currencies that may end a REST altname, longest first so "USDT" wins over "USD".
_FIAT_QUOTES = ("USD", "EUR", "GBP", "CAD", "JPY", "CHF", "AUD", "AED")
_STABLE_QUOTES = ("USDT", "USDC", "PYUSD", "DAI", "RLUSD", "USDG")
_CRYPTO_QUOTES = ("XBT", "ETH", "DOT", "POL")
_KNOWN_QUOTES = tuple(sorted(_FIAT_QUOTES + _STABLE_QUOTES + _CRYPTO_QUOTES, key=len, reverse=True))

_ASSET = re.compile(r"^[A-Z0-9.]{1,16}$")

# Kraken's legacy pair names (the AssetPairs keys; what Ticker, TradesHistory and Ledgers print):
# X + a 3-letter crypto code, then Z + a 3-letter fiat code or X + a 3-letter crypto code, e.g.
# XXBTZUSD, XETHZEUR, XETHXXBT. Only the classic fiat/crypto codes had these prefixes.
_LEGACY_PAIR = re.compile(
    r"^X([A-Z]{3})(?:Z(USD|EUR|GBP|CAD|JPY|CHF|AUD)|X(XBT|ETH|XDG|LTC|XRP|XLM|ETC|MLN|REP|ZEC|XMR))$"
)


def to_canonical_asset(asset: str) -> str:
    """Kraken legacy asset code to the common one (``XBT`` -> ``BTC``); others pass through."""
    code = asset.upper()
    return _LEGACY_TO_CANONICAL.get(code, code)


def to_kraken_asset(asset: str) -> str:
    """Common asset code to Kraken's legacy one (``BTC`` -> ``XBT``); others pass through."""
    code = asset.upper()
    return _CANONICAL_TO_LEGACY.get(code, code)


def _check_asset(code: str, original: str) -> str:
    if not _ASSET.match(code):
        raise ValueError(f"invalid asset code {code!r} in symbol {original!r}")
    return code


@dataclass(frozen=True, slots=True)
class SpotPair:
    """A spot market, held in canonical asset codes so equal markets compare equal."""

    base: str
    quote: str

    def __post_init__(self) -> None:
        # Normalise so SpotPair("XBT", "usd") == SpotPair("BTC", "USD").
        object.__setattr__(self, "base", _check_asset(to_canonical_asset(self.base), self.base))
        object.__setattr__(self, "quote", _check_asset(to_canonical_asset(self.quote), self.quote))

    @property
    def pair(self) -> str:
        """``BTC/USD``: WS v2, FIX tag 55, and the gateway's own symbol."""
        return f"{self.base}/{self.quote}"

    @property
    def rest_altname(self) -> str:
        """``XBTUSD``: REST ``pair=`` and ``AssetPairs`` altname."""
        return to_kraken_asset(self.base) + to_kraken_asset(self.quote)

    @property
    def ws_v1(self) -> str:
        """``XBT/USD``: WS v1 and ``AssetPairs`` wsname."""
        return f"{to_kraken_asset(self.base)}/{to_kraken_asset(self.quote)}"

    def __str__(self) -> str:
        return self.pair


def parse_spot_pair(symbol: str) -> SpotPair:
    """Parse any of the three spot forms (``BTC/USD``, ``XBT/USD``, ``XBTUSD``), case-insensitive.

    A form without '/' is split on the longest known quote currency suffix; if none matches, this
    raises rather than guessing, because a wrong split would route an order to another market.
    """
    text = symbol.strip().upper()
    if "/" in text:
        base, _, quote = text.partition("/")
        if not base or not quote or "/" in quote:
            raise ValueError(f"invalid spot pair {symbol!r}: expected BASE/QUOTE")
        return SpotPair(base, quote)
    legacy = _LEGACY_PAIR.match(text)
    if legacy is not None:
        base, fiat, crypto = legacy.groups()
        return SpotPair(base, fiat or crypto)
    for quote in _KNOWN_QUOTES:
        if text.endswith(quote) and len(text) > len(quote):
            return SpotPair(text[: -len(quote)], quote)
    raise ValueError(
        f"cannot split REST pair name {symbol!r}: no known quote currency suffix; "
        "use BASE/QUOTE or resolve it through AssetPairs"
    )


def rest_altname(symbol: str) -> str:
    """Any spot form to the REST altname (``BTC/USD`` -> ``XBTUSD``)."""
    return parse_spot_pair(symbol).rest_altname


def ws_v1_name(symbol: str) -> str:
    """Any spot form to the WS v1 name (``BTC/USD`` -> ``XBT/USD``)."""
    return parse_spot_pair(symbol).ws_v1


class FuturesKind(StrEnum):
    """The futures symbol prefix, which tells margining and expiry apart."""

    LINEAR_PERPETUAL = "PF"  # multi-collateral, quoted and margined in USD
    INVERSE_PERPETUAL = "PI"  # margined in the base asset
    INVERSE_FIXED = "FI"  # fixed maturity, inverse
    LINEAR_FIXED = "FF"  # fixed maturity, linear

    @property
    def is_perpetual(self) -> bool:
        return self in (FuturesKind.LINEAR_PERPETUAL, FuturesKind.INVERSE_PERPETUAL)


_FUTURES = re.compile(r"^(PF|PI|FI|FF)_([A-Z0-9]+?)(USD|EUR|GBP|USDT|USDC|XBT)(?:_(\d{6}))?$")


@dataclass(frozen=True, slots=True)
class FuturesSymbol:
    """A parsed futures symbol: ``base``/``quote`` in canonical codes, ``maturity`` ``YYMMDD``."""

    kind: FuturesKind
    base: str
    quote: str
    maturity: str | None = None

    @property
    def symbol(self) -> str:
        """The venue's spelling, e.g. ``PF_XBTUSD`` or ``FI_XBTUSD_180615``."""
        core = f"{self.kind.value}_{to_kraken_asset(self.base)}{to_kraken_asset(self.quote)}"
        return f"{core}_{self.maturity}" if self.maturity else core

    def __str__(self) -> str:
        return self.symbol


def parse_futures_symbol(symbol: str) -> FuturesSymbol:
    """Parse ``PF_XBTUSD``, ``pi_ethusd``, ``FI_XBTUSD_180615``; raise ``ValueError`` otherwise."""
    m = _FUTURES.match(symbol.strip().upper())
    if m is None:
        raise ValueError(
            f"invalid Kraken futures symbol {symbol!r}: expected e.g. PF_XBTUSD or FI_XBTUSD_180615"
        )
    kind, base, quote, maturity = m.groups()
    fk = FuturesKind(kind)
    if fk.is_perpetual and maturity is not None:
        raise ValueError(f"perpetual futures symbol {symbol!r} cannot carry a maturity")
    if not fk.is_perpetual and maturity is None:
        raise ValueError(f"fixed-maturity futures symbol {symbol!r} needs a _YYMMDD maturity")
    return FuturesSymbol(fk, to_canonical_asset(base), to_canonical_asset(quote), maturity)


def futures_base(symbol: str) -> str:
    """The canonical base asset of a futures symbol (``PF_XBTUSD`` -> ``BTC``)."""
    return parse_futures_symbol(symbol).base


def perpetual_symbol(base: str, quote: str = "USD", *, linear: bool = True) -> str:
    """The perpetual for a base asset (``BTC`` -> ``PF_XBTUSD``; ``linear=False`` -> ``PI_``)."""
    kind = FuturesKind.LINEAR_PERPETUAL if linear else FuturesKind.INVERSE_PERPETUAL
    b = _check_asset(to_canonical_asset(base), base)
    q = _check_asset(to_canonical_asset(quote), quote)
    return FuturesSymbol(kind, b, q).symbol
