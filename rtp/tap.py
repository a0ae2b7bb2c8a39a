"""The relay's tap: one immutable record per accepted packet, for the recorder.

Packets are tapped after SRTP was removed, so the recorder always sees plain RTP.

``BoundedTap`` keeps one list per leg for the life of the tap: a relay leg asks for its
list once (``channel``) and appends to it directly on its fast path, without a method
call per packet. The drains hand out copies and empty those lists in place, so the list
a leg holds stays the one the tap reads.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

__all__ = ["BoundedTap", "Tap", "TapPacket"]


class TapPacket(NamedTuple):
    """One accepted media packet as it arrived on ``leg`` (wire values, leg's own law).

    A NamedTuple rather than a frozen dataclass: one is built per packet on the
    forwarding path and a tuple is the cheapest immutable record.
    """

    leg: str
    arrival: float  # loop.time() when read
    seq: int
    ts: int
    ssrc: int
    payload_type: int
    marker: bool
    payload: bytes


class Tap(Protocol):
    def put(self, packet: TapPacket) -> None: ...


class BoundedTap:
    """Per-leg lists the recorder drains per tick; full lists drop and count, never block.

    Whoever appends to a ``channel`` list directly keeps the same bound as ``put``: append
    only while ``len(items) < max_per_leg``, else count one in ``overflow``.
    """

    def __init__(self, max_per_leg: int = 500) -> None:
        self.max_per_leg = max_per_leg
        self.overflow = 0
        self._lists: dict[str, list[TapPacket]] = {}

    def channel(self, leg: str) -> list[TapPacket]:
        """The list ``leg``'s packets go to; the same list for the life of the tap."""
        items = self._lists.get(leg)
        if items is None:
            items = self._lists[leg] = []
        return items

    def put(self, packet: TapPacket) -> None:
        items = self._lists.get(packet.leg)
        if items is None:
            items = self._lists[packet.leg] = []
        if len(items) >= self.max_per_leg:
            self.overflow += 1
            return
        items.append(packet)

    def drain(self, leg: str) -> list[TapPacket]:
        items = self._lists.get(leg)
        if not items:
            return []
        out = items.copy()
        items.clear()
        return out

    def drain_all(self) -> dict[str, list[TapPacket]]:
        """Every leg's packets since the last drain; legs with none are left out."""
        out: dict[str, list[TapPacket]] = {}
        for leg, items in self._lists.items():
            if items:
                out[leg] = items.copy()
                items.clear()
        return out
