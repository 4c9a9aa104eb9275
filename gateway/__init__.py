"""fixgw: a FIX 4.4 institutional trading gateway in front of Kraken (and its UAT simulator).

Layering, lowest first; a package may import only packages above it in this list:

    kraken      venue facts: signatures, symbols, book checksum        (imports nothing of ours)
    config      pydantic deployment config, TOML loading               (kraken)
    fix         QuickFIX glue: dictionary, settings, message helpers   (config, kraken)
    marketdata  order books and instruments                            (kraken)
    orders      order model, OrdStatus machine, ClOrdID map, journal   (nothing)
    signals     numpy signal math (carry, gravity, cascade)            (nothing)
    risk        business validation and the pre-trade gate             (orders, marketdata, signals)
    events      protobuf events, journal, gRPC EventService            (_proto)
    transports  Kraken REST/WS clients                                 (kraken, events, orders)
    routing     OMS <-> venue order flow and transport choice          (everything above)
    venue_sim   the UAT venue simulator (a counterparty)   (kraken, config, fix, marketdata)
    admin       authenticated gRPC admin service                       (routing, events)
    server      assembles one gateway process                          (everything above)
    cli         `fixgw` and `fixgwctl` entry points                    (everything)
"""
