"""gRPC ``SignalService`` and ``PositioningService`` over a ``SignalRunner``, and the proto form
of a snapshot.

Why grpc.aio servicers hosted on the EventServer (``EventServer(extra_services=
signal_service_registrations(runner))``): operators get one port, one TLS setup, reflection and
health for everything the gateway serves; the handlers are coroutines on that server's loop and
only do dict reads and list appends on the runner, so they never hold the loop.

``Subscribe`` conflates: each stream keeps the newest pending snapshot per symbol, so a slow
client skips to newer snapshots instead of queueing stale ones or slowing the runner (only the
latest snapshot of a symbol is worth reading). Each stream starts with the current snapshot of
every requested symbol.

``Push`` validates everything and reports every problem at once, each naming its field
(``oi_intervals[2].high: must be > 0``), as INVALID_ARGUMENT; nothing is stored unless the whole
request is valid.

``snapshot_to_proto`` writes every component of the snapshot (figures as shortest round-trip
decimal strings; "inf"/"undefined" instead of non-finite or absent ratios, as signals.proto
says), so a client can explain any gate decision from the message alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal, InvalidOperation
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from gateway._proto.fixgw.v1 import signals_pb2, signals_pb2_grpc
from gateway.server.signal_runner import OiRow, SignalRunner
from gateway.signals import CascadeResult, KeyLevel, PositioningRecord, SignalSnapshot

__all__ = [
    "POSITIONING_SERVICE_NAME",
    "SIGNAL_SERVICE_NAME",
    "PositioningServicer",
    "PushRejected",
    "SignalServicer",
    "parse_push",
    "signal_service_registrations",
    "snapshot_to_proto",
]

SIGNAL_SERVICE_NAME: str = signals_pb2.DESCRIPTOR.services_by_name["SignalService"].full_name
POSITIONING_SERVICE_NAME: str = signals_pb2.DESCRIPTOR.services_by_name[
    "PositioningService"
].full_name

_DIRECTION = {
    "long": signals_pb2.SIGNAL_DIRECTION_LONG,
    "short": signals_pb2.SIGNAL_DIRECTION_SHORT,
    "neutral": signals_pb2.SIGNAL_DIRECTION_NEUTRAL,
}
_SIDE = {"long": signals_pb2.POSITION_SIDE_LONG, "short": signals_pb2.POSITION_SIDE_SHORT}
_TREND = {
    "trending": signals_pb2.REGIME_TREND_TRENDING,
    "ranging": signals_pb2.REGIME_TREND_RANGING,
}
_VOL = {
    "low": signals_pb2.VOLATILITY_BUCKET_LOW,
    "medium": signals_pb2.VOLATILITY_BUCKET_MEDIUM,
    "high": signals_pb2.VOLATILITY_BUCKET_HIGH,
}
# signals.proto documents these spellings; the signal module's literals differ slightly.
_FUNDING_SOURCE = {"24h_mean": "mean_24h"}
_STOP_REASON = {"no further level reached": "no_further_level"}


# ---------------------------------------------------------------------------------------------
# snapshot -> proto


def dec(x: float | None) -> str:
    """A float as a plain decimal string (shortest round trip, never exponent notation);
    ``None``/NaN -> "undefined", infinities -> "inf"/"-inf"."""
    if x is None or math.isnan(x):
        return "undefined"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    text = repr(float(x))
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    return text


def _age(x: float | None) -> str:
    return "" if x is None else dec(x)


def _ts(epoch_s: float) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromNanoseconds(round(epoch_s * 1e9))
    return t


def _level(k: KeyLevel) -> signals_pb2.KeyLevel:
    return signals_pb2.KeyLevel(
        price=dec(k.price),
        notional=dec(k.notional_usd),
        distance_pct=dec(k.distance_pct),
        distance_sigma=dec(k.distance_sigma),
        touch_probability=dec(k.touch_prob),
        side=_SIDE[k.side],
    )


def _cascade(c: CascadeResult) -> signals_pb2.CascadeResult:
    return signals_pb2.CascadeResult(
        side=_SIDE[c.side],
        depth_haircut=dec(c.haircut),
        liquidated_qty=dec(c.liquidated_qty),
        liquidated_share=dec(c.liquidated_share),
        end_price=dec(c.end_price),
        steps=c.steps,
        stop_reason=_STOP_REASON.get(c.stop_reason, c.stop_reason.replace(" ", "_")),
        amplification=dec(c.amplification),
        step_ratios=[dec(r) for r in c.step_ratios],
        self_sustaining=c.self_sustaining,
        book_exhausted=c.book_exhausted,
        shock_price=dec(c.shock_price),
        book_end_price=dec(c.book_end_price),
        mark_transmission=dec(c.mark_transmission),
        wave_sizes=[dec(w) for w in c.wave_sizes],
    )


def _vote_dir(s: SignalSnapshot, name: str) -> signals_pb2.SignalDirection.ValueType:
    v = s.vote(name)
    return _DIRECTION[v.direction] if v is not None else signals_pb2.SIGNAL_DIRECTION_UNSPECIFIED


def snapshot_to_proto(s: SignalSnapshot) -> signals_pb2.SignalSnapshot:
    """Every component of ``s`` as a ``fixgw.v1.SignalSnapshot`` (see module docstring)."""
    pos_as_of = s.as_of - (s.age_positioning_s or 0.0)
    asym = s.oi_asymmetry_status if s.oi_asymmetry is None else dec(s.oi_asymmetry)
    by_distance = lambda k: abs(k.distance_pct)  # noqa: E731 - proto: nearest first
    return signals_pb2.SignalSnapshot(
        symbol=s.symbol,
        computed_at=_ts(s.as_of),
        oldest_input_at=_ts(s.as_of - s.max_age_s),
        horizon_days=dec(s.horizon_days),
        reference_price=dec(s.price),
        carry=signals_pb2.CarrySignal(
            basis_bps=dec(s.basis_bps),
            basis_reference=s.price_ref_source,
            funding_rate=dec(s.funding_rate),
            funding_interval_h=dec(s.funding_interval_h),
            funding_source=_FUNDING_SOURCE.get(s.funding_source, s.funding_source),
            funding_ann_bps=dec(s.funding_ann_bps),
            baseline_ann_bps=dec(s.baseline_ann_bps),
            funding_excess_bps=dec(s.funding_excess_bps),
            carry_ann_bps=dec(s.carry_ann_bps),
            carry_horizon_days=dec(s.carry_horizon_days),
            vote=_vote_dir(s, "carry"),
            carry_excess_bps=dec(s.carry_excess_bps),
            vote_on=s.carry_vote_on,
            threshold_bps=dec(s.carry_threshold_bps),
            reference_price=dec(s.price_ref),
            spot_index=dec(s.spot_index),
        ),
        positioning=[
            signals_pb2.PositioningSignal(
                cohort=s.positioning_cohort,
                method=s.positioning_method,
                long_usd=dec(s.long_usd),
                short_usd=dec(s.short_usd),
                long_share=dec(s.long_share),
                oi_asymmetry=asym,
                as_of=_ts(pos_as_of),
                oi_asymmetry_status=s.oi_asymmetry_status,
                label=s.oi_asymmetry_label,
                aggressor_weight=dec(s.aggressor_weight),
            )
        ],
        gravity=signals_pb2.GravitySignal(
            gravity=dec(s.gravity),
            pull_up=dec(s.pull_up),
            pull_down=dec(s.pull_down),
            beta=dec(s.beta),
            supports=[_level(k) for k in sorted(s.key_levels_long, key=by_distance)],
            resistances=[_level(k) for k in sorted(s.key_levels_short, key=by_distance)],
            vote=_vote_dir(s, "gravity"),
        ),
        cascades=[_cascade(c) for c in (*s.cascade_long, *s.cascade_short)],
        risk=[
            signals_pb2.SideRiskFigures(
                side=signals_pb2.POSITION_SIDE_LONG,
                band=dec(s.risk_band),
                at_risk_share=dec(s.at_risk_share_long),
                liq_to_depth=dec(s.liq_to_depth_long),
                map_gross_to_net=dec(s.map_gross_to_net_long),
            ),
            signals_pb2.SideRiskFigures(
                side=signals_pb2.POSITION_SIDE_SHORT,
                band=dec(s.risk_band),
                at_risk_share=dec(s.at_risk_share_short),
                liq_to_depth=dec(s.liq_to_depth_short),
                map_gross_to_net=dec(s.map_gross_to_net_short),
            ),
        ],
        regime=signals_pb2.RegimeSignal(
            trend=_TREND.get(s.trend, signals_pb2.REGIME_TREND_UNSPECIFIED),
            efficiency_ratio=dec(s.efficiency_ratio),
            volatility=_VOL.get(s.vol_bucket, signals_pb2.VOLATILITY_BUCKET_UNSPECIFIED),
            realized_vol_daily=dec(s.sigma_d),
            trend_direction=_DIRECTION[s.trend_direction],
            vol_percentile=dec(s.vol_percentile),
            sigma_source=s.sigma_source,
            horizon_sigma=dec(s.s),
        ),
        votes=[
            signals_pb2.SignalVote(
                name=v.name, direction=_DIRECTION[v.direction], weight=dec(v.weight),
                reason=v.reason,
            )
            for v in s.votes
        ],
        bias=_DIRECTION[s.bias],
        confidence=dec(s.confidence),
        agreement=dec(s.agreement),
        divergence=s.divergence,
        ages=signals_pb2.InputAges(
            mark_s=_age(s.age_mark_s),
            book_s=_age(s.age_book_s),
            funding_s=_age(s.age_funding_s),
            positioning_s=_age(s.age_positioning_s),
            open_interest_s=_age(s.age_oi_s),
            closes_s=_age(s.age_closes_s),
            liquidation_map_s=_age(s.age_map_s),
            max_s=_age(s.max_age_s),
        ),
        open_interest=signals_pb2.OpenInterestSummary(
            open_interest_usd=dec(s.open_interest_usd),
            side_oi_long_usd=dec(s.side_oi_usd_long),
            side_oi_short_usd=dec(s.side_oi_usd_short),
            side_oi_source=s.side_oi_source,
            map_gross_long_usd=dec(s.map_gross_usd_long),
            map_gross_short_usd=dec(s.map_gross_usd_short),
            map_net_long_usd=dec(s.map_net_usd_long),
            map_net_short_usd=dec(s.map_net_usd_short),
        ),
        vote_score=dec(s.vote_score),
        divergent_signals=list(s.divergent_signals),
    )


# ---------------------------------------------------------------------------------------------
# Push validation


class PushRejected(ValueError):
    """A push with problems; ``problems`` each start with the field they are about."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class _Fields:
    """Collects every problem of a request instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def number(self, field: str, text: str, *, required: bool = True,
               minimum: float | None = None, positive: bool = False,
               maximum: float | None = None) -> float:
        if not text.strip():
            if required:
                self.problems.append(f"{field}: required (a decimal string)")
            return math.nan
        try:
            d = Decimal(text.strip())
        except InvalidOperation:
            self.problems.append(f"{field}: {text!r} is not a decimal number")
            return math.nan
        if not d.is_finite():
            self.problems.append(f"{field}: must be finite, got {text!r}")
            return math.nan
        x = float(d)
        if not math.isfinite(x):  # "1e400" is a finite Decimal but no float: the math needs one
            self.problems.append(f"{field}: out of range, got {text!r}")
            return math.nan
        if positive and x <= 0:
            self.problems.append(f"{field}: must be > 0, got {text}")
        elif minimum is not None and x < minimum:
            self.problems.append(f"{field}: must be >= {minimum:g}, got {text}")
        elif maximum is not None and x > maximum:
            self.problems.append(f"{field}: must be <= {maximum:g}, got {text}")
        return x

    def time(self, field: str, msg: Any, has: bool, now: float, max_future_s: float) -> float:
        if not has:
            self.problems.append(f"{field}: required (a Timestamp)")
            return math.nan
        t = float(msg.ToNanoseconds()) / 1e9
        if t > now + max_future_s:
            self.problems.append(
                f"{field}: {t - now:.1f} s in the future (clock skew? at most "
                f"{max_future_s:g} s allowed)"
            )
        return t


def parse_push(
    req: signals_pb2.PushPositioningRequest,
    symbols: tuple[str, ...],
    now: float,
    *,
    max_future_s: float = 5.0,
    max_age_s: float = 3600.0,
) -> tuple[str, PositioningRecord, list[OiRow]]:
    """Validate a push; ``PushRejected`` lists every problem, each naming its field."""
    f = _Fields()
    symbol = req.symbol.strip().upper()
    if not symbol:
        f.problems.append("symbol: required (a perp symbol such as PF_ARBUSD)")
    elif symbol not in symbols:
        f.problems.append(f"symbol: unknown perp {req.symbol!r}; configured: {', '.join(symbols)}")
    cohort = req.cohort.strip()
    if not cohort:
        f.problems.append("cohort: required (readouts say whose positions, e.g. top_accounts)")
    long_usd = f.number("long_usd", req.long_usd, minimum=0.0)
    short_usd = f.number("short_usd", req.short_usd, minimum=0.0)
    as_of = f.time("as_of", req.as_of, req.HasField("as_of"), now, max_future_s)
    if math.isfinite(as_of) and now - as_of > max_age_s:
        f.problems.append(
            f"as_of: record is stale ({now - as_of:.0f} s old; at most {max_age_s:g} s accepted)"
        )
    rows: list[OiRow] = []
    prev_ts = -math.inf
    for i, iv in enumerate(req.oi_intervals):
        p = f"oi_intervals[{i}]"
        ts = f.time(f"{p}.ts", iv.ts, iv.HasField("ts"), now, max_future_s)
        if math.isfinite(ts):
            if ts <= prev_ts:
                f.problems.append(f"{p}.ts: must be after oi_intervals[{i - 1}].ts")
            prev_ts = ts
        oi = f.number(f"{p}.oi_usd", iv.oi_usd, minimum=0.0)
        vwap = f.number(f"{p}.vwap", iv.vwap, required=False)
        high = f.number(f"{p}.high", iv.high, positive=True)
        low = f.number(f"{p}.low", iv.low, positive=True)
        close = f.number(f"{p}.close", iv.close, positive=True)
        taker = f.number(f"{p}.taker_buy_share", iv.taker_buy_share, required=False,
                         minimum=0.0, maximum=1.0)
        if low > high:
            f.problems.append(f"{p}.low: must be <= high ({iv.low} > {iv.high})")
        rows.append(OiRow(ts, oi, vwap, high, low, close, taker))
    if f.problems:
        raise PushRejected(f.problems)
    record = PositioningRecord.of(cohort, req.method.strip() or "grpc_push", long_usd, short_usd,
                                  as_of)
    return symbol, record, rows


# ---------------------------------------------------------------------------------------------
# Servicers


class SignalServicer(signals_pb2_grpc.SignalServiceServicer):
    """``SignalService`` over a runner's latest snapshots (see module docstring)."""

    def __init__(self, runner: SignalRunner) -> None:
        self.runner = runner

    def _resolve(self, symbol: str) -> str:
        """A perp symbol as given, or the single perp mapped to a spot symbol."""
        sym = symbol.strip()
        if sym.upper() in self.runner.symbols:
            return sym.upper()
        perps = self.runner.perps_for_spot(sym)
        return perps[0] if len(perps) == 1 else sym.upper()

    async def Get(
        self, request: signals_pb2.GetSignalRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> signals_pb2.SignalSnapshot:
        if not request.symbol.strip():
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "symbol: required")
        symbol = self._resolve(request.symbol)
        if symbol not in self.runner.symbols:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"unknown symbol {request.symbol!r}; signals are computed for "
                f"{', '.join(self.runner.symbols) or '(none)'}",
            )
        snap = self.runner.latest(symbol)
        if snap is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no signal yet for {symbol}")
        assert snap is not None
        return snapshot_to_proto(snap)

    async def Subscribe(
        self,
        request: signals_pb2.SubscribeSignalsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[signals_pb2.SignalSnapshot]:
        wanted = {self._resolve(s) for s in request.symbols if s.strip()}
        unknown = sorted(wanted - set(self.runner.symbols))
        if unknown:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"unknown symbols {', '.join(unknown)}; signals are computed for "
                f"{', '.join(self.runner.symbols) or '(none)'}",
            )
        loop = asyncio.get_running_loop()
        pending: dict[str, SignalSnapshot] = {}
        ready = asyncio.Event()

        def offer(snap: SignalSnapshot) -> None:  # on the loop
            pending[snap.symbol] = snap  # conflate: newest per symbol wins
            ready.set()

        def on_snapshot(snap: SignalSnapshot) -> None:  # runner's worker thread
            if not wanted or snap.symbol in wanted:
                with contextlib.suppress(RuntimeError):  # loop closed: stream is gone
                    loop.call_soon_threadsafe(offer, snap)

        remove = self.runner.add_listener(on_snapshot)
        try:
            for sym, snap in self.runner.latest_all().items():
                if (not wanted or sym in wanted) and sym not in pending:
                    pending[sym] = snap
                    ready.set()
            while True:
                await ready.wait()
                ready.clear()
                batch = list(pending.values())
                pending.clear()
                for snap in sorted(batch, key=lambda x: x.as_of):
                    yield snapshot_to_proto(snap)
        finally:
            remove()


