"""Pre-trade gate (shared/signals.md §8): every classic limit and signal rule with each action,
stale-input policies, operator controls, counters, config validation, the §9 worked example
(ARB perp: a buy is blocked naming carry and gravity, a sell passes) and a property test that
the gate always answers with one of the four actions and never raises."""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Iterator
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.config.loader import ConfigError, format_validation_error, load_config
from gateway.config.risk import GateConfig
from gateway.marketdata.book import Book as L2Book
from gateway.risk.gate import ACTIONS, Gate, GateDecision, GateOrder
from gateway.signals import (
    Book,
    FundingRecord,
    LiquidationMap,
    PositioningRecord,
    SignalConfig,
    SignalInputs,
    SignalSnapshot,
    Tier,
    compute_snapshot,
)

NOW = 1_700_000_000.0
H = 3600.0
D = Decimal
ARB = "PF_ARBUSD"

CARRY_RULE: dict[str, Any] = {
    "name": "carry_gravity_long",
    "kind": "crowded_long",
    "action": "block",
    "stale_policy": "block",
    "max_age_s": 60,
    "params": {"min_funding_excess_bps": "1000", "max_gravity": "-0.25", "min_liq_to_depth": "1.0"},
    "reduce_to_fraction": "0.5",
    "symbols": [ARB],
}


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------
def arb_inputs() -> SignalInputs:
    """§9: T1 carry (r = 0.0000125 per 1 h from hourly funding records, basis -6.7 bps), T7
    positioning (78.53e6 / 8.71e6 by top_accounts) and the seed's shape: price 0.111 with dense
    long liquidations near 0.09 (5x longs entered at 0.1005-0.102 liquidate at 0.8889 x entry)
    and light shorts, so gravity is negative; σ_d = 11 % puts 0.09 inside the 2·s risk band."""
    p = 0.111
    rng = np.random.default_rng(0)
    liq_map = LiquidationMap(p, (Tier(5, 1.0),), as_of=NOW)
    liq_map.add("long", np.full(50, 8e6 / 50), rng.uniform(0.1005, 0.102, 50))
    liq_map.add("short", np.full(20, 5e4 / 20), rng.uniform(0.105, 0.112, 20))
    k = np.arange(1, 401)
    book = Book.of(p * np.exp(-k * 0.001), np.full(400, 2e5), p * np.exp(k * 0.001),
                   np.full(400, 2e5), NOW - 2.0)
    return SignalInputs(
        ARB,
        NOW,
        p,
        p / (1 - 6.7e-4),  # basis (P - S) / S = -6.7 bps
        NOW - 1.0,
        book=book,
        funding=tuple(FundingRecord(NOW - j * H, 0.0000125) for j in range(5)),
        positioning=PositioningRecord.of("top_accounts", "venue_push", 78.53e6, 8.71e6, NOW - 30),
        open_interest_usd=87.24e6,
        liq_map=liq_map,
        sigma_d=0.11,
        config=SignalConfig(tiers=(Tier(5, 1.0),)),
    )


@pytest.fixture(scope="module")
def arb() -> SignalSnapshot:
    return compute_snapshot(arb_inputs())


class Clocks:
    """Monotonic and wall clocks the test moves by hand."""

    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = NOW + 5.0

    def advance(self, s: float) -> None:
        self.mono += s
        self.wall += s


class Market:
    """The gate's two read callables, backed by dicts the test edits."""

    def __init__(self) -> None:
        self.mids: dict[str, tuple[Decimal | None, float | None]] = {
            "BTC/USD": (D("45000.0"), 0.2), ARB: (D("0.111"), 0.1)}
        self.snaps: dict[str, SignalSnapshot] = {}

    def mid(self, symbol: str) -> tuple[Decimal | None, float | None]:
        return self.mids.get(symbol, (None, None))

    def snapshot(self, symbol: str) -> SignalSnapshot | None:
        return self.snaps.get(symbol)


def cfg(**kw: Any) -> GateConfig:
    return GateConfig.model_validate(kw)


def make_gate(config: GateConfig, market: Market | None = None, clocks: Clocks | None = None,
              **kw: Any) -> tuple[Gate, Market, Clocks]:
    market = market or Market()
    clocks = clocks or Clocks()
    gate = Gate(config, market.mid, market.snapshot, lambda: clocks.mono,
                wall_clock=lambda: clocks.wall, **kw)
    return gate, market, clocks


def order(symbol: str = "BTC/USD", side: str = "1", qty: str = "1",
          price: str | None = "45000.0", session: str = "OMS") -> GateOrder:
    return GateOrder(symbol, side, D(qty), None if price is None else D(price),
                     "1" if price is None else "2", session, "ACC")


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------
BRIEF_TOML = """
[risk]
kill_switch = false
max_order_qty = { "BTC/USD" = "5", "*" = "1000000" }
max_notional_usd = "1000000"
price_collar_bps = 500
max_orders_per_s = 50
max_open_orders = 200
stale_book_s = 5
[[risk.signal_rules]]
name = "carry_gravity_long"
kind = "crowded_long"
action = "block"
stale_policy = "block"
max_age_s = 60
params = { min_funding_excess_bps = "1000", max_gravity = "-0.25", min_liq_to_depth = "1.0" }
reduce_to_fraction = "0.5"
symbols = ["PF_ARBUSD"]
"""


def test_config_parses_the_documented_toml() -> None:
    c = GateConfig.model_validate(tomllib.loads(BRIEF_TOML)["risk"])
    assert c.max_order_qty == {"BTC/USD": D("5"), "*": D("1000000")}
    assert c.max_notional_usd == D("1000000") and c.price_collar_bps == D("500")
    assert c.max_orders_per_s == 50 and c.max_open_orders == 200 and c.stale_book_s == 5.0
    r = c.signal_rules[0]
    assert r.kind == "crowded_long" and r.params["max_gravity"] == D("-0.25")
    assert r.reduce_to_fraction == D("0.5") and r.symbols == ("PF_ARBUSD",)


def test_config_defaults_are_off_and_fail_closed() -> None:
    c = GateConfig()
    assert not c.kill_switch and c.max_order_qty == {} and c.max_notional_usd is None
    assert c.price_collar_bps is None and c.max_orders_per_s is None
    assert c.max_open_orders is None and c.signal_rules == ()
    assert c.price_collar_stale_policy == c.max_notional_stale_policy == "block"
    assert c.max_order_qty_action == c.max_notional_action == c.price_collar_action == "block"
    assert c.rate_window_s == 1.0 and c.stale_book_s == 5.0
    r = cfg(signal_rules=[{"name": "r", "kind": "crowded_long",
                           "params": {"max_gravity": "-0.3"}}]).signal_rules[0]
    assert (r.action, r.stale_policy, r.max_age_s, r.symbols, r.enabled) == (
        "block", "warn", 60.0, ("*",), True)
    with pytest.raises(ValidationError):
        c.kill_switch = True  # frozen: operators use Gate.kill_switch


def _error(**kw: Any) -> str:
    with pytest.raises(ValidationError) as exc:
        GateConfig.model_validate(kw)
    return format_validation_error("risk.toml", exc.value)


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"max_order_qty": {"BTC/USD": "-5"}}, "max_order_qty.BTC/USD: must be > 0"),
        ({"max_notional_usd": "0"}, "max_notional_usd: must be > 0"),
        ({"max_notional_usd": "lots"}, "must be a decimal number"),
        ({"max_notional_usd": "NaN"}, "must be a finite number"),
        ({"max_notional_usd": True}, "not a boolean"),
        ({"price_collar_bps": -1}, "price_collar_bps: must be > 0"),
        ({"max_orders_per_s": 0}, "max_orders_per_s"),
        ({"max_open_orders": -3}, "max_open_orders"),
        ({"stale_book_s": 0}, "stale_book_s"),
        ({"price_collar_action": "reduce"}, "price_collar_action"),
        ({"max_notional_stale_policy": "reduce"}, "max_notional_stale_policy"),
        ({"max_notional": "1"}, "max_notional: unknown field"),
        ({"signal_rules": [{**CARRY_RULE, "kind": "crowded_sideways"}]},
         "signal_rules[0].kind: Input should be 'crowded_long'"),
        ({"signal_rules": [{**CARRY_RULE, "action": "reduce", "reduce_to_fraction": None}]},
         "reduce_to_fraction: required when action = \"reduce\""),
        ({"signal_rules": [{**CARRY_RULE, "reduce_to_fraction": "1.5"}]},
         "reduce_to_fraction: must be a fraction strictly between 0 and 1"),
        ({"signal_rules": [{**CARRY_RULE, "params": {"min_gravity": "0.2"}}]},
         "params.min_gravity: not a parameter of kind 'crowded_long'"),
        ({"signal_rules": [{**CARRY_RULE, "params": {"max_gravity": "-2"}}]},
         "params.max_gravity: must be within [-1, 1]"),
        ({"signal_rules": [{**CARRY_RULE, "params": {}}]}, "params: kind 'crowded_long' needs"),
        ({"signal_rules": [{**CARRY_RULE, "max_age_s": 0}]}, "max_age_s"),
        ({"signal_rules": [{**CARRY_RULE, "symbols": []}]}, "symbols:"),
        ({"signal_rules": [{**CARRY_RULE, "name": "max_notional"}]}, "built-in rule name"),
        ({"signal_rules": [{**CARRY_RULE, "name": "1 bad"}]}, "name: '1 bad' must start"),
        ({"signal_rules": [CARRY_RULE, CARRY_RULE]}, "'carry_gravity_long' is used twice"),
        ({"signal_rules": [{**CARRY_RULE, "stale_policy": "reduce"}]}, "stale_policy"),
        ({"signal_rules": [{**CARRY_RULE, "paramz": {}}]}, "paramz: unknown field"),
        ({"signal_rules": [{**CARRY_RULE, "max_input_age_s": {"fundng": 4200}}]},
         "signal_rules[0].max_input_age_s.fundng: unknown field"),
        ({"signal_rules": [{**CARRY_RULE, "max_input_age_s": {"map": 60}}]},
         "signal_rules[0].max_input_age_s.map: unknown field"),  # the key is liquidation_map
        ({"signal_rules": [{**CARRY_RULE, "max_input_age_s": {"book": 0}}]},
         "signal_rules[0].max_input_age_s.book: Input should be greater than 0"),
        ({"signal_rules": [{**CARRY_RULE, "max_input_age_s": {"funding": -4200}}]},
         "signal_rules[0].max_input_age_s.funding: Input should be greater than 0"),
        ({"signal_rules": [{**CARRY_RULE, "max_input_age_s": {"funding": "soon"}}]},
         "signal_rules[0].max_input_age_s.funding: Input should be a valid number"),
        ({"signal_rules": [{**CARRY_RULE, "max_input_age_s": {"positioning": 600}}]},
         "signal_rules[0].max_input_age_s.positioning: rule 'carry_gravity_long' does not read "
         "positioning; its conditions read mark, funding, liquidation_map, book"),
        ({"signal_rules": [{**CARRY_RULE, "params": {"min_funding_excess_bps": "1000"},
                            "max_input_age_s": {"funding": 4200, "book": 10}}]},
         "max_input_age_s.book: rule 'carry_gravity_long' does not read book; its conditions "
         "read mark, funding"),
        ({"signal_rules": [{**CARRY_RULE, "max_input_age_s": 4200}]},
         "signal_rules[0].max_input_age_s: Input should be a valid dictionary"),
    ],
)
def test_config_errors_name_the_field(kw: dict[str, Any], expected: str) -> None:
    assert expected in _error(**kw)


