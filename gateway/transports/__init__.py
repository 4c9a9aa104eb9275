"""Kraken REST and WebSocket clients used when a FIX session is down.

May import: gateway.kraken, gateway.events, gateway.orders.
"""
