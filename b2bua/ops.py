"""The operations endpoint of `b2bua serve`: /metrics, /healthz and /status over HTTP.

Theory of operation: a deliberately small HTTP/1.1 server on the serve process's own
event loop (asyncio streams, no framework): one GET per connection, answered and closed.
It reads only what the switch, relay and hub already count (b2bua/metrics.py), so a
scrape costs a few microseconds per call and never touches the media path. Requests are
bounded: at most MAX_CONNECTIONS at once, a request head of at most MAX_HEAD bytes that
must arrive within HEAD_TIMEOUT_S, GET and HEAD only.

- `/metrics`: Prometheus text format 0.0.4;
- `/healthz`: 200 with a small JSON object while serving, 503 while draining (so a load
  balancer or systemd watchdog script stops sending calls before the process stops);
- `/status`: the running calls as JSON, for `b2bua status`. It names callers and callees,
  so it is answered only to clients on loopback addresses (403 for everyone else), whatever
  address `[metrics] listen` binds.

The client half, `fetch_status` and `format_status`, is what `b2bua status` runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from b2bua.metrics import CONTENT_TYPE, OpsCounters, collect, render

if TYPE_CHECKING:
    from b2bua.serve import Server

log = logging.getLogger("b2bua.ops")

MAX_CONNECTIONS = 32
MAX_HEAD = 8192
HEAD_TIMEOUT_S = 5.0
_REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


def _iso(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _is_loopback(host: str) -> bool:
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(addr, "ipv4_mapped", None)
    return bool((mapped or addr).is_loopback)


def call_rows(server: Server, now: float) -> list[dict[str, Any]]:
    """The running calls, oldest first (what /status and `b2bua status` show)."""
    source = server.hub if server.hub is not None else server.workers
    recording = source.recording_calls() if source is not None else set()
    wall_offset = time.time() - now
    rows: list[dict[str, Any]] = []
    for call in sorted(server.switch.calls.values(), key=lambda c: c.started_at):
        record = call.consent_record
        caller = call.target.caller_label or call.a_invite.from_addr.uri.user
        rows.append(
            {
                "id": call.id,
                "direction": call.direction,
                "caller": caller,
                "callee": call.target.to_user,
                "state": call.state.value,
                "started_at": _iso(call.started_at + wall_offset),
                "duration_s": round(now - call.started_at, 1),
                "recording": call.id in recording,
                "consent": str(record.result) if record is not None else None,
            }
        )
    return rows


class OpsEndpoint:
    """The HTTP listener; `start()` binds, `close()` stops it."""

    def __init__(self, server: Server, counters: OpsCounters) -> None:
        self.server = server
        self.counters = counters
        self.address: tuple[str, int] | None = None
        self._listener: asyncio.Server | None = None
        self._open = 0

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self._listener = await asyncio.start_server(
            self._handle, host, port, limit=MAX_HEAD, reuse_address=True
        )
        sockname = self._listener.sockets[0].getsockname()
        self.address = (str(sockname[0]), int(sockname[1]))
        return self.address

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._listener.wait_closed(), 2.0)
            self._listener = None

    # -- one connection -----------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open += 1
        try:
            if self._open > MAX_CONNECTIONS:
                return  # closed without an answer: a scraper retries, a flood gets nothing
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                return
            except ConnectionError:
                return
            peer = writer.get_extra_info("peername")
            status, ctype, body = self._answer(head, str(peer[0]) if peer else "")
            method = head.split(b" ", 1)[0]
            reason = _REASONS.get(status, "Error")
            header = (
                f"HTTP/1.1 {status} {reason}\r\n"
                f"Content-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\n"
                "Cache-Control: no-store\r\n"
                "Connection: close\r\n\r\n"
            ).encode("ascii")
            writer.write(header if method == b"HEAD" else header + body)
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.drain(), HEAD_TIMEOUT_S)
        finally:
            self._open -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    def _answer(self, head: bytes, peer: str) -> tuple[int, str, bytes]:
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return _text(400, "bad request\n")
        method, target = parts[0], parts[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return _text(405, "GET only\n")
        now = self.server.runner.now()
        if target == "/metrics":
            text = render(collect(self.server, self.counters, now))
            return 200, CONTENT_TYPE, text.encode("utf-8")
        if target == "/healthz":
            return self._health(now)
        if target == "/status":
            if not _is_loopback(peer):
                return _text(403, "status is only answered on loopback\n")
            return _json(200, self._status(now))
        return _text(404, "not found; try /metrics, /healthz or /status\n")

    def _health(self, now: float) -> tuple[int, str, bytes]:
        server = self.server
        draining = server.guard.draining
        host, port = server.sip_address
        body: dict[str, Any] = {
            "status": "draining" if draining else "ok",
            "sip": f"{host}:{port}",
            "calls": len(server.switch.calls),
            "uptime_s": round(time.time() - self.counters.started_at, 1),
            "last_reload_ok": self.counters.last_reload_ok,
        }
        workers = server.workers
        no_media = False
        if workers is not None:
            alive = sum(1 for w in workers.workers if w.alive)
            body["media_workers"] = {
                "alive": alive,
                "configured": len(workers.workers),
                "restarts": workers.restarts,
            }
            no_media = alive == 0  # calls can not be set up: take this box out of rotation
            if no_media and not draining:
                body["status"] = "no_media"
        return _json(503 if draining or no_media else 200, body)

    def _status(self, now: float) -> dict[str, Any]:
        return {
            "draining": self.server.guard.draining,
            "uptime_s": round(time.time() - self.counters.started_at, 1),
            "calls": call_rows(self.server, now),
        }


def _text(status: int, text: str) -> tuple[int, str, bytes]:
    return status, "text/plain; charset=utf-8", text.encode("utf-8")


def _json(status: int, data: object) -> tuple[int, str, bytes]:
    return status, "application/json", (json.dumps(data) + "\n").encode("utf-8")


# ------------------------------------------------------------------ b2bua status (client)


class StatusError(Exception):
    """The endpoint could not be reached or answered oddly."""


def local_url(listen: tuple[str, int], path: str) -> str:
    """The URL of `path` on the endpoint, reached over loopback when it binds everything."""
    host, port = listen
    if host in ("0.0.0.0", ""):  # noqa: S104 -- a wildcard bind is reached via loopback
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{path}"


def fetch_status(listen: tuple[str, int], timeout: float = 5.0) -> dict[str, Any]:
    url = local_url(listen, "/status")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 -- http to our own loopback endpoint
            data = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        raise StatusError(f"{url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StatusError(f"{url}: {reason} (is b2bua serve running?)") from None
    if not isinstance(data, dict) or not isinstance(data.get("calls"), list):
        raise StatusError(f"{url}: not a status answer")
    return data


def format_status(data: dict[str, Any]) -> str:
    """A human table of the running calls."""
    calls: list[dict[str, Any]] = data["calls"]
    head = f"{len(calls)} active call{'s' if len(calls) != 1 else ''}"
    if data.get("draining"):
        head += " (draining: new calls are refused)"
    if not calls:
        return head
    columns = ("id", "direction", "caller", "callee", "state", "duration", "recording")
    rows = [
        (
            str(c.get("id")),
            str(c.get("direction")),
            str(c.get("caller") or "-"),
            str(c.get("callee") or "-"),
            str(c.get("state")),
            _duration(float(c.get("duration_s") or 0.0)),
            "yes" if c.get("recording") else "no",
        )
        for c in calls
    ]
    widths = [max(len(col), *(len(r[i]) for r in rows)) for i, col in enumerate(columns)]
    lines = [head, "  ".join(col.ljust(w) for col, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _duration(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