INPUT_AGES_TOML = """
[[signal_rules]]
name = "carry_gravity_long"
kind = "crowded_long"
max_age_s = 60                                   # every input not named below
max_input_age_s = { funding = 4200, book = 10 }  # per-input overrides, seconds
params = { min_funding_excess_bps = "1000", max_gravity = "-0.25" }
[[signal_rules]]
name = "against_bias"
kind = "min_confidence_against_bias"
max_input_age_s = { funding = 4200, positioning = 600, open_interest = 120, closes = 86400 }
params = { min_confidence = "0.6" }
"""


def test_config_per_input_age_limits() -> None:
    carry, bias = GateConfig.model_validate(tomllib.loads(INPUT_AGES_TOML)).signal_rules
    assert carry.max_age_s == 60.0
    assert carry.max_input_age_s.given() == {"funding": 4200.0, "book": 10.0}
    assert carry.inputs() == ("mark", "funding", "liquidation_map", "book")
    # min_confidence reads every input (the votes), so any key is one it reads
    assert bias.inputs() == ("mark", "funding", "liquidation_map", "book", "positioning",
                             "open_interest", "closes")
    assert list(bias.max_input_age_s.given()) == ["funding", "positioning", "open_interest",
                                                  "closes"]
    # none given: no overrides, the one max_age_s as before
    assert cfg(signal_rules=[CARRY_RULE]).signal_rules[0].max_input_age_s.given() == {}


