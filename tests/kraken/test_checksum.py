"""Kraken book checksum against the official worked example (shared/kraken-api.md section 4)."""

from __future__ import annotations

import zlib
from decimal import Decimal

import pytest

from gateway.kraken.checksum import book_checksum, book_checksum_input, level_token

D = Decimal

BIDS = [
    (D("45283.5"), D("0.10000000")),
    (D("45283.4"), D("1.54582015")),
    (D("45282.1"), D("0.10000000")),
    (D("45281.0"), D("0.10000000")),
    (D("45280.3"), D("1.54592586")),
    (D("45279.0"), D("0.07990000")),
    (D("45277.6"), D("0.03310103")),
    (D("45277.5"), D("0.30000000")),
    (D("45277.3"), D("1.54602737")),
    (D("45276.6"), D("0.15445238")),
]
ASKS = [
    (D("45285.2"), D("0.00100000")),
    (D("45286.4"), D("1.54571953")),
    (D("45286.6"), D("1.54571109")),
    (D("45289.6"), D("1.54560911")),
    (D("45290.2"), D("0.15890660")),
    (D("45291.8"), D("1.54553491")),
    (D("45294.7"), D("0.04454749")),
    (D("45296.1"), D("0.35380000")),
    (D("45297.5"), D("0.09945542")),
    (D("45299.5"), D("0.18772827")),
]
ASKS_TEXT = (
    "45285210000045286415457195345286615457110945289615456091145290215890660452918154553491"
    "452947445474945296135380000452975994554245299518772827"
)
BIDS_TEXT = (
    "45283510000000452834154582015452821100000004528101000000045280315459258645279079900004527"
    "7633101034527753000000045277315460273745276615445238"
)


def test_official_vector() -> None:
    assert book_checksum_input(BIDS, ASKS, 1, 8) == ASKS_TEXT + BIDS_TEXT
    assert book_checksum(BIDS, ASKS, 1, 8) == 3310070434


def test_trailing_zeros_in_input_do_not_matter_but_precision_does() -> None:
    # Values arrive from JSON/FIX with variable trailing zeros; fixed formatting normalises them.
    stripped_bids = [(p.normalize(), q.normalize()) for p, q in BIDS]
    stripped_asks = [(p.normalize(), q.normalize()) for p, q in ASKS]
    assert book_checksum(stripped_bids, stripped_asks, 1, 8) == 3310070434
    assert book_checksum(BIDS, ASKS, 2, 8) != 3310070434


def test_only_top_ten_levels_count() -> None:
    deeper_bids = [*BIDS, (D("45270.0"), D("9.0"))]
    deeper_asks = [*ASKS, (D("45300.0"), D("9.0"))]
    assert book_checksum(deeper_bids, deeper_asks, 1, 8) == 3310070434


def test_level_token() -> None:
    assert level_token(D("0.001"), 8) == "100000"
    assert level_token(D("45285.2"), 1) == "452852"
    assert level_token(D("0.5"), 1) == "5"
    with pytest.raises(ValueError, match="more than 1 decimals"):
        level_token(D("45285.25"), 1)


def test_empty_book_is_crc_of_empty_string() -> None:
    assert book_checksum([], [], 1, 8) == zlib.crc32(b"") == 0
