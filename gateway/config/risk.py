"""The ``[risk]`` table: pre-trade gate limits and signal rules (shared/signals.md §8).

Every order from every entry point passes the gate before routing, and so does every replace
that adds quantity or moves the price (as the order's new version). This model is what an
operator writes; ``gateway.risk.gate.Gate`` compiles it once at start so the order path never
parses or looks anything up by name.

Example (every key optional; the values shown are the defaults unless marked "example")::

    [risk]
    kill_switch = false                  # true: every order is blocked until an operator clears it
    max_order_qty = {}                   # per symbol, "*" = any other; e.g. { "BTC/USD" = "5" }
    max_order_qty_action = "block"       # allow | warn | reduce (to the limit) | block
    # max_notional_usd = "1000000"       # off; qty x limit (sell: max(limit, mid); market: mid)
    max_notional_action = "block"        # allow | warn | reduce (to limit / price) | block
    max_notional_stale_policy = "block"  # market order, no fresh mid to value it: allow|warn|block
    # price_collar_bps = 500             # unset (off); limit price within 5 % of mid
    price_collar_action = "block"        # allow | warn | block
    price_collar_stale_policy = "block"  # limit order and the book is stale or missing
    # max_orders_per_s = 50              # unset (off); routed orders per symbol per window
    max_orders_per_s_action = "block"    # allow | warn | block
    rate_window_s = 1.0                  # the sliding window of max_orders_per_s
    # max_open_orders = 200              # unset (off); open orders per OMS session
    max_open_orders_action = "block"     # allow | warn | block
    stale_book_s = 5.0                   # a book (mid) older than this is a stale input

    [[risk.signal_rules]]                # example: the worked example's rule (§9)
    name = "carry_gravity_long"
    kind = "crowded_long"                # crowded_long | crowded_short |
                                         #   min_confidence_against_bias
    action = "block"                     # default block; allow | warn | reduce | block
    stale_policy = "warn"                # default warn; allow | warn | block
    max_age_s = 60                       # default 60: every input it reads, at decision time,
                                         #   except those named in max_input_age_s
    max_input_age_s = { funding = 4200, book = 10 }   # default {}: per-input limits, seconds
    params = { min_funding_excess_bps = "1000", max_gravity = "-0.25", min_liq_to_depth = "1.0" }
    reduce_to_fraction = "0.5"           # required when action = "reduce"; ignored otherwise
    symbols = ["PF_ARBUSD"]              # default ["*"] = every order symbol
    enabled = true

(TOML has no null: "unset" means leave the key out. ``allow`` as an action evaluates the rule
and records it in the decision without effect, a dry run before ``warn``.)

Why the classic limits are off by default: the embedded UAT deployment runs with no file at
all, the FIX benchmarks push thousands of orders per second on one symbol, and a quantity or
notional limit only means something per instrument. A production file sets all five; the
example values above are a reasonable start for a single desk. The actions and stale
policies default to ``block`` (fail closed), as a risk check should once it is switched on.

Signal rules default to ``stale_policy = "warn"``: a signal snapshot is an extra pipeline
(funding, positioning, liquidation map) whose outage should be loud but should not by itself
halt trading on a symbol; set ``"block"`` where the rule is a hard control.

Signal rule parameters (Decimal strings; a rule fires only when *every* given condition holds,
so at least one is required). Snapshot figures are defined in shared/signals.md:

``crowded_long`` (checked on buys: buying into crowded longs that liquidations can push down)
    ``min_funding_excess_bps``  funding_excess_bps >= value (longs pay at least this, ann.)
    ``min_carry_bps``           carry_ann_bps >= value
    ``max_gravity``             gravity <= value (negative = pulled down to long liquidations)
    ``min_liq_to_depth``        liq_to_depth_long >= value (long liqs ÷ bids in the band)
    ``min_at_risk_share``       at_risk_share_long >= value (in [0, 1])
    ``min_oi_asymmetry``        oi_asymmetry (long/short) >= value; "inf" passes, "undefined"
                                does not
``crowded_short`` (checked on sells; the mirror)
    ``max_funding_excess_bps``  funding_excess_bps <= value (e.g. "-1000": shorts pay)
    ``max_carry_bps``           carry_ann_bps <= value
    ``min_gravity``             gravity >= value (positive = pulled up to short liquidations)
    ``min_liq_to_depth``        liq_to_depth_short >= value (short liqs ÷ asks in the band)
    ``min_at_risk_share``       at_risk_share_short >= value
    ``min_short_asymmetry``     short/long >= value (e.g. "5" = 5x short); "undefined" fails
``min_confidence_against_bias`` (both sides: trading against the snapshot's vote)
    ``min_confidence``          the bias is opposite to the order side (buy vs "short",
                                sell vs "long") and confidence >= value (in [0, 1])

Staleness of a signal rule: each condition names the snapshot inputs it needs (funding for
funding/carry; liquidation map and book for gravity and liq_to_depth; liquidation map for
at_risk_share; positioning for the asymmetry; all inputs for min_confidence; the mark always).
An input's age at decision time is its age in the snapshot plus the snapshot's own age; if any
needed input is missing, not a number, or older than its limit, the rule is not evaluated and
``stale_policy`` decides instead, with a text naming each input too old and its limit.

An input's limit is ``max_input_age_s.<input>`` when given, else ``max_age_s``. Inputs differ
by nature: the funding rate settles hourly (its age runs up to an hour and then some), a book
should be seconds old, so a rule reading both sets ``max_age_s = 60`` and
``max_input_age_s = { funding = 4200 }`` rather than one limit that is either always stale or
accepts an hour-old book. The keys are ``mark``, ``funding``, ``liquidation_map``, ``book``,
``positioning``, ``open_interest`` and ``closes`` (the SignalService ``ages`` names); a key for
an input none of the rule's conditions read is a config error naming the inputs it does read,
as a limit that can never apply is most likely a mistake (a misspelt key fails as an unknown
field). ``min_confidence`` reads every input the snapshot has (its votes): with one limit it
checks the snapshot's oldest present input (``max_age_s`` field, texts say "oldest input");
with ``max_input_age_s`` it checks each present input against its own limit (an absent input
has no vote and is not "missing", as before). ``fixgwctl gate rules`` lists the overrides as
``max_input_age_s.<input>`` parameters.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Final, Literal, TypeAlias

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from gateway.config.strict import StrictModel

Action: TypeAlias = Literal["allow", "warn", "reduce", "block"]
NoReduceAction: TypeAlias = Literal["allow", "warn", "block"]
StalePolicy: TypeAlias = Literal["allow", "warn", "block"]
RuleKind: TypeAlias = Literal["crowded_long", "crowded_short", "min_confidence_against_bias"]

CLASSIC_RULES: Final = (
    "kill_switch",
    "max_order_qty",
    "max_notional",
    "price_collar",
    "max_orders_per_s",
    "max_open_orders",
)
"""Names of the built-in rules as they appear in Texts, events and ``Gate.rules()``."""

RULE_PARAMS: Final[dict[str, tuple[str, ...]]] = {
    "crowded_long": (
        "min_funding_excess_bps",
        "min_carry_bps",
        "max_gravity",
        "min_liq_to_depth",
        "min_at_risk_share",
        "min_oi_asymmetry",
    ),
    "crowded_short": (
        "max_funding_excess_bps",
        "max_carry_bps",
        "min_gravity",
        "min_liq_to_depth",
        "min_at_risk_share",
        "min_short_asymmetry",
    ),
    "min_confidence_against_bias": ("min_confidence",),
}
"""Allowed ``params`` keys per rule kind (semantics in the module docstring)."""

# Parameters with a bounded domain: a value outside it can never (or always) match, which is a
# config mistake worth failing on at start.
_PARAM_RANGES: Final[dict[str, tuple[float, float]]] = {
    "max_gravity": (-1.0, 1.0),
    "min_gravity": (-1.0, 1.0),
    "min_liq_to_depth": (0.0, math.inf),
    "min_at_risk_share": (0.0, 1.0),
    "min_oi_asymmetry": (0.0, math.inf),
    "min_short_asymmetry": (0.0, math.inf),
    "min_confidence": (0.0, 1.0),
}

_RULE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$")


def _to_decimal(value: object) -> object:
    """Decimal strings (the documented form), ints, or floats via their shortest repr."""
    if isinstance(value, bool):
        raise ValueError('must be a number as a string, e.g. "5", not a boolean')
    if isinstance(value, float):
        value = repr(value)  # 0.1 -> Decimal("0.1"), not 0.1000000000000000055511151231257827
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str):
        try:
            d = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(
                f'must be a decimal number as a string, e.g. "5", got {value!r}'
            ) from None
        if not d.is_finite():
            raise ValueError(f"must be a finite number, got {value!r}")
        return d
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"must be a finite number, got {value}")
        return value
    raise ValueError(f'must be a decimal number as a string, e.g. "5", got {value!r}')


def _positive(value: Decimal) -> Decimal:
    if value <= 0:
        raise ValueError(f"must be > 0, got {value}")
    return value


def _fraction(value: Decimal) -> Decimal:
    if not 0 < value < 1:
        raise ValueError(f"must be a fraction strictly between 0 and 1, got {value}")
    return value


DecimalValue = Annotated[Decimal, BeforeValidator(_to_decimal)]
PositiveDecimal = Annotated[Decimal, BeforeValidator(_to_decimal), AfterValidator(_positive)]
Fraction = Annotated[Decimal, BeforeValidator(_to_decimal), AfterValidator(_fraction)]


SIGNAL_INPUTS: Final = (
    "mark",
    "funding",
    "liquidation_map",
    "book",
    "positioning",
    "open_interest",
    "closes",
)
"""The snapshot inputs a signal rule can read, as ``max_input_age_s`` keys, in listing order
(the SignalService ``ages`` names without ``_s``; texts write ``liquidation map`` and
``open interest``)."""

PARAM_INPUTS: Final[dict[str, tuple[str, ...]]] = {
    "min_funding_excess_bps": ("funding",),
    "max_funding_excess_bps": ("funding",),
    "min_carry_bps": ("funding",),
    "max_carry_bps": ("funding",),
    "max_gravity": ("liquidation_map", "book"),
    "min_gravity": ("liquidation_map", "book"),
    "min_liq_to_depth": ("liquidation_map", "book"),
    "min_at_risk_share": ("liquidation_map",),
    "min_oi_asymmetry": ("positioning",),
    "min_short_asymmetry": ("positioning",),
    "min_confidence": SIGNAL_INPUTS,  # the votes: every input the snapshot has
}
"""The inputs each parameter's condition reads (besides the mark, which every rule reads)."""


