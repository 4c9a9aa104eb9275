"""`[venue.futures] ws_*` configuration (file and field in every error), and the signal runner's
side of the WS feed: the source is recorded, the feed's current funding rate wins over the older
REST history, and a once-a-second feed does not flood the OI history."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config
from gateway.server.signal_runner import SignalRunner
from gateway.transports.kraken_futures_rest import FundingRate, PerpTicker
from gateway.transports.kraken_futures_ws import parse_ws_ticker
from gateway.venue_sim.futures_ws import ws_ticker_json
from gateway.venue_sim.scenarios import get_scenario

ARB = "PF_ARBUSD"


def test_ws_defaults_and_a_valid_url(tmp_path: Path) -> None:
    c = load_config(None)
    assert c.venue.futures.ws_url == "" and c.venue.futures.ws_enabled
    assert c.venue.futures.ws_stale_after_s == 10.0
    f = tmp_path / "ok.toml"
    f.write_text('[venue.futures]\nws_url = "wss://futures.kraken.com/ws/v1"\n'
                 "ws_stale_after_s = 4\nws_enabled = true\n")
    c = load_config(f)
    assert c.venue.futures.ws_url == "wss://futures.kraken.com/ws/v1"
    assert c.venue.futures.ws_stale_after_s == 4.0


@pytest.mark.parametrize(("body", "field", "problem"), [
    ('ws_url = "https://futures.kraken.com/ws/v1"', "venue.futures.ws_url",
     "must be a ws:// or wss:// URL"),
    ("ws_stale_after_s = 0", "venue.futures.ws_stale_after_s", "greater than 0"),
    ('ws_enabled = "sometimes"', "venue.futures.ws_enabled", "valid boolean"),
    ('ws_ur = "wss://x"', "venue.futures.ws_ur", "unknown field"),
])
def test_ws_config_errors_name_file_and_field(tmp_path: Path, body: str, field: str,
                                              problem: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(f"[venue.futures]\n{body}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(f)
    line = next(ln for ln in str(exc.value).splitlines() if f"{field}:" in ln)
    assert str(f) in line and problem in line


def _history(rate: str, n: int = 24) -> list[FundingRate]:
    now = int(time.time() // 3600) * 3600
    return [FundingRate(datetime.fromtimestamp(now - 3600 * (n - 1 - i), UTC),
                        Decimal(rate) * Decimal("0.11"), Decimal(rate)) for i in range(n)]


def _ws_ticker(**overrides: object) -> PerpTicker:
    scenario = get_scenario("arb-crowded-long")
    if overrides:
        scenario = scenario.with_figures(ARB, **overrides)
    return parse_ws_ticker(ws_ticker_json(scenario.perp(ARB), time.time()))


def test_runner_records_the_source_and_takes_the_feeds_current_funding() -> None:
    runner = SignalRunner({}, {ARB: "ARB/USD"}, min_interval_s=0)
    hist = _history("0.000001")  # the REST history still says 87.6 bps/yr
    runner.on_perp_update(_ws_ticker(), hist, source="ws")
    assert runner.ticker_source(ARB) == "ws"
    snap = runner.compute(ARB)
    assert snap is not None
    assert snap.funding_ann_bps == pytest.approx(1095.0, abs=1e-9)  # the feed's 0.0000125
    assert snap.funding_interval_h == pytest.approx(1.0)  # still inferred from the history
    # From REST, the history is taken as it is (the ticker's rate is derived, not the venue's).
    rest_ticker = _ws_ticker()
    runner.on_perp_update(rest_ticker, hist)
    assert runner.ticker_source(ARB) == "rest"
    snap = runner.compute(ARB)
    assert snap is not None and snap.funding_ann_bps == pytest.approx(87.6, abs=1e-9)
    stats = runner.stats(ARB)
    assert stats["source_updates"] == {"ws": 1, "rest": 1}


def test_feed_rate_tickers_make_oi_rows_at_the_poll_rate_carrying_the_whole_change() -> None:
    clock = [1_000_000.0]
    runner = SignalRunner({}, {ARB: "ARB/USD"}, min_interval_s=0, oi_row_min_interval_s=5.0,
                          clock=lambda: clock[0])
    oi = [800_000_000 + 1_000_000 * k for k in range(11)]
    marks = ["0.1109", "0.1120", "0.1100", "0.1112", "0.1105", "0.1109",
             "0.1109", "0.1109", "0.1109", "0.1109", "0.1110"]
    for k in range(11):  # one ticker a second for 10 s
        runner.on_perp_update(_ws_ticker(open_interest=str(oi[k]), mark_price=marks[k]), [],
                              source="ws")
        clock[0] += 1.0
    hist = runner.oi_history(ARB)
    assert hist is not None
    # Rows at t=0 (first), t=5 and t=10: three, not eleven.
    assert hist.ts.tolist() == [1_000_000.0, 1_000_005.0, 1_000_010.0]
    # Each row carries the whole OI change since the previous row (USD at that row's mark).
    levels = hist.oi_usd.tolist()
    assert levels[1] - levels[0] == pytest.approx(oi[5] * 0.1109 - oi[0] * 0.1109, rel=1e-12)
    assert levels[2] - levels[1] == pytest.approx(oi[10] * 0.1110 - oi[5] * 0.1109, rel=1e-12)
    # The row spanning t=1..5 covers every mark seen in between, not only the two ends.
    assert hist.high[1] == pytest.approx(0.1120) and hist.low[1] == pytest.approx(0.1100)
    assert not math.isnan(hist.close[2]) and hist.close[2] == pytest.approx(0.1110)
    # A ticker between rows: not in the kept history or the map, but the snapshot's total OI
    # (and OI age) follow it at once through the provisional tail.
    runner.on_perp_update(_ws_ticker(open_interest="850000000", mark_price="0.1110"), [],
                          source="ws")
    kept = runner.oi_history(ARB)
    assert kept is not None and kept.ts.size == 3
    snap = runner.compute(ARB)
    assert snap is not None
    assert snap.open_interest_usd == pytest.approx(850_000_000 * 0.1110, rel=1e-12)
    assert snap.age_oi_s == pytest.approx(0.0, abs=1e-9)
    # and the next due row commits exactly that change.
    clock[0] += 5.0
    runner.on_perp_update(_ws_ticker(open_interest="850000000", mark_price="0.1110"), [],
                          source="ws")
    kept = runner.oi_history(ARB)
    assert kept is not None and kept.ts.size == 4
    assert kept.oi_usd[-1] == pytest.approx(850_000_000 * 0.1110, rel=1e-12)
