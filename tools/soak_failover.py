#!/usr/bin/env python3
"""Failover soak: flips the gateway's order flow FIX -> REST -> FIX repeatedly under load for N
minutes and checks the failover invariants, printing ONE JSON summary on stdout.

Setup (as ``tests/integration/test_failover.py``, real processes on loopback only): a venue
simulator (clients FIXGW and MAKER) and ``fixgw run`` with ``[venue.fallback]`` enabled. An OMS
sends limit buys through the gateway at ``--rate`` per second; a MAKER connected straight to the
venue sends a marketable sell every ``--maker-every`` orders, filling some of them (partially or
fully). Every ``--flip-every`` seconds the simulator drops the gateway's FIX session and refuses
logons for ``--refuse-s`` seconds, so the flow fails over to REST and, once FIX is back and
stable, fails back. A drop that falls due before the previous round trip has completed is
postponed until it has (``flip_postponed_s`` in the summary), so every drop is one full flip.

Invariants checked at the end (exit 1 if any fails, 2 on a setup error):

* every order the OMS sent got exactly one New (150=0), or exactly one reject (150=8) with a
  reason (58) and no New; an order held while no transport was up got at most one PendingNew
  (150=A) before that;
* every fill (150=F/1/2) was reported once: no ExecID twice, and per order the sum of LastQty
  equals the last CumQty the OMS saw;
* the OMS-side record matches the venue: ``submission_counts`` are all 1, and for every acked
  order the venue's ``vol_exec`` (spot REST OpenOrders/QueryOrders with the test credentials)
  equals the OMS's CumQty.

Reported: orders, acks/rejects per transport, fills, switches (gateway log lines ``order flow
moved from``), p50/p99 ack latency per transport (REST ExecIDs start with ``R``).

Not in the default test suite; ``tests/tools/test_soak_smoke.py`` (``-m slow``) runs it briefly.
"""

from __future__ import annotations

import argparse
import json
import queue
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package

from gateway.fix.client import Received  # noqa: E402
from gateway.kraken.auth import NonceSource  # noqa: E402
from gateway.transports.kraken_spot_rest import KrakenSpotRest, SpotOrder  # noqa: E402
from tests.conftest import Oms, make_client, new_id, order_fields  # noqa: E402
from tests.procs import Credentials, GatewayProcess, SimProcess  # noqa: E402

SWITCH_RX = re.compile(r"order flow moved from (FIX|REST) to (FIX|REST)")
FILL_TYPES = ("F", "1", "2")


class OmsRecorder:
    """Drains the OMS inbox on a thread, keeping every application message with its time."""

    def __init__(self, oms: Oms) -> None:
        self.oms = oms
        self.msgs: list[Received] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.msgs.append(self.oms.c.inbox.get(timeout=0.1))
            except queue.Empty:
                continue

    def stop(self) -> None:
        self._stop.set()
        self._t.join(5)


class Drain:
    """Empties a client's inbox so a long run does not pile messages up in memory."""

    def __init__(self, oms: Oms) -> None:
        self._oms = oms
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._oms.c.inbox.get(timeout=0.2)
            except queue.Empty:
                continue

    def stop(self) -> None:
        self._stop.set()
        self._t.join(5)


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 3)


def _dec(v: str | None) -> Decimal:
    return Decimal(v) if v else Decimal(0)


