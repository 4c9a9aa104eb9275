"""The gateway's figures: plain counters fed on the FIX threads, metric families at scrape.

Writers (all without locks, each key with one writer thread):
- `MetricsSink` (a RoutingSink, called by the router on the FIX thread that handles the order):
  rejects, gate decisions and orders accepted go into per-thread dicts (`_Shards`); the order
  round-trip latency goes into one `LatencyHistogram`, written only under the router's
  ``report_lock`` (venue reports), so one writer at a time.
- the sessions themselves (`gateway.fix.application`): messages in by MsgType on each
  ``SessionStatus`` (one writer: the session's socket thread); messages out and the rejects we
  send in ``StatusBoard.out`` / ``out_rejects``, one ``itertools.count`` per key (any thread may
  send on a session; ``next()`` is an atomic increment).
- `GatewayMetrics.session_changed` (a StatusBoard listener) and `transport_switched` (the
  gateway's transport-switch callback): rare events, per-thread dicts as well.

Reader: `GatewayMetrics.collect`, on the metrics HTTP thread, copies each dict before reading
it (a dict copy is atomic under the GIL) and builds the metric families.
"""

from __future__ import annotations

import os
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from gateway.fix.application import SessionStatus, StatusBoard
from gateway.orders.model import Order
from gateway.orders.store import OrderCounts
from gateway.risk.gate import GateDecision, GateOrder
from gateway.risk.validation import ORD_REJ_REASON_NAMES, OrderInput
from gateway.routing.router import Router
from gateway.routing.sinks import fan_out
from gateway.version import versions

# Order round trip, in seconds: the gateway's p50 is ~0.5 ms on loopback, so the fine buckets
# sit between 50 µs and 5 ms; the coarse ones catch a venue that stalls.
LATENCY_BUCKETS_S: Final = (0.00005, 0.0001, 0.0002, 0.0003, 0.0005, 0.00075, 0.001, 0.002,
                            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

# OrdRejReason (103) as FIX 4.4 names them.
ORD_REJ_REASONS: Final = ORD_REJ_REASON_NAMES  # shared with the event stream
# SessionRejectReason (373).
SESSION_REJECT_REASONS: Final = {
    "0": "invalid_tag_number", "1": "required_tag_missing",
    "2": "tag_not_defined_for_message_type", "3": "undefined_tag",
    "4": "tag_specified_without_a_value", "5": "value_is_incorrect",
    "6": "incorrect_data_format", "7": "decryption_problem", "8": "signature_problem",
    "9": "compid_problem", "10": "sendingtime_accuracy_problem", "11": "invalid_msgtype",
    "12": "xml_validation_error", "13": "tag_appears_more_than_once",
    "14": "tag_specified_out_of_required_order", "15": "repeating_group_fields_out_of_order",
    "16": "incorrect_numingroup_count", "17": "non_data_value_includes_field_delimiter",
    "99": "other"}
# BusinessRejectReason (380).
BUSINESS_REJECT_REASONS: Final = {
    "0": "other", "1": "unknown_id", "2": "unknown_security",
    "3": "unsupported_message_type", "4": "application_not_available",
    "5": "conditionally_required_field_missing", "6": "not_authorized",
    "7": "deliverto_firm_not_available"}

# Bound on orders waiting for their first report (a venue that never answers must not grow
# memory without limit): past it the oldest wait is dropped, and counted.
MAX_PENDING_ORDERS: Final = 100_000


@dataclass(frozen=True)
class SubscriberStats:
    """The event stream's consumers, as the event service reports them."""

    subscribers: int = 0
    queued: int = 0  # events published but not yet sent, over all subscribers
    cutoffs_total: int = 0  # subscribers cut off for falling too far behind, since start
    # The publishing side: events refused because the gateway's backlog was full, event
    # process restarts, and events a dead event process took with it (all since start).
    dropped_total: int = 0
    process_restarts: int = 0
    lost_total: int = 0


class LatencyHistogram:
    """A Prometheus-style histogram as a list of ints: fixed bounds, one bisect per sample.

    One writer at a time (see the module docstring); `snapshot` may run concurrently and sees
    each count as of some instant (counts only grow, so cumulative buckets stay monotonic after
    the copy).
    """

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS_S) -> None:
        if list(bounds) != sorted(set(bounds)):
            raise ValueError("histogram bounds must be strictly increasing")
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        # bisect_left: a sample equal to a bound belongs to that bucket (Prometheus "le").
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def snapshot(self) -> tuple[list[tuple[str, float]], float]:
        """(cumulative buckets as (le, count) ending with "+Inf", sum of samples)."""
        counts = list(self.counts)
        total = self.total
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip(self.bounds, counts, strict=False):
            running += n
            out.append((_le(bound), running))
        out.append(("+Inf", running + counts[-1]))
        return out, total


