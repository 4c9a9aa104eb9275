"""Normalized protobuf events: the gateway-wide sequenced event log (ring + on-disk journal) and
the gRPC EventService that streams it with filters, resume and backpressure.

May import: gateway._proto and the standard library. Producers import this; it imports no producer.

Producers build events with `gateway.events.builders` and call `EventLog.publish(event)` from any
thread (QuickFIX callbacks included); the server process owns one EventLog and one EventServer.
"""

from gateway.events.log import (
    EventFilter,
    EventLog,
    EventLogClosed,
    EventLogConfig,
    SequenceOutOfRange,
)
from gateway.events.server import EVENT_SERVICE_NAME, EventServer, EventServerConfig

__all__ = [
    "EVENT_SERVICE_NAME",
    "EventFilter",
    "EventLog",
    "EventLogClosed",
    "EventLogConfig",
    "EventServer",
    "EventServerConfig",
    "SequenceOutOfRange",
]
