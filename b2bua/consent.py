"""Consent to recording, per call: the announcement, the consent digit and the evidence.

Theory of operation
-------------------
One ``ConsentMachine`` per call, sans-I/O. The call (b2bua/call.py) feeds it inputs with
``now`` and carries out the actions it returns, in order:

inputs   ``start`` (the external leg is answered and media flows), ``prompt_finished``
         (the prompt last asked for has been played out), ``digit`` (from either side,
         by RFC 4733, in-band detection or SIP INFO), ``timer`` (when ``get_timer()``
         is due) and ``call_ended``.
actions  PlayPrompt / StopPrompt (to the external party), ConnectOffice (inbound: ring
         the office phone; outbound: bridge the two answered legs), Start/Stop/Pause/
         ResumeRecording, Hangup, and ConsentDecided(record) whenever the evidence
         record is set or changes.

Modes. ``keypress``: the consent prompt plays; the consent digit (during the prompt:
barge-in, or after it) is *accepted*: "thanks" plays, and when it has finished the
recording starts and the office is connected. Starting after "thanks" keeps every
prompt out of the recording (the recording holds both legs, and the prompts are sent
on the external one), and the office is bridged only then because a bridged leg can
not carry the prompt at the same time. The decline digit is *declined*; no digit
within ``timeout_s`` after the prompt ended replays the prompt once, then it is
*timeout*; both follow ``on_decline``: ``connect`` (ConnectOffice, never recorded) or
``hangup`` ("goodbye", then Hangup). Other digits are ignored and counted.
``announce``: the announcement plays; when it has finished, continuing the call counts
as consent (*accepted*, no digit, noted in the record): recording starts, office
connected. A decline digit during the announcement is honoured as *declined*.
``off``: no announcement, office connected at once, *not_asked*, never recorded.
A machine made with ``not_asked_note`` (emergency calls, numbers on the do-not-record
list) behaves as ``off`` whatever the mode, and its *not_asked* record carries the note.
An extension without ``employee_consent`` is never recorded: the caller is not asked
(nothing would be recorded, and asking would suggest otherwise), the office is
connected at once and the result is *employee_no_consent* (with mode ``off`` the
result stays *not_asked*). A call that ends before a decision is *abandoned*.

Mid-call. While recording (or paused), the office side's ``pause_code`` (a digit
sequence, collected with an inter-digit timeout) toggles PauseRecording /
ResumeRecording; the recorder writes silence for the paused span. The external party's
decline digit withdraws consent: StopRecording(reason="withdrawn"), the record becomes
*withdrawn* (its ``at`` keeps the acceptance time, ``withdrawn_at`` is added) and,
unless disabled, the "stopped" prompt confirms it. Consent once withdrawn is not given
again in the same call.

The machine is a table ``(State, Input) -> (steps, next State)``. Inputs are the raw
inputs classified with the configuration (a decline under ``on_decline = hangup`` is a
different input than under ``connect``; the decline digit while recorded is a
withdrawal, with or without the "stopped" prompt), so every transition is a row of the
table. A
pair that is not in the table is a protocol error of the caller: counted in
``protocol_errors``, answered with no actions, never raised.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Final, Literal

__all__ = [
    "Action",
    "ConnectOffice",
    "ConsentDecided",
    "ConsentMachine",
    "ConsentRecord",
    "ConsentResult",
    "Hangup",
    "PauseRecording",
    "PlayPrompt",
    "ResumeRecording",
    "StartRecording",
    "State",
    "StopPrompt",
    "StopRecording",
]

Side = Literal["external", "office"]
MODES: Final[tuple[str, ...]] = ("keypress", "announce", "off")
ON_DECLINE: Final[tuple[str, ...]] = ("connect", "hangup")
ANNOUNCE_NOTE: Final[str] = "announce: continuing counts as consent"


class ConsentResult(enum.StrEnum):
    ACCEPTED = "accepted"
    DECLINED = "declined"
    TIMEOUT = "timeout"
    NOT_ASKED = "not_asked"
    EMPLOYEE_NO_CONSENT = "employee_no_consent"
    WITHDRAWN = "withdrawn"
    ABANDONED = "abandoned"  # the call ended before any decision


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """The evidence for one call. ``at`` is ``now`` of the decision (the caller makes it
    ISO 8601); after a withdrawal it stays the acceptance time and ``withdrawn_at`` is set.
    """

    mode: str
    result: ConsentResult
    digit: str | None
    method: str | None  # rfc4733 | inband | info; None when no digit decided
    at: float
    prompt_sha256: str | None  # the prompt played to ask (consent or announce)
    language: str | None
    withdrawn_at: float | None = None
    note: str | None = None


# ------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class PlayPrompt:
    name: str  # consent | announce | thanks | goodbye | stopped


@dataclass(frozen=True, slots=True)
class StopPrompt:
    pass


@dataclass(frozen=True, slots=True)
class StartRecording:
    at: float


@dataclass(frozen=True, slots=True)
class StopRecording:
    at: float
    reason: str  # withdrawn | call_ended


@dataclass(frozen=True, slots=True)
class PauseRecording:
    at: float


@dataclass(frozen=True, slots=True)
class ResumeRecording:
    at: float


@dataclass(frozen=True, slots=True)
class ConnectOffice:
    pass


@dataclass(frozen=True, slots=True)
class Hangup:
    reason: str  # declined | timeout


@dataclass(frozen=True, slots=True)
class ConsentDecided:
    record: ConsentRecord


Action = (
    PlayPrompt
    | StopPrompt
    | StartRecording
    | StopRecording
    | PauseRecording
    | ResumeRecording
    | ConnectOffice
    | Hangup
    | ConsentDecided
)


# ---------------------------------------------------------------------- the table


class State(enum.Enum):
    IDLE = "not started"
    PROMPTING = "consent prompt, first play"
    WAITING = "consent prompt played once, waiting for a digit"
    REPROMPTING = "consent prompt, second play"
    REWAITING = "consent prompt played twice, waiting for a digit"
    ANNOUNCING = "announcement playing"
    THANKING = "accepted, 'thanks' playing"
    GOODBYE = "declined or timed out, 'goodbye' playing"
    HUNG_UP = "Hangup asked for, waiting for the call to end"
    RECORDING = "connected and recorded"
    PAUSED = "connected, recording paused by the office"
    STOPPING = "consent withdrawn, 'stopped' playing, connected, not recorded"
    UNRECORDED = "connected, not recorded"
    ENDED = "call ended"


class Input(enum.Enum):
    START_KEYPRESS = "start, mode keypress"
    START_ANNOUNCE = "start, mode announce"
    START_OFF = "start, mode off"
    START_NO_EMPLOYEE = "start, extension without employee consent"
    PROMPT_DONE = "prompt finished"
    ACCEPT = "external consent digit"
    DECLINE_CONNECT = "external decline digit, on_decline connect"
    DECLINE_HANGUP = "external decline digit, on_decline hangup"
    WITHDRAW = "external decline digit while recorded, confirm_withdrawal"
    WITHDRAW_QUIET = "external decline digit while recorded, no confirmation"
    OTHER_DIGIT = "external other digit"
    OFFICE_DIGIT = "office digit, no complete pause code"
    PAUSE_CODE = "office completed the pause code"
    TIMEOUT_CONNECT = "consent timer, on_decline connect"
    TIMEOUT_HANGUP = "consent timer, on_decline hangup"
    CALL_ENDED = "call ended"


class _Step(enum.Enum):
    PLAY_CONSENT = "play consent prompt"
    PLAY_ANNOUNCE = "play announcement"
    PLAY_THANKS = "play thanks"
    PLAY_GOODBYE = "play goodbye"
    PLAY_STOPPED = "play recording-stopped"
    STOP_PROMPT = "stop prompt"
    ARM_TIMER = "arm consent timer"
    ACCEPTED = "decide accepted (digit)"
    ACCEPTED_ANNOUNCE = "decide accepted (announcement heard)"
    DECLINED = "decide declined"
    TIMED_OUT = "decide timeout"
    NOT_ASKED = "decide not_asked"
    NO_EMPLOYEE = "decide employee_no_consent"
    WITHDRAWN = "record withdrawal"
    ABANDONED = "decide abandoned"
    START_RECORDING = "start recording"
    STOP_WITHDRAWN = "stop recording, withdrawn"
    STOP_ENDED = "stop recording, call ended"
    PAUSE = "pause recording"
    RESUME = "resume recording"
    CONNECT = "connect office"
    HANGUP = "hang up"
    IGNORE = "ignore, counted"


S, In, P = State, Input, _Step
_Row = tuple[tuple[_Step, ...], State]

_TABLE: dict[tuple[State, Input], _Row] = {
    # --- start
    (S.IDLE, In.START_KEYPRESS): ((P.PLAY_CONSENT,), S.PROMPTING),
    (S.IDLE, In.START_ANNOUNCE): ((P.PLAY_ANNOUNCE,), S.ANNOUNCING),
    (S.IDLE, In.START_OFF): ((P.NOT_ASKED, P.CONNECT), S.UNRECORDED),
    (S.IDLE, In.START_NO_EMPLOYEE): ((P.NO_EMPLOYEE, P.CONNECT), S.UNRECORDED),
    (S.IDLE, In.CALL_ENDED): ((), S.ENDED),  # never reached the consent step
    # --- keypress: first play of the prompt (barge-in allowed)
    (S.PROMPTING, In.PROMPT_DONE): ((P.ARM_TIMER,), S.WAITING),
    (S.PROMPTING, In.ACCEPT): ((P.STOP_PROMPT, P.ACCEPTED, P.PLAY_THANKS), S.THANKING),
    (S.PROMPTING, In.DECLINE_CONNECT): ((P.STOP_PROMPT, P.DECLINED, P.CONNECT), S.UNRECORDED),
    (S.PROMPTING, In.DECLINE_HANGUP): ((P.STOP_PROMPT, P.DECLINED, P.PLAY_GOODBYE), S.GOODBYE),
    (S.PROMPTING, In.CALL_ENDED): ((P.STOP_PROMPT, P.ABANDONED), S.ENDED),
    (S.WAITING, In.ACCEPT): ((P.ACCEPTED, P.PLAY_THANKS), S.THANKING),
    (S.WAITING, In.DECLINE_CONNECT): ((P.DECLINED, P.CONNECT), S.UNRECORDED),
    (S.WAITING, In.DECLINE_HANGUP): ((P.DECLINED, P.PLAY_GOODBYE), S.GOODBYE),
    (S.WAITING, In.TIMEOUT_CONNECT): ((P.PLAY_CONSENT,), S.REPROMPTING),
    (S.WAITING, In.TIMEOUT_HANGUP): ((P.PLAY_CONSENT,), S.REPROMPTING),
    (S.WAITING, In.CALL_ENDED): ((P.ABANDONED,), S.ENDED),
    # --- keypress: the one replay
    (S.REPROMPTING, In.PROMPT_DONE): ((P.ARM_TIMER,), S.REWAITING),
    (S.REPROMPTING, In.ACCEPT): ((P.STOP_PROMPT, P.ACCEPTED, P.PLAY_THANKS), S.THANKING),
    (S.REPROMPTING, In.DECLINE_CONNECT): ((P.STOP_PROMPT, P.DECLINED, P.CONNECT), S.UNRECORDED),
    (S.REPROMPTING, In.DECLINE_HANGUP): (
        (P.STOP_PROMPT, P.DECLINED, P.PLAY_GOODBYE),
        S.GOODBYE,
    ),
    (S.REPROMPTING, In.CALL_ENDED): ((P.STOP_PROMPT, P.ABANDONED), S.ENDED),
    (S.REWAITING, In.ACCEPT): ((P.ACCEPTED, P.PLAY_THANKS), S.THANKING),
    (S.REWAITING, In.DECLINE_CONNECT): ((P.DECLINED, P.CONNECT), S.UNRECORDED),
    (S.REWAITING, In.DECLINE_HANGUP): ((P.DECLINED, P.PLAY_GOODBYE), S.GOODBYE),
    (S.REWAITING, In.TIMEOUT_CONNECT): ((P.TIMED_OUT, P.CONNECT), S.UNRECORDED),
    (S.REWAITING, In.TIMEOUT_HANGUP): ((P.TIMED_OUT, P.PLAY_GOODBYE), S.GOODBYE),
    (S.REWAITING, In.CALL_ENDED): ((P.ABANDONED,), S.ENDED),
    # --- accepted: "thanks", then record and connect
    (S.THANKING, In.PROMPT_DONE): ((P.START_RECORDING, P.CONNECT), S.RECORDING),
    (S.THANKING, In.ACCEPT): ((P.IGNORE,), S.THANKING),  # the same press, another method
    # Withdrawn before the recording started: nothing to stop, the call goes on.
    (S.THANKING, In.DECLINE_CONNECT): ((P.STOP_PROMPT, P.WITHDRAWN, P.CONNECT), S.UNRECORDED),
    (S.THANKING, In.DECLINE_HANGUP): ((P.STOP_PROMPT, P.WITHDRAWN, P.CONNECT), S.UNRECORDED),
    (S.THANKING, In.CALL_ENDED): ((P.STOP_PROMPT,), S.ENDED),
    # --- announce
    (S.ANNOUNCING, In.PROMPT_DONE): (
        (P.ACCEPTED_ANNOUNCE, P.START_RECORDING, P.CONNECT),
        S.RECORDING,
    ),
    (S.ANNOUNCING, In.ACCEPT): ((P.IGNORE,), S.ANNOUNCING),
    (S.ANNOUNCING, In.DECLINE_CONNECT): ((P.STOP_PROMPT, P.DECLINED, P.CONNECT), S.UNRECORDED),
    (S.ANNOUNCING, In.DECLINE_HANGUP): ((P.STOP_PROMPT, P.DECLINED, P.PLAY_GOODBYE), S.GOODBYE),
    (S.ANNOUNCING, In.CALL_ENDED): ((P.STOP_PROMPT, P.ABANDONED), S.ENDED),
    # --- declined with on_decline = hangup
    (S.GOODBYE, In.PROMPT_DONE): ((P.HANGUP,), S.HUNG_UP),
    (S.GOODBYE, In.ACCEPT): ((P.IGNORE,), S.GOODBYE),  # the decision is made
    (S.GOODBYE, In.DECLINE_CONNECT): ((P.IGNORE,), S.GOODBYE),
    (S.GOODBYE, In.DECLINE_HANGUP): ((P.IGNORE,), S.GOODBYE),
    (S.GOODBYE, In.CALL_ENDED): ((P.STOP_PROMPT,), S.ENDED),
    (S.HUNG_UP, In.CALL_ENDED): ((), S.ENDED),
    # --- recorded call
    (S.RECORDING, In.PAUSE_CODE): ((P.PAUSE,), S.PAUSED),
    (S.RECORDING, In.ACCEPT): ((P.IGNORE,), S.RECORDING),
    (S.RECORDING, In.WITHDRAW): ((P.STOP_WITHDRAWN, P.WITHDRAWN, P.PLAY_STOPPED), S.STOPPING),
    (S.RECORDING, In.WITHDRAW_QUIET): ((P.STOP_WITHDRAWN, P.WITHDRAWN), S.UNRECORDED),
    (S.RECORDING, In.CALL_ENDED): ((P.STOP_ENDED,), S.ENDED),
    (S.PAUSED, In.PAUSE_CODE): ((P.RESUME,), S.RECORDING),
    (S.PAUSED, In.ACCEPT): ((P.IGNORE,), S.PAUSED),
    (S.PAUSED, In.WITHDRAW): ((P.STOP_WITHDRAWN, P.WITHDRAWN, P.PLAY_STOPPED), S.STOPPING),
    (S.PAUSED, In.WITHDRAW_QUIET): ((P.STOP_WITHDRAWN, P.WITHDRAWN), S.UNRECORDED),
    (S.PAUSED, In.CALL_ENDED): ((P.STOP_ENDED,), S.ENDED),
    # --- connected, not recorded
    (S.STOPPING, In.PROMPT_DONE): ((), S.UNRECORDED),
    (S.STOPPING, In.CALL_ENDED): ((P.STOP_PROMPT,), S.ENDED),
    (S.UNRECORDED, In.CALL_ENDED): ((), S.ENDED),
}
# Digits that carry no meaning in a state are ignored and counted (a caller pressing
# keys is not a protocol error): other digits everywhere after start, office digits
# everywhere after start (only RECORDING/PAUSED collect the pause code), and any
# external digit once the call is connected without recording.
for _state in State:
    if _state in (S.IDLE, S.ENDED):
        continue
    for _inp in (In.OTHER_DIGIT, In.OFFICE_DIGIT):
        _TABLE[(_state, _inp)] = ((P.IGNORE,), _state)
for _state in (S.STOPPING, S.UNRECORDED, S.HUNG_UP):
    for _inp in (In.ACCEPT, In.DECLINE_CONNECT, In.DECLINE_HANGUP):
        _TABLE[(_state, _inp)] = ((P.IGNORE,), _state)
TABLE: Final[Mapping[tuple[State, Input], _Row]] = _TABLE
del _state, _inp


class ConsentMachine:
    """The consent state machine of one call; see the module docstring."""

    def __init__(
        self,
        mode: str = "keypress",
        consent_digit: str = "1",
        decline_digit: str = "2",
        timeout_s: float = 10.0,
        on_decline: str = "connect",
        language: str | None = "de",
        prompt_sha256: Mapping[str, str] | None = None,
        employee_consent: bool = False,
        pause_code: str = "*1",
        *,
        code_timeout_s: float = 3.0,
        confirm_withdrawal: bool = True,
        not_asked_note: str | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}: {mode!r}")
        if on_decline not in ON_DECLINE:
            raise ValueError(f"on_decline must be one of {ON_DECLINE}: {on_decline!r}")
        if len(consent_digit) != 1 or len(decline_digit) != 1 or consent_digit == decline_digit:
            raise ValueError("consent and decline digits must be two different single digits")
        if timeout_s <= 0 or code_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        self.mode = mode
        self.consent_digit = consent_digit
        self.decline_digit = decline_digit
        self.timeout_s = timeout_s
        self.on_decline = on_decline
        self.language = language
        self.prompt_sha256: dict[str, str] = dict(prompt_sha256 or {})
        self.employee_consent = employee_consent
        self.pause_code = pause_code
        self.code_timeout_s = code_timeout_s
        self.confirm_withdrawal = confirm_withdrawal
        # Set for calls nobody may be asked about (emergency, do-not-record list): they
        # start as mode "off" does, and the record carries this note.
        self.not_asked_note = not_asked_note

        self.state = State.IDLE
        self.protocol_errors = 0
        self.ignored_digits = 0
        self.pauses: list[tuple[float, float | None]] = []  # (paused at, resumed at)
        self._record: ConsentRecord | None = None
        self._consent_deadline: float | None = None
        self._code = ""
        self._code_deadline: float | None = None

    # --- public inputs -------------------------------------------------------------

    @property
    def record(self) -> ConsentRecord | None:
        """The evidence so far; None until decided (or when the call never started)."""
        return self._record

    @property
    def asks(self) -> bool:
        """True when the external party will hear a prompt (the call waits for it)."""
        return self.mode != "off" and self.employee_consent and self.not_asked_note is None

    @property
    def recording(self) -> bool:
        return self.state is State.RECORDING

    def get_timer(self) -> float | None:
        """The next deadline (consent timeout or pause-code inter-digit timeout)."""
        deadlines = [d for d in (self._consent_deadline, self._code_deadline) if d is not None]
        return min(deadlines) if deadlines else None

    def start(self, now: float) -> list[Action]:
        if self.mode == "off" or self.not_asked_note is not None:
            inp = In.START_OFF
        elif not self.employee_consent:
            inp = In.START_NO_EMPLOYEE
        else:
            inp = In.START_KEYPRESS if self.mode == "keypress" else In.START_ANNOUNCE
        return self._handle(inp, now)

    def prompt_finished(self, now: float) -> list[Action]:
        return self._handle(In.PROMPT_DONE, now)

    def digit(self, d: str, method: str, now: float, source_side: Side) -> list[Action]:
        d = d.upper()
        if source_side == "office":
            return self._office_digit(d, now)
        if d == self.consent_digit:
            inp = In.ACCEPT
        elif d == self.decline_digit and self.state in (S.RECORDING, S.PAUSED):
            inp = In.WITHDRAW if self.confirm_withdrawal else In.WITHDRAW_QUIET
        elif d == self.decline_digit:
            inp = In.DECLINE_HANGUP if self.on_decline == "hangup" else In.DECLINE_CONNECT
        else:
            inp = In.OTHER_DIGIT
        return self._handle(inp, now, digit=d, method=method)

    def timer(self, now: float) -> list[Action]:
        """Call when ``get_timer()`` is due; early or stale calls do nothing."""
        if self._code_deadline is not None and now >= self._code_deadline:
            self._code, self._code_deadline = "", None  # an unfinished code expires
        if self._consent_deadline is None or now < self._consent_deadline:
            return []
        inp = In.TIMEOUT_HANGUP if self.on_decline == "hangup" else In.TIMEOUT_CONNECT
        return self._handle(inp, now)

    def call_ended(self, now: float) -> list[Action]:
        return self._handle(In.CALL_ENDED, now)

    # --- internals -----------------------------------------------------------------

    def _office_digit(self, d: str, now: float) -> list[Action]:
        if self.state not in (S.RECORDING, S.PAUSED) or not self.pause_code:
            return self._handle(In.OFFICE_DIGIT, now)
        candidate = self._code + d
        if candidate == self.pause_code:
            self._code, self._code_deadline = "", None
            return self._handle(In.PAUSE_CODE, now)
        if self.pause_code.startswith(candidate):
            self._code, self._code_deadline = candidate, now + self.code_timeout_s
        elif self.pause_code.startswith(d):  # a wrong key, but it may start the code
            self._code, self._code_deadline = d, now + self.code_timeout_s
        else:
            self._code, self._code_deadline = "", None
        return self._handle(In.OFFICE_DIGIT, now)

    def _handle(
        self, inp: Input, now: float, *, digit: str | None = None, method: str | None = None
    ) -> list[Action]:
        row = _TABLE.get((self.state, inp))
        if row is None:
            self.protocol_errors += 1
            return []
        steps, next_state = row
        if self.state in (S.WAITING, S.REWAITING):
            self._consent_deadline = None  # any transition out of waiting ends the wait
        if next_state not in (S.RECORDING, S.PAUSED):
            self._code, self._code_deadline = "", None
        out: list[Action] = []
        for step in steps:
            self._do(step, now, digit, method, out)
        self.state = next_state
        return out

    def _decide(
        self,
        result: ConsentResult,
        now: float,
        out: list[Action],
        *,
        digit: str | None = None,
        method: str | None = None,
        prompt: str | None = None,
        note: str | None = None,
    ) -> None:
        sha = self.prompt_sha256.get(prompt) if prompt else None
        self._record = ConsentRecord(
            mode=self.mode,
            result=result,
            digit=digit,
            method=method,
            at=now,
            prompt_sha256=sha,
            language=self.language if prompt else None,
            note=note,
        )
        out.append(ConsentDecided(self._record))

    def _do(
        self, step: _Step, now: float, digit: str | None, method: str | None, out: list[Action]
    ) -> None:
        asked = "consent" if self.mode == "keypress" else "announce"
        match step:
            case P.PLAY_CONSENT:
                out.append(PlayPrompt("consent"))
            case P.PLAY_ANNOUNCE:
                out.append(PlayPrompt("announce"))
            case P.PLAY_THANKS:
                out.append(PlayPrompt("thanks"))
            case P.PLAY_GOODBYE:
                out.append(PlayPrompt("goodbye"))
            case P.PLAY_STOPPED:
                out.append(PlayPrompt("stopped"))
            case P.STOP_PROMPT:
                out.append(StopPrompt())
            case P.ARM_TIMER:
                self._consent_deadline = now + self.timeout_s
            case P.ACCEPTED:
                self._decide(
                    ConsentResult.ACCEPTED, now, out, digit=digit, method=method, prompt=asked
                )
            case P.ACCEPTED_ANNOUNCE:
                self._decide(ConsentResult.ACCEPTED, now, out, prompt=asked, note=ANNOUNCE_NOTE)
            case P.DECLINED:
                self._decide(
                    ConsentResult.DECLINED, now, out, digit=digit, method=method, prompt=asked
                )
            case P.TIMED_OUT:
                self._decide(ConsentResult.TIMEOUT, now, out, prompt=asked)
            case P.NOT_ASKED:
                self._decide(ConsentResult.NOT_ASKED, now, out, note=self.not_asked_note)
            case P.NO_EMPLOYEE:
                self._decide(
                    ConsentResult.EMPLOYEE_NO_CONSENT,
                    now,
                    out,
                    note="extension has no employee consent: never recorded, caller not asked",
                )
            case P.ABANDONED:
                self._decide(ConsentResult.ABANDONED, now, out, prompt=asked)
            case P.WITHDRAWN:
                assert self._record is not None  # only reachable after acceptance
                self._record = replace(
                    self._record, result=ConsentResult.WITHDRAWN, withdrawn_at=now
                )
                out.append(ConsentDecided(self._record))
            case P.START_RECORDING:
                out.append(StartRecording(now))
            case P.STOP_WITHDRAWN:
                self._close_pause(now)
                out.append(StopRecording(now, "withdrawn"))
            case P.STOP_ENDED:
                self._close_pause(now)
                out.append(StopRecording(now, "call_ended"))
            case P.PAUSE:
                self.pauses.append((now, None))
                out.append(PauseRecording(now))
            case P.RESUME:
                self._close_pause(now)
                out.append(ResumeRecording(now))
            case P.CONNECT:
                out.append(ConnectOffice())
            case P.HANGUP:
                result = self._record.result if self._record else ConsentResult.DECLINED
                out.append(Hangup(str(result)))
            case P.IGNORE:  # only digit inputs have IGNORE rows
                self.ignored_digits += 1

    def _close_pause(self, now: float) -> None:
        if self.pauses and self.pauses[-1][1] is None:
            self.pauses[-1] = (self.pauses[-1][0], now)
