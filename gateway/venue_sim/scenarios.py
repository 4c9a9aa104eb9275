"""Named perpetual-market scenarios for the simulator's Kraken Futures face.

Why scenarios and not a random walk: every signal in ``gateway.signals`` has a hand-computable
acceptance vector (``shared/signals.md`` §9). The simulator must be able to *serve exactly those
figures* over the real wire formats, so that a test can go venue -> client -> signal and compare
with the worked example, and so that ops can rehearse "what does the gate do when funding flips"
without waiting for the market to do it.

A scenario fixes, per perpetual:

* ``mark_price`` and ``index_price`` (the spot index; basis = (mark - index) / index);
* ``funding_rate_rel``: the **relative** funding rate per interval (a fraction of notional, as in
  Kraken's ``relativeFundingRate``). The ticker and history carry Kraken's **absolute** rate,
  derived here and nowhere else (kraken-api.md §5): linear ``PF_`` contracts
  ``absolute = relative × mark`` (USD per 1 unit of base); inverse ``PI_`` contracts
  ``absolute = relative / mark``;
* ``funding_interval_h`` and ``funding_history_len`` (N settlements, ascending, spaced by the
  interval; Kraken settles hourly today, older data is 4-hourly);
* ``open_interest`` in contracts (= base units for ``PF_``, contract size 1) and, derived,
  ``open_interest_usd``; ``vol24h`` in contracts;
* optionally a ``positioning`` record (cohort, long_usd, short_usd). Kraken publishes **no**
  open interest by side (signals.md §2), so the Futures REST face never serves it: it is here so
  that a test can push the same cohort figures the gateway would receive over gRPC.

Built-in scenarios (``SCENARIOS``):

* ``"default"``: calm BTC and ARB, small positive funding, balanced cohort positioning.
* ``"arb-crowded-long"``: the worked example (signals.md §9) on ``PF_ARBUSD``: index 0.111,
  mark 0.11092563 (basis exactly -6.7 bps), relative funding 0.0000125 per 1 h (1095.0 bps/yr),
  cohort ``top_accounts`` 78.53e6 USD long / 8.71e6 USD short (9.0x); ``PF_XBTUSD`` calm.
* ``"legacy-4h"``: both perps settling every 4 h, for interval-inference tests (§9 T2).

Scenario files (TOML or JSON, chosen by suffix) let ops and tests add their own. Numbers may be
written as strings or numbers; both are read exactly (floats are parsed as ``Decimal``)::

    name = "arb-funding-flip"
    description = "ARB funding turns negative"
    base = "arb-crowded-long"          # optional: start from a built-in, override per field

    [perps.PF_ARBUSD]
    funding_rate_rel = "-0.00002"      # per interval, a fraction (NOT percent)
    basis_bps = "3.5"                  # alternative to mark_price: mark = index × (1 + bps/1e4)
    open_interest_usd = "50e6"         # alternative to open_interest (contracts)

    [perps.PF_ARBUSD.positioning]
    cohort = "top_accounts"
    long_usd = "10e6"
    short_usd = "30e6"

Every problem in a file is reported at once, each with its key path (``perps.PF_ARBUSD.mark_price:
must be > 0``), because a rehearsal that fails on the third typo after two restarts wastes more
time than the typo.
"""

from __future__ import annotations

import json
import math
import re
import time
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TypeAlias

from gateway.venue_sim.instruments import INSTRUMENTS, PERP_SYMBOLS, InstrumentKind

__all__ = [
    "MAX_ABS_RELATIVE_FUNDING",
    "SCENARIOS",
    "ContractType",
    "FigureError",
    "FundingSettlement",
    "PerpFigures",
    "Positioning",
    "Scenario",
    "ScenarioError",
    "get_scenario",
    "iso_utc_ms",
    "load_scenario",
    "resolve_scenario",
    "scenario_from_mapping",
    "scenario_names",
]

ContractType: TypeAlias = Literal["linear", "inverse"]

