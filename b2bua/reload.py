"""Config reload on SIGHUP: re-read the file, apply what can change at runtime, keep calls.

Theory of operation: `reload_config` loads the file with the same loader as start-up.
Any problem (syntax, an unknown key, a public key file that does not parse, a prompt that
does not load) is logged with file, key and problem, and the running config stays as it
was: nothing is applied halfway. Otherwise the new config is merged with the old one:
keys that are bound into sockets and processes at start (`RESTART_KEYS`: listen
addresses, RTP ports, the recordings directory, the trunk's transport and registration,
log format, ...) keep their running values and are logged as needing a restart; the
rest goes live for everything that starts after the reload:

- extensions (passwords, static contacts, employee consent, toll-fraud limits),
- trunk inbound map and inbound extension, outbound caller ID, `inbound_from`,
- recording settings (mode between keypress and announce, digits, timeout, language or
  announcement, public key recipients, retention and its overrides, do-not-record list),
- number plan, and security limits.

Running calls keep what they started with: each call holds its own consent machine and
target, and a recording keeps the recipients its file was opened for. A changed file is
noted in the audit log (`config` entry, actor `system`, source `reload`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
from typing import TYPE_CHECKING, Any

from b2bua.archive.catalog import Catalog
from b2bua.archive.retention import RetentionPolicy, run_sweeper
from b2bua.config import Config, ConfigError, load_config
from b2bua.metrics import OpsCounters
from b2bua.recording_hub import load_prompts, prompt_hashes
from b2bua.router import Router, number_plan
from b2bua.switch import toll_policies

if TYPE_CHECKING:
    from b2bua.serve import Server
    from media.announcement import Prompt

log = logging.getLogger("b2bua.reload")

SWEEPER_TASK = "retention-sweeper"
SWEEP_INTERVAL_S = 3600.0

# Only read at start: a changed value is logged and the running one kept.
RESTART_SECTIONS = ("sip", "rtp", "portal", "metrics", "log")
RESTART_TRUNK_KEYS = (
    "host",
    "transport",
    "tls_ca",
    "tls_server_name",
    "register",
    "register_expires_s",
    # The trunk monitor and its DNS task read these once, at start-up.
    "keepalive_s",
    "failover_hosts",
    "dns_server",
    "srv_lookup",
)
SECTIONS = ("sip", "rtp", "trunk", "recording", "portal", "security", "numbers", "log", "metrics")


def _restart_key(key: str, old: Config) -> bool:
    """True when `key` (dotted) can only change with a restart."""
    section, _, name = key.partition(".")
    if section in RESTART_SECTIONS:
        return True
    if section == "trunk":
        if name in RESTART_TRUNK_KEYS:
            return True
        # The trunk registration holds its credentials from the start.
        return old.trunk.register and name in ("username", "password", "realm")
    if section == "recording":
        return name == "directory"
    return False


def changed_keys(old: Config, new: Config) -> list[str]:
    """Dotted keys whose value differs (extensions as `extension[NUMBER]`; no values, so
    no password reaches the log)."""
    keys: list[str] = []
    for section in SECTIONS:
        a, b = getattr(old, section), getattr(new, section)
        keys += [
            f"{section}.{f.name}"
            for f in dataclasses.fields(a)
            if getattr(a, f.name) != getattr(b, f.name)
        ]
    before = {e.number: e for e in old.extensions}
    after = {e.number: e for e in new.extensions}
    keys += [
        f"extension[{n}]"
        for n in sorted(before.keys() | after.keys())
        if before.get(n) != after.get(n)
    ]
    return keys


def merge(old: Config, new: Config) -> tuple[Config, list[str], list[str]]:
    """The config to run with, the keys applied and the keys that need a restart."""
    applied: list[str] = []
    restart: list[str] = []
    sections: dict[str, Any] = {}
    for key in changed_keys(old, new):
        section, _, name = key.partition(".")
        if not name:  # an extension
            applied.append(key)
            continue
        keep = _restart_key(key, old)
        if (
            section == "recording"
            and name == "mode"
            and "off"
            in (
                old.recording.mode,
                new.recording.mode,
            )
        ):
            keep = True  # the recording hub and catalog exist (or not) from the start
        if keep:
            restart.append(key)
            current = sections.setdefault(section, getattr(new, section))
            sections[section] = dataclasses.replace(
                current, **{name: getattr(getattr(old, section), name)}
            )
        else:
            applied.append(key)
    return dataclasses.replace(new, **sections), applied, restart


def reload_config(server: Server, counters: OpsCounters) -> bool:
    """Re-read `server.config.path` and apply it (see the module docstring). True when
    the new config is in use (possibly with keys that wait for a restart)."""
    old = server.config
    try:
        loaded = load_config(old.path)
        merged, applied, restart = merge(old, loaded)
        recording = server.hub is not None or server.workers is not None
        recipients = merged.recording.recipients() if recording else ()
        prompts = _prompts(server, merged)
    except ConfigError as exc:
        counters.reloads_failed += 1
        counters.last_reload_ok = False
        log.error(
            'event=config_reload result=error file=%s key=%s problem="%s"',
            exc.path,
            exc.key or "-",
            exc.problem.replace('"', "'"),
        )
        return False
    _apply(server, merged, recipients, prompts)
    counters.reloads_ok += 1
    counters.last_reload_ok = True
    if server.catalog is not None:
        server.catalog.audit.log_config(merged.path, "system", "reload")
    log.info(
        "event=config_reload result=ok changed=%s restart_needed=%s calls=%d",
        ",".join(applied) or "-",
        ",".join(restart) or "-",
        len(server.switch.calls),
    )
    for key in restart:
        log.warning("event=config_restart_needed key=%s", key)
    return True


def _prompts(server: Server, new: Config) -> dict[str, Prompt] | None:
    """The prompts for the new language/announcement, loaded before anything changes."""
    hub = server.hub
    old = server.config.recording
    rec = new.recording
    if (hub is None and server.workers is None) or (rec.language, rec.announcement) == (
        old.language,
        old.announcement,
    ):
        return None
    try:
        return load_prompts(rec.language, rec.announcement)
    except Exception as exc:  # a WAV that does not load is a config problem here
        raise ConfigError(new.path, "recording.announcement", f"cannot load: {exc}") from None


def _apply(
    server: Server,
    new: Config,
    recipients: tuple[str, ...],
    prompts: dict[str, Prompt] | None,
) -> None:
    switch = server.switch
    switch.config = new
    learned = switch.router.mediasec
    switch.router = Router(new)
    if learned is not None and switch.router.mediasec is not None:
        # The trunk registration keeps learning into this object: keep sharing it.
        switch.router.mediasec = learned
    switch.tollfraud.policies = toll_policies(new, switch.router)
    switch.registrar.set_extensions(new.extensions)
    now = server.runner.now()
    guard = server.guard
    guard.config = new.security
    guard.trusted = tuple(new.security.trusted_networks)
    guard.trunk_networks = (*new.trunk.inbound_from, *_networks_of(new.trunk.host[0]))
    guard.static_hosts = frozenset(
        _canonical(b.source[0])
        for ext in new.extensions
        for b in switch.registrar.lookup(ext.number, now)
        if b.is_static
    )
    sip = server.runner.transport
    sip.max_headers = new.security.max_headers
    sip.max_tcp_connections = new.security.max_tcp_connections
    sip.max_tcp_connections_per_source = new.security.max_tcp_connections_per_source
    hub = server.hub
    if hub is not None:
        hub.recipients = recipients
        hub.mute_inband_dtmf = new.recording.mute_inband_dtmf
        if prompts is not None:
            hub.prompts = prompts
            switch.prompt_sha256 = hub.prompt_sha256
    workers = server.workers
    if workers is not None and new.recording.mode != "off":
        rec = new.recording
        workers.configure(recipients, rec.mute_inband_dtmf, rec.language, rec.announcement)
        if prompts is not None:
            workers.prompt_sha256 = prompt_hashes(prompts)
            switch.prompt_sha256 = workers.prompt_sha256
    catalog = server.catalog
    if catalog is not None:
        catalog.normalise = number_plan(new).e164
        policy = RetentionPolicy.from_config(new.recording)
        if policy != catalog.policy:
            catalog.policy = policy  # for calls that end from now on
            _restart_sweeper(server, policy)
    server.config = new


def _restart_sweeper(server: Server, policy: RetentionPolicy) -> None:
    """The sweeper opens its catalog with the policy it was given: start it anew (it
    sweeps at once, so a shortened retention applies now)."""
    for task in [t for t in server.background if t.get_name() == SWEEPER_TASK]:
        task.cancel()
        server.background.remove(task)
    directory = server.config.recording.directory
    sweeper = asyncio.get_running_loop().create_task(
        run_sweeper(lambda: Catalog.open(directory, policy=policy), interval_s=SWEEP_INTERVAL_S),
        name=SWEEPER_TASK,
    )
    server.background.append(sweeper)


def _networks_of(host: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    try:
        return [ipaddress.ip_network(host)]
    except ValueError:
        return []


def _canonical(ip: str) -> str:
    with contextlib.suppress(ValueError):
        addr = ipaddress.ip_address(ip.strip("[]"))
        mapped = getattr(addr, "ipv4_mapped", None)
        return (mapped or addr).compressed
    return ip
