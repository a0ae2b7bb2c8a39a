"""RTP/RTCP port pairs for relay legs: even RTP ports, RTCP one above, FIFO reuse."""

from __future__ import annotations

import collections

__all__ = ["PortAllocator", "PortsExhaustedError"]


class PortsExhaustedError(RuntimeError):
    """No free RTP/RTCP port pair left in the configured range."""


class PortAllocator:
    """Even RTP ports (RTCP = RTP + 1) from ``lo``..``hi`` inclusive; freed ones return."""

    def __init__(self, lo: int, hi: int) -> None:
        first = lo + (lo & 1)
        if not 0 < first < hi <= 65535:
            raise ValueError(f"RTP port range {lo}-{hi} holds no even/odd pair")
        self.lo, self.hi = lo, hi
        # FIFO reuse: a freed port goes to the back, so late packets of an ended call
        # are unlikely to reach the next call on the same port.
        self._free = collections.deque(range(first, hi, 2))
        self._used: set[int] = set()

    @classmethod
    def from_spec(cls, spec: str) -> PortAllocator:
        """``"20000-29999"`` as in the config file."""
        lo, sep, hi = spec.partition("-")
        if not sep or not lo.strip().isdigit() or not hi.strip().isdigit():
            raise ValueError(f"RTP port range {spec!r} is not LO-HI")
        return cls(int(lo), int(hi))

    @property
    def capacity(self) -> int:
        return len(self._free) + len(self._used)

    @property
    def available(self) -> int:
        return len(self._free)

    def allocate(self) -> int:
        if not self._free:
            raise PortsExhaustedError(f"all RTP ports in {self.lo}-{self.hi} are in use")
        port = self._free.popleft()
        self._used.add(port)
        return port

    def release(self, port: int) -> None:
        if port not in self._used:
            raise ValueError(f"port {port} was not allocated")
        self._used.remove(port)
        self._free.append(port)
