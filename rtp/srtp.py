"""SRTP and SRTCP (RFC 3711) per relay leg, on libsrtp through pylibsrtp.

Theory of operation: a leg that negotiated SDES keys (RFC 4568) holds an `SrtpLeg`: one
inbound libsrtp session keyed with the peer's key (it unprotects what the peer sends)
and one outbound session keyed with ours (it protects what we send to the peer). The
relay (rtp/relay.py) unprotects right after the latching check, so everything behind it
(rewrite, transcoding, the recorder's tap) sees plain RTP, and protects right before a
packet leaves toward an SRTP peer. Each leg decides on its own: a trunk leg may be SRTP
while the phone leg is plain RTP.

A packet whose authentication tag does not verify, or that libsrtp's replay window
refuses, is dropped and counted; it never reaches the tap or the other leg. The keys
never appear in a repr or a log line.

Suites (RFC 4568 6.2): AES_CM_128_HMAC_SHA1_80 and AES_CM_128_HMAC_SHA1_32, both with
a 30-byte master key+salt (16 + 14). With _32 only SRTP tags are 32 bits; SRTCP keeps
80 (RFC 4568 6.2.2), which libsrtp's profile settings do for us.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pylibsrtp

__all__ = ["KEY_SALT_LENGTH", "SUITES", "SrtpError", "SrtpKey", "SrtpLeg", "SrtpStats"]

KEY_SALT_LENGTH = 30  # 128-bit master key + 112-bit master salt (RFC 3711 8.2)

SUITES: dict[str, int] = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}


class SrtpError(ValueError):
    """An unknown suite or a key of the wrong length."""


@dataclass(frozen=True)
class SrtpKey:
    """One direction's master key and salt, concatenated, and its crypto suite."""

    suite: str
    key_salt: bytes = field(repr=False)  # secret: never in a repr

    def __post_init__(self) -> None:
        if self.suite not in SUITES:
            raise SrtpError(f"unsupported SRTP crypto suite {self.suite!r}")
        if len(self.key_salt) != KEY_SALT_LENGTH:
            raise SrtpError(f"SRTP key+salt must be {KEY_SALT_LENGTH} bytes")


@dataclass(slots=True)
class SrtpStats:
    unprotected: int = 0
    protected: int = 0
    auth_failures: int = 0  # bad tag (tampered or wrong key): dropped
    replays: int = 0  # a packet index seen before or too old: dropped
    rtcp_unprotected: int = 0
    rtcp_protected: int = 0
    rtcp_auth_failures: int = 0
    rtcp_replays: int = 0
    protect_errors: int = 0


def _session(key: SrtpKey, ssrc_type: int) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(key=key.key_salt, ssrc_type=ssrc_type, srtp_profile=SUITES[key.suite])
    return pylibsrtp.Session(policy=policy)


def _is_replay(exc: pylibsrtp.Error) -> bool:
    return "replay" in str(exc) or "too old" in str(exc)


class SrtpLeg:
    """The SRTP state of one leg: `inbound` from the peer's key, `outbound` from ours."""

    def __init__(self, inbound: SrtpKey, outbound: SrtpKey) -> None:
        self.inbound_key = inbound
        self.outbound_key = outbound
        self.stats = SrtpStats()
        self._in = _session(inbound, pylibsrtp.Policy.SSRC_ANY_INBOUND)
        self._out = _session(outbound, pylibsrtp.Policy.SSRC_ANY_OUTBOUND)

    def __repr__(self) -> str:
        return f"SrtpLeg({self.inbound_key.suite}, {self.outbound_key.suite})"

    def unprotect(self, packet: bytes) -> bytes | None:
        """Plain RTP, or None (counted) when the tag or the replay check fails."""
        try:
            plain: bytes = self._in.unprotect(packet)
        except pylibsrtp.Error as exc:
            if _is_replay(exc):
                self.stats.replays += 1
            else:
                self.stats.auth_failures += 1
            return None
        self.stats.unprotected += 1
        return plain

    def protect(self, packet: bytes) -> bytes | None:
        """SRTP for the peer, or None (counted) when libsrtp refuses, e.g. a repeated
        sequence number of the same source."""
        try:
            out: bytes = self._out.protect(packet)
        except pylibsrtp.Error:
            self.stats.protect_errors += 1
            return None
        self.stats.protected += 1
        return out

    def unprotect_rtcp(self, packet: bytes) -> bytes | None:
        try:
            plain: bytes = self._in.unprotect_rtcp(packet)
        except pylibsrtp.Error as exc:
            if _is_replay(exc):
                self.stats.rtcp_replays += 1
            else:
                self.stats.rtcp_auth_failures += 1
            return None
        self.stats.rtcp_unprotected += 1
        return plain

    def protect_rtcp(self, packet: bytes) -> bytes | None:
        try:
            out: bytes = self._out.protect_rtcp(packet)
        except pylibsrtp.Error:
            self.stats.protect_errors += 1
            return None
        self.stats.rtcp_protected += 1
        return out