def _le(bound: float) -> str:
    return repr(float(bound))


class _Shards:
    """Counters kept in one dict per writer thread: a plain ``d[k] = d.get(k, 0) + 1`` with no
    lock and no lost update, summed at scrape time."""

    def __init__(self) -> None:
        self._all: list[dict[tuple[str, ...], int]] = []
        self._local = threading.local()

    def mine(self) -> dict[tuple[str, ...], int]:
        try:
            d: dict[tuple[str, ...], int] = self._local.d
        except AttributeError:
            d = self._local.d = {}
            self._all.append(d)
        return d

    def inc(self, key: tuple[str, ...], n: int = 1) -> None:
        d = self.mine()
        d[key] = d.get(key, 0) + n

    def totals(self) -> dict[tuple[str, ...], int]:
        out: dict[tuple[str, ...], int] = {}
        for d in list(self._all):
            for k, n in dict(d).items():
                out[k] = out.get(k, 0) + n
        return out


class MetricsSink:
    """The router's view of orders, counted (a `gateway.routing.sinks.RoutingSink`).

    Round-trip latency: from the moment the OMS session's fromApp took the NewOrderSingle
    (``SessionStatus.last_received``, stamped before the router runs) to the first
    ExecutionReport for that order forwarded to the OMS. The start is taken at the gate
    decision, which the router makes before it sends the order to the venue, so a fast venue
    report cannot overtake it. Orders the gateway itself rejects are not samples (they never
    left the gateway); they are counted in the rejects.
    """

    def __init__(self, board: StatusBoard) -> None:
        self._board = board
        self.latency = LatencyHistogram()
        # (oms session, OMS ClOrdID) -> receive time (time.time()); set on the OMS thread,
        # popped on the venue thread (single dict operations: atomic under the GIL).
        self._pending: dict[tuple[str, str], float] = {}
        self.pending_dropped = 0
        self.rejects = _Shards()  # (oms session, kind, reason)
        self.gate = _Shards()  # (rule, action)
        self.orders = _Shards()  # (oms session, outcome)
        self.cancels = _Shards()  # (oms session, by): cancels the gateway sent on its own

    # ---- RoutingSink ---------------------------------------------------------------------------
    def gate_decided(self, order: GateOrder, cl_ord_id: str, decision: GateDecision,
                     amend: bool = False) -> None:
        self.gate.inc((decision.rule or "none", decision.action))
        if decision.action == "block" or amend:  # a replace is no round-trip sample
            return
        st = self._board.sessions.get(order.oms_session)
        started = st.last_received if st is not None else None
        pending = self._pending
        if len(pending) >= MAX_PENDING_ORDERS:
            try:
                pending.pop(next(iter(pending)))
                self.pending_dropped += 1
            except (StopIteration, KeyError, RuntimeError):
                pass
        pending[(order.oms_session, cl_ord_id)] = started if started is not None else time.time()

    def order_accepted(self, order: Order) -> None:
        self.orders.inc((order.oms_session, "accepted"))

    def order_rejected(self, oms_session: str, cl_ord_id: str, symbol: str, reason: str,
                       text: str, order: OrderInput | None = None) -> None:
        self.orders.inc((oms_session, "rejected"))
        self.rejects.inc((oms_session, "order", ORD_REJ_REASONS.get(reason, reason or "none")))
        if reason != "6":  # a duplicate ClOrdID is refused without touching the original order
            self._pending.pop((oms_session, cl_ord_id), None)

    def execution(self, order: Order, exec_type: str, ord_status: str, exec_id: str,
                  last_qty: Decimal | None, last_px: Decimal | None,
                  transport: str = "fix") -> None:
        history = order.oms_history
        key = (order.oms_session, history[0] if history else order.oms_cl_ord_id)
        started = self._pending.pop(key, None)
        if started is not None:
            self.latency.observe(max(0.0, time.time() - started))
        if exec_type == "8":
            self.rejects.inc((order.oms_session, "venue", "venue_reject"))

    def cancel_rejected(self, oms_session: str, cl_ord_id: str, orig_cl_ord_id: str,
                        text: str, *, order: Order | None = None,
                        response_to: str | None = None, reason: str | None = None,
                        ord_status: str | None = None, order_id: str | None = None) -> None:
        self.rejects.inc((oms_session, "cancel", "cancel_reject"))

    def cancel_requested(self, order: Order, cl_ord_id: str, by: str, text: str) -> None:
        self.cancels.inc((order.oms_session, by))


