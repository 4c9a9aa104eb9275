"""Order books (Decimal price levels) and instrument metadata (tick size, lot size, minimum).

May import: gateway.kraken, and gateway.fix for the FIX feed modules (the venue MD session
handler and the OMS fan-out); nothing here imports routing, server or cli.

Modules:
    book         ``Book``: one symbol's L2 book (dict + bisect-sorted price lists, one lock;
                 one writer thread, many readers), venue CRC32 checksum, last-trades ring.
    instruments  ``Instrument`` / ``InstrumentRegistry``: tick, step, minimum, precisions, and the
                 human-readable order-shape check used before anything reaches the venue.
    fix_md       W/X message builders and the per-subscriber top-N view diff (shared by the
                 simulator's feed and the OMS fan-out).
    feed         ``MarketDataFeed``: the venue MD session: instruments, subscriptions, books,
                 integrity checks (checksum, RptSeq gap, crossed, stale) and resubscribe.
    fanout       ``OmsMarketData``: MarketDataRequest from OMS sessions, served from our books.
    outbox       ``Outbox``: one OMS session's bounded market-data queue and sender thread, so
                 an OMS that stops reading never blocks the venue thread (overflow: resync).
    episode      ``Episode``: when a long-lasting trouble's next log line (or retry) is due: one
                 warning, rare reminders on a doubling schedule, one closing line (also used by
                 the WS fallback and the WS clients).
"""
