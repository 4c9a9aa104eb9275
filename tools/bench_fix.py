#!/usr/bin/env python3
"""Order-path benchmark: the gateway against a bare QuickFIX relay, measured in the same run.
Prints ONE JSON object on stdout.

    python tools/bench_fix.py              # default: 8 interleaved rounds, ~1 minute
    python tools/bench_fix.py --quick      # smoke run for CI, well under 30 s
    python tools/bench_fix.py --orders 20000 --rounds 10 --tif ioc
    python tools/bench_fix.py --profile-gateway /tmp/gwprof   # + where the gateway's time goes
    python tools/bench_fix.py --settled-only --profile-gateway /tmp/gwprof --profile-mode tails
                                                 # what of it is on an order's way (percentiles)
    python tools/bench_fix.py --settled-only --b-checkout /work/wt-x     # A/B of two commits
    python tools/bench_fix.py --b-set gateway.journal_fsync_interval_ms=0  # A/B of a setting

Three topologies, every part a separate process with FileStores in fresh directories, on
loopback; this process is the OMS (a `FixClient` initiator):

    direct   OMS -> simulator
    relay    OMS -> bare relay (tools/benchlib/relay.py: acceptor + initiator that only copy
             messages across in their callbacks) -> simulator
    gateway  OMS -> `fixgw run` -> simulator

With any `--b-*` option a fourth topology, `gateway_b`, runs a second gateway (its own
simulator) that differs from the first only as the options say: its code from another
checkout, extra TOML settings, extra environment. It is measured in the same interleaved
rounds, and `ratios.gateway_b_gateway` compares the two. Why: from one run to the next on this
shared machine the gateway's p99 moves by ±15 % on the same code, more than most changes
worth measuring; two gateways in the same rounds see the same machine.

Why a relay baseline: absolute microseconds depend on the machine, so the requirement is a
ratio, gateway/relay <= 1.5 at p50 and p99, plus an absolute floor of 5,000 orders/s.

Per topology: round-trip latency NewOrderSingle -> first ExecutionReport with one order
outstanding (p50/p99/p99.9 in µs), and sustained orders/s with a window of orders in flight.
In every phase the next order is sent from inside the callback that received a report, so no
thread hand-off of ours is counted.

Latency is measured two ways, each round:
- settled (the headline figures and the targets): the next order goes out once the previous
  one's last report is in (an IOC's Canceled), so each sample is one order on a path that has
  finished the one before;
- back to back (`back_to_back`): the next order goes out on the previous one's first report,
  while its Canceled is still crossing every hop. Each sample then also holds whatever of
  that Canceled's work is left where the new order needs the same CPU or lock, which weighs
  more on a hop that does more per report. Reported next to the settled figures.

All stacks are started up front and stay up; then each round measures direct, relay and
gateway in turn. On a shared 2-core machine load comes and goes; short interleaved rounds make
a burst hit all three topologies alike instead of one. Latency samples are pooled over the
rounds; orders/s is the median of the rounds. CPU time per order of every process (Linux
schedstat) shows where a topology spends its cycles: on 2 cores, throughput is bounded by the
CPU all processes together spend per order.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package

from gateway.fix import messages as m  # noqa: E402
from gateway.fix.client import FixClient  # noqa: E402
from gateway.fix.kraken_logon import KrakenCredentials, add_trading_logon_fields  # noqa: E402
from tools.benchlib.driver import (  # noqa: E402
    OrderDriver,
    OrderSpec,
    median_of_ratios,
    percentile,
)
from tools.benchlib.procs import Credentials, Fleet, cpu_ns, event_process_pid  # noqa: E402

TOPOLOGIES = ("direct", "relay", "gateway")
B_TOPOLOGY = "gateway_b"
# The issue's targets. Its 5,000 orders/s was set where "a bare relay measured about 7,500
# orders/s": as a machine-independent figure that is 2/3 of the bare relay measured in the
# same run (this project's CI-class machines run the relay at ~3,000-4,000/s). Both are printed;
# `meets_targets.all` uses the ratios, as every target in this benchmark does.
TARGETS = {"p50_ratio_max": 1.5, "p99_ratio_max": 1.5, "min_orders_per_s": 5000,
           "reference_relay_orders_per_s": 7500, "min_orders_per_s_vs_relay": 0.667}
TIFS = {"gtc": "1", "ioc": "3"}
GW_PROFILE = ROOT / "tools" / "benchlib" / "gw_profile.py"
PROFILE_MODES = {
    "timing": [],
    "tails": ["--tails-only"],
    "cprofile": ["--cprofile"],
}


@dataclass
class CpuMeter:
    """CPU ns per process role over the phases of one kind, summed across rounds."""

    pids: dict[str, int]
    ns: dict[str, int] = field(default_factory=dict)
    orders: int = 0

    def measure(self, run: Callable[[], int]) -> None:
        before = {role: cpu_ns(pid) for role, pid in self.pids.items()}
        self.orders += run()
        for role, pid in self.pids.items():
            a, b = before[role], cpu_ns(pid)
            if a is not None and b is not None:
                self.ns[role] = self.ns.get(role, 0) + (b - a)

    def per_order_us(self) -> dict[str, float] | None:
        if not self.ns or not self.orders:
            return None
        out = {role: round(ns / self.orders / 1000.0, 1) for role, ns in self.ns.items()}
        out["total"] = round(sum(self.ns.values()) / self.orders / 1000.0, 1)
        return out


@dataclass
class LatencySamples:
    """One topology's latency samples of one measure, pooled over the rounds, and each round's
    own p50/p99: the rounds interleave the topologies, so a gateway round and the relay round
    next to it saw the same machine (see `median_of_ratios`)."""

    ns: list[int] = field(default_factory=list)
    round_p50_us: list[float] = field(default_factory=list)
    round_p99_us: list[float] = field(default_factory=list)

    def add_round(self, samples: list[int]) -> None:
        self.ns.extend(samples)
        s = sorted(samples)
        self.round_p50_us.append(round(percentile(s, 50), 1))
        self.round_p99_us.append(round(percentile(s, 99), 1))

    def summary(self) -> dict[str, Any]:
        s = sorted(self.ns)
        return {"p50_us": round(percentile(s, 50), 1), "p99_us": round(percentile(s, 99), 1),
                "p999_us": round(percentile(s, 99.9), 1),
                "mean_us": round(statistics.fmean(s) / 1000.0, 1),
                "max_us": round(s[-1] / 1000.0, 1), "latency_samples": len(s),
                "p50_us_per_round": self.round_p50_us, "p99_us_per_round": self.round_p99_us}


@dataclass
class Topology:
    name: str
    client: FixClient
    pids: dict[str, int]
    driver: OrderDriver | None = None
    settled: LatencySamples = field(default_factory=LatencySamples)
    back_to_back: LatencySamples = field(default_factory=LatencySamples)
    rates: list[float] = field(default_factory=list)
    cpu_latency: CpuMeter | None = None
    cpu_throughput: CpuMeter | None = None

    def summary(self) -> dict[str, Any]:
        # Without rates or back-to-back samples (--settled-only) those figures are None.
        return {
            **self.settled.summary(),
            "orders_per_s": round(statistics.median(self.rates)) if self.rates else None,
            "orders_per_s_rounds": [round(r) for r in self.rates],
            "back_to_back": self.back_to_back.summary() if self.back_to_back.ns else None,
            "cpu_us_per_order": {
                "latency_phase": self.cpu_latency.per_order_us() if self.cpu_latency else None,
                "throughput_phase": (self.cpu_throughput.per_order_us()
                                     if self.cpu_throughput else None),
            },
        }


def _client(workdir: Path, name: str, port: int, sender: str, target: str,
            creds: Credentials | None) -> FixClient:
    c = FixClient(host="127.0.0.1", port=port, sender=sender, target=target,
                  store_dir=workdir / f"oms-{name}")
    if creds is not None:
        k = KrakenCredentials(creds.api_key, creds.api_secret)

        def sign(msg: Any) -> None:
            if m.msg_type(msg) == "A":
                add_trading_logon_fields(msg, k, False)

        c.on_admin_out = sign
    return c


def _has_b(args: argparse.Namespace) -> bool:
    return bool(args.b_checkout or args.b_set or args.b_env)


def _pairs(items: list[str], what: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"bench_fix: {what} {item!r}: expected KEY=VALUE")
        out.append((key, value))
    return out


def start_topologies(fleet: Fleet, workdir: Path, creds: Credentials, stack: ExitStack,
                     gw_wrapper: list[str] | None,
                     args: argparse.Namespace) -> dict[str, Topology]:
    """One simulator per topology (each engine sees only its own orders) and the hop in front
    of it. The OMS CompIDs differ because QuickFIX keeps one process-wide session registry and
    all three OMS sessions live in this process at once."""
    sim_d = fleet.start_sim("sim-direct", ("BENCH",))
    sim_r = fleet.start_sim("sim-relay", ("RELAY",))
    sim_g = fleet.start_sim("sim-gateway", ("FIXGW",))
    relay = fleet.start_relay("relay", sim_r, sender="RELAY", oms_side_comp="RELAY",
                              oms_comp="OMS")
    gw = fleet.start_gateway("gateway", sim_g, oms_comp="OMS", wrapper=gw_wrapper)
    me = os.getpid()
    spec = {
        "direct": (_client(workdir, "direct", sim_d.trading_port, "BENCH", "KRAKEN-TRD", creds),
                   {"oms": me, "sim": sim_d.pid}),
        "relay": (_client(workdir, "relay", relay.port, "OMS", "RELAY", None),
                  {"oms": me, "relay": relay.pid, "sim": sim_r.pid}),
        "gateway": (_client(workdir, "gateway", gw.port, "OMS", "FIXGW", None),
                    {"oms": me, "gateway": gw.pid, "sim": sim_g.pid}),
    }
    if _has_b(args):
        sim_b = fleet.start_sim("sim-gateway-b", ("FIXGW",))
        gw_b = fleet.start_gateway(
            "gateway-b", sim_b, oms_comp="OMSB",
            checkout=Path(args.b_checkout).resolve() if args.b_checkout else None,
            settings=_pairs(args.b_set, "--b-set"), env=dict(_pairs(args.b_env, "--b-env")))
        spec[B_TOPOLOGY] = (_client(workdir, "gateway-b", gw_b.port, "OMSB", "FIXGW", None),
                            {"oms": me, "gateway": gw_b.pid, "sim": sim_b.pid})
    for _, pids in spec.values():
        events_pid = event_process_pid(pids["gateway"]) if "gateway" in pids else None
        if events_pid is not None:  # its CPU is the gateway's hop too
            pids["gateway_events"] = events_pid
    topo: dict[str, Topology] = {}
    for name, (c, pids) in spec.items():
        stack.callback(c.stop)
        c.start(wait_logon_s=20.0)
        topo[name] = Topology(name, c, pids, cpu_latency=CpuMeter(pids),
                              cpu_throughput=CpuMeter(pids))
    return topo


def run_round(t: Topology, args: argparse.Namespace, latency_orders: int,
              throughput_orders: int) -> None:
    d = t.driver
    assert d is not None and t.cpu_latency is not None and t.cpu_throughput is not None
    if args.warmup:
        d.latency(0, args.warmup, settle=True)  # untimed, outside the CPU accounting

    def lat() -> int:
        t.settled.add_round(d.latency(0, latency_orders, settle=True))
        return latency_orders

    def thr() -> int:
        t.rates.append(d.throughput(throughput_orders, args.window))
        return throughput_orders

    t.cpu_latency.measure(lat)
    if args.settled_only:
        return
    t.back_to_back.add_round(d.latency(0, latency_orders))
    t.cpu_throughput.measure(thr)


def _split(total: int, parts: int, i: int) -> int:
    """The i-th of `parts` near-equal shares of `total` (shares sum to `total`)."""
    return total // parts + (1 if i < total % parts else 0)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    spec = OrderSpec(tif=TIFS[args.tif])
    creds = Credentials()
    workdir = Path(tempfile.mkdtemp(prefix="bench_fix-"))
    fleet = Fleet(workdir, creds)
    gw_wrapper = None
    if args.profile_gateway is not None:
        gw_wrapper = [str(GW_PROFILE), "--out", str(Path(args.profile_gateway).resolve()),
                      *PROFILE_MODES[args.profile_mode], "--"]
    t_start = time.monotonic()
    load_at_start = _loadavg()
    try:
        with ExitStack() as clients:
            topo = start_topologies(fleet, workdir, creds, clients, gw_wrapper, args)
            setup_s = time.monotonic() - t_start
            for t in topo.values():
                t.driver = OrderDriver(t.client, spec)
            for rnd in range(args.rounds):
                lat_n = _split(args.orders, args.rounds, rnd)
                thr_n = _split(args.throughput_orders, args.rounds, rnd)
                for name in topo:
                    fleet.check_alive()
                    run_round(topo[name], args, lat_n, thr_n)
                    if args.verbose:
                        print(f"round {rnd + 1}/{args.rounds} {name}: "
                              f"{json.dumps(topo[name].summary())}", file=sys.stderr, flush=True)
            fleet.check_alive()
    except Exception:
        print(fleet.describe(), file=sys.stderr)
        raise
    finally:
        fleet.close()  # the OMS clients are already logged out: the ExitStack closed first
        shutil.rmtree(workdir, ignore_errors=True)

    res = {name: topo[name].summary() for name in topo}

    def ratio(x: float | None, y: float | None) -> float | None:
        return round(x / y, 3) if x is not None and y else None

    def b2b_us(topology: str, q: str) -> float | None:
        figures = res[topology]["back_to_back"]
        return figures[f"{q}_us"] if figures else None

    def ratios(a: str, b: str) -> dict[str, float | None]:
        out: dict[str, float | None] = {
            "p50": ratio(res[a]["p50_us"], res[b]["p50_us"]),
            "p99": ratio(res[a]["p99_us"], res[b]["p99_us"]),
            "p999": ratio(res[a]["p999_us"], res[b]["p999_us"]),
            "orders_per_s": ratio(res[a]["orders_per_s"], res[b]["orders_per_s"]),
            # Robust to one noisy round; the targets are judged on the pooled ratios above.
            "p50_median_of_rounds": median_of_ratios(res[a]["p50_us_per_round"],
                                                     res[b]["p50_us_per_round"]),
            "p99_median_of_rounds": median_of_ratios(res[a]["p99_us_per_round"],
                                                     res[b]["p99_us_per_round"]),
            "back_to_back_p50": ratio(b2b_us(a, "p50"), b2b_us(b, "p50")),
            "back_to_back_p99": ratio(b2b_us(a, "p99"), b2b_us(b, "p99")),
        }
        # CPU all processes spend per pipelined order: steadier than orders/s on a shared
        # machine, and what bounds orders/s on 2 cores.
        ca = res[a]["cpu_us_per_order"]["throughput_phase"]
        cb = res[b]["cpu_us_per_order"]["throughput_phase"]
        out["cpu_per_order"] = (round(ca["total"] / cb["total"], 3)
                                if ca and cb and cb["total"] else None)
        return out

    gw_relay = ratios("gateway", "relay")
    # The hop alone: the gateway (with its event process) against the relay process, CPU per
    # pipelined order.
    gw_cpu = res["gateway"]["cpu_us_per_order"]["throughput_phase"]
    relay_cpu = res["relay"]["cpu_us_per_order"]["throughput_phase"]
    gw_hop = (gw_cpu or {}).get("gateway", 0.0) + (gw_cpu or {}).get("gateway_events", 0.0)
    gw_relay["hop_cpu_per_order"] = (round(gw_hop / relay_cpu["relay"], 3)
                                     if gw_cpu and relay_cpu and relay_cpu.get("relay")
                                     else None)
    p50_ratio, p99_ratio = gw_relay["p50"], gw_relay["p99"]
    tput_ratio = gw_relay["orders_per_s"]
    assert p50_ratio is not None and p99_ratio is not None
    meets = {
        "p50": p50_ratio <= TARGETS["p50_ratio_max"],
        "p99": p99_ratio <= TARGETS["p99_ratio_max"],
        "orders_per_s_vs_relay": (tput_ratio is not None
                                  and tput_ratio >= TARGETS["min_orders_per_s_vs_relay"]),
    }
    meets["all"] = all(meets.values())
    # Shown, not part of "all": see the module docstring on the two latency measures.
    for q in ("p50", "p99"):
        b2b = gw_relay[f"back_to_back_{q}"]
        meets[f"back_to_back_{q}"] = b2b is not None and b2b <= TARGETS[f"{q}_ratio_max"]
    gw_rate, relay_rate = res["gateway"]["orders_per_s"], res["relay"]["orders_per_s"]
    meets["orders_per_s_absolute"] = (gw_rate is not None
                                      and gw_rate >= TARGETS["min_orders_per_s"])
    return {
        "benchmark": "bench_fix",
        **res,
        "ratios": {"gateway_relay": gw_relay, "relay_direct": ratios("relay", "direct"),
                   "gateway_direct": ratios("gateway", "direct"),
                   **({"gateway_b_gateway": ratios(B_TOPOLOGY, "gateway"),
                       "gateway_b_relay": ratios(B_TOPOLOGY, "relay")} if B_TOPOLOGY in res
                      else {})},
        "targets": {**TARGETS, "min_orders_per_s_scaled_to_this_run": round(
            TARGETS["min_orders_per_s"] * relay_rate / TARGETS["reference_relay_orders_per_s"])
            if relay_rate is not None else None},
        "meets_targets": meets,
        "config": {
            "quick": args.quick, "settled_only": args.settled_only, "rounds": args.rounds,
            "latency_orders": args.orders,
            "warmup_per_round": args.warmup, "throughput_orders": args.throughput_orders,
            "window": args.window, "tif": args.tif, "store": "FileStore",
            "order": f"limit buy {spec.qty} {spec.symbol} @ {spec.price}, never crosses",
            "measured_to": "first ExecutionReport (ExecType 0)",
            "latency": "settled: each order sent once the previous one's last report is in; "
                       "back_to_back: on its first report",
            "gateway_profiled": (args.profile_mode if args.profile_gateway is not None
                                 else None),
            "gateway_b": ({"checkout": args.b_checkout, "set": args.b_set, "env": args.b_env}
                          if _has_b(args) else None),
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "quickfix": _version("quickfix"),
            # Other work on the machine shows up here first: read the figures with it.
            "loadavg_1m_at_start": load_at_start,
            "loadavg_1m_at_end": _loadavg(),
        },
        "setup_s": round(setup_s, 1),
        "elapsed_s": round(time.monotonic() - t_start, 1),
    }


def _loadavg() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--orders", type=int, default=8000,
                   help="timed one-at-a-time orders per topology, over all rounds "
                        "(default 8000)")
    p.add_argument("--throughput-orders", type=int, default=40000,
                   help="pipelined orders per topology, over all rounds (default 40000)")
    p.add_argument("--rounds", type=int, default=8,
                   help="interleaved rounds over the three topologies (default 8)")
    p.add_argument("--warmup", type=int, default=200,
                   help="untimed orders before each latency phase (default 200)")
    p.add_argument("--window", type=int, default=64,
                   help="orders in flight in the throughput phase (default 64)")
    p.add_argument("--tif", choices=sorted(TIFS), default="ioc",
                   help="ioc (default): Accepted + Canceled, the book never changes; gtc: the "
                        "order rests (one report, but every order moves the book, so a "
                        "market-data subscriber gets an update per order)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 round, 500 timed orders, 2000 pipelined")
    p.add_argument("--settled-only", action="store_true",
                   help="only the settled latency phases (no back-to-back or throughput phase: "
                        "their figures are null, and meets_targets.all is false). For profiling "
                        "the order path: in the other phases the gateway's FIX threads overlap "
                        "and wait for each other, which --profile-mode tails would mix in")
    p.add_argument("--profile-gateway", metavar="DIR", default=None,
                   help="run the gateway under tools/benchlib/gw_profile.py, results in DIR")
    p.add_argument("--profile-mode", choices=sorted(PROFILE_MODES), default="timing",
                   help="see tools/benchlib/gw_profile.py (default timing)")
    p.add_argument("--b-checkout", metavar="DIR", default=None,
                   help="A/B: a second gateway runs the code of this working tree")
    p.add_argument("--b-set", metavar="KEY=TOML", action="append", default=[],
                   help="A/B: a TOML setting of the second gateway, e.g. "
                        "gateway.journal_fsync_interval_ms=0 (repeatable)")
    p.add_argument("--b-env", metavar="KEY=VALUE", action="append", default=[],
                   help="A/B: an environment variable of the second gateway (repeatable)")
    p.add_argument("--verbose", action="store_true", help="running figures on stderr")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.rounds, args.orders, args.warmup, args.throughput_orders = 1, 500, 100, 2000
    for name in ("orders", "warmup", "throughput_orders", "window", "rounds"):
        if getattr(args, name) < (0 if name == "warmup" else 1):
            print(f"bench_fix: --{name.replace('_', '-')} is too small", file=sys.stderr)
            return 2
    if args.orders < args.rounds or args.throughput_orders < args.rounds:
        print("bench_fix: need at least one order per round", file=sys.stderr)
        return 2

    def _terminate(signum: int, _frame: FrameType | None) -> None:
        # Unwind through the finally blocks so every child is stopped and temp dirs go.
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _terminate)
    result = measure(args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
