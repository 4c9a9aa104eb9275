"""``fixgw signals SYMBOL``: a running gateway's latest signal snapshot, in a trader's words.

Why a readout and not just the JSON: a trader deciding whether to fight a crowded long needs the
bias, *why* (carry, positioning with its cohort, gravity, the key levels and what a cascade
would do) and *how fresh* each input is, on one screen; ``--json`` gives the full message for
scripts, ``--watch`` streams every new snapshot (``SignalService.Subscribe``).

Exit codes: 0 shown; 1 no snapshot / unknown symbol; 2 gateway not reachable or other RPC error.
"""

from __future__ import annotations

import argparse
import math
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import grpc
from google.protobuf import json_format

from gateway._proto.fixgw.v1 import signals_pb2, signals_pb2_grpc

__all__ = ["add_signals_parser", "format_readout", "run_signals"]

_DIR = {
    signals_pb2.SIGNAL_DIRECTION_LONG: "LONG",
    signals_pb2.SIGNAL_DIRECTION_SHORT: "SHORT",
    signals_pb2.SIGNAL_DIRECTION_NEUTRAL: "NEUTRAL",
    signals_pb2.SIGNAL_DIRECTION_UNSPECIFIED: "n/a",
}
_SIDE = {signals_pb2.POSITION_SIDE_LONG: "long", signals_pb2.POSITION_SIDE_SHORT: "short"}
_TREND = {
    signals_pb2.REGIME_TREND_TRENDING: "trending",
    signals_pb2.REGIME_TREND_RANGING: "ranging",
}
_VOL = {signals_pb2.VOLATILITY_BUCKET_LOW: "low", signals_pb2.VOLATILITY_BUCKET_MEDIUM: "medium",
        signals_pb2.VOLATILITY_BUCKET_HIGH: "high"}


def add_signals_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``signals`` to ``fixgw``'s subcommands (``run_signals`` runs it)."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "signals",
        help="show a symbol's latest signal snapshot (bias, carry, positioning, gravity, ...)",
        description="Print the latest signal snapshot of a perp from a running gateway.",
        epilog="example: fixgw signals PF_ARBUSD --watch",
    )
    p.add_argument("symbol", help="perp symbol (PF_ARBUSD) or its spot symbol (ARB/USD)")
    p.add_argument("--addr", default="127.0.0.1:50051",
                   help="the gateway's gRPC address (default 127.0.0.1:50051)")
    p.add_argument("--json", action="store_true", help="print the full snapshot as JSON")
    p.add_argument("--watch", action="store_true", help="keep printing each new snapshot")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the gateway")
    p.set_defaults(func=run_signals)
    return p


# ---------------------------------------------------------------------------------------------
# formatting


