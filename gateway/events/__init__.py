"""Normalized protobuf events: the gateway-wide sequenced event log (ring + on-disk journal) and
the gRPC EventService that streams it with filters, resume and backpressure.

May import: gateway._proto, the low-level helpers gateway.listen and gateway.log_format, and
the standard library. Producers import this; it imports no producer.

Producers freeze an event's values into a build (`gateway.events.builders`) and hand it to an
`EventPublisher` (`gateway.events.publisher`) from any thread, QuickFIX callbacks included. The
event process (`gateway.events.process`) owns the EventLog and the EventServer; `fixgw run`
starts it as a child of the gateway and feeds it through a pipe.
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
