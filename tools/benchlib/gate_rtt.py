"""FIX round trip with the pre-trade gate on and off, for `tools/bench_signals.py --fix-rtt`.

Target (issue 5): the round-trip p99 with the gate on within 1.1x of the gate off.

Two simulators and two `fixgw run` processes, started by `tools/benchlib/procs.Fleet` exactly as
`tools/bench_fix.py` starts them (each gateway's gRPC services on a free port, as in
`events_rtt.py`: two gateways cannot share the default one), with three differences:

* the simulators start with their seeded books (`--no-seed-books` dropped): the price collar
  needs a mid, BTC/USD opens at 45,000.0 and, with `--flow-rate 0`, never moves;
* both gateways poll their simulator's futures REST face (`[venue.futures] base_url`), so
  both compute signal snapshots in the background and the rules read a real PF_XBTUSD
  snapshot (its spot book is BTC/USD); timing starts only once the ON gateway has one;
* the gate-ON gateway's TOML gets a realistic `[risk]` table appended (`RISK_ON_TOML`): every
  classic limit on, generous enough never to block this load, plus two warn-only signal rules
  on the bench symbol. The gate-OFF gateway has no `[risk]`: the gate's precomputed allow path.
  The rules' `max_age_s` is 7200: funding settles hourly and its age counts from the last
  settlement, so a shorter limit would measure the (cached) stale-input path, not the rules.

This process is the OMS (one `FixClient` per gateway) and times NewOrderSingle -> first
ExecutionReport with one order outstanding, the next order sent from inside the callback
(`OrderDriver.latency`). The order is an IOC limit buy 0.01 BTC/USD @ 44,550.0: 1 % under the
mid, inside the 2 % collar, under the best ask so it never fills (Accepted, then Canceled: the
book never changes), 445.5 USD notional. Every first report must be ExecType 0 (the driver
fails on anything else), so both conditions measure orders that passed the gate.

Before timing, the bench proves the configuration took: an order at 1,000.0 (98 % under the
mid) must be rejected by the gate-ON gateway's collar and accepted by the gate-OFF one.

Rounds alternate OFF, ON, OFF, ON... (A/B/A/B) so load on a shared machine hits both alike;
samples are pooled per condition, and the median of the per-round p99 ratios is reported next
to the pooled ratio as the figure robust to one noisy phase.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc

from gateway._proto.fixgw.v1 import signals_pb2, signals_pb2_grpc
from gateway.fix.client import FixClient
from tools.benchlib.driver import (
    BenchError,
    OrderDriver,
    OrderSpec,
    median_of_ratios,
    percentile,
)
from tools.benchlib.events_rtt import _Condition, _grpc_port_launcher, _measure_cpu
from tools.benchlib.procs import Child, Credentials, Fleet, free_port

P99_RATIO_MAX = 1.1
SYMBOL = "BTC/USD"
SNAPSHOT_SYMBOL = "PF_XBTUSD"  # the perp the default config maps to BTC/USD
SIM_MID = "45000.0"  # the simulator's seeded BTC/USD reference price (static at flow rate 0)
ORDER = OrderSpec(symbol=SYMBOL, side="1", qty="0.01", price="44550.0", tif="3")
OUTSIDE_COLLAR = replace(ORDER, price="1000.0")
CONDITIONS = ("gate_off", "gate_on")
_READY_TIMEOUT_S = 30.0

RISK_ON_TOML = f"""
[risk]
max_order_qty = {{ "{SYMBOL}" = "5", "*" = "1000" }}
max_notional_usd = "1000000"
price_collar_bps = 200
stale_book_s = 3600.0
max_orders_per_s = 100000
max_open_orders = 100000

[[risk.signal_rules]]
name = "bench_crowded_long"
kind = "crowded_long"
action = "warn"
stale_policy = "allow"
max_age_s = 7200
params = {{ min_funding_excess_bps = "1000", max_gravity = "-0.25", min_liq_to_depth = "1.0" }}
symbols = ["{SYMBOL}"]

