"""Prometheus metrics of a running `b2bua serve`, in the text exposition format 0.0.4.

Theory of operation: nothing here counts on the hot path. The switch, guard, registrar,
relay, recording hub and transport already keep plain integer counters; `collect` reads
them when scraped and renders them. RTP totals are the live legs' counters plus the
relay's `closed_totals` (summed when a leg closes), so they never go backwards when a
call ends. Counters restart at zero with the process, as Prometheus expects.

The text format (https://prometheus.io/docs/instrumenting/exposition_formats/): per
metric one `# HELP` and one `# TYPE` line, then `name{label="value"} number` samples;
label values escape backslash, double quote and newline.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from b2bua import __version__
from rtp.relay import LegCounters

if TYPE_CHECKING:
    from b2bua.serve import Server

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Sample = tuple[dict[str, str], float]

# Why an RTP packet was not relayed, by LegCounters field (label value -> field).
DROP_REASONS = {
    "unlatched": "dropped_unlatched",
    "malformed": "dropped_malformed",
    "no_peer": "dropped_no_peer",
    "unsupported": "dropped_unsupported",
    "srtp": "dropped_srtp",
    "send_error": "send_errors",
}
CONSENT_RESULTS = (
    "accepted",
    "declined",
    "timeout",
    "not_asked",
    "employee_no_consent",
    "withdrawn",
    "abandoned",
)


@dataclass
class OpsCounters:
    """Counters that belong to the serve process itself (not to one component)."""

    started_at: float = field(default_factory=time.time)
    reloads_ok: int = 0
    reloads_failed: int = 0
    last_reload_ok: bool = True


@dataclass
class Metric:
    name: str
    kind: str  # counter | gauge
    help: str
    samples: list[Sample]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def render(metrics: Iterable[Metric]) -> str:
    """The exposition text of `metrics`."""
    lines: list[str] = []
    for metric in metrics:
        lines.append(f"# HELP {metric.name} {metric.help}")
        lines.append(f"# TYPE {metric.name} {metric.kind}")
        for labels, value in metric.samples:
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            lines.append(
                f"{metric.name}{{{text}}} {_number(value)}"
                if text
                else f"{metric.name} {_number(value)}"
            )
    return "\n".join(lines) + "\n"


def rtp_totals(server: Server) -> LegCounters:
    """Live legs' counters plus those of legs that closed."""
    if server.workers is not None:
        return server.workers.rtp_totals()
    relay = server.relay
    assert relay is not None, "media runs in this process"
    return relay.totals()


def legs_active(server: Server) -> int:
    if server.workers is not None:
        return server.workers.leg_count
    return len(server.relay.legs) if server.relay is not None else 0


