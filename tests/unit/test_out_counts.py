"""Outgoing messages counted by type in toApp, from several sending threads at once.

toApp tells a message's type by probing it for a field (see `gateway.fix.application._probe`);
the probe releases the GIL while QuickFIX copies the field into the object it is given, so each
thread must probe into objects of its own.
"""

from __future__ import annotations

import threading

import quickfix as fix

from gateway.fix import application as app


def _message(msg_type: str, extra: str) -> fix.Message:
    m = fix.Message()
    m.setString(f"8=FIX.4.4\x019=0\x0135={msg_type}\x0111=C1\x01{extra}10=000\x01", False)
    return m


def test_each_sending_thread_probes_into_field_objects_of_its_own() -> None:
    # The objects themselves are kept, so that no address is reused once a thread is gone.
    seen: list[tuple[object, object, object]] = []
    lock = threading.Lock()

    def grab() -> None:
        pf = app._probe_fields
        with lock:
            seen.append((pf.exec_type, pf.ord_type, pf.orig_cl_ord_id))

    threads = [threading.Thread(target=grab) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    grab()
    for i in range(3):
        assert len({id(fields[i]) for fields in seen}) == len(seen) == 5


def test_orders_and_replaces_sent_from_four_threads_are_counted_by_type() -> None:
    board = app.StatusBoard()
    venue = app.SessionApplication(app.BaseHandler(), "venue", board)
    sid = fix.SessionID("FIX.4.4", "FIXGW", "KRAKEN-TRD")
    venue.onCreate(sid)
    # A long OrigClOrdID: copied into a heap-allocated string, the case two threads sharing
    # one field object would corrupt.
    order = _message("D", "40=2\x0155=BTC/USD\x01")
    replace = _message("G", "40=2\x0141=" + "7" * 40 + "\x0155=BTC/USD\x01")
    per_thread = 5000

    def send() -> None:
        for _ in range(per_thread):
            venue.toApp(order, sid)
            venue.toApp(replace, sid)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    msgs, _rejects = board.out_counts()
    key = next(iter(board.pointers.values()))
    assert msgs[(key, "D")] == 4 * per_thread
    assert msgs[(key, "G")] == 4 * per_thread
