"""Kraken symbol forms."""

from __future__ import annotations

import pytest

from gateway.kraken.symbols import (
    FuturesKind,
    SpotPair,
    futures_base,
    parse_futures_symbol,
    parse_spot_pair,
    perpetual_symbol,
    rest_altname,
    to_canonical_asset,
    to_kraken_asset,
    ws_v1_name,
)


@pytest.mark.parametrize("form", ["BTC/USD", "XBT/USD", "XBTUSD", "xbtusd", " btc/usd "])
def test_all_spot_forms_parse_to_the_same_pair(form: str) -> None:
    p = parse_spot_pair(form)
    assert p == SpotPair("BTC", "USD")
    assert (p.pair, p.rest_altname, p.ws_v1, str(p)) == ("BTC/USD", "XBTUSD", "XBT/USD", "BTC/USD")


@pytest.mark.parametrize(
    ("altname", "pair"),
    [
        ("ETHUSD", "ETH/USD"),
        ("XBTUSDT", "BTC/USDT"),
        ("USDTUSD", "USDT/USD"),
        ("XDGUSD", "DOGE/USD"),
        ("ETHXBT", "ETH/BTC"),
        ("SOLEUR", "SOL/EUR"),
        ("USDCUSDT", "USDC/USDT"),
    ],
)
def test_rest_altname_round_trip(altname: str, pair: str) -> None:
    assert parse_spot_pair(altname).pair == pair
    assert rest_altname(pair) == altname


def test_v1_names() -> None:
    assert ws_v1_name("BTC/USD") == "XBT/USD"
    assert ws_v1_name("DOGE/EUR") == "XDG/EUR"
    assert parse_spot_pair("XDG/USD").pair == "DOGE/USD"


def test_asset_codes() -> None:
    assert to_canonical_asset("xbt") == "BTC"
    assert to_kraken_asset("BTC") == "XBT"
    assert to_kraken_asset("ETH") == "ETH"


@pytest.mark.parametrize("bad", ["BTC", "BTC/", "/USD", "A/B/C", "BTC/U$D", "FOOBAR"])
def test_bad_spot_forms_raise(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_spot_pair(bad)


def test_futures_symbols() -> None:
    f = parse_futures_symbol("PF_XBTUSD")
    assert (f.kind, f.base, f.quote) == (FuturesKind.LINEAR_PERPETUAL, "BTC", "USD")
    assert f.maturity is None
    assert f.symbol == "PF_XBTUSD" and f.kind.is_perpetual
    assert futures_base("PF_XBTUSD") == "BTC"
    assert futures_base("pi_ethusd") == "ETH"
    fixed = parse_futures_symbol("fi_xbtusd_180615")
    assert (fixed.kind, fixed.maturity, str(fixed)) == (
        FuturesKind.INVERSE_FIXED,
        "180615",
        "FI_XBTUSD_180615",
    )
    assert perpetual_symbol("BTC") == "PF_XBTUSD"
    assert perpetual_symbol("ETH", linear=False) == "PI_ETHUSD"
    assert perpetual_symbol("DOGE") == "PF_XDGUSD"


@pytest.mark.parametrize("bad", ["XBTUSD", "PF_XBTUSD_240628", "FI_XBTUSD", "PX_XBTUSD", "PF_"])
def test_bad_futures_symbols_raise(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_futures_symbol(bad)


@pytest.mark.parametrize(("legacy", "pair"), [
    ("XXBTZUSD", "BTC/USD"), ("XETHZEUR", "ETH/EUR"), ("XETHXXBT", "ETH/BTC"),
    ("XXDGZUSD", "DOGE/USD"), ("XLTCZUSD", "LTC/USD"), ("xxbtzgbp", "BTC/GBP"),
])
def test_legacy_asset_pair_names(legacy: str, pair: str) -> None:
    """The AssetPairs *key* (and the pair Kraken writes in Ticker, TradesHistory, Ledgers) is
    the legacy name: X + crypto code, then Z + fiat or X + crypto. Split on the quote suffix it
    read as base ``XXBTZ``: a market that does not exist, silently."""
    assert parse_spot_pair(legacy).pair == pair
    assert parse_spot_pair(legacy).rest_altname == parse_spot_pair(pair).rest_altname