_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int | None:
    """This process's resident set (Linux /proc/self/statm); None where there is none. Two
    reads of a small file: cheap enough for every scrape, unlike any walk of the heap."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE_BYTES
    except (OSError, ValueError, IndexError):
        return None


class GatewayMetrics(Collector):
    """Every figure of one gateway, as a prometheus_client collector evaluated at scrape time.

    ``roles``: session name -> role label (oms, venue-trading, venue-md); sessions not in it
    get the StatusBoard's role. ``transport``: the order transport in use now ("fix"/"rest"),
    or None without a fallback. ``subscriber_stats``: the event stream's subscribers, or None.
    """

    def __init__(self, board: StatusBoard, *, roles: Mapping[str, str] | None = None,
                 transport: Callable[[], str] | None = None,
                 subscriber_stats: Callable[[], SubscriberStats] | None = None,
                 order_counts: Callable[[], OrderCounts] | None = None,
                 gc_freezes: Callable[[], int] | None = None) -> None:
        self.board = board
        self.roles = dict(roles or {})
        self.sink = MetricsSink(board)
        self.transport = transport
        self.subscriber_stats = subscriber_stats
        self.order_counts = order_counts
        self.gc_freezes = gc_freezes
        self._sessions = _Shards()  # (session, role, new state)
        self._switches = _Shards()  # (from, to, automatic)
        self._versions = versions()
        self._started = time.time()  # made as the gateway starts, before its sessions

    # ---- listeners (rare events, off the order path) ------------------------------------------
    def session_changed(self, status: SessionStatus, old_state: str, reason: str) -> None:
        """StatusBoard listener: counts every transition by the state entered."""
        self._sessions.inc((status.key, self._role(status), status.state))

    def transport_switched(self, old: str, new: str, reason: str, automatic: bool) -> None:
        """The gateway's transport-switch callback: one failover (or failback) counted."""
        self._switches.inc((old, new, "true" if automatic else "false"))

    def attach(self, router: Router) -> None:
        """Counts from now on: the router's sink fans out to ours too; the board tells us of
        session changes. Call before the sessions start."""
        router.sink = fan_out(router.sink, self.sink)
        self.board.listeners.append(self.session_changed)

    def _role(self, st: SessionStatus) -> str:
        return self.roles.get(st.key, st.role)

    # ---- scrape ----------------------------------------------------------------------------
    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily
                                  | HistogramMetricFamily]:
        sessions = sorted(self.board.sessions.values(), key=lambda s: s.key)
        up = GaugeMetricFamily("fixgw_session_up", "1 while the FIX session is logged on",
                               labels=["session", "role"])
        for st in sessions:
            up.add_metric([st.key, self._role(st)], 1.0 if st.state == "logged_on" else 0.0)
        yield up

        trans = CounterMetricFamily("fixgw_session_transitions",
                                    "FIX session state changes, by the state entered "
                                    "(logged_on, logged_out, ...)",
                                    labels=["session", "role", "state"])
        for (key, role, state), n in sorted(self._sessions.totals().items()):
            trans.add_metric([key, role, state], n)
        yield trans

        msgs = CounterMetricFamily("fixgw_messages", "FIX messages by session, direction "
                                   "and MsgType (35)",
                                   labels=["session", "role", "direction", "msg_type"])
        roles = {st.key: self._role(st) for st in sessions}
        for st in sessions:
            for t, n in sorted(dict(st.msgs_in).items()):
                msgs.add_metric([st.key, roles[st.key], "in", t], n)
        out, session_rejects = self.board.out_counts()
        for (key, t), n in sorted(out.items()):
            msgs.add_metric([key, roles.get(key, self.roles.get(key, "")), "out", t], n)
        yield msgs

        rej = CounterMetricFamily(
            "fixgw_rejects", "Rejects the gateway sent: kind order (ExecutionReport 150=8 by "
            "the gateway), venue (the venue's order reject, forwarded), cancel "
            "(OrderCancelReject), session (Reject 35=3), business (BusinessMessageReject 35=j)",
            labels=["session", "kind", "reason"])
        for (key, kind, reason), n in sorted(self.sink.rejects.totals().items()):
            rej.add_metric([key, kind, reason], n)
        for (key, t, code), n in sorted(session_rejects.items()):
            if t == "3":
                rej.add_metric([key, "session", SESSION_REJECT_REASONS.get(code, code)], n)
            else:
                rej.add_metric([key, "business", BUSINESS_REJECT_REASONS.get(code, code)], n)
        yield rej

        orders = CounterMetricFamily("fixgw_orders", "New orders from the OMS by outcome "
                                     "(accepted = sent to the venue)",
                                     labels=["session", "outcome"])
        for (key, outcome), n in sorted(self.sink.orders.totals().items()):
            orders.add_metric([key, outcome], n)
        yield orders

        cancels = CounterMetricFamily(
            "fixgw_gateway_cancels", "Cancels the gateway sent for an OMS that did not ask: by "
            "admin (fixgwctl cancel), kill_switch, cancel_on_disconnect (the OMS session was "
            "down for its cancel_on_disconnect_s)", labels=["session", "by"])
        for (key, by), n in sorted(self.sink.cancels.totals().items()):
            cancels.add_metric([key, by], n)
        yield cancels

        buckets, total = self.sink.latency.snapshot()
        hist = HistogramMetricFamily(
            "fixgw_order_round_trip_seconds", "NewOrderSingle received from the OMS -> first "
            "ExecutionReport forwarded to the OMS, for orders sent to the venue")
        hist.add_metric([], buckets, total)
        yield hist

        gate = CounterMetricFamily("fixgw_gate_decisions", "Pre-trade gate decisions by the "
                                   "deciding rule (none = no rule fired) and action",
                                   labels=["rule", "action"])
        for (rule, action), n in sorted(self.sink.gate.totals().items()):
            gate.add_metric([rule, action], n)
        yield gate

        transport = GaugeMetricFamily("fixgw_order_transport", "1 for the transport new orders "
                                      "use now", labels=["transport"])
        now = self.transport() if self.transport is not None else "fix"
        for name in ("fix", "rest"):
            transport.add_metric([name], 1.0 if now == name else 0.0)
        yield transport

        switches = CounterMetricFamily("fixgw_transport_switches", "Order-flow transport "
                                       "switches (fix->rest is a failover)",
                                       labels=["from", "to", "automatic"])
        failovers = 0
        for (old, new, auto), n in sorted(self._switches.totals().items()):
            switches.add_metric([old, new, auto], n)
            if new != "fix":
                failovers += n
        yield switches
        yield CounterMetricFamily("fixgw_transport_failovers", "Switches of the order flow "
                                  "away from FIX", value=failovers)

        stats = self.subscriber_stats() if self.subscriber_stats is not None else None
        stats = stats or SubscriberStats()
        yield GaugeMetricFamily("fixgw_event_subscribers", "Event stream subscribers "
                                "connected", value=stats.subscribers)
        yield GaugeMetricFamily("fixgw_event_subscriber_queued", "Events published but not "
                                "yet sent, over all subscribers", value=stats.queued)
        yield CounterMetricFamily("fixgw_event_subscriber_cutoffs", "Subscribers cut off for "
                                  "falling too far behind", value=stats.cutoffs_total)
        yield CounterMetricFamily("fixgw_events_dropped", "Events not published because the "
                                  "gateway's event backlog was full", value=stats.dropped_total)
        yield CounterMetricFamily("fixgw_event_process_restarts", "Event processes started "
                                  "after one died", value=stats.process_restarts)
        yield CounterMetricFamily("fixgw_events_lost", "Events written to an event process "
                                  "that died before journaling them", value=stats.lost_total)
        if self.order_counts is not None:
            counts = self.order_counts()
            held = GaugeMetricFamily("fixgw_orders_in_memory", "Orders the gateway holds, open "
                                     "and closed (closed ones until [gateway] "
                                     "closed_order_retention_s has passed)", labels=["state"])
            held.add_metric(["open"], counts.open)
            held.add_metric(["closed"], counts.held - counts.open)
            yield held
            yield CounterMetricFamily("fixgw_orders_evicted", "Closed orders forgotten after "
                                      "the retention", value=counts.evicted)
        # The usual *_build_info form: always 1, the build in its labels, so a dashboard can
        # mark deploys and tell hosts whose QuickFIX (compiled at install) differs.
        build = GaugeMetricFamily("fixgw_build_info", "The running build: fixgw, QuickFIX, "
                                  "grpcio and Python versions (always 1)",
                                  labels=list(self._versions))
        build.add_metric(list(self._versions.values()), 1.0)
        yield build
        yield GaugeMetricFamily("fixgw_start_time_seconds", "When this gateway started, "
                                "in Unix seconds", value=self._started)
        # Not the frozen objects' count: gc.get_freeze_count() walks every one of them with
        # the GIL held (gateway/server/gc_freezer.py). Growth shows in resident memory.
        if self.gc_freezes is not None:
            yield CounterMetricFamily("fixgw_gc_freezes", "Times the survivors of the young "
                                      "collections were frozen ([gateway] "
                                      "gc_freeze_interval_s)", value=self.gc_freezes())
        rss = resident_bytes()
        if rss is not None:
            yield GaugeMetricFamily("fixgw_resident_memory_bytes", "The gateway process's "
                                    "resident memory", value=rss)
