"""The authenticated gRPC AdminService used by `fixgwctl`.

May import: gateway.routing and what it routes with (gateway.orders, gateway.fix),
gateway.events, gateway.config, gateway.listen, gateway.version. Not the server or the CLI:
the service is handed the running Gateway.
"""