def test_config_error_for_an_input_age_names_the_file_and_the_risk_field(
        tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    rules = INPUT_AGES_TOML.replace("[[signal_rules]]", "[[risk.signal_rules]]")
    path.write_text("[risk]\n" + rules.replace("book = 10", "bok = 10"))
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert (f"{path}: risk.signal_rules[0].max_input_age_s.bok: unknown field (check the "
            "spelling)") in str(exc.value)


def test_config_floats_become_exact_decimals() -> None:
    c = cfg(max_notional_usd=0.1, max_order_qty={"*": 3})
    assert c.max_notional_usd == D("0.1") and c.max_order_qty["*"] == D("3")


# ---------------------------------------------------------------------------------------------
# Kill switch and the allow path
# ---------------------------------------------------------------------------------------------
def test_kill_switch_blocks_everything_until_cleared() -> None:
    gate, _, _ = make_gate(cfg(kill_switch=True))
    assert gate.kill_switch
    d = gate.check(order())
    assert d.action == "block" and d.rule == "kill_switch" and not d.passes
    assert d.text == "blocked by kill_switch: trading halted by operator"
    assert d.fired and d.fired[0].rule == "kill_switch"
    gate.kill_switch = False
    assert gate.check(order()).action == "allow"
    gate.kill_switch = True
    assert gate.check(order(symbol=ARB, side="2", price="0.111")).rule == "kill_switch"


def test_allow_is_precomputed_and_lists_the_checks() -> None:
    gate, _, _ = make_gate(cfg(max_order_qty={"*": "10"}, max_notional_usd="1000000",
                               signal_rules=[CARRY_RULE]))
    a, b = gate.check(order()), gate.check(order(qty="2"))
    assert a is b  # the allow path allocates no decision
    assert a.action == "allow" and a.rule is None and a.text == "" and a.passes
    assert a.reasons == ("passed 3 checks: kill_switch, max_order_qty, max_notional",)
    assert a.fired == () and not a.stale_inputs and a.reduced_qty is None


# ---------------------------------------------------------------------------------------------
# max_order_qty
# ---------------------------------------------------------------------------------------------
def test_max_order_qty_per_symbol_with_wildcard() -> None:
    gate, _, _ = make_gate(cfg(max_order_qty={"BTC/USD": "5", "*": "1000000"}))
    assert gate.check(order(qty="5")).action == "allow"
    d = gate.check(order(qty="5.01"))
    assert d.action == "block" and d.rule == "max_order_qty"
    assert d.text == "blocked by max_order_qty: qty 5.01 > limit 5 for BTC/USD"
    assert d.figures == (("order_qty", "5.01"),)
    assert d.figure_details == (("order_qty", "5.01", "", "5"),)
    assert gate.check(order(symbol="ETH/USD", qty="999999")).action == "allow"
    assert gate.check(order(symbol="ETH/USD", qty="1000001")).rule == "max_order_qty"


def test_max_order_qty_without_wildcard_leaves_other_symbols_alone() -> None:
    gate, _, _ = make_gate(cfg(max_order_qty={"BTC/USD": "5"}))
    assert gate.check(order(symbol="ETH/USD", qty="1e9", price=None)).action == "allow"


def test_max_order_qty_warn_and_reduce() -> None:
    gate, _, _ = make_gate(cfg(max_order_qty={"*": "5"}, max_order_qty_action="warn"))
    d = gate.check(order(qty="8"))
    assert d.action == "warn" and d.passes and d.text.startswith("warned by max_order_qty:")
    assert d.reduced_qty is None and len(d.fired) == 1
    gate, _, _ = make_gate(cfg(max_order_qty={"*": "5"}, max_order_qty_action="reduce"))
    d = gate.check(order(qty="8"))
    assert d.action == "reduce" and d.reduced_qty == D("5")
    assert d.text == "reduced by max_order_qty: qty 8 > limit 5 for BTC/USD; sending 5 of 8"


def test_allow_action_is_a_dry_run_recorded_in_the_decision() -> None:
    gate, _, _ = make_gate(cfg(max_order_qty={"*": "5"}, max_order_qty_action="allow"))
    d = gate.check(order(qty="8"))
    assert d.action == "allow" and d.rule is None and d.text == ""
    assert d.reasons == ("matched by max_order_qty: qty 8 > limit 5 for BTC/USD",)
    assert d.fired[0].action == "allow"


# ---------------------------------------------------------------------------------------------
# max_notional
# ---------------------------------------------------------------------------------------------
def test_max_notional_limit_order() -> None:
    gate, _, _ = make_gate(cfg(max_notional_usd="1000000"))
    assert gate.check(order(qty="20", price="50000")).action == "allow"  # exactly at the limit
    d = gate.check(order(qty="40", price="50000"))
    assert d.action == "block" and d.rule == "max_notional"
    assert d.text == ("blocked by max_notional: 2,000,000 USD > limit 1,000,000 USD "
                      "(40 x limit 50000)")
    assert ("notional_usd", "2000000") in d.figures


def test_max_notional_values_a_limit_under_mid_at_mid() -> None:
    """A sell limit far under mid fills at the bids like a market sell: valued at its limit
    (100 x 1 = 100 USD) it would pass any notional limit; it is valued at mid."""
    gate, market, _ = make_gate(cfg(max_notional_usd="1000000"))
    d = gate.check(order(side="2", qty="100", price="1"))
    assert d.action == "block" and d.rule == "max_notional"
    assert d.text == ("blocked by max_notional: 4,500,000 USD > limit 1,000,000 USD "
                      "(100 x mid 45000.0)")
    # No book: a sell's limit is only a floor of its value, so the stale policy decides; a
    # buy's limit bounds its value, so it is valued at its limit.
    market.mids["BTC/USD"] = (None, None)
    d = gate.check(order(side="2", qty="100", price="1"))
    assert d.action == "block" and d.rule == "max_notional" and d.stale_inputs
    assert d.text == ("blocked by max_notional: no book for BTC/USD; cannot value the sell "
                      "limit (it fills at the bids, at its limit or higher); stale_policy block")
    assert gate.check(order(side="1", qty="10", price="45000")).action == "allow"
    assert gate.check(order(side="1", qty="30", price="45000")).rule == "max_notional"
    market.mids["BTC/USD"] = (D("45000.0"), 9.0)  # stale: the same as no book
    assert gate.check(order(side="2", qty="100", price="1")).rule == "max_notional"
    gate, market, _ = make_gate(cfg(max_notional_usd="1000000",
                                    max_notional_stale_policy="warn"))
    market.mids["BTC/USD"] = (None, None)
    d = gate.check(order(side="2", qty="100", price="1"))
    assert d.action == "warn" and d.stale_inputs  # let through with a warning


def test_max_notional_market_order_uses_mid_and_its_stale_policy() -> None:
    gate, market, _ = make_gate(cfg(max_notional_usd="1000000"))
    d = gate.check(order(qty="30", price=None))  # 30 x 45000 = 1.35 M
    assert d.rule == "max_notional" and "(30 x mid 45000.0)" in d.text
    assert gate.check(order(qty="20", price=None)).action == "allow"
    market.mids["BTC/USD"] = (D("45000.0"), 9.0)  # older than stale_book_s = 5
    d = gate.check(order(qty="1", price=None))
    assert d.action == "block" and d.stale_inputs and d.rule == "max_notional"
    assert d.text == ("blocked by max_notional: book for BTC/USD is 9.0 s old (max 5 s); "
                      "cannot value the market order; stale_policy block")
    market.mids["BTC/USD"] = (None, None)
    assert "no book for BTC/USD" in gate.check(order(qty="1", price=None)).text
    # a buy limit never needs the book for notional (its limit bounds its value)
    assert gate.check(order(qty="1", price="45000")).action == "allow"
    gate, market, _ = make_gate(cfg(max_notional_usd="1000000", max_notional_stale_policy="warn"))
    market.mids["BTC/USD"] = (None, None)
    d = gate.check(order(qty="100", price=None))
    assert d.action == "warn" and d.stale_inputs and d.passes
    gate, market, _ = make_gate(cfg(max_notional_usd="1000000", max_notional_stale_policy="allow"))
    market.mids["BTC/USD"] = (None, None)
    d = gate.check(order(qty="100", price=None))
    assert d.action == "allow" and d.stale_inputs and d.reasons[0].startswith("skipped by")


def _btc_book() -> L2Book:
    """A BTC/USD book around 45,000: asks 45010 x 25, 45100 x 10, 46000 x 5; bids 44990 x 25,
    44900 x 5 (mid 45000)."""
    book = L2Book("BTC/USD")
    book.apply_snapshot([(D("44990"), D("25")), (D("44900"), D("5"))],
                        [(D("45010"), D("25")), (D("45100"), D("10")), (D("46000"), D("5"))])
    return book


def test_a_market_buy_is_valued_at_the_asks_it_would_take_not_at_mid() -> None:
    """22 BTC at mid 45000 is 990,000 USD, inside a 990,000 limit; but a market buy pays the
    asks: 22 at the best ask 45010 is 990,220 USD, over it, and the Text says which figure it
    used. A bigger buy walks the asks: 30 BTC take 25 at 45010 and 5 at 45100 (average
    45025); 45 BTC take the whole visible book (40) and value the other 5 at its last level,
    46000. A market sell is valued at the best bid (the most it can get)."""
    book = _btc_book()
    gate, market, _ = make_gate(cfg(max_notional_usd="990000"), book=lambda s: book)
    assert gate.check(order(qty="21.99", price=None)).action == "allow"  # 989,770 USD at 45010
    d = gate.check(order(qty="22", price=None))
    assert d.action == "block"
    assert d.text == ("blocked by max_notional: 990,220 USD > limit 990,000 USD "
                      "(22 x best ask 45010)")
    assert ("ask_price", "45010", "price", "") in d.figure_details

    gate, _, _ = make_gate(cfg(max_notional_usd="1350000"), market, book=lambda s: book)
    d = gate.check(order(qty="30", price=None))  # 30 x 45000 = 1,350,000 at mid: at the limit
    assert d.text == ("blocked by max_notional: 1,350,750 USD > limit 1,350,000 USD "
                      "(30 x ask 45025, the average over 2 ask levels for 30)")
    gate, _, _ = make_gate(cfg(max_notional_usd="2025000"), market, book=lambda s: book)
    d = gate.check(order(qty="45", price=None))  # 45 x 45000 = 2,025,000 at mid
    assert d.text == ("blocked by max_notional: 2,036,250 USD > limit 2,025,000 USD "
                      "(45 x ask 45250, the average over 3 ask levels for 45 "
                      "(5 beyond the visible book valued at its last level))")
    gate, _, _ = make_gate(cfg(max_notional_usd="989000"), market, book=lambda s: book)
    d = gate.check(order(side="2", qty="22", price=None))  # 22 x 44990 = 989,780
    assert d.text == ("blocked by max_notional: 989,780 USD > limit 989,000 USD "
                      "(22 x best bid 44990)")


def test_a_market_buy_reduced_for_notional_is_reduced_at_the_asks_it_takes() -> None:
    """Reduced to the limit at the walked price, so what it sends pays no more than the
    limit even when it takes more than the best level."""
    book = _btc_book()
    gate, _, _ = make_gate(cfg(max_notional_usd="1350000", max_notional_action="reduce"),
                           book=lambda s: book)
    d = gate.check(order(qty="30", price=None))
    assert d.action == "reduce" and d.reduced_qty is not None
    assert d.reduced_qty == (D("1350000") / D("45025")).quantize(D("1E-8"), ROUND_DOWN)


def test_a_market_order_with_an_empty_book_side_keeps_the_stale_policy_or_mid() -> None:
    """The mid is fresh but the book the gate reads has no ask (it changed between the two
    reads): the order is valued at mid as before, never at nothing."""
    gate, _, _ = make_gate(cfg(max_notional_usd="1000000"), book=lambda s: L2Book("BTC/USD"))
    d = gate.check(order(qty="30", price=None))
    assert "(30 x mid 45000.0)" in d.text


def test_max_notional_reduce_to_the_limit_with_and_without_lot_size() -> None:
    c = cfg(max_notional_usd="1000000", max_notional_action="reduce")
    gate, _, _ = make_gate(c)
    d = gate.check(order(qty="40", price="45000"))
    assert d.action == "reduce" and d.reduced_qty == D("22.22222222")  # floored to 8 dp
    gate, _, _ = make_gate(c, lot_size=lambda s: D("0.5"))
    assert gate.check(order(qty="40", price="45000")).reduced_qty == D("22.0")
    gate, _, _ = make_gate(c, lot_size=lambda s: D("100"))
    d = gate.check(order(qty="40", price="45000"))
    assert d.action == "block" and "rounds to 0" in d.text


# ---------------------------------------------------------------------------------------------
# price_collar
# ---------------------------------------------------------------------------------------------
def test_price_collar_blocks_with_trader_text() -> None:
    gate, _, _ = make_gate(cfg(price_collar_bps=500))
    d = gate.check(order(price="50000.0"))
    assert d.action == "block" and d.rule == "price_collar"
    assert d.text == ("blocked by price_collar: limit 50000.0 is 11.1% from mid 45000.0 "
                      "(collar 5.0%)")
    assert ("deviation_bps", "1111.1") in d.figures
    assert gate.check(order(price="47250")).action == "allow"  # exactly 5 %
    assert gate.check(order(price="42750")).action == "allow"
    assert gate.check(order(price="42749")).rule == "price_collar"
    assert gate.check(order(price=None)).action == "allow"  # market orders are not collared


def test_price_collar_warn() -> None:
    gate, _, _ = make_gate(cfg(price_collar_bps=25, price_collar_action="warn"))
    d = gate.check(order(price="45200"))
    assert d.action == "warn" and d.passes and "(collar 0.25%)" in d.text


@pytest.mark.parametrize(("mid", "why"), [
    ((D("45000"), 12.0), "book for BTC/USD is 12.0 s old (max 5 s)"),
    ((None, None), "no book for BTC/USD"),
    ((D("0"), 0.1), "no book for BTC/USD"),
])
def test_price_collar_stale_book_policies(mid: tuple[Decimal | None, float | None],
                                          why: str) -> None:
    gate, market, _ = make_gate(cfg(price_collar_bps=500))
    market.mids["BTC/USD"] = mid
    d = gate.check(order())
    assert d.action == "block" and d.stale_inputs
    assert d.text == (f"blocked by price_collar: {why}; cannot check the limit price against "
                      "mid; stale_policy block")
    for policy in ("warn", "allow"):
        gate, market, _ = make_gate(cfg(price_collar_bps=500, price_collar_stale_policy=policy))
        market.mids["BTC/USD"] = mid
        d = gate.check(order())
        assert d.action == policy and d.stale_inputs and d.passes


# ---------------------------------------------------------------------------------------------
# max_orders_per_s and max_open_orders
# ---------------------------------------------------------------------------------------------
def test_rate_sliding_window_per_symbol() -> None:
    gate, _, clk = make_gate(cfg(max_orders_per_s=3))
    o = order()
    for _ in range(10):
        assert gate.check(o).action == "allow"  # an order not routed is not counted
        gate.on_order_not_routed(o)
    for _ in range(3):
        assert gate.check(o).action == "allow"
        gate.on_order_routed(o)
        clk.advance(0.1)
    d = gate.check(o)
    assert d.action == "block" and d.rule == "max_orders_per_s"
    assert d.text == ("blocked by max_orders_per_s: 3 orders on BTC/USD in the last 1 s "
                      "(limit 3 per 1 s)")
    assert gate.check(order(symbol="ETH/USD")).action == "allow"  # per symbol
    clk.advance(0.71)  # the first order (t = 0) is now 1.01 s old
    assert gate.check(o).action == "allow"
    gate.on_order_routed(o)
    assert gate.check(o).rule == "max_orders_per_s"


def test_a_replace_is_checked_without_the_limits_that_count_orders() -> None:
    """`amend=True` (a replace's new version): the rate and open-order limits, which count
    orders, do not apply, since a replace adds none; the quantity limit still does."""
    gate, _, _ = make_gate(cfg(max_orders_per_s=1, max_open_orders=1,
                               max_order_qty={"*": "2"}))
    o = order()
    gate.on_order_routed(o)
    assert gate.check(o).rule in ("max_orders_per_s", "max_open_orders")
    assert gate.check(o, amend=True).action == "allow"
    d = gate.check(order(qty="3"), amend=True)
    assert d.action == "block" and d.rule == "max_order_qty"


def test_rate_warn() -> None:
    gate, _, _ = make_gate(cfg(max_orders_per_s=1, max_orders_per_s_action="warn",
                               rate_window_s=2.0))
    gate.on_order_routed(order())
    d = gate.check(order())
    assert d.action == "warn" and "in the last 2 s" in d.text


# ---------------------------------------------------------------------------------------------
# max_orders_per_s across OMS sessions: a passing check holds a slot until its order is routed
# (counted) or given back (not routed), so concurrent checks cannot overshoot the limit
# ---------------------------------------------------------------------------------------------
def test_two_checks_before_either_order_is_routed_cannot_both_take_the_last_slot() -> None:
    """Two OMS sessions' threads check an order each on one symbol before either order is
    routed, one slot left: the second check blocks (it used to pass, and both were sent)."""
    gate, _, _ = make_gate(cfg(max_orders_per_s=3))
    for _ in range(2):  # L - 1 orders routed
        o = order(session="A")
        assert gate.check(o).action == "allow"
        gate.on_order_routed(o)
    a, b = order(session="A"), order(session="B")
    assert gate.check(a).action == "allow"
    d = gate.check(b)
    assert d.action == "block" and d.rule == "max_orders_per_s"
    assert d.text == ("blocked by max_orders_per_s: 3 orders on BTC/USD in the last 1 s "
                      "(limit 3 per 1 s)")
    gate.on_order_routed(a)
    assert gate.check(b).rule == "max_orders_per_s"  # a is counted now, once: still full
    assert gate.check(order(symbol="ETH/USD", session="B")).action == "allow"  # per symbol


def test_an_order_that_passed_but_was_not_routed_gives_its_slot_back() -> None:
    gate, _, clk = make_gate(cfg(max_orders_per_s=1))
    a, b = order(session="A"), order(session="B")
    assert gate.check(a).action == "allow"
    assert gate.check(b).rule == "max_orders_per_s"  # a holds the only slot
    gate.on_order_not_routed(a)  # e.g. the venue session dropped before a was sent
    assert gate.check(b).action == "allow"
    gate.on_order_routed(b)
    assert gate.check(a).rule == "max_orders_per_s"
    gate.on_order_not_routed(a)  # a blocked check holds nothing: giving back frees nothing
    assert gate.check(a).rule == "max_orders_per_s"
    clk.advance(1.01)
    assert gate.check(a).action == "allow"


def test_a_replace_never_takes_a_slot() -> None:
    gate, _, _ = make_gate(cfg(max_orders_per_s=1))
    o = order()
    for _ in range(5):
        assert gate.check(o, amend=True).action == "allow"
    assert gate.check(o).action == "allow"  # the one slot is still free
    assert gate.check(o).rule == "max_orders_per_s"
    assert gate.check(o, amend=True).action == "allow"  # the rate never applies to a replace


def test_a_routed_order_counts_exactly_once() -> None:
    """The window is full after exactly L routed orders (not L/2: the check's slot and the
    routing are one count), and each one leaves it after rate_window_s."""
    gate, _, clk = make_gate(cfg(max_orders_per_s=4))
    o = order()
    for _ in range(4):
        assert gate.check(o).action == "allow"
        gate.on_order_routed(o)
        clk.advance(0.1)
    assert gate.check(o).rule == "max_orders_per_s"
    clk.advance(0.61)  # the first order (t = 0) is 1.01 s old
    assert gate.check(o).action == "allow"
    gate.on_order_routed(o)
    assert gate.check(o).rule == "max_orders_per_s"
    # Counted without a check first (a caller that does not check): counted once too.
    gate, _, _ = make_gate(cfg(max_orders_per_s=2))
    gate.on_order_routed(o)
    assert gate.check(o).action == "allow"
    gate.on_order_routed(o)
    assert gate.check(o).rule == "max_orders_per_s"


def test_an_order_passing_with_a_rate_warn_is_counted_when_routed() -> None:
    gate, _, clk = make_gate(cfg(max_orders_per_s=2, max_orders_per_s_action="warn"))
    o = order()
    for _ in range(2):  # t = 0, 0.4
        gate.check(o)
        gate.on_order_routed(o)
        clk.advance(0.4)
    d = gate.check(o)  # t = 0.8: both in the window
    assert d.action == "warn" and d.passes
    gate.on_order_routed(o)
    clk.advance(0.21)  # t = 1.01: the first has left; the second and the warned one are in
    assert gate.check(o).action == "warn"
    # A warned order not routed yet holds its slot like any other passing order.
    gate, _, clk = make_gate(cfg(max_orders_per_s=1, max_orders_per_s_action="warn"))
    gate.on_order_routed(o)
    assert gate.check(order(session="B")).action == "warn"
    clk.advance(1.01)  # the routed order has left the window; B's is still on its way
    assert gate.check(order(session="C")).action == "warn"


def test_a_block_after_the_rate_step_gives_the_slot_back(arb: SignalSnapshot) -> None:
    """The rate is checked (and its slot taken) before max_open_orders and the signal rules:
    when one of those, or an internal error, blocks the order, the check gives the slot back."""
    gate, market, _ = make_gate(cfg(max_orders_per_s=1, max_open_orders=1,
                                    signal_rules=[CARRY_RULE]))
    market.snaps[ARB] = arb
    buy, sell = order(ARB, "1", "1000", "0.111"), order(ARB, "2", "1000", "0.111", session="B")
    assert gate.check(buy).rule == "carry_gravity_long"
    gate.count_open("A", 1)
    assert gate.check(order(ARB, "2", "1000", "0.111", session="A")).rule == "max_open_orders"
    del market.snaps[ARB]

    def broken(symbol: str) -> SignalSnapshot | None:
        raise RuntimeError("snapshot store gone")

    gate2 = Gate(cfg(max_orders_per_s=1, signal_rules=[CARRY_RULE]), market.mid, broken,
                 lambda: 1000.0, wall_clock=lambda: NOW)
    assert gate2.check(buy).rule == "gate_error"
    assert gate2.check(sell).action == "allow"  # sells read no signal rule here
    market.snaps[ARB] = arb
    assert gate.check(sell).action == "allow"  # the one slot was free


def test_concurrent_checks_pass_exactly_the_limit() -> None:
    """8 threads (OMS sessions) check and route orders on one symbol as fast as they can, the
    clock standing still: exactly L orders pass in all. To make the threads interleave
    between a check and its routing, the switch interval is made tiny and the clock lets
    another thread run each time it is read."""
    import sys
    import threading
    import time

    def clock() -> float:
        time.sleep(0)  # gives up the GIL
        return 1000.0

    limit, threads, tries, rounds = 25, 8, 60, 20
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(rounds):
            gate = Gate(cfg(max_orders_per_s=limit), Market().mid, lambda s: None, clock)
            passed = [0] * threads
            start = threading.Barrier(threads)

            def run(i: int, gate: Gate = gate, start: threading.Barrier = start,
                    passed: list[int] = passed) -> None:
                o = order(session=f"OMS{i}")
                start.wait()
                for _ in range(tries):
                    if gate.check(o).passes:
                        passed[i] += 1
                        gate.on_order_routed(o)

            ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            assert sum(passed) == limit, passed
    finally:
        sys.setswitchinterval(old)


def test_open_orders_per_session() -> None:
    gate, _, _ = make_gate(cfg(max_open_orders=2))
    a, b = order(session="A"), order(session="B")
    gate.on_order_routed(a)
    gate.on_order_routed(a)
    d = gate.check(a)
    assert d.action == "block" and d.text == (
        "blocked by max_open_orders: 2 open orders on session A (limit 2)")
    assert gate.check(b).action == "allow"
    gate.on_order_closed("A", "BTC/USD")
    assert gate.open_orders("A") == 1 and gate.check(a).action == "allow"
    gate.on_order_closed("A", "BTC/USD")
    assert gate.open_orders("A") == 0
    gate, _, _ = make_gate(cfg(max_open_orders=1))
    for _ in range(3):  # the venue's fill is handled before the router counts the order
        gate.on_order_closed("A", "BTC/USD")
        gate.on_order_routed(a)
    assert gate.open_orders("A") == 0 and gate.check(a).action == "allow"
    gate.count_open("A", 1)  # open before a restart, replayed from the journal
    assert gate.check(a).action == "block"
    gate, _, _ = make_gate(cfg(max_open_orders=1, max_open_orders_action="warn"))
    gate.on_order_routed(a)
    assert gate.check(a).action == "warn"


# ---------------------------------------------------------------------------------------------
# Operator controls
# ---------------------------------------------------------------------------------------------
def test_rule_enable_disable_and_listing() -> None:
    gate, _, clk = make_gate(cfg(
        max_order_qty={"*": "5"}, max_notional_usd="1000000", price_collar_bps=500,
        max_orders_per_s=1, max_open_orders=10, signal_rules=[CARRY_RULE]))
    big = order(qty="4", price="50000")
    assert gate.check(big).rule == "price_collar"
    gate.set_rule_enabled("price_collar", False)
    assert gate.check(big).action == "allow"
    gate.on_order_routed(big)  # counted while the rate rule is on
    assert gate.check(big).rule == "max_orders_per_s"
    gate.set_rule_enabled("max_orders_per_s", False)
    gate.on_order_routed(big)
    assert gate.check(big).action == "allow"
    gate.set_rule_enabled("max_orders_per_s", True)  # counters kept counting meanwhile
    assert gate.check(big).rule == "max_orders_per_s"
    clk.advance(2.0)
    gate.set_rule_enabled("price_collar", True)
    assert gate.check(big).rule == "price_collar"
    with pytest.raises(KeyError, match="unknown or unconfigured gate rule 'nope'"):
        gate.set_rule_enabled("nope", False)
    with pytest.raises(ValueError, match="kill_switch"):
        gate.set_rule_enabled("kill_switch", False)
    gate.set_rule_enabled("carry_gravity_long", False)
    infos = {r.name: r for r in gate.rules()}
    assert list(infos) == ["kill_switch", "max_order_qty", "max_notional", "price_collar",
                           "max_orders_per_s", "max_open_orders", "carry_gravity_long"]
    carry = infos["carry_gravity_long"]
    assert (carry.kind, carry.action, carry.enabled, carry.stale_policy) == (
        "crowded_long", "block", False, "block")
    assert ("max_gravity", "-0.25") in carry.params and carry.symbols == (ARB,)
    assert infos["price_collar"].params == (("collar_bps", "500"), ("stale_book_s", "5"))
    assert infos["price_collar"].stale_policy == "block" and infos["price_collar"].enabled
    assert gate.describe()["rules"][0]["name"] == "kill_switch"


def test_rules_listing_shows_per_input_age_limits(capsys: pytest.CaptureFixture[str]) -> None:
    from gateway._proto.fixgw.v1 import admin_pb2
    from gateway.cli.ctl import _print_rules

    gate, _, _ = make_gate(cfg(signal_rules=[
        {**AGED_RULE, "action": "warn"}, {**CARRY_RULE, "name": "one_limit"}]))
    infos = {r.name: r for r in gate.rules()}
    assert infos["carry_gravity_long"].params[-4:] == (
        ("max_age_s", "60"), ("max_input_age_s.funding", "4200"),
        ("max_input_age_s.book", "10"), ("reduce_to_fraction", "0.5"))
    assert [k for k, _ in infos["one_limit"].params if k.startswith("max_input")] == []
    listed = next(r for r in gate.describe()["rules"] if r["name"] == "carry_gravity_long")
    assert listed["params"]["max_input_age_s.book"] == "10"
    # What fixgwctl gate rules prints (the admin service passes params through as a map).
    _print_rules(admin_pb2.GateRulesResponse(kill_switch=False, rules=[
        admin_pb2.GateRule(name=r.name, kind=r.kind, action=r.action, enabled=r.enabled,
                           stale_policy=r.stale_policy or "", params=dict(r.params),
                           symbols=list(r.symbols)) for r in gate.rules()]))
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("carry_gravity_long"))
    assert "max_age_s=60 " in row
    assert " max_input_age_s.book=10 max_input_age_s.funding=4200 " in row


