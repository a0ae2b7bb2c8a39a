"""Toll-fraud protection per extension: where it may call, how many calls, how long.

Theory of operation: a stolen phone password is spent on expensive calls (premium
numbers, far-away countries, many at once, around the clock). Every outbound call from
an extension, except to an emergency number (the switch never asks us about those),
passes `TollFraud.check` before anything is sent to the trunk:

1. Destination rules, in order; the first that matches decides. A rule is a shell-style
   pattern (`fnmatch`: `*`, `?`, `[2-9]`) with an optional leading "!" for "deny".
   A pattern starting with "+" is matched against the number's E.164 form (so
   "0900...", "0049900..." and "+49900..." are one number), any other pattern against
   the number as dialled (short codes such as "11833" have no E.164 form). No matching
   rule: denied.
2. At most `max_calls` outbound calls of the extension at once.
3. At most `max_minutes_per_day` minutes of outbound calls in the last 24 hours (a
   rolling window: `now` is monotonic, and a rolling window needs no time zone).
   Time counts from the INVITE (ringing included: the conservative measure). A call
   that uses up the budget while it runs is named by `expired(now)`, at the deadline
   `get_timer()` gives, and the switch hangs it up.

Default rules (`default_rules(country)`): the country's own numbers, without its
premium-rate and similar ranges where we know them (DE, AT, CH), plus local numbers
dialled without area code; international numbers are denied. Sans-I/O: every method
takes `now`, nothing reads a clock.
"""

from __future__ import annotations

import fnmatch
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "DAY_S",
    "Decision",
    "Policy",
    "TollFraud",
    "default_rules",
    "is_rule",
]

DAY_S = 86_400.0

# Premium-rate and similar expensive ranges, in E.164 (sources: BNetzA numbering plan
# for DE: 0900 premium, 0137 mass calling, 012 innovative services, 0190 old premium,
# 118xx directory enquiries; RTR for AT: 0900/0901/0930/0931/0939; BAKOM for CH:
# 0900/0901/0906).
_PREMIUM: Mapping[str, tuple[str, ...]] = {
    "DE": ("+49900*", "+49137*", "+4912*", "+49190*", "+49118*", "118*"),
    "AT": ("+43900*", "+43901*", "+43930*", "+43931*", "+43939*", "118*"),
    "CH": ("+41900*", "+41901*", "+41906*", "18*"),
}
_COUNTRY_CODES: Mapping[str, int] = {"DE": 49, "AT": 43, "CH": 41}
_RULE = re.compile(r"!?\+?[0-9*#?\[\]\-!]{1,40}")


def is_rule(text: str) -> bool:
    """True for a well-formed destination rule ("+49*", "!+49900*", "[2-9]*")."""
    return _RULE.fullmatch(text) is not None and text not in ("!", "+", "!+")


def default_rules(country: str | None, country_code: int | None = None) -> tuple[str, ...]:
    """The rules used when an extension lists none (see the module docstring)."""
    code = country_code if country_code is not None else _COUNTRY_CODES.get(country or "")
    denied = tuple("!" + p for p in _PREMIUM.get(country or "", ()))
    own = (f"+{code}*",) if code is not None else ()
    return (*denied, *own, "[2-9]*")  # the last: local numbers, which have no E.164 form


@dataclass(frozen=True)
class Policy:
    """One extension's limits; None means no limit."""

    rules: tuple[str, ...]
    max_calls: int | None = None
    max_minutes_per_day: float | None = None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str  # the rule that matched, or "no_rule", "max_outbound_calls" ...


@dataclass
class _Usage:
    finished: deque[tuple[float, float]] = field(default_factory=deque)  # (start, end)
    running: dict[str, float] = field(default_factory=dict)  # call id -> start
    deadline: float | None = None