class InputAges(StrictModel):
    """``max_input_age_s``: per-input age limits in seconds; an input left out is held to the
    rule's ``max_age_s``. A misspelt key fails like any unknown field."""

    mark: float | None = Field(default=None, gt=0.0)
    funding: float | None = Field(default=None, gt=0.0)
    liquidation_map: float | None = Field(default=None, gt=0.0)
    book: float | None = Field(default=None, gt=0.0)
    positioning: float | None = Field(default=None, gt=0.0)
    open_interest: float | None = Field(default=None, gt=0.0)
    closes: float | None = Field(default=None, gt=0.0)

    def given(self) -> dict[str, float]:
        """The limits the operator set, in ``SIGNAL_INPUTS`` order."""
        return {k: v for k in SIGNAL_INPUTS if (v := getattr(self, k)) is not None}


class SignalRuleConfig(StrictModel):
    """One rule over the symbol's precomputed ``SignalSnapshot``; see the module docstring."""

    name: str
    kind: RuleKind
    action: Action = "block"
    stale_policy: StalePolicy = "warn"
    max_age_s: float = Field(default=60.0, gt=0.0)
    max_input_age_s: InputAges = Field(default_factory=InputAges)
    params: dict[str, DecimalValue] = Field(default_factory=dict)
    reduce_to_fraction: Fraction | None = None
    symbols: tuple[str, ...] = ("*",)
    enabled: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> SignalRuleConfig:
        if not _RULE_NAME.match(self.name):
            raise ValueError(
                f"name: {self.name!r} must start with a letter and be 1-64 characters of "
                "letters, digits, '_', '.', '-'"
            )
        if self.name in CLASSIC_RULES:
            raise ValueError(f"name: {self.name!r} is a built-in rule name; pick another")
        allowed = RULE_PARAMS[self.kind]
        for key, value in self.params.items():
            if key not in allowed:
                raise ValueError(
                    f"params.{key}: not a parameter of kind {self.kind!r}; "
                    f"use one of {', '.join(allowed)}"
                )
            lo, hi = _PARAM_RANGES.get(key, (-math.inf, math.inf))
            if not lo <= float(value) <= hi:
                raise ValueError(f"params.{key}: must be within [{lo:g}, {hi:g}], got {value}")
        if not self.params:
            raise ValueError(
                f"params: kind {self.kind!r} needs at least one of {', '.join(allowed)} "
                "(a rule without conditions would fire on every order)"
            )
        reads = self.inputs()
        for key in self.max_input_age_s.given():
            if key not in reads:
                raise ValueError(
                    f"max_input_age_s.{key}: rule {self.name!r} does not read {key}; its "
                    f"conditions read {', '.join(reads)}"
                )
        if self.action == "reduce" and self.reduce_to_fraction is None:
            raise ValueError(
                'reduce_to_fraction: required when action = "reduce" (e.g. "0.5" halves the order)'
            )
        if not self.symbols or any(not s.strip() for s in self.symbols):
            raise ValueError(
                'symbols: give order symbols or ["*"] for all; empty names are invalid'
            )
        return self

    def inputs(self) -> tuple[str, ...]:
        """The snapshot inputs the rule's conditions read, mark first, in ``SIGNAL_INPUTS``
        order."""
        reads = {"mark", *(i for p in self.params for i in PARAM_INPUTS.get(p, ()))}
        return tuple(i for i in SIGNAL_INPUTS if i in reads)