def test_unconfigured_rule_cannot_be_toggled() -> None:
    gate, _, _ = make_gate(cfg())
    with pytest.raises(KeyError):
        gate.set_rule_enabled("price_collar", True)
    assert [r.name for r in gate.rules()] == ["kill_switch"]


# ---------------------------------------------------------------------------------------------
# Combining rules
# ---------------------------------------------------------------------------------------------
def test_warn_then_reduce_then_block_accumulate_in_fired() -> None:
    gate, _, _ = make_gate(cfg(max_order_qty={"*": "5"}, max_order_qty_action="reduce",
                               price_collar_bps=100, price_collar_action="warn",
                               max_notional_usd="100000", max_notional_action="reduce"))
    d = gate.check(order(qty="8", price="46000"))  # 2.2 % from mid: warn
    # qty 8 -> 5 (max_order_qty), then 5 x 46000 = 230,000 > 100,000 -> 2.17391304
    assert d.action == "reduce" and d.rule == "max_notional"
    assert d.reduced_qty == D("2.17391304")
    assert [f.rule for f in d.fired] == ["max_order_qty", "price_collar", "max_notional"]
    assert [f.action for f in d.fired] == ["reduce", "warn", "reduce"]
    assert len(d.reasons) == 3 and d.reasons[1].startswith("warned by price_collar")
    gate, _, _ = make_gate(cfg(price_collar_bps=100, price_collar_action="warn",
                               max_notional_usd="100000"))
    d = gate.check(order(qty="8", price="46000"))
    assert d.action == "block" and d.rule == "max_notional" and d.text.startswith("blocked by")
    assert [f.action for f in d.fired] == ["warn", "block"] and len(d.reasons) == 2