class TollFraud:
    """Per-extension toll-fraud state; see the module docstring."""

    def __init__(self, policies: Mapping[str, Policy], *, window_s: float = DAY_S) -> None:
        self.policies = dict(policies)
        self.window_s = window_s
        self._usage: dict[str, _Usage] = {}
        self._owner: dict[str, str] = {}  # call id -> extension

    # -- decisions --------------------------------------------------------------------
    def check(self, extension: str, dialled: str, e164: str | None, now: float) -> Decision:
        """May `extension` call `dialled` (E.164 form `e164`, if any) now?"""
        policy = self.policies.get(extension)
        if policy is None:
            return Decision(False, "unknown_extension")
        decision = match_rules(policy.rules, dialled, e164)
        if not decision.allowed:
            return decision
        usage = self._usage.get(extension)
        if usage is None:
            return decision
        if policy.max_calls is not None and len(usage.running) >= policy.max_calls:
            return Decision(False, "max_outbound_calls")
        if (
            policy.max_minutes_per_day is not None
            and self.used_s(extension, now) >= policy.max_minutes_per_day * 60.0
        ):
            return Decision(False, "max_outbound_minutes_per_day")
        return decision

    def used_s(self, extension: str, now: float) -> float:
        """Seconds of outbound calls of `extension` within the window ending at `now`."""
        usage = self._usage.get(extension)
        if usage is None:
            return 0.0
        since = now - self.window_s
        while usage.finished and usage.finished[0][1] <= since:
            usage.finished.popleft()
        total = sum(max(0.0, min(end, now) - max(start, since)) for start, end in usage.finished)
        total += sum(max(0.0, now - max(start, since)) for start in usage.running.values())
        return total

    # -- bookkeeping ------------------------------------------------------------------
    def call_started(self, call_id: str, extension: str, now: float) -> None:
        usage = self._usage.setdefault(extension, _Usage())
        usage.running[call_id] = now
        self._owner[call_id] = extension
        self._plan(extension, now)

    def call_ended(self, call_id: str, now: float) -> None:
        extension = self._owner.pop(call_id, None)
        if extension is None:
            return
        usage = self._usage[extension]
        start = usage.running.pop(call_id)
        usage.finished.append((start, max(start, now)))
        self._plan(extension, now)

    def get_timer(self) -> float | None:
        deadlines = [u.deadline for u in self._usage.values() if u.deadline is not None]
        return min(deadlines) if deadlines else None

    def expired(self, now: float) -> list[str]:
        """Running calls whose extension used up its minutes by `now` (to hang up)."""
        out: list[str] = []
        for extension, usage in self._usage.items():
            if usage.deadline is None or usage.deadline > now:
                continue
            policy = self.policies.get(extension)
            budget = None if policy is None else policy.max_minutes_per_day
            if budget is not None and self.used_s(extension, now) >= budget * 60.0 - 1e-6:
                out.extend(usage.running)
                usage.deadline = None  # the switch ends them; call_ended re-plans
            else:
                self._plan(extension, now)  # calls slid out of the window: later
        return out

    def _plan(self, extension: str, now: float) -> None:
        """The moment the running calls use up the budget (if nothing else ends first)."""
        usage = self._usage[extension]
        policy = self.policies.get(extension)
        budget = None if policy is None else policy.max_minutes_per_day
        if budget is None or not usage.running:
            usage.deadline = None
            return
        remaining = max(0.0, budget * 60.0 - self.used_s(extension, now))
        # Older calls leaving the window only add budget: this deadline is never late.
        usage.deadline = now + remaining / len(usage.running)


def match_rules(rules: tuple[str, ...], dialled: str, e164: str | None) -> Decision:
    """The first rule matching `e164` ("+..." rules) or `dialled` (others) decides."""
    for rule in rules:
        deny = rule.startswith("!")
        pattern = rule[1:] if deny else rule
        subject = e164 if pattern.startswith("+") else dialled
        if subject is not None and fnmatch.fnmatchcase(subject, pattern):
            return Decision(not deny, rule)
    return Decision(False, "no_rule")
