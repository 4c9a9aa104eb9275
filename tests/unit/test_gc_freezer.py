"""The GC freezer freezes what survives, and the order path leaves no cyclic garbage that
freezing could leak (gateway/server/gc_freezer.py)."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.config.loader import ConfigError
from gateway.server.gc_freezer import GcFreezer

REPO = Path(__file__).resolve().parents[2]


def _not_frozen(objects: list[list[int]]) -> int:
    """How many of `objects` are still in a collected generation: gc.get_objects() lists the
    three generations, never the permanent one that gc.freeze() moves objects to."""
    ids = {id(o) for o in objects}
    return sum(1 for o in gc.get_objects() if id(o) in ids)


def test_freezer_freezes_survivors_on_its_interval() -> None:
    # Checked object by object, not by gc.get_freeze_count(): frozen objects that die by
    # refcount (other threads' short-lived state) leave the permanent generation, so the count
    # can rise by less than what was frozen.
    freezer = GcFreezer(0.05)
    try:
        freezer.start()
        assert freezer.freezes == 1  # the test process's heap, frozen by start()
        kept = [[i] for i in range(5_000)]  # survivors (lists: always GC-tracked)
        deadline = time.monotonic() + 5
        while _not_frozen(kept) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _not_frozen(kept) == 0
    finally:
        freezer.stop()
        gc.unfreeze()
    assert not freezer.running


def test_freezing_never_counts_the_frozen_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    # gc.get_freeze_count() walks the whole permanent generation with the GIL held, a stall
    # that grows with the heap; neither the freezer's tick nor a metrics scrape may call it.
    from gateway.fix.application import StatusBoard
    from gateway.metrics.collector import GatewayMetrics

    def walk() -> int:
        raise AssertionError("gc.get_freeze_count() walks every frozen object")

    monkeypatch.setattr(gc, "get_freeze_count", walk)
    freezer = GcFreezer(60)
    try:
        freezer.freeze_now()
        freezer.freeze_now()
        assert freezer.freezes == 2
        families = {f.name: f for f in GatewayMetrics(
            StatusBoard(), gc_freezes=lambda: freezer.freezes).collect()}
    finally:
        gc.unfreeze()
    assert families["fixgw_gc_freezes"].samples[0].value == 2
    assert families["fixgw_resident_memory_bytes"].samples[0].value > 1 << 20


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        GcFreezer(0)


def test_config_default_and_bounds() -> None:
    assert load_config(None).gateway.gc_freeze_interval_s == 10.0
    assert load_config(None, {"gateway.gc_freeze_interval_s": 0}).gateway \
        .gc_freeze_interval_s == 0
    with pytest.raises(ConfigError, match="gc_freeze_interval_s"):
        load_config(None, {"gateway.gc_freeze_interval_s": -1})


# Runs in a fresh interpreter: no other test's threads making garbage while it counts.
_ORDER_PATH = textwrap.dedent("""
    import gc, sys, tempfile
    from pathlib import Path
    import quickfix as fix
    from gateway.config import load_config
    from gateway.events.process import PipePublisher
    from gateway.fix.messages import split_fields
    from gateway.server.gateway import Gateway, VenueEndpoints

    d = Path(tempfile.mkdtemp())
    config = load_config(None, {"gateway.data_dir": str(d), "simulator.enabled": False,
                                    "venue.trading.port": 1, "venue.market_data.port": 2})
    pub = PipePublisher()  # never attached: specs stay queued, as between two drains
    gw = Gateway(config, VenueEndpoints("127.0.0.1", 1, "127.0.0.1", 2), None, pub)
    r = gw.router
    sid = fix.SessionID("FIX.4.4", config.oms.sender_comp_id, "OMS")
    r.register_oms(sid, ())
    sent = []

    class Session:
        def send(self, msg):
            sent.append(msg)
            return True

    r.venue.session = Session()
    r.venue.logged_on = True
    for ctx in r._oms_by_key.values():
        ctx.session = Session()

    def message(text):
        m = fix.Message()
        m.setString(text, False)
        return m

    def order(i):
        d = message("8=FIX.4.4\\x019=0\\x0135=D\\x0134=2\\x0149=OMS\\x0152=20261126-01:00:00"
                    f"\\x0156=FIXGW\\x0111=C{i}\\x0138=0.01\\x0140=2\\x0144=45000.1\\x0154=1"
                    "\\x0155=BTC/USD\\x0159=3\\x0160=20261126-01:00:00\\x0110=000\\x01")
        r.on_oms_message(d, sid, split_fields(d.toString()))
        venue_id = split_fields(sent[-1].toString())["11"]
        for et, leaves in (("0", "0.01"), ("4", "0")):
            er = message("8=FIX.4.4\\x019=0\\x0135=8\\x0134=2\\x0149=KRAKEN-TRD"
                         "\\x0152=20261126-01:00:00\\x0156=FIXGW\\x016=0\\x0111=" + venue_id +
                         f"\\x0114=0\\x0117=E{et}{i}\\x0137=O{i}\\x0138=0.01\\x0139={et}"
                         "\\x0140=2\\x0144=45000.1\\x0154=1\\x0155=BTC/USD\\x0159=3"
                         f"\\x01150={et}\\x01151={leaves}\\x0110=000\\x01")
            r.on_venue_message(er, split_fields(er.toString()))
        sent.clear()

    for i in range(50):  # warm: first-use caches are not garbage
        order(i)
    assert len(gw.store.orders) == 50, "orders did not go through"
    gc.collect()
    gc.freeze()
    gc.disable()  # so the count below is every cycle made, none collected on the way
    for i in range(50, 2050):
        order(i)
    pub._pending.clear()
    assert len(gw.store.orders) == 2050
    assert all(o.status == "4" for o in gw.store.orders.values()), "orders not all canceled"
    print(gc.collect())
""")


def test_order_path_makes_no_cyclic_garbage() -> None:
    out = subprocess.run([sys.executable, "-c", _ORDER_PATH], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip().splitlines()[-1]) == 0