def test_gate_fails_closed_on_internal_error() -> None:
    def broken_mid(symbol: str) -> tuple[Decimal | None, float | None]:
        raise RuntimeError("book gone")

    gate = Gate(cfg(price_collar_bps=500), broken_mid, lambda s: None)
    d = gate.check(order())
    assert d.action == "block" and d.rule == "gate_error" and "RuntimeError" in d.text


# ---------------------------------------------------------------------------------------------
# Signal rules: the §9 worked example
# ---------------------------------------------------------------------------------------------
def test_worked_example_snapshot_reproduces_t1_t7_and_downward_gravity(
        arb: SignalSnapshot) -> None:
    assert arb.funding_interval_h == 1.0
    assert arb.funding_ann_bps == pytest.approx(1095.0)
    assert arb.funding_excess_bps == pytest.approx(1095.0)
    assert arb.basis_bps == pytest.approx(-6.7, abs=1e-9)
    assert arb.carry_ann_bps == pytest.approx(1088.3, abs=1e-9)
    assert arb.oi_asymmetry == pytest.approx(9.016, abs=5e-4)
    assert arb.oi_asymmetry_label == "9.0x by top_accounts"
    assert arb.gravity < -0.25
    assert arb.key_levels_long[0].price == pytest.approx(0.09, rel=0.01)
    assert arb.liq_to_depth_long >= 1.0


def test_worked_example_blocks_an_arb_buy_and_passes_a_sell(arb: SignalSnapshot) -> None:
    gate, market, _ = make_gate(cfg(**tomllib.loads(BRIEF_TOML)["risk"]))
    market.snaps[ARB] = arb
    buy = gate.check(order(ARB, "1", "1000", "0.111"))
    assert buy.action == "block" and buy.rule == "carry_gravity_long" and not buy.passes
    t = buy.text
    assert t.startswith("blocked by carry_gravity_long: buying PF_ARBUSD against crowded longs: ")
    assert "funding excess +1095.0 bps/yr (>= 1000)" in t
    assert "carry +1088.3 bps/yr" in t
    assert f"gravity {arb.gravity:+.2f} (<= -0.25) toward long liquidations at 0.0900" in t
    assert f"long liq/bid depth {arb.liq_to_depth_long:.1f}x (>= 1.0)" in t
    assert t.endswith("OI 9.0x long by top_accounts")
    figs = dict(buy.figures)
    assert figs["funding_excess_bps"] == "+1095.0" and figs["carry_ann_bps"] == "+1088.3"
    assert figs["gravity"] == f"{arb.gravity:.3f}" and figs["key_level_long"] == "0.0900"
    assert figs["oi_asymmetry"] == "9.0x by top_accounts"
    assert ("gravity", f"{arb.gravity:.3f}", "ratio", "-0.25") in buy.figure_details
    sell = gate.check(order(ARB, "2", "1000", "0.111"))
    assert sell.action == "allow" and sell.passes and sell.fired == ()
    # the rule is scoped to PF_ARBUSD: the same snapshot on another symbol does not fire
    market.snaps["PF_OPUSD"] = arb
    market.mids["PF_OPUSD"] = (D("0.111"), 0.1)
    assert gate.check(order("PF_OPUSD", "1", "1000", "0.111")).action == "allow"


