"""Signal runtime: SignalRunner, gRPC signal services and the `fixgw signals` CLI."""
