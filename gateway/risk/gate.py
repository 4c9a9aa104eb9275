"""The pre-trade gate (shared/signals.md §8): every order, from every entry point, is checked
here before it is routed.

What it checks, in this order (the first ``block`` ends the check):

1. ``kill_switch`` - an operator halt; always blocks.
2. ``max_order_qty`` - per symbol (``"*"`` = any other symbol).
3. ``price_collar`` - a limit price within ``price_collar_bps`` of the book mid.
4. ``max_notional`` - qty x the limit price (a buy: its limit bounds what it pays), for a
   sell x mid when that is more (a sell under mid fills at the bids like a market order), and
   for market orders x what they would trade at: a market buy pays the asks, so it is valued
   at the average price of walking the visible asks for its quantity (any quantity beyond the
   visible book at its last level), a market sell at the best bid (the most it can get); x
   mid only when the gate has no book to read (``book`` not given). In the quote currency
   (USD: fixgw run refuses the limit with a symbol quoted in anything else, see
   server.preflight).
5. ``max_orders_per_s`` - routed orders per symbol in a sliding ``rate_window_s``, orders
   that passed the gate and are not routed yet included (see Counters).
6. ``max_open_orders`` - open orders per OMS session.
7. signal rules (``crowded_long``, ``crowded_short``, ``min_confidence_against_bias``) over the
   symbol's latest precomputed ``SignalSnapshot``; semantics in ``gateway.config.risk``.

Each rule has an action (allow, warn, reduce, block) and, where it reads market inputs, a
stale-input policy (allow, warn, block), both from ``GateConfig``. The result is one
``GateDecision``: ``block`` if any rule blocked, else ``reduce`` (the smallest reduced quantity
wins), else ``warn``, else ``allow``. ``fired`` holds one decision per rule that fired (warns,
reduces and dry-run ``allow`` matches included), ``reasons`` their texts. The router turns a
block into an ExecutionReport reject with ``text`` in Text (58), and publishes every decision
as an event (``figure_details`` maps one-to-one onto ``fixgw.v1.GateFigure``).

Why it is shaped like this: ``check`` runs on the FIX callback thread for every order, with a
p99 budget of 20 µs. So the config is compiled once (per-symbol plans with the symbol's
quantity limit and its signal rules already split by order side, thresholds as floats,
snapshot age fields as one ``attrgetter``; a rule with per-input age limits
(``max_input_age_s``) gets a tuple of limits aligned with those fields, one without keeps a
single ``max(ages)`` comparison), the allow path allocates nothing (a precomputed decision per
plan and side is returned), and no text, ``Decimal`` formatting or logging happens unless a
rule fires. The gate never computes a signal: it reads snapshot fields.

Counters: ``on_order_routed`` appends a monotonic timestamp to the symbol's rate deque
(dropping those out of the window) and counts the session's open orders;
``on_order_closed`` counts down.
The rate limit is there to keep the gateway under the venue's own, and OMS sessions send on
their own threads (the OMS acceptor is a ThreadedSocketAcceptor), while an order is counted
only once it is routed, after its check: a check that only read the window let N sessions
checking one symbol at the same moment all pass at limit - 1 and overshoot by N - 1. So a
new order that passes ``check`` takes a slot of its symbol's window (``pending``) in the
same critical section as the window test, and the router either routes it
(``on_order_routed`` turns the slot into the order's timestamp: counted once) or calls
``on_order_not_routed`` on every way out that does not route it (the slot is given back); a
check that blocks, or a rule after the rate that blocks, leaves no slot taken. "Limit
reached" is then "routed orders in the window + pending >= limit": with the deque sorted,
the (limit - pending)-th newest timestamp is in the window, O(1) for the few orders in flight.
That test and the slot are one uncontended lock, taken only for a new order when
``max_orders_per_s`` is configured (the slot is taken and counted with the rule switched
off too, so the window is right when it is switched back on). The open-order limit counts
per OMS session, and a session's orders are checked and routed one after the other on its
own thread, so ``check`` only reads that count: a close on the venue's thread in between
can only make the check stricter. Counter writes take the lock (routing and venue callbacks
run on different threads).

Reductions: quantities go down to ``lot_size(symbol)`` multiples when the caller gives that
callable; without it, ``qty x fraction`` is exact and ``limit / price`` is floored to 8 decimal
places, and the router must round to the instrument's lot. A reduction that rounds to 0 blocks.

Plans are built at start for every symbol the config names and lazily (once) for any other
symbol an order carries; orders reach the gate after ``OrderValidator`` has rejected unknown
symbols, so the set is bounded by the venue's instrument list.

Clocks: ``clock`` (monotonic) drives the rate window; ``wall_clock`` (epoch seconds, the frame
of ``SignalSnapshot.as_of``) ages snapshots. Any exception inside ``check`` blocks the order
with rule ``gate_error`` (fail closed) instead of escaping into the FIX engine.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:  # the risk layer does not import gateway.config at runtime
    from gateway.config.risk import GateConfig, SignalRuleConfig
    from gateway.marketdata.book import Book
    from gateway.signals.snapshot import SignalSnapshot

__all__ = ["ACTIONS", "Gate", "GateDecision", "GateOrder", "RuleInfo"]

log = logging.getLogger(__name__)

ACTIONS: Final = ("allow", "warn", "reduce", "block")
_VERB: Final = {"block": "blocked", "warn": "warned", "reduce": "reduced", "allow": "matched"}
_BUY_SIDES: Final = frozenset({"1", "3"})  # Buy, BuyMinus
_SELL_SIDES: Final = frozenset({"2", "4", "5", "6"})  # Sell, SellPlus, SellShort, SellShortExempt
_QTY_DP: Final = Decimal("1E-8")
_INF: Final = math.inf

Figure = tuple[str, str, str, str]  # (name, value, unit, limit) as in fixgw.v1.GateFigure


@dataclass(frozen=True, slots=True)
class GateOrder:
    """The fields of a new order the gate looks at (already validated by ``OrderValidator``)."""

    symbol: str
    side: str  # FIX Side (54): "1" buy, "2" sell
    qty: Decimal
    price: Decimal | None  # None for market orders
    ord_type: str
    oms_session: str
    account: str


@dataclass(frozen=True, slots=True)
class GateDecision:
    """The gate's answer for one order, or one rule's part of it (in ``fired``).

    ``figures`` are (name, value) strings; ``figure_details`` the same figures as
    (name, value, unit, limit) for ``fixgw.v1.GateFigure``.
    """

    action: str  # "allow" | "warn" | "reduce" | "block"
    rule: str | None
    text: str
    reasons: tuple[str, ...]
    figures: tuple[tuple[str, str], ...]
    reduced_qty: Decimal | None
    stale_inputs: bool
    fired: tuple[GateDecision, ...] = ()
    figure_details: tuple[Figure, ...] = ()

    @property
    def passes(self) -> bool:
        """True when the order goes to the venue (possibly reduced)."""
        return self.action != "block"


@dataclass(frozen=True, slots=True)
class RuleInfo:
    """One rule as operators see it (``Gate.rules()``)."""

    name: str
    kind: str
    action: str
    enabled: bool
    stale_policy: str | None
    params: tuple[tuple[str, str], ...]
    symbols: tuple[str, ...] = ("*",)


# ---------------------------------------------------------------------------------------------
# Formatting (fire path only)
# ---------------------------------------------------------------------------------------------
def _plain(d: Decimal) -> str:
    """A Decimal without exponent notation (FIX and traders both read ``10``, not ``1E+1``)."""
    return format(d, "f")


def _usd(d: Decimal) -> str:
    return f"{d:,.0f}" if d == d.to_integral_value() else f"{d:,.2f}"


def _sig(x: float, digits: int = 3) -> str:
    """A price from a float with at least ``digits`` significant digits: 0.09 -> ``0.0900``."""
    if not math.isfinite(x) or x == 0.0:
        return f"{x:g}"
    dec = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    return f"{x:.{dec}f}"


def _pct(x: float) -> str:
    return f"{x:.2f}%" if abs(x) < 1.0 else f"{x:.1f}%"


def _secs(x: float | None) -> str:
    if x is None:
        return "missing"
    return "not a number" if x != x else f"{x:.1f} s"


def _decision(
    rule: str,
    action: str,
    detail: str,
    figs: tuple[Figure, ...] = (),
    *,
    stale: bool = False,
    reduced: Decimal | None = None,
) -> GateDecision:
    verb = "skipped" if stale and action == "allow" else _VERB[action]
    text = f"{verb} by {rule}: {detail}"
    return GateDecision(
        action, rule, text, (text,), tuple([(f[0], f[1]) for f in figs]), reduced, stale, (), figs
    )


_NOTHING: Final = GateDecision("allow", None, "", (), (), None, False)  # "no rule fired" marker


@dataclass(frozen=True, slots=True)
class _MarketValue:
    """What a market order of some quantity would trade at, from the visible book."""

    price: Decimal  # a buy: the average over the asks walked; a sell: the best bid
    side: str  # "ask" | "bid"
    levels: int  # levels walked (1: the best level holds it all)
    short: Decimal | None  # quantity beyond the visible book (valued at its last level)

    def how(self, qty: Decimal) -> str:
        """How the price was found, for the Text: which figure was used."""
        if self.levels == 1 and self.short is None:
            return f"best {self.side} {_plain(self.price)}"
        text = (f"{self.side} {_plain(self.price)}, the average over {self.levels} "
                f"{self.side} levels for {_plain(qty)}")
        if self.short is not None:
            text += f" ({_plain(self.short)} beyond the visible book valued at its last level)"
        return text


def _average(cost: Decimal, qty: Decimal) -> Decimal:
    """A buy's average price, rounded up to 8 places (never below what it pays) so that
    Text and figures read as prices, not as 28 digits of a division."""
    return (cost / qty).quantize(_QTY_DP, rounding=ROUND_UP).normalize()


def _market_value(book: Book, buy: bool, qty: Decimal) -> _MarketValue | None:
    """What a market order of `qty` trades at, or None with that side of the book empty.

    A buy walks the asks from the best for its quantity (it pays each level it takes), the
    rest beyond the visible levels at the last one (it pays that at least). A sell is valued
    at the best bid: walking the bids could only lower its value. O(levels touched): the top
    first, then 4, 16, ... levels (each read copies only those, under the book's lock)."""
    top = book.top()
    best = top.ask if buy else top.bid
    if best is None:
        return None
    if not buy or best.qty >= qty:
        return _MarketValue(best.price, "ask" if buy else "bid", 1, None)
    n = 4
    while True:
        asks = book.depth(n).asks
        if not asks:
            return None
        left, cost = qty, Decimal(0)
        touched = 0
        for level in asks:
            touched += 1
            take = level.qty if level.qty < left else left
            cost += take * level.price
            left -= take
            if not left:
                return _MarketValue(_average(cost, qty), "ask", touched, None)
        if len(asks) < n:  # the whole visible book, and still short
            cost += left * asks[-1].price
            return _MarketValue(_average(cost, qty), "ask", touched, left)
        n *= 4


def _alone(d: GateDecision) -> GateDecision:
    """A one-rule final decision: the rule's own decision, listed in ``fired``."""
    return GateDecision(d.action, d.rule, d.text, d.reasons, d.figures, d.reduced_qty,
                        d.stale_inputs, (d,), d.figure_details)


# ---------------------------------------------------------------------------------------------
# Signal rules, compiled per (rule, order side)
# ---------------------------------------------------------------------------------------------
def _long_asym(s: SignalSnapshot) -> float:
    v = s.oi_asymmetry
    if v is not None:
        return v
    return _INF if s.oi_asymmetry_status == "inf" else -_INF  # "undefined" never matches


def _short_asym(s: SignalSnapshot) -> float:
    v = s.oi_asymmetry
    if v is not None:
        return 1.0 / v if v > 0.0 else _INF  # long 0, short > 0: all short
    return 0.0 if s.oi_asymmetry_status == "inf" else -_INF


def _against(bias: str) -> Callable[[SignalSnapshot], float]:
    def confidence_against(s: SignalSnapshot) -> float:
        return s.confidence if s.bias == bias else -_INF

    return confidence_against


# param -> (snapshot attribute read, inputs it needs, is an upper bound)
_COND: Final[dict[str, tuple[Callable[[SignalSnapshot], float] | str, tuple[str, ...], bool]]] = {
    "min_funding_excess_bps": ("funding_excess_bps", ("age_funding_s",), False),
    "max_funding_excess_bps": ("funding_excess_bps", ("age_funding_s",), True),
    "min_carry_bps": ("carry_ann_bps", ("age_funding_s",), False),
    "max_carry_bps": ("carry_ann_bps", ("age_funding_s",), True),
    "max_gravity": ("gravity", ("age_map_s", "age_book_s"), True),
    "min_gravity": ("gravity", ("age_map_s", "age_book_s"), False),
    "min_oi_asymmetry": (_long_asym, ("age_positioning_s",), False),
    "min_short_asymmetry": (_short_asym, ("age_positioning_s",), False),
}
_SIDE_COND: Final[dict[str, dict[str, tuple[str, tuple[str, ...]]]]] = {
    "crowded_long": {
        "min_liq_to_depth": ("liq_to_depth_long", ("age_map_s", "age_book_s")),
        "min_at_risk_share": ("at_risk_share_long", ("age_map_s",)),
    },
    "crowded_short": {
        "min_liq_to_depth": ("liq_to_depth_short", ("age_map_s", "age_book_s")),
        "min_at_risk_share": ("at_risk_share_short", ("age_map_s",)),
    },
}
_ALL_PARAMS: Final = (tuple(_COND), ("min_liq_to_depth", "min_at_risk_share", "min_confidence"))
_AGE_LABEL: Final = {
    "age_mark_s": "mark",
    "age_funding_s": "funding",
    "age_map_s": "liquidation map",
    "age_book_s": "book",
    "age_positioning_s": "positioning",
    "age_oi_s": "open interest",
    "age_closes_s": "closes",
    "max_age_s": "oldest input",
}
# snapshot age field -> its ``max_input_age_s`` key (gateway.config.risk.SIGNAL_INPUTS)
_AGE_KEY: Final = {
    "age_mark_s": "mark",
    "age_funding_s": "funding",
    "age_map_s": "liquidation_map",
    "age_book_s": "book",
    "age_positioning_s": "positioning",
    "age_oi_s": "open_interest",
    "age_closes_s": "closes",
}


class _Cond:
    """One threshold: fires only if ``lo <= value <= hi``."""

    __slots__ = ("get", "hi", "lo", "param")

    def __init__(self, param: str, get: Callable[[SignalSnapshot], float], bound: float,
                 upper: bool) -> None:
        self.param = param
        self.get = get
        self.lo = -_INF if upper else bound
        self.hi = bound if upper else _INF


class _SignalRule:
    """A ``SignalRuleConfig`` compiled for one order side (buy or sell)."""

    __slots__ = (
        "action",
        "age_names",
        "ages",
        "buy",
        "cfg",
        "cmp",
        "conds",
        "fraction",
        "kind",
        "lim",
        "limits",
        "max_age",
        "max_age_txt",
        "name",
        "optional",
        "required_ages",
        "stale_cache",
        "stale_figs",
        "stale_policy",
    )

    def __init__(self, cfg: SignalRuleConfig, buy: bool) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.kind = cfg.kind
        self.action = cfg.action
        self.stale_policy = cfg.stale_policy
        self.max_age = float(cfg.max_age_s)
        self.fraction = cfg.reduce_to_fraction
        self.buy = buy
        overrides = cfg.max_input_age_s.given()  # input key -> seconds
        needs: list[str] = ["age_mark_s"]
        votes: list[str] = []  # read by min_confidence only: absent = no vote, not missing
        conds: list[_Cond] = []
        for param, value in cfg.params.items():
            bound = float(value)
            if param == "min_confidence":
                conds.append(_Cond(param, _against("short" if buy else "long"), bound, False))
                if overrides:  # every input against its own limit
                    votes.extend(_AGE_KEY)
                else:  # one limit: the snapshot's oldest present input is enough
                    needs.append("max_age_s")
            elif param in _COND:
                attr, ages, upper = _COND[param]
                get = attrgetter(attr) if isinstance(attr, str) else attr
                conds.append(_Cond(param, get, bound, upper))
                needs.extend(ages)
            else:
                attr, ages = _SIDE_COND[cfg.kind][param]
                conds.append(_Cond(param, attrgetter(attr), bound, False))
                needs.extend(ages)
        # Cheap, selective conditions first: funding rarely crosses its threshold.
        order = [*_COND, "min_liq_to_depth", "min_at_risk_share", "min_confidence"]
        conds.sort(key=lambda c: order.index(c.param))
        self.conds = tuple(conds)
        required = set(needs)
        self.age_names = tuple(dict.fromkeys(needs + votes))  # >= 2: attrgetter gives a tuple
        if len(self.age_names) == 1:
            self.age_names = (*self.age_names, "age_mark_s")
        self.ages = attrgetter(*self.age_names)
        self.optional = tuple(n not in required for n in self.age_names)
        # With optional inputs, a None among the ages is only "missing" if a required one is.
        self.required_ages: Callable[[SignalSnapshot], tuple[Any, ...]] | None = None
        if any(self.optional):
            self.required_ages = attrgetter(*dict.fromkeys(needs), "age_mark_s")
        # Per-input limits aligned with age_names; None keeps the one-limit fast path.
        self.limits: tuple[float, ...] | None = None
        if overrides:
            self.limits = tuple(float(overrides.get(_AGE_KEY.get(n, ""), self.max_age))
                                for n in self.age_names)
        # Threshold texts, formatted once: the fire path only looks them up.
        every = {p for ps in _ALL_PARAMS for p in ps}
        self.lim = {p: "" for p in every} | {p: _plain(v) for p, v in cfg.params.items()}
        self.cmp = {p: "" for p in every} | {
            p: f" ({'<=' if p.startswith('max_') else '>='} {_plain(v)})"
            for p, v in cfg.params.items()}
        self.max_age_txt = f"{self.max_age:g}"
        self.stale_figs: tuple[Figure, ...] = (
            ("max_age_s", self.max_age_txt, "s", ""),
            *((f"max_{k}_age_s", f"{v:g}", "s", "") for k, v in overrides.items()))
        # (snapshot, (symbol, which inputs are stale), decision): see _too_old.
        self.stale_cache: tuple[SignalSnapshot, tuple[str, tuple[bool, ...]],
                                GateDecision] | None = None

    def evaluate(self, order: GateOrder, snap: SignalSnapshot | None,
                 wall: float) -> GateDecision | None:
        """None when the rule does not fire; its decision (or its stale policy's) when it does."""
        if snap is None:
            return self._stale(order, f"no signal snapshot for {order.symbol}", None)
        ages: tuple[Any, ...] = self.ages(snap)
        if None in ages:
            required = self.required_ages
            if required is None or None in required(snap):
                missing = [_AGE_LABEL.get(n, n) for n, a, opt in
                           zip(self.age_names, ages, self.optional, strict=True)
                           if a is None and not opt]
                return self._stale(order, f"signal input missing for {order.symbol}: "
                                          f"{', '.join(missing)}", snap)
        lag = wall - snap.as_of
        if lag < 0.0:
            lag = 0.0  # clock skew between the signal host and this one: not "fresher than now"
        limits = self.limits
        if limits is None:  # one max_age_s for every input (no None left: none is optional)
            # Each age compared, as with per-input limits below: a NaN age (a broken input
            # timestamp) fails its comparison and is stale, whichever input it is (max() kept
            # a NaN only when it came first).
            if any(not a + lag <= self.max_age for a in ages):
                return self._too_old(order, snap, ages, lag)
        else:
            for a, m in zip(ages, limits, strict=True):
                if a is not None and not a + lag <= m:
                    return self._too_old(order, snap, ages, lag)
        for c in self.conds:
            v = c.get(snap)
            if not c.lo <= v <= c.hi:
                if v != v:  # NaN: a broken input, not a "no"
                    return self._stale(order, f"signal figure {c.param.split('_', 1)[1]} for "
                                              f"{order.symbol} is not a number", snap)
                return None
        return self._fire(order, snap, ages, lag)

    def _age_limits(self, ages: tuple[Any, ...]) -> tuple[float, ...]:
        return self.limits if self.limits is not None else (self.max_age,) * len(ages)

    def _too_old(self, order: GateOrder, snap: SignalSnapshot, ages: tuple[Any, ...],
                 lag: float) -> GateDecision:
        """The stale decision for inputs past their limit, formatted once per snapshot and set
        of stale inputs: an input that settles hourly (funding) can be too old for every order
        until the next snapshot, and formatting the text per order cost more than the rest of
        the gate. The ages in the text are those of the first order that found them stale.
        With one max_age_s the limit ends the list; with per-input limits each input has its
        own."""
        limits = self._age_limits(ages)
        stale = tuple(a is not None and not a + lag <= m
                      for a, m in zip(ages, limits, strict=True))
        key = (order.symbol, stale)
        cached = self.stale_cache
        if cached is not None and cached[0] is snap and cached[1] == key:
            return cached[2]
        each = self.limits is not None
        parts = [f"{_AGE_LABEL.get(n, n)} {_secs(a + lag)}" + (f" (max {m:g} s)" if each else "")
                 for n, a, m, old in zip(self.age_names, ages, limits, stale, strict=True)
                 if old]
        if each:
            detail = ", ".join(parts)
        else:
            detail = (f"{', '.join(parts) or _secs(max(ages) + lag)} "
                      f"(max {self.max_age:g} s)")
        d = self._stale(order, f"signal inputs for {order.symbol} too old: {detail}", snap)
        self.stale_cache = (snap, key, d)
        return d

    # -- fire path ----------------------------------------------------------------------------
    def _stale(self, order: GateOrder, why: str, snap: SignalSnapshot | None) -> GateDecision:
        figs = self.stale_figs
        if snap is not None:
            figs += (("snapshot_as_of", f"{snap.as_of:.3f}", "s", ""),)
        return _decision(self.name, self.stale_policy,
                         f"{why}; stale_policy {self.stale_policy}", figs, stale=True)

    def _fire(self, order: GateOrder, s: SignalSnapshot, ages: tuple[Any, ...],
              lag: float) -> GateDecision:
        if self.kind == "min_confidence_against_bias":
            detail, figs = self._bias_text(order, s)
        else:
            detail, figs = self._crowded_text(order, s)
        if self.limits is None:
            figs += (("input_age_s", f"{max(ages) + lag:.1f}", "s", self.max_age_txt),)
        else:  # the oldest input against its own limit, then every input read
            each = {_AGE_KEY[n]: (a + lag, m) for n, a, m in
                    zip(self.age_names, ages, self.limits, strict=True) if a is not None}
            age, limit = max(each.values())
            figs += (("input_age_s", f"{age:.1f}", "s", f"{limit:g}"),)
            figs += tuple((f"{k}_age_s", f"{a:.1f}", "s", f"{m:g}")
                          for k, (a, m) in each.items())
        if self.action != "reduce":
            return _decision(self.name, self.action, detail, figs)
        assert self.fraction is not None  # validated by SignalRuleConfig
        return _decision(self.name, "reduce", detail, figs, reduced=order.qty * self.fraction)

    def _crowded_text(self, order: GateOrder, s: SignalSnapshot) -> tuple[str, tuple[Figure, ...]]:
        cmp, lim = self.cmp, self.lim
        if self.kind == "crowded_long":
            side, book, verb = "long", "bid", "buying"
            fund, carry, grav, asym_p = ("min_funding_excess_bps", "min_carry_bps", "max_gravity",
                                         "min_oi_asymmetry")
            l2d, ars, levels = s.liq_to_depth_long, s.at_risk_share_long, s.key_levels_long
            asym = _long_asym(s)
        else:
            side, book, verb = "short", "ask", "selling"
            fund, carry, grav, asym_p = ("max_funding_excess_bps", "max_carry_bps", "min_gravity",
                                         "min_short_asymmetry")
            l2d, ars, levels = s.liq_to_depth_short, s.at_risk_share_short, s.key_levels_short
            asym = _short_asym(s)
        level = _sig(levels[0].price) if levels else ""
        toward = f" toward {side} liquidations at {level}" if level else ""
        if math.isfinite(asym) and asym >= 0.0:
            asym_txt = f"{asym:.1f}x {side}"
        elif asym == _INF:
            asym_txt = f"all {side}"
        else:
            asym_txt = "split undefined"
        ars_txt = (f", {side} liquidations near price {ars:.1%} of {side} OI"
                   f"{cmp['min_at_risk_share']}") if lim["min_at_risk_share"] else ""
        f_txt, c_txt = f"{s.funding_excess_bps:+.1f}", f"{s.carry_ann_bps:+.1f}"
        text = (
            f"{verb} {order.symbol} against crowded {side}s: "
            f"funding excess {f_txt} bps/yr{cmp[fund]}, "
            f"carry {c_txt} bps/yr{cmp[carry]}, "
            f"gravity {s.gravity:+.2f}{cmp[grav]}{toward}, "
            f"{side} liq/{book} depth {l2d:.1f}x{cmp['min_liq_to_depth']}{ars_txt}, "
            f"OI {asym_txt} by {s.positioning_cohort}{cmp[asym_p]}"
        )
        figs: tuple[Figure, ...] = (
            ("funding_excess_bps", f_txt, "bps", lim[fund]),
            ("carry_ann_bps", c_txt, "bps", lim[carry]),
            ("gravity", f"{s.gravity:.3f}", "ratio", lim[grav]),
            (f"liq_to_depth_{side}", f"{l2d:.3f}", "ratio", lim["min_liq_to_depth"]),
            (f"at_risk_share_{side}", f"{ars:.3f}", "ratio", lim["min_at_risk_share"]),
            ("oi_asymmetry", s.oi_asymmetry_label, "", lim[asym_p]),
            (f"key_level_{side}", level, "price", ""),
        )
        return text, figs

    def _bias_text(self, order: GateOrder, s: SignalSnapshot) -> tuple[str, tuple[Figure, ...]]:
        votes = "; ".join(f"{v.name} {v.direction} ({v.reason})" for v in s.votes
                          if v.direction == s.bias)
        detail = (f"{'buying' if self.buy else 'selling'} {order.symbol} against a {s.bias} bias: "
                  f"confidence {s.confidence:.2f}{self.cmp['min_confidence']}, "
                  f"agreement {s.agreement:.2f}; votes: {votes or 'none'}")
        figs: tuple[Figure, ...] = (
            ("bias", s.bias, "", ""),
            ("confidence", f"{s.confidence:.3f}", "ratio", self.lim["min_confidence"]),
            ("agreement", f"{s.agreement:.3f}", "ratio", ""),
        )
        return detail, figs


# ---------------------------------------------------------------------------------------------
# Per-symbol plan
# ---------------------------------------------------------------------------------------------
class _Rate:
    """One symbol's ``max_orders_per_s`` count: when its latest routed orders were routed
    (oldest first; those out of the window are dropped on the next append or fire) and how
    many orders passed a check and are not routed yet (``pending``: each holds a slot of the
    window until it is routed or given back). Not bounded at ``limit``: with a warn or dry-run
    action orders go on past it, and the Text must say how many are in the window, not
    repeat the limit; with block the window holds at most ``limit``. Written under the
    gate's lock only."""

    __slots__ = ("limit", "pending", "times")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.times: deque[float] = deque()
        self.pending = 0


class _Plan:
    """Everything ``check`` needs for one symbol, resolved once."""

    __slots__ = ("allow", "max_qty", "rate", "rate_on", "rules")

    def __init__(self, max_qty: Decimal | None, rate: _Rate | None, rate_on: bool,
                 rules: dict[str, tuple[_SignalRule, ...]],
                 allow: dict[str, GateDecision]) -> None:
        self.max_qty = max_qty
        self.rate = rate  # None: max_orders_per_s not configured
        self.rate_on = rate_on  # the rule is enabled (its slots are counted either way)
        self.rules = rules  # order side -> rules for that side
        self.allow = allow  # order side -> the precomputed allow decision


class Gate:
    """The pre-trade gate; see the module docstring. Thread-safe: checks on any number of
    threads (one per OMS session), counter updates and operator changes from others."""

    def __init__(
        self,
        config: GateConfig,
        mid: Callable[[str], tuple[Decimal | None, float | None]],
        snapshot: Callable[[str], SignalSnapshot | None],
        clock: Callable[[], float] = time.monotonic,
        *,
        wall_clock: Callable[[], float] = time.time,
        lot_size: Callable[[str], Decimal | None] | None = None,
        book: Callable[[str], Book | None] | None = None,
    ) -> None:
        self._cfg = config
        self._mid = mid
        # The symbol's book, to value market orders at what they would trade at (see
        # `_market_value`); without it they are valued at mid.
        self._book = book
        self._snapshot = snapshot
        self._clock = clock
        self._wall = wall_clock
        self._lot = lot_size
        self._kill = bool(config.kill_switch)
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}
        self._rates: dict[str, _Rate] = {}
        self._window = float(config.rate_window_s)
        self._stale_book_s = float(config.stale_book_s)
        configured = ["kill_switch"]
        if config.max_order_qty:
            configured.append("max_order_qty")
        for name, value in (("max_notional", config.max_notional_usd),
                            ("price_collar", config.price_collar_bps),
                            ("max_orders_per_s", config.max_orders_per_s),
                            ("max_open_orders", config.max_open_orders)):
            if value is not None:
                configured.append(name)
        self._classic: tuple[str, ...] = tuple(configured)
        self._enabled: dict[str, bool] = {n: True for n in self._classic}
        for r in config.signal_rules:
            self._enabled[r.name] = r.enabled
        kill = _decision("kill_switch", "block", "trading halted by operator",
                         (("kill_switch", "on", "", ""),))
        self._kill_decision = _alone(kill)
        self._plans: dict[str, _Plan] = {}
        self._compile()

    # -- compile ------------------------------------------------------------------------------
    def _compile(self) -> None:
        """(Re)build the globals and every known symbol's plan after a config or toggle change."""
        cfg, on = self._cfg, self._enabled
        self._max_notional = cfg.max_notional_usd if on.get("max_notional") else None
        collar = cfg.price_collar_bps if on.get("price_collar") else None
        self._collar_bps = collar
        self._collar_frac = None if collar is None else collar / Decimal(10_000)
        self._max_open = cfg.max_open_orders if on.get("max_open_orders") else None
        self._rate_blocks = cfg.max_orders_per_s_action == "block"
        self._rules_buy = tuple(_SignalRule(r, True) for r in cfg.signal_rules
                                if on[r.name] and r.kind != "crowded_short")
        self._rules_sell = tuple(_SignalRule(r, False) for r in cfg.signal_rules
                                 if on[r.name] and r.kind != "crowded_long")
        symbols = set(cfg.max_order_qty) - {"*"}
        for r in cfg.signal_rules:
            symbols.update(s for s in r.symbols if s != "*")
        symbols.update(self._plans)
        self._plans = {s: self._make_plan(s) for s in symbols}

    def _make_plan(self, symbol: str) -> _Plan:
        cfg, on = self._cfg, self._enabled
        max_qty = None
        if on.get("max_order_qty"):
            max_qty = cfg.max_order_qty.get(symbol, cfg.max_order_qty.get("*"))
        rate = None
        if cfg.max_orders_per_s is not None:
            rate = self._rates.get(symbol)
            if rate is None:
                rate = self._rates.setdefault(symbol, _Rate(cfg.max_orders_per_s))

        def mine(rules: tuple[_SignalRule, ...]) -> tuple[_SignalRule, ...]:
            return tuple(r for r in rules if "*" in r.cfg.symbols or symbol in r.cfg.symbols)

        buy, sell = mine(self._rules_buy), mine(self._rules_sell)
        classic = [n for n in self._classic if on[n]]
        if max_qty is None and "max_order_qty" in classic:
            classic.remove("max_order_qty")

        def allow(rules: tuple[_SignalRule, ...]) -> GateDecision:
            names = classic + [r.name for r in rules]
            return GateDecision("allow", None, "",
                                (f"passed {len(names)} checks: {', '.join(names)}",),
                                (), None, False)

        rules: dict[str, tuple[_SignalRule, ...]] = {}
        allows: dict[str, GateDecision] = {}
        allow_buy, allow_sell, allow_other = allow(buy), allow(sell), allow(())
        for side in _BUY_SIDES:
            rules[side], allows[side] = buy, allow_buy
        for side in _SELL_SIDES:
            rules[side], allows[side] = sell, allow_sell
        allows[""] = allow_other
        return _Plan(max_qty, rate, bool(on.get("max_orders_per_s")), rules, allows)

    def _plan(self, symbol: str) -> _Plan:
        plan = self._plans.get(symbol)
        if plan is None:
            with self._lock:
                plan = self._plans.get(symbol)
                if plan is None:
                    plan = self._plans[symbol] = self._make_plan(symbol)
        return plan

    # -- the check ----------------------------------------------------------------------------
    def check(self, order: GateOrder, amend: bool = False) -> GateDecision:
        """Decide one order from the counters and the latest snapshot; never raises.

        A new order that passes (any action but block) takes a slot of its symbol's
        ``max_orders_per_s`` window when that limit is configured (enabled or not), in the
        same critical section as the window test: the caller must then either route it and
        call ``on_order_routed`` (which counts it), or call ``on_order_not_routed`` (which gives
        the slot back). A blocked order takes nothing.

        `amend`: `order` is the new version of an open order (a replace that adds quantity or
        moves the price): every limit applies to it except the two that count orders (the
        rate and the open orders), since a replace adds no order; it takes no slot."""
        held: _Rate | None = None  # the slot this check took, given back if a later rule blocks
        try:
            if self._kill:
                return self._kill_decision
            plan = self._plans.get(order.symbol)
            if plan is None:
                plan = self._plan(order.symbol)
            fired: list[GateDecision] = []
            qty = order.qty
            eff = qty  # quantity after reductions so far

            max_qty = plan.max_qty
            if max_qty is not None and qty > max_qty:
                d = self._fire_max_qty(order, max_qty)
                if d.action == "block":
                    return _alone(d)
                fired.append(d)
                if d.reduced_qty is not None:
                    eff = d.reduced_qty

            price = order.price
            collar = self._collar_frac
            notional_limit = self._max_notional
            check_collar = collar is not None and price is not None
            value_at_mid = notional_limit is not None and price is None
            # A sell limit is valued at its limit, or at mid when that is more: a sell limit
            # far under mid is as much notional as a market sell (it fills at the bids). A buy
            # limit fills at its limit or lower, so its limit bounds its value with or without
            # a book: valuing a resting bid at mid would block what the limit allows.
            value_limit = (notional_limit is not None and price is not None
                           and order.side in _SELL_SIDES)
            src = "limit" if price is not None else "mid"
            how = ""  # a market order's valuation from the book, for the Text
            if check_collar or value_at_mid or value_limit:
                raw_mid, age = self._mid(order.symbol)
                mid = raw_mid
                if mid is not None and not (
                    mid > 0 and (age is None or age <= self._stale_book_s)
                ):
                    mid = None  # stale or nonsense: the stale policy decides
                if check_collar:
                    assert price is not None and collar is not None
                    if mid is None:
                        d = self._stale_book("price_collar", self._cfg.price_collar_stale_policy,
                                             order, raw_mid, age)
                    elif abs(price - mid) > mid * collar:
                        d = self._fire_collar(order, price, mid, age)
                    else:
                        d = _NOTHING
                    if d is not _NOTHING:
                        if d.action == "block":
                            return self._done(fired, d)
                        fired.append(d)
                if value_limit:
                    assert price is not None
                    if mid is not None and mid > price:
                        price, src = mid, "mid"
                    elif mid is None:
                        # A sell fills at its limit or better (higher): the limit is a floor
                        # of its value, not a bound, and without a mid nothing bounds it (a
                        # sell at 1 fills at the bids).
                        d = self._stale_book("max_notional",
                                             self._cfg.max_notional_stale_policy,
                                             order, raw_mid, age)
                        if d.action == "block":
                            return self._done(fired, d)
                        fired.append(d)
                elif value_at_mid:
                    if mid is not None:
                        price = mid
                        book = None if self._book is None else self._book(order.symbol)
                        walked = None if book is None else _market_value(
                            book, order.side in _BUY_SIDES, eff)
                        if walked is not None:
                            price, src = walked.price, walked.side
                            how = walked.how(eff)
                    else:
                        d = self._stale_book("max_notional", self._cfg.max_notional_stale_policy,
                                             order, raw_mid, age)
                        if d.action == "block":
                            return self._done(fired, d)
                        fired.append(d)

            if notional_limit is not None and price is not None and eff * price > notional_limit:
                d = self._fire_notional(order, eff, price, notional_limit, src, how)
                if d.action == "block":
                    return self._done(fired, d)
                fired.append(d)
                if d.reduced_qty is not None and d.reduced_qty < eff:
                    eff = d.reduced_qty

            rate = None if amend else plan.rate
            if rate is not None:
                # Test the window and take a slot in one critical section: OMS sessions check
                # on their own threads, and two checks at the last free slot must not both
                # pass. Routed orders in the window plus the slots taken must stay <= limit:
                # full when the (limit - pending)-th newest routed order is in the window.
                full = False
                with self._lock:
                    if plan.rate_on:
                        times = rate.times
                        k = rate.limit - rate.pending
                        n = len(times)
                        full = k <= 0 or (n >= k and times[n - k] > self._clock() - self._window)
                    if not (full and self._rate_blocks):
                        rate.pending += 1
                        held = rate
                if full:
                    d = self._fire_rate(order, rate)
                    if d.action == "block":
                        return self._done(fired, d)
                    fired.append(d)

            max_open = None if amend else self._max_open
            if max_open is not None:
                n_open = self._open.get(order.oms_session, 0)
                if n_open >= max_open:
                    d = self._fire_open(order, n_open, max_open)
                    if d.action == "block":
                        if held is not None:
                            self._give_back(held)
                        return self._done(fired, d)
                    fired.append(d)

            rules = plan.rules.get(order.side)
            if rules:
                snap = self._snapshot(order.symbol)
                wall = self._wall()
                for rule in rules:
                    sd = rule.evaluate(order, snap, wall)
                    if sd is None:
                        continue
                    if sd.action == "reduce":
                        sd = self._floor_reduce(order, sd)
                    if sd.action == "block":
                        if held is not None:
                            self._give_back(held)
                        return self._done(fired, sd)
                    fired.append(sd)
                    if sd.reduced_qty is not None and sd.reduced_qty < eff:
                        eff = sd.reduced_qty

            if not fired:
                allow = plan.allow.get(order.side)
                return allow if allow is not None else plan.allow[""]
            return self._combine(fired, eff if eff != qty else None)
        except Exception as exc:  # fail closed: nothing may escape into the FIX engine
            if held is not None:
                self._give_back(held)
            log.exception("pre-trade gate failed on %r", order)
            d = _decision("gate_error", "block",
                          f"internal error in the pre-trade gate ({type(exc).__name__}); "
                          "order not sent", (("error", type(exc).__name__, "", ""),))
            return _alone(d)

    @staticmethod
    def _done(fired: list[GateDecision], block: GateDecision) -> GateDecision:
        """A block that ends the check, listing what fired before it."""
        if not fired:
            return _alone(block)
        all_fired = (*fired, block)
        return replace(block, reasons=tuple(d.text for d in all_fired), fired=all_fired,
                       stale_inputs=any(d.stale_inputs for d in all_fired))

    @staticmethod
    def _combine(fired: list[GateDecision], reduced: Decimal | None) -> GateDecision:
        deciding: GateDecision | None = None
        if reduced is not None:
            deciding = next(d for d in fired if d.reduced_qty == reduced)
        else:
            deciding = next((d for d in fired if d.action == "warn"), None)
        reasons = tuple(d.text for d in fired)
        stale = any(d.stale_inputs for d in fired)
        if deciding is None:  # only dry-run matches or allowed stale inputs
            return GateDecision("allow", None, "", reasons, (), None, stale, tuple(fired))
        action = "reduce" if reduced is not None else "warn"
        return GateDecision(action, deciding.rule, deciding.text, reasons, deciding.figures,
                            reduced, stale, tuple(fired), deciding.figure_details)

    # -- classic limits, fire path ------------------------------------------------------------
    def _floor(self, qty: Decimal, symbol: str) -> Decimal:
        lot = self._lot(symbol) if self._lot is not None else None
        if lot is not None and lot > 0:
            return (qty // lot) * lot
        exponent = qty.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -8:
            return qty.quantize(_QTY_DP, rounding=ROUND_DOWN)
        return qty

    def _reduced_or_block(self, d: GateDecision, order: GateOrder, qty: Decimal) -> GateDecision:
        q = self._floor(qty, order.symbol)
        if q <= 0:
            assert d.rule is not None
            detail = d.text.split(": ", 1)[1]
            return _decision(d.rule, "block", f"{detail}; the reduced quantity rounds to 0",
                             d.figure_details, stale=d.stale_inputs)
        text = f"{d.text}; sending {_plain(q)} of {_plain(order.qty)}"
        return replace(d, text=text, reasons=(text,), reduced_qty=q)

    def _floor_reduce(self, order: GateOrder, d: GateDecision) -> GateDecision:
        assert d.reduced_qty is not None
        return self._reduced_or_block(d, order, d.reduced_qty)

    def _fire_max_qty(self, order: GateOrder, limit: Decimal) -> GateDecision:
        action = self._cfg.max_order_qty_action
        d = _decision("max_order_qty", action,
                      f"qty {_plain(order.qty)} > limit {_plain(limit)} for {order.symbol}",
                      (("order_qty", _plain(order.qty), "", _plain(limit)),))
        return self._reduced_or_block(d, order, limit) if action == "reduce" else d

    def _fire_collar(self, order: GateOrder, price: Decimal, mid: Decimal,
                     age: float | None) -> GateDecision:
        assert self._collar_bps is not None
        dev_bps = abs(price - mid) / mid * 10_000
        detail = (f"limit {_plain(price)} is {_pct(float(dev_bps) / 100)} from mid {_plain(mid)} "
                  f"(collar {_pct(float(self._collar_bps) / 100)})")
        figs: tuple[Figure, ...] = (
            ("deviation_bps", f"{dev_bps:.1f}", "bps", _plain(self._collar_bps)),
            ("limit_price", _plain(price), "price", ""),
            ("mid", _plain(mid), "price", ""),
            ("book_age_s", "" if age is None else f"{age:.3f}", "s", f"{self._stale_book_s:g}"),
        )
        return _decision("price_collar", self._cfg.price_collar_action, detail, figs)

    def _stale_book(self, rule: str, policy: str, order: GateOrder, mid: Decimal | None,
                    age: float | None) -> GateDecision:
        if mid is None or not mid > 0:
            why = f"no book for {order.symbol}"
        else:
            why = (f"book for {order.symbol} is {_secs(age)} old "
                   f"(max {self._stale_book_s:g} s)")
        what = ("cannot check the limit price against mid" if rule == "price_collar"
                else "cannot value the market order" if order.price is None
                else "cannot value the sell limit (it fills at the bids, at its limit or "
                     "higher)")
        figs: tuple[Figure, ...] = (
            ("book_age_s", "" if age is None else f"{age:.3f}", "s", f"{self._stale_book_s:g}"),
        )
        return _decision(rule, policy, f"{why}; {what}; stale_policy {policy}", figs, stale=True)

    def _fire_notional(self, order: GateOrder, qty: Decimal, price: Decimal,
                       limit: Decimal, src: str, how: str = "") -> GateDecision:
        """`src` names the price (limit, mid, ask, bid); `how`, when given, says how it was
        found (a market order's walk of the book)."""
        notional = qty * price
        action = self._cfg.max_notional_action
        d = _decision("max_notional", action,
                      f"{_usd(notional)} USD > limit {_usd(limit)} USD "
                      f"({_plain(qty)} x {how or f'{src} {_plain(price)}'})",
                      (("notional_usd", _plain(notional), "USD", _plain(limit)),
                       ("order_qty", _plain(qty), "", ""),
                       (f"{src}_price", _plain(price), "price", "")))
        return self._reduced_or_block(d, order, limit / price) if action == "reduce" else d

    def _fire_rate(self, order: GateOrder, rate: _Rate) -> GateDecision:
        """The rate rule's decision, naming the orders in the window (routed in it, or passed
        and on their way, this one not included), which a warn lets run past the limit."""
        with self._lock:
            self._prune(rate.times, self._clock() - self._window)
            # a passing check took its slot already: it is not one of the orders before it
            n = len(rate.times) + rate.pending - (0 if self._rate_blocks else 1)
        limit = rate.limit
        return _decision("max_orders_per_s", self._cfg.max_orders_per_s_action,
                         f"{n} orders on {order.symbol} in the last {self._window:g} s "
                         f"(limit {limit} per {self._window:g} s)",
                         (("orders_in_window", str(n), "", str(limit)),
                          ("window_s", f"{self._window:g}", "s", "")))

    def _fire_open(self, order: GateOrder, n: int, limit: int) -> GateDecision:
        return _decision("max_open_orders", self._cfg.max_open_orders_action,
                         f"{n} open orders on session {order.oms_session} (limit {limit})",
                         (("open_orders", str(n), "", str(limit)),))

    # -- counters -----------------------------------------------------------------------------
    def on_order_routed(self, order: GateOrder) -> None:
        """The order went to the venue (sent, held for it, or placed over REST): count it for
        the rate window, once, in place of the slot its check took, and for the open-order
        limit. The check's `order` or the reduced copy the router sent; same symbol."""
        rate = self._rates.get(order.symbol)
        if rate is None and self._cfg.max_orders_per_s is not None:
            self._plan(order.symbol)
            rate = self._rates.get(order.symbol)
        with self._lock:
            if rate is not None:
                now = self._clock()
                self._prune(rate.times, now - self._window)
                rate.times.append(now)
                if rate.pending:  # 0: counted without a check (a caller that does not check)
                    rate.pending -= 1
            self._open[order.oms_session] = self._open.get(order.oms_session, 0) + 1

    def on_order_not_routed(self, order: GateOrder) -> None:
        """The order passed ``check`` but was not routed after all (a reduction the venue would
        refuse, the journal refused it, the hold queue was full, the send or the REST place
        failed): give back the rate slot its check took. Call it once per such order, and
        never for one whose check blocked or was an ``amend``."""
        rate = self._rates.get(order.symbol)
        if rate is not None:
            self._give_back(rate)

    @staticmethod
    def _prune(times: deque[float], cutoff: float) -> None:
        """Drop routed orders out of the window (at or before `cutoff`): O(1) amortized, and
        keeps the deque to the orders in the window. Under the gate's lock."""
        while times and times[0] <= cutoff:
            times.popleft()

    def _give_back(self, rate: _Rate) -> None:
        with self._lock:
            if rate.pending:
                rate.pending -= 1

    def on_order_closed(self, oms_session: str, symbol: str) -> None:
        """An order reached a terminal state (filled, cancelled, rejected, expired).

        This may come first: the router counts an order as routed after its send, and the
        venue's fill or reject can be handled on the venue's thread before that. The count
        then goes below zero for that moment, and the order's +1 brings it back; clamping at
        zero would leave that +1 counted for ever."""
        with self._lock:
            n = self._open.get(oms_session, 0) - 1
            if n:
                self._open[oms_session] = n
            else:
                self._open.pop(oms_session, None)

    def count_open(self, oms_session: str, n: int) -> None:
        """Orders already open when the gate starts (a restart replays them from the journal):
        counted for the open-order limit, not for the rate window."""
        if n > 0:
            with self._lock:
                self._open[oms_session] = self._open.get(oms_session, 0) + n

    def open_orders(self, oms_session: str) -> int:
        """The session's open-order count as the gate sees it (for ops and tests)."""
        return max(0, self._open.get(oms_session, 0))

    # -- operator controls --------------------------------------------------------------------
    @property
    def kill_switch(self) -> bool:
        """True: every order is blocked with rule ``kill_switch``."""
        return self._kill

    @kill_switch.setter
    def kill_switch(self, on: bool) -> None:
        self._kill = bool(on)

    def set_rule_enabled(self, name: str, enabled: bool) -> None:
        """Switch one configured rule on or off at run time (counters keep counting)."""
        if name == "kill_switch":
            raise ValueError("the kill switch is not a rule toggle; set Gate.kill_switch instead")
        if name not in self._enabled:
            known = ", ".join(n for n in self._enabled if n != "kill_switch") or "none"
            raise KeyError(f"unknown or unconfigured gate rule {name!r}; configured: {known}")
        with self._lock:
            self._enabled[name] = bool(enabled)
            self._compile()

    def rules(self) -> list[RuleInfo]:
        """Every configured rule with its action, state and parameters, for operators."""
        cfg, out = self._cfg, [RuleInfo("kill_switch", "kill_switch", "block", self._kill,
                                        None, ())]
        classic: dict[str, tuple[str, str | None, tuple[tuple[str, str], ...]]] = {
            "max_order_qty": (cfg.max_order_qty_action, None,
                              tuple((k, _plain(v)) for k, v in cfg.max_order_qty.items())),
            "max_notional": (cfg.max_notional_action, cfg.max_notional_stale_policy,
                             (("limit_usd", _plain(cfg.max_notional_usd or Decimal(0))),
                              ("stale_book_s", f"{cfg.stale_book_s:g}"))),
            "price_collar": (cfg.price_collar_action, cfg.price_collar_stale_policy,
                             (("collar_bps", _plain(cfg.price_collar_bps or Decimal(0))),
                              ("stale_book_s", f"{cfg.stale_book_s:g}"))),
            "max_orders_per_s": (cfg.max_orders_per_s_action, None,
                                 (("max_orders", str(cfg.max_orders_per_s)),
                                  ("window_s", f"{cfg.rate_window_s:g}"))),
            "max_open_orders": (cfg.max_open_orders_action, None,
                                (("max_open_orders", str(cfg.max_open_orders)),)),
        }
        for name in self._classic[1:]:
            action, stale, params = classic[name]
            out.append(RuleInfo(name, name, action, self._enabled[name], stale, params))
        for r in cfg.signal_rules:
            params = tuple((k, _plain(v)) for k, v in r.params.items())
            params += (("max_age_s", f"{r.max_age_s:g}"),)
            params += tuple((f"max_input_age_s.{k}", f"{v:g}")
                            for k, v in r.max_input_age_s.given().items())
            if r.reduce_to_fraction is not None:
                params += (("reduce_to_fraction", _plain(r.reduce_to_fraction)),)
            out.append(RuleInfo(r.name, r.kind, r.action, self._enabled[r.name], r.stale_policy,
                                params, r.symbols))
        return out

    def describe(self) -> dict[str, Any]:
        """A JSON-able view of the rules (for the admin service and logs)."""
        return {"kill_switch": self._kill,
                "rules": [{"name": r.name, "kind": r.kind, "action": r.action,
                           "enabled": r.enabled, "stale_policy": r.stale_policy,
                           "params": dict(r.params), "symbols": list(r.symbols)}
                          for r in self.rules()]}
