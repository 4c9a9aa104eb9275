"""The authenticated gRPC AdminService used by `fixgwctl`.

May import: gateway.routing, gateway.events, gateway.config, gateway.listen.
"""