def collect(server: Server, ops: OpsCounters, now: float) -> list[Metric]:
    """Every metric of `server` at loop time `now`."""
    sw = server.switch
    guard = server.guard
    rtp = rtp_totals(server)
    workers = server.workers
    recording = server.hub if server.hub is not None else workers  # who records, if anyone
    consent = dict.fromkeys(CONSENT_RESULTS, 0)
    recording_now = 0
    written = 0
    if recording is not None:
        for result, count in recording.consent_outcomes.items():
            consent[result] = consent.get(result, 0) + count
        recording_now = len(recording.recording_calls())
        written = recording.recordings_written
    sip = server.runner.transport.stats

    def one(name: str, kind: str, help_: str, value: float) -> Metric:
        return Metric(name, kind, help_, [({}, value)])

    metrics = [
        Metric("b2bua_info", "gauge", "Build information.", [({"version": __version__}, 1)]),
        one("b2bua_start_time_seconds", "gauge", "Process start (Unix time).", ops.started_at),
        one(
            "b2bua_draining",
            "gauge",
            "1 while shutting down (new calls get 503).",
            1 if guard.draining else 0,
        ),
        one("b2bua_active_calls", "gauge", "Calls in progress.", len(sw.calls)),
        one("b2bua_calls_started_total", "counter", "Calls set up.", sw.stats.calls_started),
        one("b2bua_calls_ended_total", "counter", "Calls ended.", sw.stats.calls_ended),
        one(
            "b2bua_calls_rejected_total",
            "counter",
            "New calls refused (routing, toll-fraud rules, unreachable target).",
            sw.stats.calls_rejected,
        ),
        one("b2bua_rtp_legs_active", "gauge", "Open RTP relay legs.", legs_active(server)),
        one(
            "b2bua_rtp_packets_received_total",
            "counter",
            "RTP packets read by the relay.",
            rtp.received,
        ),
        one(
            "b2bua_rtp_packets_relayed_total",
            "counter",
            "RTP packets forwarded to the other leg.",
            rtp.forwarded,
        ),
        Metric(
            "b2bua_rtp_packets_dropped_total",
            "counter",
            "RTP packets not forwarded, by reason.",
            [({"reason": r}, getattr(rtp, f)) for r, f in DROP_REASONS.items()],
        ),
        one("b2bua_recordings_active", "gauge", "Recordings being written.", recording_now),
        one("b2bua_recordings_written_total", "counter", "Recordings sealed.", written),
        Metric(
            "b2bua_consent_outcomes_total",
            "counter",
            "Consent decisions, by result (withdrawn counts a later withdrawal).",
            [({"result": r}, n) for r, n in consent.items()],
        ),
        one(
            "b2bua_auth_failures_total",
            "counter",
            "Failed digest authentications (REGISTER and INVITE).",
            guard.stats.auth_failures,
        ),
        one(
            "b2bua_auth_challenges_total",
            "counter",
            "INVITEs challenged with 401.",
            sw.stats.auth_challenges,
        ),
        one("b2bua_bans_total", "counter", "Sources banned.", guard.stats.bans),
        one("b2bua_bans_active", "gauge", "Sources banned right now.", guard.banned_count(now)),
        Metric(
            "b2bua_guard_dropped_total",
            "counter",
            "SIP messages dropped by the guard.",
            [
                ({"reason": "banned"}, guard.stats.dropped_banned),
                ({"reason": "stranger"}, guard.stats.dropped_stranger),
                ({"reason": "rate"}, guard.stats.dropped_rate),
                ({"reason": "slowdown"}, guard.stats.dropped_slowdown),
            ],
        ),
        one(
            "b2bua_registrations",
            "gauge",
            "Live registrations (static contacts not counted).",
            sw.registrar.binding_count(),
        ),
        one("b2bua_sip_messages_received_total", "counter", "SIP messages received.", sip.received),
        one("b2bua_sip_messages_sent_total", "counter", "SIP messages sent.", sip.sent),
        one(
            "b2bua_sip_messages_malformed_total",
            "counter",
            "Unparsable SIP messages.",
            sip.malformed,
        ),
        one(
            "b2bua_sip_requests_rejected_total",
            "counter",
            "Requests refused by validation (4xx).",
            sw.stats.requests_rejected,
        ),
        Metric(
            "b2bua_config_reloads_total",
            "counter",
            "Config reloads (SIGHUP), by result.",
            [({"result": "ok"}, ops.reloads_ok), ({"result": "error"}, ops.reloads_failed)],
        ),
        one(
            "b2bua_config_last_reload_successful",
            "gauge",
            "0 when the last reload failed (the previous config is still in use).",
            1 if ops.last_reload_ok else 0,
        ),
    ]
    if workers is not None:
        metrics += [
            one(
                "b2bua_media_workers_alive",
                "gauge",
                "Media worker processes running ([rtp] workers).",
                sum(1 for w in workers.workers if w.alive),
            ),
            one(
                "b2bua_media_worker_restarts_total",
                "counter",
                "Media workers started again after one died.",
                workers.restarts,
            ),
        ]
    return metrics