def test_worked_example_warn_and_reduce(arb: SignalSnapshot) -> None:
    for action in ("warn", "reduce", "allow"):
        gate, market, _ = make_gate(cfg(signal_rules=[{**CARRY_RULE, "action": action}]))
        market.snaps[ARB] = arb
        d = gate.check(order(ARB, "1", "1000", "0.111"))
        assert d.passes and not d.stale_inputs
        assert d.fired[0].rule == "carry_gravity_long" and "carry +1088.3" in d.fired[0].text
        if action == "warn":
            assert d.action == "warn" and d.text.startswith("warned by carry_gravity_long")
        elif action == "reduce":
            assert d.action == "reduce" and d.reduced_qty == D("500.0")
            assert d.text.endswith("; sending 500.0 of 1000")
        else:
            assert d.action == "allow" and d.reasons[0].startswith("matched by")


def test_signal_rule_does_not_fire_below_thresholds(arb: SignalSnapshot) -> None:
    gate, market, _ = make_gate(cfg(signal_rules=[
        {**CARRY_RULE, "params": {**CARRY_RULE["params"], "min_funding_excess_bps": "1100"}}]))
    market.snaps[ARB] = arb
    assert gate.check(order(ARB, "1", "1000", "0.111")).action == "allow"
    gate, market, _ = make_gate(cfg(signal_rules=[{**CARRY_RULE, "params": {
        "min_oi_asymmetry": "10"}}]))
    market.snaps[ARB] = arb
    assert gate.check(order(ARB, "1", "1000", "0.111")).action == "allow"


def test_signal_rule_optional_conditions_in_text(arb: SignalSnapshot) -> None:
    params = {"min_carry_bps": "1000", "min_at_risk_share": "0.05", "min_oi_asymmetry": "5"}
    gate, market, _ = make_gate(cfg(signal_rules=[{**CARRY_RULE, "params": params}]))
    market.snaps[ARB] = arb
    t = gate.check(order(ARB, "1", "1000", "0.111")).text
    assert "carry +1088.3 bps/yr (>= 1000)" in t
    assert "of long OI (>= 0.05)" in t and t.endswith("OI 9.0x long by top_accounts (>= 5)")


# ---------------------------------------------------------------------------------------------
# Signal rules: stale inputs
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["block", "warn", "allow"])
def test_missing_snapshot_follows_stale_policy(policy: str) -> None:
    gate, _, _ = make_gate(cfg(signal_rules=[{**CARRY_RULE, "stale_policy": policy}]))
    d = gate.check(order(ARB, "1", "1000", "0.111"))
    assert d.action == policy and d.stale_inputs
    verb = {"block": "blocked", "warn": "warned", "allow": "skipped"}[policy]
    assert d.reasons[0] == (f"{verb} by carry_gravity_long: no signal snapshot for PF_ARBUSD; "
                            f"stale_policy {policy}")
    assert gate.check(order(ARB, "2", "1000", "0.111")).action == "allow"  # sells not checked


def test_old_snapshot_and_old_or_missing_inputs_are_stale(arb: SignalSnapshot) -> None:
    gate, market, clk = make_gate(cfg(signal_rules=[CARRY_RULE]))
    market.snaps[ARB] = arb
    assert gate.check(order(ARB, "1", "1", "0.111")).rule == "carry_gravity_long"
    assert not gate.check(order(ARB, "1", "1", "0.111")).stale_inputs
    clk.advance(60.0)  # at compute time: mark 1 s, funding 0 s, map 0 s, book 2 s; + 65 s
    d = gate.check(order(ARB, "1", "1", "0.111"))
    assert d.stale_inputs and d.action == "block"
    assert d.text == ("blocked by carry_gravity_long: signal inputs for PF_ARBUSD too old: "
                      "mark 66.0 s, funding 65.0 s, liquidation map 65.0 s, book 67.0 s "
                      "(max 60 s); "
                      "stale_policy block")
    # Formatted once per snapshot and set of stale inputs: the next orders reuse the decision
    # (its ages are those of the first order that found them stale) ...
    clk.advance(1.0)
    assert gate.check(order(ARB, "1", "1", "0.111")).text == d.text  # not "mark 67.0 s"
    # ... until another input goes stale or a new snapshot arrives.
    market.snaps[ARB] = fresh = dataclasses.replace(arb, age_mark_s=0.0, age_funding_s=0.0,
                                                    age_map_s=0.0, age_book_s=0.0,
                                                    as_of=arb.as_of + 66.0)  # lag 0
    assert not gate.check(order(ARB, "1", "1", "0.111")).stale_inputs
    market.snaps[ARB] = dataclasses.replace(fresh, age_funding_s=70.0)
    d2 = gate.check(order(ARB, "1", "1", "0.111"))
    assert d2.text == ("blocked by carry_gravity_long: signal inputs for PF_ARBUSD too old: "
                       "funding 70.0 s (max 60 s); stale_policy block")
    market.snaps[ARB] = dataclasses.replace(fresh, age_funding_s=70.0, age_map_s=70.0)
    assert "funding 70.0 s, liquidation map 70.0 s" in gate.check(
        order(ARB, "1", "1", "0.111")).text
    gate, market, clk = make_gate(cfg(signal_rules=[CARRY_RULE]))
    market.snaps[ARB] = dataclasses.replace(arb, age_book_s=None)
    d = gate.check(order(ARB, "1", "1", "0.111"))
    assert d.stale_inputs and "signal input missing for PF_ARBUSD: book" in d.text
    # positioning is only needed when a rule reads the asymmetry
    market.snaps[ARB] = dataclasses.replace(arb, age_positioning_s=None)
    assert not gate.check(order(ARB, "1", "1", "0.111")).stale_inputs
    market.snaps[ARB] = dataclasses.replace(arb, gravity=math.nan)
    d = gate.check(order(ARB, "1", "1", "0.111"))
    assert d.stale_inputs and "signal figure gravity for PF_ARBUSD is not a number" in d.text


AGED_RULE: dict[str, Any] = {**CARRY_RULE, "max_input_age_s": {"funding": 4200, "book": 10}}


def test_per_input_age_limits_let_hour_old_funding_through_with_a_fresh_book(
        arb: SignalSnapshot) -> None:
    buy = order(ARB, "1", "1000", "0.111")
    hourly = dataclasses.replace(arb, age_funding_s=3000.0, age_book_s=2.0)
    # One max_age_s (60 s): funding settles hourly, so the rule is stale most of the time.
    gate, market, clk = make_gate(cfg(signal_rules=[CARRY_RULE]))
    clk.wall = arb.as_of  # no lag: the ages at decision time are the snapshot's
    market.snaps[ARB] = hourly
    d = gate.check(buy)
    assert d.stale_inputs and "funding 3000.0 s (max 60 s)" in d.text
    # funding held to 4200 s, book to 10 s, the rest (mark, map) to 60 s: evaluated and fires.
    gate, market, clk = make_gate(cfg(signal_rules=[AGED_RULE]))
    clk.wall = arb.as_of
    market.snaps[ARB] = hourly
    d = gate.check(buy)
    assert d.action == "block" and d.rule == "carry_gravity_long" and not d.stale_inputs
    assert "funding excess +1095.0 bps/yr (>= 1000)" in d.text
    figs = d.figure_details
    assert ("input_age_s", "3000.0", "s", "4200") in figs  # the oldest, against its own limit
    assert [f for f in figs if f[0].endswith("_age_s") and f[0] != "input_age_s"] == [
        ("mark_age_s", "1.0", "s", "60"), ("funding_age_s", "3000.0", "s", "4200"),
        ("liquidation_map_age_s", "0.0", "s", "60"), ("book_age_s", "2.0", "s", "10")]
    # The snapshot's own age counts towards every input.
    clk.wall = arb.as_of + 8.5
    d = gate.check(buy)
    assert d.stale_inputs and d.text == (
        "blocked by carry_gravity_long: signal inputs for PF_ARBUSD too old: book 10.5 s "
        "(max 10 s); stale_policy block")


def test_per_input_age_limits_stale_text_names_each_input_with_its_limit(
        arb: SignalSnapshot) -> None:
    gate, market, clk = make_gate(cfg(signal_rules=[AGED_RULE]))
    clk.wall = arb.as_of
    buy = order(ARB, "1", "1000", "0.111")
    market.snaps[ARB] = dataclasses.replace(arb, age_book_s=12.0)
    d = gate.check(buy)
    assert d.action == "block" and d.stale_inputs
    assert d.text == ("blocked by carry_gravity_long: signal inputs for PF_ARBUSD too old: "
                      "book 12.0 s (max 10 s); stale_policy block")
    assert d.figure_details[:3] == (("max_age_s", "60", "s", ""),
                                    ("max_funding_age_s", "4200", "s", ""),
                                    ("max_book_age_s", "10", "s", ""))
    assert gate.check(buy).fired[0] is d.fired[0]  # formatted once per snapshot and stale set
    market.snaps[ARB] = dataclasses.replace(arb, age_funding_s=4300.0, age_book_s=12.0,
                                            age_mark_s=61.0)
    assert gate.check(buy).text == (
        "blocked by carry_gravity_long: signal inputs for PF_ARBUSD too old: "
        "mark 61.0 s (max 60 s), funding 4300.0 s (max 4200 s), book 12.0 s (max 10 s); "
        "stale_policy block")
    # missing and not-a-number inputs are stale as before
    market.snaps[ARB] = dataclasses.replace(arb, age_book_s=None)
    assert "signal input missing for PF_ARBUSD: book" in gate.check(buy).text
    market.snaps[ARB] = dataclasses.replace(arb, age_funding_s=math.nan)
    assert "funding not a number (max 4200 s)" in gate.check(buy).text
    # an input the rule does not read is not checked
    market.snaps[ARB] = dataclasses.replace(arb, age_positioning_s=1e6)
    assert gate.check(buy).rule == "carry_gravity_long" and not gate.check(buy).stale_inputs