def _f(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _usd(text: str) -> str:
    x = _f(text)
    if not math.isfinite(x):
        return text or "n/a"
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"${x / div:,.2f}{unit}"
    return f"${x:,.0f}"


def _num(text: str, fmt: str = ".4g") -> str:
    x = _f(text)
    return format(x, fmt) if math.isfinite(x) else (text or "n/a")


def _pct(text: str, fmt: str = ".1f") -> str:
    x = _f(text)
    return f"{x * 100:{fmt}} %" if math.isfinite(x) else (text or "n/a")


def _prob(text: str) -> str:
    """Probabilities: small ones keep two significant digits (0.031 %, not 0.0 %)."""
    x = _f(text)
    if not math.isfinite(x):
        return text or "n/a"
    if x == 0 or x >= 0.01:
        return f"{x * 100:.1f} %"
    return "<0.0001 %" if x < 1e-6 else f"{x * 100:.2g} %"


def _age(text: str) -> str:
    if not text:
        return "—"
    x = _f(text)
    if not math.isfinite(x):
        return text
    if x < 120:
        return f"{x:.1f} s"
    if x < 7200:
        return f"{x / 60:.0f} min"
    return f"{x / 3600:.1f} h"


def _price(text: str) -> str:
    x = _f(text)
    return f"{x:.6g}" if math.isfinite(x) else (text or "n/a")


def format_readout(s: signals_pb2.SignalSnapshot) -> str:
    """The snapshot as lines a trader reads at a glance (every figure names its basis)."""
    c, g, pos = s.carry, s.gravity, s.positioning
    when = datetime.fromtimestamp(s.computed_at.ToNanoseconds() / 1e9, UTC)
    out = [
        f"{s.symbol}  price {_price(s.reference_price)}  spot index {_price(c.spot_index)}  "
        f"computed {when:%Y-%m-%d %H:%M:%S} UTC",
        f"Bias: {_DIR[s.bias]}, confidence {_num(s.confidence, '.2f')} (agreement "
        f"{_num(s.agreement, '.2f')}, vote score {_num(s.vote_score, '+.2f')})"
        + (f"; DIVERGENCE: {', '.join(s.divergent_signals)} disagree" if s.divergence else ""),
    ]
    funding = _f(c.funding_ann_bps)
    voted = c.carry_excess_bps if c.vote_on == "carry_excess" else c.funding_excess_bps
    payer = ("longs pay shorts" if funding > 0 else "shorts pay longs" if funding < 0
             else "no funding")
    out += [
        f"Carry: combined carry {_num(c.carry_ann_bps, '+.1f')} bps/yr over "
        f"{_num(c.carry_horizon_days, '.0f')} d = funding {_num(c.funding_ann_bps, '+.1f')} "
        f"bps/yr + basis {_num(c.basis_bps, '+.1f')} bps ({c.basis_reference} vs spot) "
        f"converging over {_num(c.carry_horizon_days, '.0f')} d",
        f"  funding: r {c.funding_rate} per {_num(c.funding_interval_h, 'g')} h "
        f"interval ({c.funding_source}), {payer}; excess {_num(c.funding_excess_bps, '+.1f')} "
        f"bps over baseline {_num(c.baseline_ann_bps, 'g')}",
        f"  vote: {c.vote_on} {_num(voted, '+.1f')} bps vs ±{_num(c.threshold_bps, 'g')} -> "
        f"{_DIR[c.vote].lower()}",
    ]
    for p in pos:
        out.append(
            f"OI asymmetry: {p.label} (long {_usd(p.long_usd)} / short {_usd(p.short_usd)}, "
            f"long share {_pct(p.long_share)}, method {p.method})"
        )
    gv = _f(g.gravity)
    if not math.isfinite(gv) or abs(gv) < 0.05:
        words = "no clear pull"
    elif gv < 0:
        words = "pulls price DOWN toward long liquidations"
    else:
        words = "pulls price UP toward short liquidations"
    out.append(
        f"Gravity: {_num(g.gravity, '+.3f')}, {words} (pull down {_num(g.pull_down, '.3g')}, "
        f"pull up {_num(g.pull_up, '.3g')}, beta {_num(g.beta, 'g')}) -> {_DIR[g.vote].lower()}"
    )
    for title, levels in (("Supports (long liquidations below)", g.supports),
                          ("Resistances (short liquidations above)", g.resistances)):
        if not levels:
            out.append(f"{title}: none")
            continue
        out.append(f"{title}:")
        for k in levels:
            out.append(
                f"  {_price(k.price):>10}  {_usd(k.notional):>9}  {_num(k.distance_pct, '+.2f')} %"
                f"  {abs(_f(k.distance_sigma)):.1f}σ  touch {_prob(k.touch_probability)}"
            )
    risk = {_SIDE.get(r.side, "?"): r for r in s.risk}
    for side in ("long", "short"):
        runs = [x for x in s.cascades if _SIDE.get(x.side) == side]
        if not runs:
            continue
        out.append(f"Cascade risk ({side}s, by visible-depth haircut):")
        for x in runs:
            out.append(
                f"  {_pct(x.depth_haircut, '.0f'):>5}: {_pct(x.liquidated_share)} of {side} OI "
                f"liquidated, ends {_price(x.end_price)} after {x.steps} step(s)"
                + (", SELF-SUSTAINING" if x.self_sustaining else "")
                + (", book exhausted" if x.book_exhausted else "")
            )
        r = risk.get(side)
        if r is not None:
            depth_side = "bids" if side == "long" else "asks"
            out.append(
                f"  within ±{_pct(r.band)}: {_pct(r.at_risk_share)} of {side} OI at risk, "
                f"{_num(r.liq_to_depth, '.2f')}x the {depth_side} there; map gross/net "
                f"{_num(r.map_gross_to_net, '.2f')}"
            )
    rg = s.regime
    out.append(
        f"Regime: {_TREND.get(rg.trend, 'unknown')}, vol {_VOL.get(rg.volatility, 'unknown')}; "
        f"sigma_d {_pct(rg.realized_vol_daily)} ({rg.sigma_source}), horizon s "
        f"{_pct(rg.horizon_sigma)} over {_num(s.horizon_days, 'g')} d"
    )
    out.append("Votes: " + "; ".join(
        f"{v.name} {_DIR[v.direction].lower()} ({v.reason})" for v in s.votes))
    a = s.ages
    out.append(
        f"Input ages: mark {_age(a.mark_s)}, book {_age(a.book_s)}, funding "
        f"{_age(a.funding_s)}, positioning {_age(a.positioning_s)}, OI "
        f"{_age(a.open_interest_s)}, closes {_age(a.closes_s)}, map {_age(a.liquidation_map_s)}"
        f" (oldest {_age(a.max_s)})"
    )
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# running


def _show(snap: signals_pb2.SignalSnapshot, as_json: bool, out: TextIO) -> None:
    if as_json:
        out.write(json_format.MessageToJson(snap, indent=2) + "\n")
    else:
        out.write(format_readout(snap) + "\n")
    out.flush()


def run_signals(args: argparse.Namespace) -> int:
    """Fetch (or ``--watch``) one symbol's snapshot and print it; see the module docstring."""
    out, err = sys.stdout, sys.stderr
    addr: str = args.addr
    timeout = float(getattr(args, "timeout", 5.0))
    channel = grpc.insecure_channel(addr)
    try:
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            err.write(f"fixgw signals: gateway not reachable at {addr}\n")
            return 2
        stub = signals_pb2_grpc.SignalServiceStub(channel)
        try:
            if not args.watch:
                _show(stub.Get(signals_pb2.GetSignalRequest(symbol=args.symbol),
                               timeout=timeout), args.json, out)
                return 0
            first = True
            for snap in stub.Subscribe(signals_pb2.SubscribeSignalsRequest(
                    symbols=[args.symbol])):
                if not first and not args.json:
                    out.write("\n")
                first = False
                _show(snap, args.json, out)
        except grpc.RpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.NOT_FOUND:
                detail = exc.details() or f"no signal yet for {args.symbol}"
                err.write(f"fixgw signals: {detail}\n")
                return 1
            if code == grpc.StatusCode.UNAVAILABLE:
                err.write(f"fixgw signals: gateway not reachable at {addr}\n")
                return 2
            if code == grpc.StatusCode.UNIMPLEMENTED:
                err.write(f"fixgw signals: the gateway at {addr} serves no SignalService\n")
                return 2
            err.write(f"fixgw signals: {code.name}: {exc.details()}\n")
            return 2
        except KeyboardInterrupt:
            return 0
        return 0
    finally:
        channel.close()