#: Largest |relative funding| per interval a scenario accepts. 1 % per interval is far beyond any
#: real print (Kraken caps PF_ at ``maxRelativeFundingRate`` 0.001); the bound exists to catch a
#: rate typed in percent (``1.25`` meaning 0.0125 %) before it silently means 1095 % per hour.
MAX_ABS_RELATIVE_FUNDING = Decimal("0.01")

_BPS = Decimal(10000)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_MAX_HISTORY = 100_000


class ScenarioError(ValueError):
    """A scenario (built in code, read from a file, or overridden at runtime) is invalid.

    ``problems`` lists every problem found, each prefixed with its key path, so that a file with
    several mistakes is fixed in one round.
    """

    def __init__(self, source: str, problems: Iterable[str]) -> None:
        self.source = source
        self.problems: tuple[str, ...] = tuple(problems)
        joined = "\n  - ".join(self.problems)
        super().__init__(f"invalid scenario {source}:\n  - {joined}")


class FigureError(ValueError):
    """``PerpFigures`` invariants broken; ``problems`` keeps one message per field."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__("; ".join(self.problems))


def iso_utc_ms(epoch_s: float) -> str:
    """Kraken Futures' timestamp form, ``2022-06-28T09:29:04.243Z`` (UTC, milliseconds, ``Z``).

    Used for ``serverTime``, ``lastTime`` and funding ``timestamp`` so that clients parsing the
    real venue's strings parse ours too.
    """
    ms = math.floor(epoch_s * 1000.0 + 1e-6)
    dt = datetime.fromtimestamp(ms // 1000, tz=UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def contract_type(symbol: str) -> ContractType:
    """Kraken's prefixes: ``PF_``/``FF_`` linear (USD-margined), ``PI_``/``FI_`` inverse."""
    return "inverse" if symbol.upper().startswith(("PI_", "FI_")) else "linear"


