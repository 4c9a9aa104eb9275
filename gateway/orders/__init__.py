"""The gateway's record of orders: the FIX 4.4 OrdStatus state machine, the OMS<->venue ClOrdID
map, and the append-only order journal that makes a restart lose no order.

May import: the standard library only.
"""
