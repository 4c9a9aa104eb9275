"""QuickFIX glue shared by the gateway and the simulator: the data dictionary path, rendering
config into QuickFIX session settings, field helpers, and Kraken's trading-logon fields.

May import: gateway.config, gateway.kraken. Must not import routing, server or cli.
"""
