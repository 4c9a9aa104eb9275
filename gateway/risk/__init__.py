"""Business validation of incoming orders and the pre-trade gate. The gate reads precomputed
snapshots only; nothing here computes a signal on the order path.

May import: gateway.orders, gateway.marketdata, gateway.signals, and gateway.config for the
gate's own config model.
"""
