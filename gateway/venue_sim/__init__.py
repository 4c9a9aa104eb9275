"""The UAT venue simulator: a price-time matching engine per symbol behind Kraken-dialect FIX
acceptors (trading + market data), driven by a seeded synthetic flow. A real counterparty.

May import: gateway.kraken, gateway.config, gateway.fix, gateway.marketdata and the TLS bridge
of gateway.transports.
Never routing, server or cli.
"""
