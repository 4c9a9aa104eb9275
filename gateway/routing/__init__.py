"""The order path: OMS acceptor -> validation/gate -> venue session, and venue reports back to
the OMS that owns each order. Runs on QuickFIX callback threads with no hop to asyncio.

May import: fix, config, orders, risk, marketdata, events, transports, kraken.
"""
