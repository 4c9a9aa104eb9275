"""Kraken's CRC32 order-book checksum (kraken-api.md section 4, "CRC32 book checksum").

Kraken sends this on WS v2 ``book`` frames and in FIX market data (tag 5041, ChecksumOrderBook).
Because book frames carry no sequence number, the checksum is the *only* way to detect a missed or
misapplied update, so a mismatch must trigger a resubscribe, not a log line.

The venue sends prices and quantities as numbers without a fixed textual form; the checksum is over
fixed-decimal text at the instrument's precision (WS ``instrument`` channel, FIX InstrumentList
2349 PricePrecision / 5010 QtyPrecision). Hence the explicit precisions here and ``Decimal`` input:
a float would already have lost the digits the CRC covers.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from decimal import Decimal
from itertools import islice

__all__ = ["CHECKSUM_LEVELS", "book_checksum", "book_checksum_input", "level_token"]

CHECKSUM_LEVELS = 10
"""Kraken checksums the top 10 levels per side, whatever the subscribed depth."""


def level_token(value: Decimal, decimals: int) -> str:
    """One price or quantity as Kraken's checksum text: fixed decimals, no '.', no leading zeros.

    Raises ``ValueError`` if ``value`` has more decimals than the instrument allows: silently
    rounding would make our checksum agree with a book the venue never had.
    """
    text = f"{value:.{decimals}f}"
    if Decimal(text) != value:
        raise ValueError(f"{value} has more than {decimals} decimals for this instrument")
    return text.replace(".", "").lstrip("0")


def _side_text(levels: Iterable[tuple[Decimal, Decimal]], pd: int, qd: int) -> str:
    return "".join(
        level_token(price, pd) + level_token(qty, qd)
        for price, qty in islice(levels, CHECKSUM_LEVELS)
    )


def book_checksum_input(
    bids: Sequence[tuple[Decimal, Decimal]],
    asks: Sequence[tuple[Decimal, Decimal]],
    price_decimals: int,
    qty_decimals: int,
) -> str:
    """The exact text that is CRC'd: top-10 asks (best first) then top-10 bids (best first).

    Exposed so that a checksum mismatch can be logged with the string we hashed, which is what the
    venue's support desk asks for.
    """
    return _side_text(asks, price_decimals, qty_decimals) + _side_text(
        bids, price_decimals, qty_decimals
    )


def book_checksum(
    bids: Sequence[tuple[Decimal, Decimal]],
    asks: Sequence[tuple[Decimal, Decimal]],
    price_decimals: int,
    qty_decimals: int,
) -> int:
    """Kraken's book checksum as an unsigned 32-bit int.

    ``bids`` best (highest) first and ``asks`` best (lowest) first, each ``(price, qty)``; only the
    first 10 of each are used.
    """
    text = book_checksum_input(bids, asks, price_decimals, qty_decimals)
    return zlib.crc32(text.encode("ascii")) & 0xFFFFFFFF
