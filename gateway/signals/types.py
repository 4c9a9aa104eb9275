"""Small shared vocabulary of the signal module.

Directions and sides are plain strings (not enums) so a snapshot reads as plain data: the gate
and the gRPC layer can compare and serialize them without importing anything from here.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

Direction: TypeAlias = Literal["long", "short", "neutral"]
Side: TypeAlias = Literal["long", "short"]
"""Which side's positions are liquidated: ``long`` liquidations sell into bids below the price."""
