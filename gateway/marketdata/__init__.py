"""Order books (Decimal price levels) and instrument metadata (tick size, lot size, minimum).

May import: gateway.kraken.

Modules:
    book         ``Book``: one symbol's L2 book (dict + bisect-sorted price lists, one lock;
                 one writer thread, many readers), venue CRC32 checksum, last-trades ring.
    instruments  ``Instrument`` / ``InstrumentRegistry``: tick, step, minimum, precisions, and the
                 human-readable order-shape check used before anything reaches the venue.
"""