def test_min_confidence_checks_every_input_against_its_own_limit(arb: SignalSnapshot) -> None:
    rule = {"name": "against_bias", "kind": "min_confidence_against_bias", "action": "warn",
            "stale_policy": "block", "params": {"min_confidence": "0.3"}}
    buy = order(ARB, "1", "1", "0.111")
    hourly = dataclasses.replace(arb, age_funding_s=3000.0, max_age_s=3000.0)
    # One limit: the snapshot's oldest present input against it, as before.
    gate, market, clk = make_gate(cfg(signal_rules=[rule]))
    clk.wall = arb.as_of
    market.snaps[ARB] = hourly
    assert gate.check(buy).text == ("blocked by against_bias: signal inputs for PF_ARBUSD too "
                                    "old: oldest input 3000.0 s (max 60 s); stale_policy block")
    # Per-input limits: funding to 4200 s, open interest to 120 s, every other input 60 s.
    aged = {**rule, "max_input_age_s": {"funding": 4200, "open_interest": 120}}
    gate, market, clk = make_gate(cfg(signal_rules=[aged]))
    clk.wall = arb.as_of
    market.snaps[ARB] = hourly
    d = gate.check(buy)
    assert d.action == "warn" and d.rule == "against_bias" and not d.stale_inputs
    assert ("input_age_s", "3000.0", "s", "4200") in d.figure_details
    assert ("positioning_age_s", "30.0", "s", "60") in d.figure_details
    # Each input against its own limit, whatever the snapshot's oldest-input field says.
    for changes, named in [
        ({"age_positioning_s": 90.0}, "positioning 90.0 s (max 60 s)"),
        ({"age_book_s": 61.0}, "book 61.0 s (max 60 s)"),
        ({"age_oi_s": 200.0}, "open interest 200.0 s (max 120 s)"),
        ({"age_closes_s": 70.0}, "closes 70.0 s (max 60 s)"),
        ({"age_funding_s": 4300.0}, "funding 4300.0 s (max 4200 s)"),
    ]:
        market.snaps[ARB] = dataclasses.replace(hourly, **changes)
        d = gate.check(buy)
        assert d.action == "block" and d.stale_inputs, changes
        assert d.text == ("blocked by against_bias: signal inputs for PF_ARBUSD too old: "
                          f"{named}; stale_policy block")
    # An absent input is no vote, not a missing one (as with the snapshot's oldest input);
    # open interest and closes are absent from this snapshot already.
    assert arb.age_oi_s is None and arb.age_closes_s is None
    market.snaps[ARB] = dataclasses.replace(hourly, age_positioning_s=None, age_book_s=None)
    assert gate.check(buy).action == "warn"
    market.snaps[ARB] = dataclasses.replace(hourly, age_oi_s=100.0)
    assert gate.check(buy).action == "warn"


def test_config_inputs_match_what_the_gate_reads() -> None:
    """``SignalRuleConfig.inputs()`` (which validates max_input_age_s keys) and the gate's
    compiled age fields name the same inputs for every parameter."""
    from gateway.config.risk import RULE_PARAMS, SIGNAL_INPUTS
    from gateway.risk.gate import _AGE_KEY, _SignalRule

    assert tuple(_AGE_KEY.values()) == SIGNAL_INPUTS
    for kind, params in RULE_PARAMS.items():
        for param in params:
            bound = "0.5" if param != "max_funding_excess_bps" else "-1000"
            plain = {"name": "r", "kind": kind, "params": {param: bound}}
            c = cfg(signal_rules=[plain]).signal_rules[0]
            aged = cfg(signal_rules=[{**plain, "max_input_age_s": {"mark": 5}}]).signal_rules[0]
            for rule in (c, aged):
                compiled = _SignalRule(rule, buy=kind != "crowded_short")
                if compiled.limits is None and param == "min_confidence":
                    assert compiled.age_names == ("age_mark_s", "max_age_s")
                    continue
                read = {_AGE_KEY[n] for n in compiled.age_names}
                assert read == set(rule.inputs()), (kind, param)


def test_snapshot_from_the_future_counts_as_fresh(arb: SignalSnapshot) -> None:
    gate, market, clk = make_gate(cfg(signal_rules=[CARRY_RULE]))
    market.snaps[ARB] = arb
    clk.wall = NOW - 30.0  # this host's clock is behind the signal host's
    d = gate.check(order(ARB, "1", "1", "0.111"))
    assert d.action == "block" and not d.stale_inputs


# ---------------------------------------------------------------------------------------------
# Signal rules: mirror and bias
# ---------------------------------------------------------------------------------------------
def crowded_short_snapshot(arb: SignalSnapshot) -> SignalSnapshot:
    return dataclasses.replace(
        arb, funding_excess_bps=-1250.0, carry_ann_bps=-1240.5, gravity=0.55,
        liq_to_depth_short=2.1, at_risk_share_short=0.3, oi_asymmetry=1 / 6.0,
        oi_asymmetry_label="0.2x by top_accounts", key_levels_short=arb.key_levels_long[:1])


def test_crowded_short_mirror(arb: SignalSnapshot) -> None:
    rule = {"name": "carry_gravity_short", "kind": "crowded_short", "action": "block",
            "params": {"max_funding_excess_bps": "-1000", "min_gravity": "0.25",
                       "min_liq_to_depth": "1.0", "min_short_asymmetry": "5"}}
    gate, market, _ = make_gate(cfg(signal_rules=[rule]))
    market.snaps[ARB] = crowded_short_snapshot(arb)
    d = gate.check(order(ARB, "2", "1000", "0.111"))
    assert d.action == "block" and d.rule == "carry_gravity_short"
    assert d.text.startswith("blocked by carry_gravity_short: selling PF_ARBUSD against crowded "
                             "shorts: funding excess -1250.0 bps/yr (<= -1000), carry -1240.5 "
                             "bps/yr, gravity +0.55 (>= 0.25) toward short liquidations at")
    assert "short liq/ask depth 2.1x (>= 1.0)" in d.text
    assert d.text.endswith("OI 6.0x short by top_accounts (>= 5)")
    assert gate.check(order(ARB, "1", "1000", "0.111")).action == "allow"
    market.snaps[ARB] = arb  # crowded longs: the short rule does not fire on sells
    assert gate.check(order(ARB, "2", "1000", "0.111")).action == "allow"


def test_asymmetry_degenerate_cases(arb: SignalSnapshot) -> None:
    long_rule = {"name": "l", "kind": "crowded_long", "params": {"min_oi_asymmetry": "5"}}
    short_rule = {"name": "s", "kind": "crowded_short", "params": {"min_short_asymmetry": "5"}}
    gate, market, _ = make_gate(cfg(signal_rules=[long_rule, short_rule]))
    buy, sell = order(ARB, "1", "1", "0.111"), order(ARB, "2", "1", "0.111")
    market.snaps[ARB] = dataclasses.replace(arb, oi_asymmetry=None, oi_asymmetry_status="inf")
    assert gate.check(buy).rule == "l" and "OI all long by" in gate.check(buy).text
    assert gate.check(sell).action == "allow"
    market.snaps[ARB] = dataclasses.replace(arb, oi_asymmetry=None,
                                            oi_asymmetry_status="undefined")
    assert gate.check(buy).action == "allow" and gate.check(sell).action == "allow"
    market.snaps[ARB] = dataclasses.replace(arb, oi_asymmetry=0.0)  # no longs at all
    assert gate.check(sell).rule == "s" and "OI all short by" in gate.check(sell).text


def test_min_confidence_against_bias(arb: SignalSnapshot) -> None:
    assert arb.bias == "short"
    rule = {"name": "against_bias", "kind": "min_confidence_against_bias", "action": "warn",
            "params": {"min_confidence": "0.3"}}
    gate, market, _ = make_gate(cfg(signal_rules=[rule]))
    market.snaps[ARB] = arb
    d = gate.check(order(ARB, "1", "1", "0.111"))
    assert d.action == "warn" and d.passes
    assert d.text.startswith("warned by against_bias: buying PF_ARBUSD against a short bias: "
                             f"confidence {arb.confidence:.2f} (>= 0.3)")
    assert "carry short (" in d.text and ("bias", "short") in d.figures
    assert gate.check(order(ARB, "2", "1", "0.111")).action == "allow"
    market.snaps[ARB] = dataclasses.replace(arb, confidence=0.1)
    assert gate.check(order(ARB, "1", "1", "0.111")).action == "allow"