class PositioningServicer(signals_pb2_grpc.PositioningServiceServicer):
    """``PositioningService``: validated pushes of cohort records and OI intervals."""

    def __init__(
        self,
        runner: SignalRunner,
        *,
        clock: Callable[[], float] = time.time,
        max_future_s: float = 5.0,
        max_age_s: float = 3600.0,
    ) -> None:
        self.runner = runner
        self._clock = clock
        self.max_future_s = max_future_s
        self.max_age_s = max_age_s

    async def Push(
        self,
        request: signals_pb2.PushPositioningRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> signals_pb2.PushPositioningResponse:
        try:
            symbol, record, rows = parse_push(
                request, self.runner.symbols, self._clock(),
                max_future_s=self.max_future_s, max_age_s=self.max_age_s,
            )
        except PushRejected as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise AssertionError("unreachable: abort raises") from exc
        self.runner.push_positioning(symbol, record)
        taken = self.runner.push_oi_intervals(symbol, rows)
        return signals_pb2.PushPositioningResponse(
            accepted=True,
            message=f"{symbol}: {record.cohort} long {record.long_usd:,.0f} USD / short "
            f"{record.short_usd:,.0f} USD, {taken} OI interval(s)",
        )


def signal_service_registrations(
    runner: SignalRunner, *, positioning: bool = True
) -> list[Callable[[grpc.aio.Server], str]]:
    """For ``EventServer(extra_services=...)``: registers SignalService (and, unless
    ``positioning=False``, PositioningService) and returns their full names."""

    def add_signals(server: grpc.aio.Server) -> str:
        signals_pb2_grpc.add_SignalServiceServicer_to_server(SignalServicer(runner), server)
        return SIGNAL_SERVICE_NAME

    def add_positioning(server: grpc.aio.Server) -> str:
        signals_pb2_grpc.add_PositioningServiceServicer_to_server(
            PositioningServicer(runner), server
        )
        return POSITIONING_SERVICE_NAME

    return [add_signals, add_positioning] if positioning else [add_signals]
