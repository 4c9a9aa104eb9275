"""Network transports: the TLS bridge every FIX session can run through (QuickFIX's Python
package has no SSL), and the Kraken REST and WebSocket clients used when a FIX session is
down.

May import: gateway.kraken, gateway.events, gateway.orders.
"""