def test_gate_reads_snapshots_and_never_computes_them(
        arb: SignalSnapshot, monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.signals.snapshot as snapshot_module

    def forbidden(*a: object, **k: object) -> SignalSnapshot:
        raise AssertionError("signal computation on the order path")

    monkeypatch.setattr(snapshot_module, "compute_snapshot", forbidden)
    gate, market, _ = make_gate(cfg(signal_rules=[CARRY_RULE]))
    market.snaps[ARB] = arb
    assert gate.check(order(ARB, "1", "1", "0.111")).rule == "carry_gravity_long"


# ---------------------------------------------------------------------------------------------
# Property: one of the four actions, never an exception, on arbitrary snapshots and orders
# ---------------------------------------------------------------------------------------------
_floats = st.floats(allow_nan=True, allow_infinity=True)
_ages = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))
_snapshot_changes = st.fixed_dictionaries({
    "as_of": st.floats(allow_nan=True, allow_infinity=True),
    "funding_excess_bps": _floats, "carry_ann_bps": _floats, "gravity": _floats,
    "liq_to_depth_long": _floats, "liq_to_depth_short": _floats,
    "at_risk_share_long": _floats, "at_risk_share_short": _floats,
    "oi_asymmetry": st.one_of(st.none(), _floats),
    "oi_asymmetry_status": st.sampled_from(["finite", "inf", "undefined"]),
    "confidence": _floats, "agreement": _floats,
    "bias": st.sampled_from(["long", "short", "neutral"]),
    "age_mark_s": st.floats(allow_nan=True, allow_infinity=True),
    "age_funding_s": _ages, "age_book_s": _ages, "age_map_s": _ages,
    "age_positioning_s": _ages, "age_oi_s": _ages, "age_closes_s": _ages,
    "max_age_s": st.floats(allow_nan=True, allow_infinity=True),
})
_decimals = st.decimals(min_value=D("1e-8"), max_value=D("1e12"), allow_nan=False,
                        allow_infinity=False, places=8)
_orders = st.builds(
    GateOrder,
    symbol=st.sampled_from([ARB, "BTC/USD", "ETH/USD"]),
    side=st.sampled_from(["1", "2", "5", "8"]),
    qty=_decimals,
    price=st.one_of(st.none(), _decimals),
    ord_type=st.sampled_from(["1", "2"]),
    oms_session=st.sampled_from(["A", "B"]),
    account=st.just("ACC"),
)
_mids = st.tuples(st.one_of(st.none(), st.decimals(min_value=D("-1"), max_value=D("1e9"),
                                                   allow_nan=False, allow_infinity=False)),
                  st.one_of(st.none(), st.floats(min_value=-1, max_value=100)))

ALL_RULES = [
    {**CARRY_RULE, "action": "reduce", "symbols": ["*"]},
    {"name": "short", "kind": "crowded_short", "action": "warn", "stale_policy": "allow",
     "params": {"max_funding_excess_bps": "-1000", "min_gravity": "0.25",
                "min_at_risk_share": "0.1", "max_carry_bps": "0", "min_short_asymmetry": "2"}},
    {"name": "bias", "kind": "min_confidence_against_bias", "stale_policy": "warn",
     "params": {"min_confidence": "0.5"}},
    {"name": "asym", "kind": "crowded_long", "params": {"min_oi_asymmetry": "2",
                                                        "min_carry_bps": "0"}},
    {"name": "aged", "kind": "crowded_long", "action": "warn", "stale_policy": "warn",
     "max_input_age_s": {"funding": 4200, "book": 10},
     "params": {"min_funding_excess_bps": "0", "max_gravity": "0", "min_liq_to_depth": "0.5"}},
    {"name": "aged_bias", "kind": "min_confidence_against_bias", "stale_policy": "allow",
     "action": "reduce", "reduce_to_fraction": "0.5",
     "max_input_age_s": {"funding": 4200, "closes": 86400}, "params": {"min_confidence": "0.2"}},
]


@pytest.fixture(scope="module")
def full_gate(arb: SignalSnapshot) -> Iterator[tuple[Gate, Market]]:
    market = Market()
    clocks = Clocks()
    c = cfg(max_order_qty={"BTC/USD": "5", "*": "1000000"}, max_order_qty_action="reduce",
            max_notional_usd="1000000", max_notional_action="reduce", price_collar_bps=500,
            max_orders_per_s=50, max_open_orders=200, signal_rules=ALL_RULES)
    yield Gate(c, market.mid, market.snapshot, lambda: clocks.mono,
               wall_clock=lambda: clocks.wall, lot_size=lambda s: D("0.001")), market


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=_snapshot_changes, o=_orders, mid=_mids, have_snapshot=st.booleans(),
       routed=st.booleans())
def test_property_decision_is_one_of_four_actions_and_never_raises(
        full_gate: tuple[Gate, Market], arb: SignalSnapshot, changes: dict[str, Any],
        o: GateOrder, mid: tuple[Decimal | None, float | None], have_snapshot: bool,
        routed: bool) -> None:
    gate, market = full_gate
    market.mids[o.symbol] = mid
    market.snaps.clear()
    if have_snapshot:
        market.snaps[o.symbol] = dataclasses.replace(arb, **changes)
    d = gate.check(o)
    assert isinstance(d, GateDecision)
    assert d.action in ACTIONS
    assert d.rule != "gate_error", d.text  # no internal error on finite orders
    assert all(f.action in ACTIONS for f in d.fired)
    if d.action == "block":
        assert d.text.startswith("blocked by ") and d.rule is not None
    if d.action == "reduce":
        assert d.reduced_qty is not None and 0 < d.reduced_qty < o.qty
    else:
        assert d.reduced_qty is None
    if d.passes and routed:
        gate.on_order_routed(o)
        gate.on_order_closed(o.oms_session, o.symbol)
    elif d.passes:
        gate.on_order_not_routed(o)


def test_max_notional_values_a_buy_limit_at_its_limit_even_under_mid() -> None:
    """A buy limit fills at its limit or lower: under mid it rests as a bid and never pays mid,
    so mid does not raise its value. It used to be valued at mid when mid was higher, so a
    resting bid inside the limit (23 x 43000 = 989,000 USD) was blocked with a fresh book and
    passed with none."""
    gate, market, _ = make_gate(cfg(max_notional_usd="1000000"))
    d = gate.check(order(side="1", qty="23", price="43000"))  # mid 45000: 1,035,000 at mid
    assert d.action == "allow", d.text
    market.mids["BTC/USD"] = (None, None)
    assert gate.check(order(side="1", qty="23", price="43000")).action == "allow"
    # the buy's limit still bounds it: over the limit at its own price blocks, book or not
    market.mids["BTC/USD"] = (D("45000.0"), 0.2)
    d = gate.check(order(side="1", qty="24", price="43000"))
    assert d.rule == "max_notional" and "(24 x limit 43000)" in d.text
    # a sell under mid is still valued at mid (it fills at the bids)
    d = gate.check(order(side="2", qty="23", price="43000"))
    assert d.rule == "max_notional" and "(23 x mid 45000.0)" in d.text


def test_rate_text_counts_the_orders_in_the_window_past_the_limit() -> None:
    """With a warn (or dry-run allow) action orders go on past the limit; the Text and the
    figure name how many are in the window, routed or on their way. They used to repeat the
    limit ("2 orders ... (limit 2 ...)") with four in the window."""
    gate, _, clk = make_gate(cfg(max_orders_per_s=2, max_orders_per_s_action="warn"))
    o = order()
    for _ in range(4):
        gate.check(o)
        gate.on_order_routed(o)
        clk.advance(0.1)
    d = gate.check(o)  # 4 routed in the last 0.4 s, this one the 5th
    assert d.action == "warn"
    assert d.text == ("warned by max_orders_per_s: 4 orders on BTC/USD in the last 1 s "
                      "(limit 2 per 1 s)")
    assert ("orders_in_window", "4") in d.figures
    d = gate.check(o)  # the one before has passed and is not routed yet: it counts
    assert d.text.startswith("warned by max_orders_per_s: 5 orders on BTC/USD")
    clk.advance(0.75)  # the first two (t = 0, 0.1) have left the window
    gate.on_order_routed(o)
    gate.on_order_routed(o)
    d = gate.check(o)
    assert d.text.startswith("warned by max_orders_per_s: 4 orders on BTC/USD"), d.text


def test_an_input_age_that_is_not_a_number_is_stale_wherever_it_is(arb: SignalSnapshot) -> None:
    """A NaN age (a broken input timestamp) is stale whichever input it is. With one
    max_age_s the ages were compared through max(), which keeps a NaN only when it comes
    first: a NaN funding age (after the mark's) passed as fresh and the rule was evaluated on
    an input of unknown age instead of going to its stale policy."""
    rule = {**CARRY_RULE, "stale_policy": "warn"}
    gate, market, _ = make_gate(cfg(signal_rules=[rule]))
    for field in ("age_mark_s", "age_funding_s", "age_map_s", "age_book_s"):
        market.snaps[ARB] = dataclasses.replace(arb, **{field: math.nan})
        d = gate.check(order(ARB, "1", "1", "0.111"))
        assert d.action == "warn" and d.stale_inputs, (field, d.text)
        assert "not a number" in d.text and "nan" not in d.text, d.text