def venue_view(rest: KrakenSpotRest, order_ids: dict[str, str]) -> tuple[dict[str, Decimal],
                                                                           list[str]]:
    """vol_exec per venue order id: one OpenOrders call, then QueryOrders (50 a call) for the
    orders no longer open. Returns (vol_exec by order id, problems)."""
    problems: list[str] = []
    seen: dict[str, SpotOrder] = dict(rest.open_orders())
    missing = [oid for oid in order_ids.values() if oid not in seen]
    for i in range(0, len(missing), 50):
        batch = missing[i:i + 50]
        try:
            seen.update(rest.query_orders(batch))
        except Exception as exc:  # one unknown txid fails the whole batch
            problems.append(f"QueryOrders {batch[0]}..{batch[-1]} ({len(batch)}): {exc}")
    return {oid: o.vol_exec for oid, o in seen.items()}, problems


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    creds = Credentials()
    rng = random.Random(args.seed)
    sim = SimProcess(work / "sim", creds, clients=("FIXGW", "MAKER"))
    gw: GatewayProcess | None = None
    clients: list[Oms] = []
    rec: OmsRecorder | None = None
    drain: Drain | None = None
    try:
        ws = (f', ws_url = "ws://127.0.0.1:{sim.spot_ws_port}/v2"' if args.ws else "")
        fallback = (f'fallback = {{ enabled = true, rest_url = "http://127.0.0.1:'
                    f'{sim.spot_rest_port}", failover_after_s = 1, failback_after_s = 2{ws} }}')
        gw = GatewayProcess(work / "gw", sim, creds,
                            venue_toml=f"md_stale_after_s = 3600\n{fallback}")
        oms = Oms(make_client(work, gw.oms_port, "OMS", "FIXGW"))
        maker = Oms(make_client(work, sim.trading_port, "MAKER", "KRAKEN-TRD", creds))
        for c in (oms, maker):
            c.c.start()
            clients.append(c)
        rec = OmsRecorder(oms)
        drain = Drain(maker)

        sent: dict[str, float] = {}  # ClOrdID -> monotonic send time
        maker_sells = 0
        drops = 0
        postponed_s = 0.0
        interval = 1.0 / args.rate
        t0 = time.monotonic()
        end = t0 + args.minutes * 60
        next_send = t0
        next_flip = t0 + args.flip_every
        while (now := time.monotonic()) < end:
            if now >= next_flip:
                moves = SWITCH_RX.findall(gw.err.text()) if drops else []
                if drops and len(moves) < 2 * drops:
                    # the last flip has not completed (still on REST, or FIX not yet dropped):
                    # drop again only once the flow is back on FIX, so each drop is one round trip
                    next_flip = now + 0.5
                    postponed_s += 0.5
                else:
                    sim.control(cmd="drop_fix", client="FIXGW", refuse_s=args.refuse_s)
                    drops += 1
                    next_flip = now + args.flip_every
            if now < next_send:
                time.sleep(min(next_send - now, 0.05))
                continue
            next_send += interval
            price = f"{30000 + rng.randint(0, 100)}.0"
            cl = new_id("B")
            sent[cl] = time.monotonic()
            oms.send("D", order_fields(cl, "1", "0.01", price))
            if len(sent) % args.maker_every == 0:
                qty = rng.choice(("0.004", "0.006", "0.01"))
                maker.send("D", order_fields(new_id("M"), "2", qty, "29000.0"))
                maker_sells += 1
        load_s = time.monotonic() - t0

        # Let the last flip settle: FIX back and the flow failed back (bounded), then let late
        # reports and the FIX resend of what the venue stored meanwhile arrive.
        settle_deadline = time.monotonic() + args.refuse_s + 30
        while time.monotonic() < settle_deadline:
            moves = SWITCH_RX.findall(gw.err.text())
            if not moves or moves[-1][1] == "FIX":
                break
            time.sleep(0.25)
        pending_deadline = time.monotonic() + 20
        while time.monotonic() < pending_deadline:
            acked = {r.fields.get(11) for r in list(rec.msgs)
                     if r.msg_type == "8" and r.fields.get(150) in ("0", "8")}
            if all(cl in acked for cl in sent):
                break
            time.sleep(0.25)
        time.sleep(args.drain_s)
        rec.stop()
        summary = check(args, sim, gw, creds, sent, list(rec.msgs), drops, maker_sells, load_s)
        summary["flip_postponed_s"] = postponed_s
        return summary
    finally:
        if rec is not None:
            rec.stop()
        if drain is not None:
            drain.stop()
        for cl in clients:
            cl.c.stop()
        if gw is not None:
            gw.stop()
            (work / "gateway.stderr").write_text(gw.err.text())
        sim.stop()
        (work / "sim.stderr").write_text(sim.err.text())


