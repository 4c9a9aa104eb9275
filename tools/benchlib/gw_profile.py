#!/usr/bin/env python3
"""`fixgw` with its order path instrumented, for finding where the gateway's time goes.

    python tools/benchlib/gw_profile.py --out DIR [--cprofile] [--no-timing] -- \
        run --config gw.toml
    python tools/bench_fix.py --profile-gateway DIR [--profile-mode MODE]   # inside the bench

Why a launcher rather than edits: the benchmark must measure the gateway's code as committed,
and whoever profiles must not leave timers in the hot path. Everything here is patched onto
the classes in this process only, before the gateway builds its objects.

Modes:
- timing (default): inclusive wall time and thread CPU time per call of the functions in
  TARGETS (and of the whole QuickFIX callback per session role), ~1-2 µs of overhead per timed
  call. CPU time is the figure to attribute cost with: wall time also holds waits for the GIL
  (the OMS and venue callback threads share it) and for a CPU on a busy machine.
  Means hide the tail, so `tails` in gw_timing.json gives percentiles of each callback's wall,
  CPU and off-CPU (wall - CPU) time, and of its stretch up to its first send, by where it came
  from and where it went (`to_send[oms->venue]`: an OMS order's callback until the order is
  handed to the venue session; `to_send[venue->oms]`: a venue report's until it is handed to
  the OMS session; timers inside included). Only that stretch is on an order's way; what a
  callback does after its send, and any wait there, is not. The samples span the whole run:
  in bench_fix's throughput phase the two FIX threads wait for each other's GIL, which fills
  the off-CPU tail, so read it from a run of settled latency phases alone (bench_fix
  --settled-only) when that is the question.
  --tails-only keeps just those timers (mode "tails" in bench_fix): with every TARGET timed, the
  stretch up to an OMS order's send measured ~65 µs at p50 instead of ~43.
- --cprofile: one cProfile per QuickFIX callback thread, enabled for the duration of each
  fromApp, merged at exit (cProfile only sees the thread that enabled it). Good for the
  breakdown; inflates small functions.
- --no-timing: no timers at all. With timers, `fresh_thread_states_per_callback` in
  gw_timing.json shows whether the gateway's thread-state pin holds (near 0 when it does; see
  `_Pin` in gateway/fix/application.py).

At exit (SIGTERM/SIGINT, through `fixgw run`'s own shutdown) writes DIR/gw_timing.json, and
with --cprofile DIR/gw.pstats and DIR/gw_profile.txt.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import importlib
import io
import json
import pstats
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script from a checkout

from tools.benchlib.driver import percentile  # noqa: E402

# module:Class.attr or module:function. Missing ones are skipped (the code may have moved).
TARGETS = (
    "gateway.routing.router:Router.on_oms_message",
    "gateway.routing.router:Router._new_order",
    "gateway.routing.router:Router.on_venue_message",
    "gateway.routing.router:Router._execution_report",
    "gateway.routing.router:Router._forward",
    "gateway.routing.router:Router._oms_message",
    "gateway.routing.router:OmsContext.send",
    "gateway.routing.router:VenueTrading.send",
    "gateway.routing.router:VenueTrading.is_up",
    "gateway.risk.validation:OrderValidator.validate",
    "gateway.orders.store:OrderStore.is_used",
    "gateway.orders.store:OrderStore.add_order",
    "gateway.orders.store:OrderStore.resolve_report",
    "gateway.orders.store:OrderStore.apply_report",
    "gateway.orders.store:OrderStore._index_new",
    "gateway.orders.store:OrderStore.commit_forward",
    "gateway.orders.store:OrderStore._apply_report",
    "gateway.orders.store:VenueIdSource.next",
    "gateway.orders.journal:Journal.append_line",
    "gateway.fix.messages:utc_timestamp",
    "gateway.fix.messages:strip_resend_header",
    "gateway.fix.messages:msg_type",
    "gateway.fix.application:SessionApplication.status",
    "gateway.fix.application:SessionApplication.toApp",
    "gateway.fix.messages:new_message",
    "gateway.orders.model:Order.__init__",
    "gateway.risk.gate:Gate.check",
    "gateway.risk.gate:Gate.on_order_routed",
    "gateway.routing.router:Router._order_message",
    "gateway.routing.router:Router._announce",
    "gateway.routing.router:Router._rest_active",
    "gateway.routing.sinks:FanoutSink.execution",
    "gateway.routing.sinks:FanoutSink.order_accepted",
    "gateway.routing.sinks:FanoutSink.gate_decided",
    "gateway.fix.application:split_fields",
    "gateway.routing.router:_advances",
)

_lock = threading.Lock()
# OS thread id -> {name: [calls, wall ns, cpu ns]}. Keyed by id, not threading.local: QuickFIX
# calls into Python from threads Python did not start, and each callback gets a fresh Python
# thread state (PyGILState_Ensure/Release), so thread-local storage would not survive it.
_by_thread: dict[int, dict[str, list[int]]] = {}
_get_ident = threading.get_ident
# Per call (wall ns, CPU ns) of each callback and of its stretch up to its send, for `tails`.
_samples: dict[str, list[tuple[int, int]]] = {}
# OS thread id -> (session role, wall ns, CPU ns) at the entry of the callback running on it,
# until its first send.
_entered: dict[int, tuple[str, int, int]] = {}
TAIL_PERCENTILES = (50, 90, 99, 99.9)


def _acc() -> dict[str, list[int]]:
    ident = _get_ident()
    d = _by_thread.get(ident)
    if d is None:
        with _lock:
            d = _by_thread.setdefault(ident, {})
    return d


def _timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    wall, cpu = time.perf_counter_ns, time.thread_time_ns

    @functools.wraps(fn)
    def wrapper(*a: Any, **kw: Any) -> Any:
        t0, c0 = wall(), cpu()
        try:
            return fn(*a, **kw)
        finally:
            _add(name, wall() - t0, cpu() - c0)

    return wrapper


def _sample(name: str, wall_ns: int, cpu_ns: int) -> None:
    samples = _samples.get(name)
    if samples is None:
        with _lock:
            samples = _samples.setdefault(name, [])
    samples.append((wall_ns, cpu_ns))


def tail_summary(samples: list[tuple[int, int]]) -> dict[str, Any]:
    """Percentiles (µs) of the wall, CPU and off-CPU time of (wall ns, CPU ns) samples."""
    kinds = {"wall_us": sorted(w for w, _ in samples), "cpu_us": sorted(c for _, c in samples),
             "off_cpu_us": sorted(w - c for w, c in samples)}
    return {"calls": len(samples),
            **{kind: {f"p{q:g}": round(percentile(values, q), 1) for q in TAIL_PERCENTILES}
               for kind, values in kinds.items()}}


def _add(name: str, wall_ns: int, cpu_ns: int) -> None:
    acc = _acc()
    slot = acc.get(name)
    if slot is None:
        acc[name] = [1, wall_ns, cpu_ns]
    else:
        slot[0] += 1
        slot[1] += wall_ns
        slot[2] += cpu_ns


_probe = threading.local()
_probe_counts = [0, 0]  # callbacks, callbacks that found a fresh threading.local


def _probe_thread_state() -> None:
    _probe_counts[0] += 1
    if not getattr(_probe, "seen", False):
        _probe.seen = True
        _probe_counts[1] += 1


def _fresh_thread_state_ratio() -> float | None:
    calls, fresh = _probe_counts
    return round(fresh / calls, 3) if calls else None


def _resolve(target: str) -> tuple[Any, str] | None:
    mod_name, _, qual = target.partition(":")
    try:
        owner: Any = importlib.import_module(mod_name)
    except ImportError:
        return None
    *path, attr = qual.split(".")
    for p in path:
        owner = getattr(owner, p, None)
        if owner is None:
            return None
    return (owner, attr) if hasattr(owner, attr) else None


def install_timing(targets: tuple[str, ...] = TARGETS) -> list[str]:
    skipped = []
    for t in targets:
        found = _resolve(t)
        if found is None:
            skipped.append(t)
            continue
        owner, attr = found
        raw = owner.__dict__.get(attr, getattr(owner, attr))
        if isinstance(raw, staticmethod):
            setattr(owner, attr, staticmethod(_timed(t, raw.__func__)))
        else:
            setattr(owner, attr, _timed(t, raw))
    # The whole Python side of each callback, split by session role (oms / venue).
    from gateway.fix.application import SessionApplication

    orig = SessionApplication.fromApp
    wall, cpu = time.perf_counter_ns, time.thread_time_ns

    def from_app(self: Any, message: Any, session_id: Any) -> None:
        _probe_thread_state()
        ident = _get_ident()
        t0, c0 = wall(), cpu()
        _entered[ident] = (self.role, t0, c0)
        try:
            orig(self, message, session_id)
        finally:
            w, c = wall() - t0, cpu() - c0
            _entered.pop(ident, None)
            _add(f"fromApp[{self.role}]", w, c)
            _sample(f"fromApp[{self.role}]", w, c)

    SessionApplication.fromApp = from_app  # type: ignore[method-assign,assignment]
    _install_to_send()
    return skipped


def _install_to_send() -> None:
    """Time each callback's stretch up to its first send (see `tails` in the docstring)."""
    from gateway.routing.router import OmsContext, VenueTrading

    wall, cpu = time.perf_counter_ns, time.thread_time_ns
    for cls, dest in ((VenueTrading, "venue"), (OmsContext, "oms")):
        orig = cls.send

        def send(self: Any, msg: Any, _orig: Any = orig, _dest: str = dest) -> Any:
            entry = _entered.pop(_get_ident(), None)
            if entry is not None:
                role, t0, c0 = entry
                _sample(f"to_send[{role}->{_dest}]", wall() - t0, cpu() - c0)
            return _orig(self, msg)

        cls.send = send  # type: ignore[method-assign]