@dataclass(frozen=True, slots=True)
class Positioning:
    """A cohort's side split (signals.md §2): ``{cohort, method, long_usd, short_usd}``.

    Not served by the Futures REST face (Kraken has no such endpoint); tests push it to the
    gateway the way a real cohort feed would.
    """

    cohort: str
    long_usd: Decimal
    short_usd: Decimal
    method: str = "scenario"

    def __post_init__(self) -> None:
        if not self.cohort.strip():
            raise ValueError("positioning.cohort must be a non-empty name (a readout says "
                             "'9.0x by <cohort>', never a bare ratio)")
        for name in ("long_usd", "short_usd"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                raise ValueError(f"positioning.{name} must be a finite Decimal >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class FundingSettlement:
    """One ``historical-funding-rates`` record exactly as the wire carries it.

    ``timestamp`` is the *start* of the period the rate applies to (Kraken's definition);
    ``funding_rate`` is absolute, ``relative_funding_rate`` relative (kraken-api.md §5).
    """

    timestamp: str
    funding_rate: Decimal
    relative_funding_rate: Decimal

    def as_json(self) -> dict[str, object]:
        """Kraken's field names, values still ``Decimal`` (the server writes them as numbers)."""
        return {
            "timestamp": self.timestamp,
            "fundingRate": self.funding_rate,
            "relativeFundingRate": self.relative_funding_rate,
        }


@dataclass(frozen=True, slots=True)
class PerpFigures:
    """The figures one perpetual shows in one scenario (see the module docstring for units)."""

    symbol: str
    mark_price: Decimal
    index_price: Decimal
    funding_rate_rel: Decimal
    open_interest: Decimal
    vol24h: Decimal
    funding_interval_h: int = 1
    funding_history_len: int = 48
    #: Venue's estimate for the next interval; ``None`` means "same as the current rate".
    funding_rate_prediction_rel: Decimal | None = None
    #: Optional explicit path of relative rates, oldest first, ending with ``funding_rate_rel``;
    #: empty means every settlement in the history has the current rate (a flat history keeps
    #: "last", "24h mean" and "predicted" funding sources equal, which the worked example needs).
    funding_history_rel: tuple[Decimal, ...] = ()
    #: Price 24 h ago (drives open24h/high24h/low24h/change24h); ``None`` means unchanged.
    open24h: Decimal | None = None
    suspended: bool = False
    positioning: Positioning | None = None

    def __post_init__(self) -> None:
        problems = _figure_problems(self)
        if problems:
            raise FigureError(problems)

    @property
    def contract(self) -> ContractType:
        """Linear or inverse, from the symbol prefix (decides absolute <-> relative)."""
        return contract_type(self.symbol)

    @property
    def funding_rate_abs(self) -> Decimal:
        """Kraken's ticker ``fundingRate`` for the current interval (absolute)."""
        return self.absolute_rate(self.funding_rate_rel)

    @property
    def prediction_rel(self) -> Decimal:
        """The predicted relative rate actually served (defaults to the current one)."""
        if self.funding_rate_prediction_rel is None:
            return self.funding_rate_rel
        return self.funding_rate_prediction_rel

    @property
    def funding_rate_prediction_abs(self) -> Decimal:
        """Kraken's ticker ``fundingRatePrediction`` (absolute)."""
        return self.absolute_rate(self.prediction_rel)

    @property
    def open_interest_usd(self) -> Decimal:
        """OI notional: contracts × mark for linear (contract size 1); inverse contracts are USD."""
        if self.contract == "inverse":
            return self.open_interest
        return self.open_interest * self.mark_price

    @property
    def basis_bps(self) -> Decimal:
        """signals.md §1 with ``P_ref = mark``: ``(mark - index) / index × 1e4``."""
        return (self.mark_price - self.index_price) / self.index_price * _BPS

    def absolute_rate(self, relative: Decimal) -> Decimal:
        """kraken-api.md §5: linear ``abs = rel × mark``; inverse ``abs = rel / mark``."""
        if self.contract == "inverse":
            return relative / self.mark_price
        return relative * self.mark_price

    def relative_path(self) -> tuple[Decimal, ...]:
        """The N relative rates of the history, oldest first."""
        if self.funding_history_rel:
            return self.funding_history_rel
        return (self.funding_rate_rel,) * self.funding_history_len


def _is_dec(value: object) -> bool:
    return isinstance(value, Decimal) and value.is_finite()


def _figure_problems(f: PerpFigures) -> list[str]:
    """Every invariant of one perp's figures, as messages keyed by field name."""
    out: list[str] = []
    inst = INSTRUMENTS.get(f.symbol)
    if inst is None or inst.kind is not InstrumentKind.PERPETUAL:
        out.append(f"symbol {f.symbol!r} is not a perpetual the simulator lists "
                   f"(known: {', '.join(PERP_SYMBOLS)})")
    for name in ("mark_price", "index_price"):
        v = getattr(f, name)
        if not _is_dec(v) or v <= 0:
            out.append(f"{name}: must be a finite Decimal > 0, got {v!r}")
    for name in ("open_interest", "vol24h"):
        v = getattr(f, name)
        if not _is_dec(v) or v < 0:
            out.append(f"{name}: must be a finite Decimal >= 0, got {v!r}")
    rates: list[tuple[str, object]] = [("funding_rate_rel", f.funding_rate_rel)]
    if f.funding_rate_prediction_rel is not None:
        rates.append(("funding_rate_prediction_rel", f.funding_rate_prediction_rel))
    rates += [(f"funding_history_rel[{i}]", r) for i, r in enumerate(f.funding_history_rel)]
    for name, r in rates:
        if not isinstance(r, Decimal) or not r.is_finite():
            out.append(f"{name}: must be a finite Decimal, got {r!r}")
        elif abs(r) > MAX_ABS_RELATIVE_FUNDING:
            out.append(f"{name}: |{r}| exceeds {MAX_ABS_RELATIVE_FUNDING} per interval; rates "
                       "are fractions per interval (0.0000125), not percent")
    h = f.funding_interval_h
    if isinstance(h, bool) or not isinstance(h, int) or not 1 <= h <= 24 or 24 % h:
        out.append(f"funding_interval_h: must be a whole number of hours dividing 24 "
                   f"(1, 2, 3, 4, 6, 8, 12, 24), got {h!r}")
    n = f.funding_history_len
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= _MAX_HISTORY:
        out.append(f"funding_history_len: must be an integer in 1..{_MAX_HISTORY}, got {n!r}")
    if f.funding_history_rel:
        if len(f.funding_history_rel) != n:
            out.append(f"funding_history_rel: has {len(f.funding_history_rel)} rates but "
                       f"funding_history_len is {n}")
        elif f.funding_history_rel[-1] != f.funding_rate_rel:
            out.append(f"funding_history_rel: last rate {f.funding_history_rel[-1]} must equal "
                       f"funding_rate_rel {f.funding_rate_rel} (the ticker's current rate is the "
                       "latest settlement's)")
    if f.open24h is not None and (not _is_dec(f.open24h) or f.open24h <= 0):
        out.append(f"open24h: must be a finite Decimal > 0, got {f.open24h!r}")
    if not isinstance(f.suspended, bool):
        out.append(f"suspended: must be true or false, got {f.suspended!r}")
    p = f.positioning
    if p is not None and not out:
        oi_usd = f.open_interest_usd
        for side in ("long_usd", "short_usd"):
            if getattr(p, side) > oi_usd:
                out.append(f"positioning.{side}: {getattr(p, side):f} exceeds the whole open "
                           f"interest ({oi_usd:.2f} USD at mark); a cohort cannot hold more "
                           "than every contract")
    return out


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named set of perp figures; immutable so the server can swap it atomically."""

    name: str
    perps: Mapping[str, PerpFigures]
    description: str = ""
    #: Where it came from ("builtin" or a file path), for logs and error messages.
    source: str = field(default="builtin", compare=False)

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            problems.append(f"name: {self.name!r} must be 1-64 characters of letters, digits, "
                            "'.', '_' or '-'")
        if not self.perps:
            problems.append("perps: a scenario needs at least one perpetual")
        for key, fig in self.perps.items():
            if not isinstance(fig, PerpFigures):
                problems.append(f"perps.{key}: expected PerpFigures, got {type(fig).__name__}")
            elif key != fig.symbol:
                problems.append(f"perps.{key}: keyed under a different symbol ({fig.symbol})")
        if problems:
            raise ScenarioError(repr(self.name), problems)
        object.__setattr__(self, "perps", MappingProxyType(dict(sorted(self.perps.items()))))

    def perp(self, symbol: str) -> PerpFigures:
        """The figures of ``symbol`` (case-insensitive, as Kraken's endpoints are)."""
        fig = self.perps.get(symbol) or self.perps.get(symbol.upper())
        if fig is None:
            raise KeyError(f"scenario {self.name!r} has no perpetual {symbol!r} "
                           f"(has: {', '.join(self.perps)})")
        return fig

    def funding_history(
        self, symbol: str, now: float | datetime | None = None
    ) -> list[FundingSettlement]:
        """The ``historical-funding-rates`` records of ``symbol`` as of ``now``, ascending.

        The last record starts at the most recent interval boundary at or before ``now``
        (boundaries are multiples of the interval since the Unix epoch, i.e. whole UTC hours for
        1 h), because Kraken stamps a record with the start of the period it applies to and
        publishes it when the period begins. Absolute rates use today's mark for every record: the
        simulator keeps no price history, and relative rates (what signals use) are exact.
        """
        fig = self.perp(symbol)
        if now is None:
            now_s = time.time()
        elif isinstance(now, datetime):
            if now.tzinfo is None:
                raise ValueError("funding_history: `now` must be timezone-aware (UTC)")
            now_s = now.timestamp()
        else:
            now_s = float(now)
        step = fig.funding_interval_h * 3600
        last = int(now_s // step) * step
        path = fig.relative_path()
        first = last - (len(path) - 1) * step
        return [
            FundingSettlement(iso_utc_ms(first + i * step), fig.absolute_rate(rel), rel)
            for i, rel in enumerate(path)
        ]

    def with_figures(self, symbol: str, **overrides: object) -> Scenario:
        """A copy with some of ``symbol``'s figures replaced (values coerced like file values).

        Accepts every ``PerpFigures`` field plus ``basis_bps`` (sets the mark from the index) and
        ``open_interest_usd`` (sets contracts from the mark). Raises :class:`ScenarioError`.
        """
        fig = self.perp(symbol)
        problems: list[str] = []
        new = _apply(fig.symbol, dict(overrides), fig, f"perps.{fig.symbol}", problems)
        if new is None:
            raise ScenarioError(f"{self.name!r} (override)", problems)
        return replace(self, perps={**self.perps, fig.symbol: new})


# --------------------------------------------------------------------------------------------
# Coercion and overrides (shared by files and runtime overrides)

_DEC_FIELDS = frozenset({"mark_price", "index_price", "funding_rate_rel", "open_interest",
                         "vol24h", "funding_rate_prediction_rel", "open24h"})
_INT_FIELDS = frozenset({"funding_interval_h", "funding_history_len"})
_PSEUDO = frozenset({"basis_bps", "open_interest_usd"})
_FIELD_NAMES = frozenset(f.name for f in fields(PerpFigures)) - {"symbol"}
_ALLOWED = _FIELD_NAMES | _PSEUDO
_REQUIRED_NEW = (("index_price",), ("mark_price", "basis_bps"),
                 ("funding_rate_rel", "funding_history_rel"),
                 ("open_interest", "open_interest_usd"), ("vol24h",))
_POSITIONING_KEYS = frozenset({"cohort", "long_usd", "short_usd", "method"})


def _to_decimal(value: object, where: str, problems: list[str]) -> Decimal | None:
    """Exact decimal from a file/override value; floats go through ``repr`` (what was typed)."""
    if isinstance(value, bool):
        problems.append(f"{where}: expected a number, got a boolean")
        return None
    try:
        if isinstance(value, Decimal):
            dec = value
        elif isinstance(value, int):
            dec = Decimal(value)
        elif isinstance(value, float):
            dec = Decimal(repr(value))
        elif isinstance(value, str):
            dec = Decimal(value.strip().replace("_", ""))
        else:
            problems.append(f"{where}: expected a number, got {type(value).__name__}")
            return None
    except InvalidOperation:
        problems.append(f"{where}: {value!r} is not a number")
        return None
    if not dec.is_finite():
        problems.append(f"{where}: must be finite, got {value!r}")
        return None
    return dec


def _to_int(value: object, where: str, problems: list[str]) -> int | None:
    dec = _to_decimal(value, where, problems)
    if dec is None:
        return None
    if dec != dec.to_integral_value():
        problems.append(f"{where}: must be a whole number, got {value!r}")
        return None
    return int(dec)


def _to_positioning(value: object, where: str, problems: list[str]) -> Positioning | None:
    if isinstance(value, Positioning):
        return value
    if not isinstance(value, Mapping):
        problems.append(f"{where}: expected a table with cohort, long_usd, short_usd")
        return None
    unknown = sorted(set(value) - _POSITIONING_KEYS)
    if unknown:
        problems.append(f"{where}: unknown key(s) {', '.join(unknown)} "
                        f"(allowed: {', '.join(sorted(_POSITIONING_KEYS))})")
    missing = sorted({"cohort", "long_usd", "short_usd"} - set(value))
    if missing:
        problems.append(f"{where}: missing {', '.join(missing)}")
        return None
    before = len(problems)
    long_usd = _to_decimal(value["long_usd"], f"{where}.long_usd", problems)
    short_usd = _to_decimal(value["short_usd"], f"{where}.short_usd", problems)
    cohort, method = value["cohort"], value.get("method", "scenario")
    if not isinstance(cohort, str) or not isinstance(method, str):
        problems.append(f"{where}: cohort and method must be strings")
    if len(problems) > before or long_usd is None or short_usd is None:
        return None
    assert isinstance(cohort, str) and isinstance(method, str)
    try:
        return Positioning(cohort, long_usd, short_usd, method)
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return None


def _coerce(key: str, value: object, where: str, problems: list[str]) -> object:
    """One override value to the field's type; ``None`` clears an optional field."""
    if key in _DEC_FIELDS or key in _PSEUDO:
        if value is None and key in {"funding_rate_prediction_rel", "open24h"}:
            return None
        return _to_decimal(value, where, problems)
    if key in _INT_FIELDS:
        return _to_int(value, where, problems)
    if key == "suspended":
        if not isinstance(value, bool):
            problems.append(f"{where}: must be true or false, got {value!r}")
            return None
        return value
    if key == "positioning":
        return None if value is None else _to_positioning(value, where, problems)
    if key == "funding_history_rel":
        if isinstance(value, str) or not isinstance(value, Iterable):
            problems.append(f"{where}: expected a list of relative rates, oldest first")
            return None
        items = [_to_decimal(v, f"{where}[{i}]", problems) for i, v in enumerate(value)]
        return tuple(items) if all(i is not None for i in items) else None
    raise AssertionError(key)  # pragma: no cover - guarded by _ALLOWED


def _apply(
    symbol: str,
    raw: dict[str, object],
    base: PerpFigures | None,
    where: str,
    problems: list[str],
) -> PerpFigures | None:
    """Build (``base is None``) or override one perp's figures; ``None`` with problems on error."""
    before = len(problems)
    unknown = sorted(set(raw) - _ALLOWED)
    if unknown:
        problems.append(f"{where}: unknown key(s) {', '.join(unknown)} "
                        f"(allowed: {', '.join(sorted(_ALLOWED))})")
    missing: list[str] = []
    if base is None:
        missing = [" or ".join(alts) for alts in _REQUIRED_NEW if not any(a in raw for a in alts)]
        if missing:
            problems.append(f"{where}: missing required key(s): {'; '.join(missing)}")
    for a, b in (("mark_price", "basis_bps"), ("open_interest", "open_interest_usd")):
        if a in raw and b in raw:
            problems.append(f"{where}: give {a} or {b}, not both")
    shape_ok = len(problems) == before
    before_values = len(problems)
    vals = {k: _coerce(k, v, f"{where}.{k}", problems) for k, v in raw.items() if k in _ALLOWED}
    if len(problems) > before_values or missing:
        return None  # values unusable: invariants cannot be checked meaningfully

    current: dict[str, object] = {} if base is None else {
        f.name: getattr(base, f.name) for f in fields(PerpFigures)}
    current["symbol"] = symbol
    # An inherited explicit path no longer fits once the rate or the length changes.
    if "funding_history_rel" not in vals and (
            "funding_rate_rel" in vals or "funding_history_len" in vals):
        current["funding_history_rel"] = ()
    if "funding_history_rel" in vals:
        path = vals["funding_history_rel"]
        assert isinstance(path, tuple)
        if path:
            vals.setdefault("funding_rate_rel", path[-1])
            vals.setdefault("funding_history_len", len(path))
    basis = vals.pop("basis_bps", None)
    oi_usd = vals.pop("open_interest_usd", None)
    current.update(vals)
    if basis is not None:
        index = current.get("index_price")
        assert isinstance(basis, Decimal)
        if isinstance(index, Decimal) and index > 0:
            current["mark_price"] = index * (1 + basis / _BPS)
    if oi_usd is not None:
        assert isinstance(oi_usd, Decimal)
        mark, inst = current.get("mark_price"), INSTRUMENTS.get(symbol)
        if contract_type(symbol) == "inverse":
            current["open_interest"] = oi_usd
        elif isinstance(mark, Decimal) and mark > 0 and inst is not None:
            current["open_interest"] = (oi_usd / mark).quantize(inst.qty_quantum,
                                                                rounding=ROUND_HALF_EVEN)
    try:
        built = PerpFigures(**current)  # type: ignore[arg-type]
        # Unknown keys were reported above; the invariants were still checked so that one
        # round of fixes is enough.
        return built if shape_ok else None
    except FigureError as exc:
        problems.extend(f"{where}: {p}" for p in exc.problems)
        return None
    except (ValueError, TypeError) as exc:
        problems.append(f"{where}: {exc}")
        return None


# --------------------------------------------------------------------------------------------
# Files

def scenario_from_mapping(data: Mapping[str, Any], source: str = "<mapping>") -> Scenario:
    """Validate a parsed TOML/JSON document into a :class:`Scenario` (all problems at once)."""
    problems: list[str] = []
    if not isinstance(data, Mapping):
        raise ScenarioError(source, ["top level must be a table/object"])
    unknown = sorted(set(data) - {"name", "description", "base", "perps"})
    if unknown:
        problems.append(f"unknown top-level key(s) {', '.join(unknown)} "
                        "(allowed: name, description, base, perps)")
    name = data.get("name")
    if not isinstance(name, str):
        problems.append("name: required, a string")
    description = data.get("description", "")
    if not isinstance(description, str):
        problems.append("description: must be a string")
        description = ""
    start: dict[str, PerpFigures] = {}
    base_name = data.get("base")
    if base_name is not None:
        if not isinstance(base_name, str) or base_name not in SCENARIOS:
            problems.append(f"base: {base_name!r} is not a built-in scenario "
                            f"(known: {', '.join(SCENARIOS)})")
        else:
            start = dict(SCENARIOS[base_name].perps)
    perps_raw = data.get("perps", {})
    if not isinstance(perps_raw, Mapping):
        problems.append("perps: must be a table keyed by symbol")
        perps_raw = {}
    elif not perps_raw and base_name is None:
        problems.append("perps: at least one perpetual is required (or give `base`)")
    perps = dict(start)
    for sym, table in perps_raw.items():
        where = f"perps.{sym}"
        if not isinstance(table, Mapping):
            problems.append(f"{where}: must be a table")
            continue
        canonical = str(sym).upper()
        if canonical not in PERP_SYMBOLS:
            problems.append(f"{where}: not a perpetual the simulator lists "
                            f"(known: {', '.join(PERP_SYMBOLS)})")
            continue
        fig = _apply(canonical, dict(table), start.get(canonical), where, problems)
        if fig is not None:
            perps[canonical] = fig
    if problems:
        raise ScenarioError(source, problems)
    assert isinstance(name, str)
    try:
        return Scenario(name, perps, description, source=source)
    except ScenarioError as exc:
        raise ScenarioError(source, exc.problems) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read a ``.toml`` or ``.json`` scenario file; numbers are read exactly as ``Decimal``.

    A file without ``name`` takes its stem, so ``arb-flip.toml`` is scenario ``arb-flip``.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(str(p), [f"cannot read file: {exc.strerror}"]) from None
    suffix = p.suffix.lower()
    try:
        if suffix == ".toml":
            data: Any = tomllib.loads(text, parse_float=Decimal)
        elif suffix == ".json":
            data = json.loads(text, parse_float=Decimal)
        else:
            raise ScenarioError(str(p), [f"unknown file type {suffix!r}; use .toml or .json"])
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ScenarioError(str(p), [f"not valid {suffix[1:].upper()}: {exc}"]) from None
    if isinstance(data, dict) and "name" not in data:
        data = {**data, "name": p.stem}
    return scenario_from_mapping(data, str(p))


# --------------------------------------------------------------------------------------------
# Built-ins

def _mark_for_basis(index: str, basis_bps: str) -> Decimal:
    """The mark that gives exactly ``basis_bps`` against ``index`` (signals.md §1)."""
    return (Decimal(index) * (1 + Decimal(basis_bps) / _BPS)).normalize()


_BTC_CALM = PerpFigures(
    symbol="PF_XBTUSD",
    index_price=Decimal("45000.0"),
    mark_price=_mark_for_basis("45000.0", "1.2"),          # 45005.4
    funding_rate_rel=Decimal("0.0000012"),                  # 10.512 bps/yr at 1 h
    funding_rate_prediction_rel=Decimal("0.0000011"),
    open_interest=Decimal("2500.0000"),                     # BTC (~112.5M USD)
    vol24h=Decimal("4200.0000"),
    funding_interval_h=1,
    funding_history_len=48,
    open24h=Decimal("44820.0"),
    positioning=Positioning("top_accounts", Decimal("40.0e6"), Decimal("38.5e6")),
)

_ARB_CALM = PerpFigures(
    symbol="PF_ARBUSD",
    index_price=Decimal("0.1110"),
    mark_price=_mark_for_basis("0.1110", "0.9"),           # 0.11100999
    funding_rate_rel=Decimal("0.000001"),                   # 87.6 bps/yr at 1 h
    open_interest=Decimal("60000000"),                      # ARB (~6.66M USD)
    vol24h=Decimal("150000000"),
    funding_interval_h=1,
    funding_history_len=48,
    open24h=Decimal("0.1104"),
    positioning=Positioning("top_accounts", Decimal("3.1e6"), Decimal("3.0e6")),
)

#: signals.md §9: ARB perp at 0.111 spot, basis -6.7 bps, r = 0.0000125 per 1 h, 9.0x longs.
_ARB_CROWDED_LONG = PerpFigures(
    symbol="PF_ARBUSD",
    index_price=Decimal("0.111"),
    mark_price=_mark_for_basis("0.111", "-6.7"),           # 0.11092563
    funding_rate_rel=Decimal("0.0000125"),                  # 1095.0 bps/yr, simple
    open_interest=Decimal("800000000"),                     # ARB (~88.74M USD >= 78.53M long)
    vol24h=Decimal("400000000"),
    funding_interval_h=1,
    funding_history_len=72,
    open24h=Decimal("0.1135"),
    positioning=Positioning("top_accounts", Decimal("78.53e6"), Decimal("8.71e6")),
)


def _builtins() -> dict[str, Scenario]:
    four = {s: replace(f, funding_interval_h=4, funding_history_len=18)
            for s, f in (("PF_XBTUSD", _BTC_CALM), ("PF_ARBUSD", _ARB_CALM))}
    table = (
        Scenario("default", {"PF_XBTUSD": _BTC_CALM, "PF_ARBUSD": _ARB_CALM},
                 "calm BTC and ARB: small positive funding, balanced positioning"),
        Scenario("arb-crowded-long", {"PF_XBTUSD": _BTC_CALM, "PF_ARBUSD": _ARB_CROWDED_LONG},
                 "signals.md §9 worked example on PF_ARBUSD (funding 1095 bps/yr, basis "
                 "-6.7 bps, top_accounts 9.0x long); BTC calm"),
        Scenario("legacy-4h", four, "as default, but funding settles every 4 h (pre-2024 "
                                    "Kraken spacing) for interval inference"),
    )
    return {s.name: s for s in table}


#: The built-in scenarios by name (read-only).
SCENARIOS: Mapping[str, Scenario] = MappingProxyType(_builtins())


def scenario_names() -> tuple[str, ...]:
    """Names accepted by :func:`get_scenario` (and by the server's ``set_scenario``)."""
    return tuple(SCENARIOS)


def get_scenario(name: str) -> Scenario:
    """A built-in scenario by name, with the list of valid names in the error."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; built-in: {', '.join(SCENARIOS)} "
                       "(or give a .toml/.json file)") from None


def resolve_scenario(spec: Scenario | str | Path) -> Scenario:
    """A :class:`Scenario`, a built-in name, or a path to a scenario file."""
    if isinstance(spec, Scenario):
        return spec
    if isinstance(spec, str) and spec in SCENARIOS:
        return SCENARIOS[spec]
    p = Path(spec)
    if p.suffix.lower() in {".toml", ".json"}:
        return load_scenario(p)
    return get_scenario(str(spec))