[[risk.signal_rules]]
name = "bench_crowded_short"
kind = "crowded_short"
action = "warn"
stale_policy = "allow"
max_age_s = 7200
params = {{ max_funding_excess_bps = "-1000", min_gravity = "0.25", min_liq_to_depth = "1.0" }}
symbols = ["{SYMBOL}"]
"""


class _GateFleet(Fleet):
    """`Fleet` with seeded simulator books and an extra TOML tail for named gateways.

    Hooks `_spawn`, the one place every child passes through, so the commands and the gateway
    config stay exactly `Fleet`'s: only `--no-seed-books` is dropped, and the tail is appended
    to the config `start_gateway` has just written (a new top-level table at the end)."""

    def __init__(self, workdir: Path, creds: Credentials) -> None:
        super().__init__(workdir, creds)
        self.toml_tail: dict[str, str] = {}
        self.started: dict[str, dict[str, object]] = {}  # each child's startup JSON, by name

    def _first_json(self, child: Child, timeout: float) -> dict[str, object]:
        data = super()._first_json(child, timeout)
        self.started[child.name] = data
        return data

    def _spawn(self, name: str, cmd: list[str], env_extra: dict[str, str],
               cwd: Path | None = None) -> Child:
        cmd = [c for c in cmd if c != "--no-seed-books"]
        tail = self.toml_tail.get(name)
        if tail:
            config = Path(cmd[cmd.index("--config") + 1])
            with config.open("a", encoding="utf-8") as f:
                f.write(tail)
        return super()._spawn(name, cmd, env_extra, cwd)


def _futures_toml(host: str, port: object) -> str:
    return f"""
[venue.futures]
base_url = "http://{host}:{port}"
poll_interval_s = 5.0
"""


def _wait_for_snapshot(grpc_port: int, symbol: str, timeout_s: float) -> float:
    """Seconds until the gateway's SignalService has a snapshot of `symbol` (a control step,
    before any timed phase: no gRPC runs in this process while orders are timed)."""
    t0 = time.monotonic()
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = signals_pb2_grpc.SignalServiceStub(channel)
        while True:
            try:
                stub.Get(signals_pb2.GetSignalRequest(symbol=symbol), timeout=5)
                return round(time.monotonic() - t0, 2)
            except grpc.RpcError as exc:
                if exc.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE):
                    raise
                if time.monotonic() - t0 > timeout_s:
                    raise BenchError(f"no {symbol} signal snapshot within {timeout_s} s: "
                                     f"{exc.code()}") from None
            time.sleep(0.2)


def _wait_until_accepted(driver: OrderDriver, timeout_s: float) -> int:
    """Send single orders until one is accepted: the gate-ON gateway blocks on the collar's
    stale policy until its first BTC/USD snapshot is in. Returns the attempts it took."""
    deadline = time.monotonic() + timeout_s
    attempts = 0
    while True:
        attempts += 1
        try:
            driver.latency(0, 1)
            return attempts
        except BenchError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _first_report_of(driver: OrderDriver) -> str:
    """'accepted', or the driver's complaint about the first report (e.g. a gate reject)."""
    try:
        driver.latency(0, 1)
        return "accepted"
    except BenchError as exc:
        return str(exc)