class GateConfig(StrictModel):
    """The pre-trade gate's limits and rules; defaults and semantics in the module docstring."""

    kill_switch: bool = False
    max_order_qty: dict[str, PositiveDecimal] = Field(default_factory=dict)
    max_order_qty_action: Action = "block"
    max_notional_usd: PositiveDecimal | None = None
    max_notional_action: Action = "block"
    max_notional_stale_policy: StalePolicy = "block"
    price_collar_bps: PositiveDecimal | None = None
    price_collar_action: NoReduceAction = "block"
    price_collar_stale_policy: StalePolicy = "block"
    max_orders_per_s: int | None = Field(default=None, ge=1, le=1_000_000)
    max_orders_per_s_action: NoReduceAction = "block"
    rate_window_s: float = Field(default=1.0, gt=0.0, le=3600.0)
    max_open_orders: int | None = Field(default=None, ge=1)
    max_open_orders_action: NoReduceAction = "block"
    stale_book_s: float = Field(default=5.0, gt=0.0)
    signal_rules: tuple[SignalRuleConfig, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> GateConfig:
        for key in self.max_order_qty:
            if not key.strip():
                raise ValueError('max_order_qty: empty symbol key; use a symbol or "*"')
        seen: set[str] = set()
        for rule in self.signal_rules:
            if rule.name in seen:
                raise ValueError(f"signal_rules: rule name {rule.name!r} is used twice")
            seen.add(rule.name)
        return self
