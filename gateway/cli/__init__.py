"""Command-line entry points: `fixgw` (run, venue-sim, oms, kraken sign, signals) and `fixgwctl`.

May import: everything.
"""