def measure_gate_rtt(*, rounds: int, orders: int, warmup: int) -> dict[str, Any]:
    """`rounds` OFF/ON pairs; `orders` timed orders per condition over all rounds; `warmup`
    untimed orders at the start of every phase."""
    if rounds < 1 or orders < rounds:
        raise ValueError("need at least one order per round")
    cond = {name: _Condition(name) for name in CONDITIONS}
    creds = Credentials()
    workdir = Path(tempfile.mkdtemp(prefix="bench_gate_rtt-"))
    fleet = _GateFleet(workdir, creds)
    t_start = time.monotonic()
    clients: list[FixClient] = []
    try:
        drivers: dict[str, OrderDriver] = {}
        probes: dict[str, OrderDriver] = {}
        pids: dict[str, dict[str, int]] = {}
        grpc_ports: dict[str, int] = {}
        for name in CONDITIONS:
            # One simulator per gateway (each engine sees only its own orders); distinct OMS
            # CompIDs: QuickFIX keeps one process-wide session registry.
            oms = "OMSOFF" if name == "gate_off" else "OMSON"
            sim = fleet.start_sim(f"sim-{name}", ("FIXGW",))
            # Both gateways poll their simulator's futures face, so both compute signal
            # snapshots off the order path (same background work) and the ON gateway's rules
            # have a PF_XBTUSD snapshot for BTC/USD to read.
            tail = _futures_toml(sim.host, fleet.started[f"sim-{name}"]["futures_rest_port"])
            fleet.toml_tail[f"gw-{name}"] = tail + (RISK_ON_TOML if name == "gate_on" else "")
            # Each on its own free gRPC port: two gateways cannot share the default one.
            grpc_ports[name] = free_port()
            gw = fleet.start_gateway(f"gw-{name}", sim, oms_comp=oms,
                                     wrapper=_grpc_port_launcher(grpc_ports[name]))
            client = FixClient(host="127.0.0.1", port=gw.port, sender=oms, target="FIXGW",
                               store_dir=workdir / f"oms-{name}")
            clients.append(client)
            client.start(wait_logon_s=20.0)
            drivers[name] = OrderDriver(client, ORDER)
            probes[name] = OrderDriver(client, OUTSIDE_COLLAR)
            pids[name] = {"oms": os.getpid(), "gateway": gw.pid, "sim": sim.pid}
        # Before any timing: the rules must read a real snapshot, not take the stale path.
        snapshot_wait_s = _wait_for_snapshot(grpc_ports["gate_on"], SNAPSHOT_SYMBOL,
                                             _READY_TIMEOUT_S)
        ready_attempts = {name: _wait_until_accepted(drivers[name], _READY_TIMEOUT_S)
                          for name in CONDITIONS}
        probe = {name: _first_report_of(probes[name]) for name in CONDITIONS}
        if probe["gate_off"] != "accepted":
            raise BenchError(f"gate-off gateway rejected an order with no [risk]: "
                             f"{probe['gate_off']}")
        blocked = "ExecType 8" in probe["gate_on"] and "collar" in probe["gate_on"]
        if not blocked:
            raise BenchError(f"gate-on gateway did not block an order 98 % under the mid: "
                             f"{probe['gate_on']}")
        gate_text = re.search(r"\|58=([^|]*)", probe["gate_on"])
        for name in CONDITIONS:  # first orders: connections, caches, code paths
            drivers[name].latency(0, max(warmup, 200))
        setup_s = time.monotonic() - t_start
        for rnd in range(rounds):
            n = orders // rounds + (1 if rnd < orders % rounds else 0)
            for name in CONDITIONS:
                c, d = cond[name], drivers[name]
                fleet.check_alive()
                if warmup:
                    d.latency(0, warmup)
                samples: list[int] = []

                def timed(out: list[int] = samples, k: int = n, drv: OrderDriver = d) -> None:
                    out.extend(drv.latency(0, k))

                _measure_cpu(pids[name], c.cpu_ns, timed)
                c.latency_ns.extend(samples)
                c.round_p99_us.append(round(percentile(sorted(samples), 99), 1))
                c.orders += n
        fleet.check_alive()
    except Exception:
        print(fleet.describe(), file=sys.stderr)
        raise
    finally:
        for client in clients:
            client.stop()
        fleet.close()
        shutil.rmtree(workdir, ignore_errors=True)

    off, on = cond["gate_off"].latency(), cond["gate_on"].latency()
    p99_ratio = round(on["p99"] / off["p99"], 3)
    return {
        "gate_off": off,
        "gate_on": on,
        "p50_ratio": round(on["p50"] / off["p50"], 3),
        "p99_ratio": p99_ratio,
        "p999_ratio": round(on["p999"] / off["p999"], 3),
        # Robust to one noisy phase (a load burst on a shared machine hits one round's p99).
        "p99_ratio_median_of_rounds": median_of_ratios(on["p99_per_round"],
                                                       off["p99_per_round"]),
        "target": {"p99_ratio_max": P99_RATIO_MAX},
        "meets_target": p99_ratio <= P99_RATIO_MAX,
        "gate_verified": {
            "gate_on_blocks_outside_collar": blocked,  # else the bench failed above
            "gate_on_reject_text": gate_text.group(1) if gate_text else None,
            "gate_off_accepts_outside_collar": probe["gate_off"] == "accepted",
            "ready_after_attempts": ready_attempts,
            "signal_snapshot": SNAPSHOT_SYMBOL,
            "signal_snapshot_wait_s": snapshot_wait_s,
        },
        "cpu_us_per_order": {k: c.cpu_us_per_order() for k, c in cond.items()},
        "config": {
            "rounds": rounds, "pattern": "A/B alternating (gate_off, gate_on) per round",
            "orders_per_condition": orders, "warmup_per_phase": warmup,
            "order": f"IOC limit buy {ORDER.qty} {ORDER.symbol} @ {ORDER.price} "
                     f"(sim mid {SIM_MID}, never fills)",
            "measured_to": "first ExecutionReport (ExecType 0: passed the gate)",
            "gate_off": "no [risk] table",
            "gate_on": ("max_order_qty, max_notional_usd, price_collar_bps=200 "
                        "(stale_book_s=3600), max_orders_per_s, max_open_orders, "
                        "crowded_long + crowded_short signal rules (warn, stale_policy allow)"),
        },
        "setup_s": round(setup_s, 1),
        "elapsed_s": round(time.monotonic() - t_start, 1),
    }
