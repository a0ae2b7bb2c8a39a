"""RTP/RTCP packets, per-stream sessions and the UDP relay (never imports b2bua)."""