def check(args: argparse.Namespace, sim: SimProcess, gw: GatewayProcess, creds: Credentials,
          sent: dict[str, float], msgs: list[Received], drops: int, maker_sells: int,
          load_s: float) -> dict[str, Any]:
    failures: list[str] = []
    news: dict[str, list[Received]] = {cl: [] for cl in sent}
    rejects: dict[str, list[Received]] = {cl: [] for cl in sent}
    fills: dict[str, list[Received]] = {cl: [] for cl in sent}
    pending: dict[str, int] = {cl: 0 for cl in sent}  # PendingNew (held: no transport up)
    exec_ids: dict[str, int] = {}
    other: dict[str, int] = {}
    for r in msgs:
        if r.msg_type != "8":
            other[r.msg_type] = other.get(r.msg_type, 0) + 1
            continue
        cl, et = r.fields.get(11, ""), r.fields.get(150, "")
        if cl not in sent:
            other["8:unknown-clordid"] = other.get("8:unknown-clordid", 0) + 1
            continue
        if et == "0":
            news[cl].append(r)
        elif et == "A":
            pending[cl] += 1
        elif et == "8":
            rejects[cl].append(r)
        elif et in FILL_TYPES:
            fills[cl].append(r)
            eid = r.fields.get(17, "")
            exec_ids[eid] = exec_ids.get(eid, 0) + 1

    latency: dict[str, list[float]] = {"FIX": [], "REST": []}
    acked: dict[str, str] = {}  # ClOrdID -> venue OrderID
    reject_reasons: dict[str, int] = {}
    for cl, t_sent in sent.items():
        n, x = news[cl], rejects[cl]
        if len(n) == 1 and not x:
            transport = "REST" if n[0].fields.get(17, "").startswith("R") else "FIX"
            latency[transport].append((n[0].at - t_sent) * 1000)
            if n[0].fields.get(37):
                acked[cl] = n[0].fields[37]
            else:
                failures.append(f"{cl}: New without OrderID")
        elif len(x) == 1 and not n:
            reason = x[0].fields.get(58, "")
            if not reason:
                failures.append(f"{cl}: reject without a reason")
            key = re.sub(r"[0-9][0-9.:-]*", "#", reason)[:80]
            reject_reasons[key] = reject_reasons.get(key, 0) + 1
        else:
            failures.append(f"{cl}: {len(n)} New and {len(x)} Rejected reports")
        if pending[cl] > 1:
            failures.append(f"{cl}: {pending[cl]} PendingNew reports")
    held = sum(1 for k in pending.values() if k)
    held_then_sent = sum(1 for cl, k in pending.items() if k and news[cl])

    dup_exec = {e: k for e, k in exec_ids.items() if k > 1}
    if dup_exec:
        failures.append(f"{len(dup_exec)} ExecID(s) reported more than once, e.g. "
                        f"{next(iter(dup_exec))}")
    oms_cum: dict[str, Decimal] = {}
    for cl in sent:
        f = fills[cl]
        total = sum((_dec(r.fields.get(32)) for r in f), Decimal(0))
        cum = max((_dec(r.fields.get(14)) for r in f), default=Decimal(0))
        if total != cum:
            failures.append(f"{cl}: sum of LastQty {total} != CumQty {cum}")
        oms_cum[cl] = cum

    counts = sim.control(cmd="submission_counts")["counts"]
    assert isinstance(counts, dict)
    not_one = {k: v for k, v in counts.items() if v != 1}
    if not_one:
        failures.append(f"submission_counts != 1: {dict(list(not_one.items())[:5])}")
    fixgw_submissions = sum(1 for k in counts if str(k).startswith("FIXGW "))

    rest = KrakenSpotRest(f"http://127.0.0.1:{sim.spot_rest_port}", creds.api_key,
                          creds.api_secret, NonceSource())
    venue_exec, problems = venue_view(rest, acked)
    failures += problems
    mismatched = 0
    for cl, oid in acked.items():
        if oid in venue_exec and venue_exec[oid] != oms_cum[cl]:
            mismatched += 1
            if mismatched <= 5:
                failures.append(f"{cl} ({oid}): OMS CumQty {oms_cum[cl]} != venue vol_exec "
                                f"{venue_exec[oid]}")
    if mismatched > 5:
        failures.append(f"... {mismatched} orders with OMS/venue cum qty mismatch in all")

    moves = SWITCH_RX.findall(gw.err.text())
    to_rest = sum(1 for a, b in moves if (a, b) == ("FIX", "REST"))
    to_fix = sum(1 for a, b in moves if (a, b) == ("REST", "FIX"))
    if drops and not to_rest:
        failures.append(f"{drops} FIX drop(s) but the flow never moved to REST")
    if moves and moves[-1][1] != "FIX":
        failures.append("flow did not fail back to FIX by the end")

    by_transport = {t: len(v) for t, v in latency.items()}
    return {
        "ok": not failures,
        "config": {"minutes": args.minutes, "rate": args.rate, "flip_every_s": args.flip_every,
                   "refuse_s": args.refuse_s, "maker_every": args.maker_every,
                   "seed": args.seed, "ws": args.ws},
        "duration_s": round(load_s, 1),
        "orders_sent": len(sent),
        "acked": by_transport,
        "rejected": sum(reject_reasons.values()),
        "reject_reasons": reject_reasons,
        # Orders that arrived while no transport was up: PendingNew, then sent once or
        # rejected after [venue.fallback] hold_max_s (ack latency includes the hold).
        "held": {"pending_new": held, "then_acked": held_then_sent},
        "maker_sells": maker_sells,
        "fills_reported": sum(exec_ids.values()),
        "orders_with_fills": sum(1 for v in oms_cum.values() if v > 0),
        "filled_qty": str(sum(oms_cum.values(), Decimal(0))),
        "fix_drops": drops,
        "switches": {"total": len(moves), "fix_to_rest": to_rest, "rest_to_fix": to_fix},
        "ack_latency_ms": {t: {"n": len(v), "p50": _pct(v, 50), "p99": _pct(v, 99)}
                           for t, v in latency.items()},
        "venue": {"submissions": len(counts), "fixgw_submissions": fixgw_submissions,
                  "orders_checked": sum(1 for oid in acked.values() if oid in venue_exec),
                  "cum_qty_mismatches": mismatched},
        "other_messages": other,
        "failures": failures[:50],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=2.0, help="load duration (default 2)")
    ap.add_argument("--rate", type=float, default=20.0, help="OMS orders per second (20)")
    ap.add_argument("--flip-every", type=float, default=15.0,
                    help="seconds between FIX drops (15)")
    ap.add_argument("--refuse-s", type=float, default=4.0,
                    help="seconds the venue refuses FIX logons after a drop (4)")
    ap.add_argument("--maker-every", type=int, default=4,
                    help="one marketable MAKER sell per this many OMS orders (4)")
    ap.add_argument("--drain-s", type=float, default=3.0,
                    help="seconds to wait for late reports at the end (3)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ws", action="store_true",
                    help="while failed over, orders, cancels and executions over the private "
                         "WebSocket ([venue.fallback] ws_url), REST as the backstop")
    ap.add_argument("--keep", action="store_true",
                    help="keep the work directory (data dirs, gateway/simulator stderr)")
    args = ap.parse_args(argv)
    if args.rate <= 0 or args.minutes <= 0 or args.flip_every <= 0 or args.maker_every < 1:
        ap.error("--rate, --minutes, --flip-every must be > 0 and --maker-every >= 1")
    work = Path(tempfile.mkdtemp(prefix="fixgw-soak-"))
    try:
        summary = run(args, work)
    except Exception as exc:
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"[-4000:]}))
        return 2
    finally:
        if not args.keep:
            import shutil
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work directory kept: {work}", file=sys.stderr)
    print(json.dumps(summary))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