_profiles: dict[int, cProfile.Profile] = {}


def install_cprofile() -> None:
    from gateway.fix.application import SessionApplication

    orig = SessionApplication.fromApp

    def from_app(self: Any, message: Any, session_id: Any) -> None:
        ident = _get_ident()
        prof = _profiles.get(ident)
        if prof is None:
            with _lock:
                prof = _profiles.setdefault(ident, cProfile.Profile())
        prof.enable()
        try:
            orig(self, message, session_id)
        finally:
            prof.disable()

    SessionApplication.fromApp = from_app  # type: ignore[method-assign,assignment]


def dump(out: Path, skipped: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    merged: dict[str, list[int]] = {}
    with _lock:
        accs = list(_by_thread.values())
    for acc in accs:
        for k, (n, wall_ns, cpu_ns) in list(acc.items()):
            slot = merged.setdefault(k, [0, 0, 0])
            slot[0] += n
            slot[1] += wall_ns
            slot[2] += cpu_ns
    report = {k: {"calls": n, "wall_ms": round(w / 1e6, 3), "cpu_ms": round(c / 1e6, 3),
                  "wall_us_per_call": round(w / n / 1000, 2) if n else None,
                  "cpu_us_per_call": round(c / n / 1000, 2) if n else None}
              for k, (n, w, c) in sorted(merged.items(), key=lambda kv: -kv[1][2])}
    (out / "gw_timing.json").write_text(json.dumps(
        {"timings": report, "callback_threads": len(accs),
         "fresh_thread_states_per_callback": _fresh_thread_state_ratio(),
         "tails": {name: tail_summary(samples) for name, samples in sorted(_samples.items())},
         "skipped": skipped}, indent=1), encoding="utf-8")
    with _lock:
        profiles = list(_profiles.values())
    if profiles:
        stats = pstats.Stats(profiles[0])
        for p in profiles[1:]:
            stats.add(p)
        stats.dump_stats(str(out / "gw.pstats"))
        buf = io.StringIO()
        pstats.Stats(str(out / "gw.pstats"), stream=buf).sort_stats("tottime").print_stats(45)
        buf.write("\n\n")
        pstats.Stats(str(out / "gw.pstats"), stream=buf).sort_stats("cumulative").print_stats(45)
        (out / "gw_profile.txt").write_text(buf.getvalue(), encoding="utf-8")


def main() -> int:
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    p = argparse.ArgumentParser(description="fixgw with an instrumented order path")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--cprofile", action="store_true", help="cProfile instead of timers")
    p.add_argument("--no-timing", action="store_true", help="no timers")
    p.add_argument("--tails-only", action="store_true",
                   help="only the callback and up-to-the-send timers behind `tails` (three "
                        "pairs per IOC order), so they carry little of the timers' own cost")
    args = p.parse_args(argv[:split])
    skipped: list[str] = []
    if args.cprofile:
        install_cprofile()
    elif not args.no_timing:
        skipped = install_timing(() if args.tails_only else TARGETS)
    from gateway.cli.main import main as fixgw_main

    try:
        return fixgw_main(argv[split + 1:])
    finally:
        dump(args.out, skipped)


if __name__ == "__main__":
    raise SystemExit(main())
