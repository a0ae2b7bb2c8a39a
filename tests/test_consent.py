"""The consent state machine: every path, with simulated time."""

from __future__ import annotations

from typing import Any

import pytest

from b2bua.consent import (
    TABLE,
    ConnectOffice,
    ConsentDecided,
    ConsentMachine,
    ConsentRecord,
    ConsentResult,
    Hangup,
    Input,
    PauseRecording,
    PlayPrompt,
    ResumeRecording,
    StartRecording,
    State,
    StopPrompt,
    StopRecording,
)

SHA = {"consent": "c" * 64, "announce": "a" * 64}


def machine(**kw: Any) -> ConsentMachine:
    args: dict[str, Any] = {
        "mode": "keypress",
        "timeout_s": 10.0,
        "employee_consent": True,
        "prompt_sha256": SHA,
        "language": "en",
    }
    args.update(kw)
    return ConsentMachine(**args)


def state_of(m: ConsentMachine) -> State:
    """The state, read through a call so that mypy does not narrow it between steps."""
    return m.state


def decided(actions: list[Any]) -> ConsentRecord:
    records = [a.record for a in actions if isinstance(a, ConsentDecided)]
    assert len(records) == 1, actions
    return records[0]


def without_decided(actions: list[Any]) -> list[Any]:
    return [a for a in actions if not isinstance(a, ConsentDecided)]


# ------------------------------------------------------------------ keypress: accept


def test_accept_after_prompt_thanks_then_record_and_connect() -> None:
    m = machine()
    assert m.start(0.0) == [PlayPrompt("consent")]
    assert m.get_timer() is None  # the timeout counts from the end of the prompt
    assert m.prompt_finished(7.0) == []
    assert m.get_timer() == 17.0
    out = m.digit("1", "rfc4733", 9.5, "external")
    assert without_decided(out) == [PlayPrompt("thanks")]  # prompt already over: no stop
    rec = decided(out)
    assert rec == ConsentRecord(
        mode="keypress",
        result=ConsentResult.ACCEPTED,
        digit="1",
        method="rfc4733",
        at=9.5,
        prompt_sha256=SHA["consent"],
        language="en",
    )
    assert m.get_timer() is None
    assert state_of(m) is State.THANKING
    # Nothing is recorded until "thanks" has been played out.
    assert m.prompt_finished(10.8) == [StartRecording(10.8), ConnectOffice()]
    assert m.recording
    assert m.call_ended(60.0) == [StopRecording(60.0, "call_ended")]
    assert state_of(m) is State.ENDED
    assert m.record == rec


def test_barge_in_stops_prompt_first() -> None:
    m = machine()
    m.start(0.0)
    out = m.digit("1", "inband", 2.0, "external")
    assert out[0] == StopPrompt()
    assert out[2] == PlayPrompt("thanks")
    assert decided(out).method == "inband"
    assert decided(out).at == 2.0


def test_same_press_by_second_method_is_ignored() -> None:
    m = machine()
    m.start(0.0)
    m.digit("1", "rfc4733", 2.0, "external")
    assert m.digit("1", "inband", 2.05, "external") == []
    assert m.ignored_digits == 1
    assert m.record is not None and m.record.method == "rfc4733"


def test_other_digits_ignored_and_counted() -> None:
    m = machine()
    m.start(0.0)
    assert m.digit("5", "info", 1.0, "external") == []
    assert m.digit("#", "info", 1.5, "external") == []
    assert m.ignored_digits == 2
    assert state_of(m) is State.PROMPTING
    assert m.record is None


def test_configured_digits() -> None:
    m = machine(consent_digit="9", decline_digit="0")
    m.start(0.0)
    assert m.digit("1", "info", 1.0, "external") == []  # the default digit means nothing
    assert decided(m.digit("9", "info", 2.0, "external")).result is ConsentResult.ACCEPTED


# ------------------------------------------------------------------ keypress: decline


def test_decline_connect_goes_through_unrecorded() -> None:
    m = machine(on_decline="connect")
    m.start(0.0)
    out = m.digit("2", "info", 3.0, "external")
    assert without_decided(out) == [StopPrompt(), ConnectOffice()]
    assert decided(out).result is ConsentResult.DECLINED
    assert decided(out).digit == "2"
    assert state_of(m) is State.UNRECORDED
    # Nothing mid-call can start a recording any more.
    assert m.digit("1", "info", 20.0, "external") == []
    assert m.digit("*", "info", 21.0, "office") == []
    assert m.digit("1", "info", 21.1, "office") == []
    assert m.call_ended(30.0) == []
    assert m.protocol_errors == 0


def test_decline_hangup_says_goodbye_then_hangs_up() -> None:
    m = machine(on_decline="hangup")
    m.start(0.0)
    m.prompt_finished(7.0)
    out = m.digit("2", "rfc4733", 8.0, "external")
    assert without_decided(out) == [PlayPrompt("goodbye")]
    assert m.digit("1", "rfc4733", 8.5, "external") == []  # too late to change
    assert m.prompt_finished(11.0) == [Hangup("declined")]
    assert m.call_ended(11.1) == []
    assert state_of(m) is State.ENDED
    assert m.record is not None and m.record.result is ConsentResult.DECLINED
    assert m.protocol_errors == 0


# ------------------------------------------------------------------ keypress: timeout


@pytest.mark.parametrize("on_decline", ["connect", "hangup"])
def test_timeout_replays_once_then_follows_on_decline(on_decline: str) -> None:
    m = machine(on_decline=on_decline, timeout_s=5.0)
    m.start(0.0)
    m.prompt_finished(7.0)
    assert m.timer(11.9) == []  # early call: nothing
    assert m.get_timer() == 12.0
    assert m.timer(12.0) == [PlayPrompt("consent")]
    assert state_of(m) is State.REPROMPTING
    assert m.get_timer() is None
    m.prompt_finished(19.0)
    assert m.get_timer() == 24.0
    out = m.timer(24.5)
    rec = decided(out)
    assert rec.result is ConsentResult.TIMEOUT
    assert (rec.digit, rec.method) == (None, None)
    assert rec.prompt_sha256 == SHA["consent"]
    if on_decline == "connect":
        assert without_decided(out) == [ConnectOffice()]
        assert state_of(m) is State.UNRECORDED
    else:
        assert without_decided(out) == [PlayPrompt("goodbye")]
        assert m.prompt_finished(27.0) == [Hangup("timeout")]
    assert m.get_timer() is None
    assert not any(isinstance(a, StartRecording) for a in out)


def test_accept_during_replay_and_after_it() -> None:
    m = machine(timeout_s=5.0)
    m.start(0.0)
    m.prompt_finished(7.0)
    m.timer(12.0)
    out = m.digit("1", "info", 13.0, "external")
    assert out[0] == StopPrompt()
    assert decided(out).result is ConsentResult.ACCEPTED

    m2 = machine(timeout_s=5.0)
    m2.start(0.0)
    m2.prompt_finished(7.0)
    m2.timer(12.0)
    m2.prompt_finished(19.0)
    out2 = m2.digit("1", "info", 23.0, "external")
    assert without_decided(out2) == [PlayPrompt("thanks")]
    assert m2.get_timer() is None
    assert m2.timer(30.0) == []  # the old deadline is gone


def test_stale_timer_after_decision_is_harmless() -> None:
    m = machine(timeout_s=5.0)
    m.start(0.0)
    m.prompt_finished(7.0)
    m.digit("2", "info", 8.0, "external")
    assert m.timer(12.0) == []
    assert m.protocol_errors == 0


# ------------------------------------------------------------------ announce and off


def test_announce_continuing_counts_as_consent() -> None:
    m = machine(mode="announce")
    assert m.start(0.0) == [PlayPrompt("announce")]
    assert m.digit("1", "inband", 1.0, "external") == []  # no digit is asked for
    out = m.prompt_finished(6.0)
    assert without_decided(out) == [StartRecording(6.0), ConnectOffice()]
    rec = decided(out)
    assert rec.result is ConsentResult.ACCEPTED
    assert (rec.digit, rec.method) == (None, None)
    assert rec.prompt_sha256 == SHA["announce"]
    assert rec.note == "announce: continuing counts as consent"
    assert m.get_timer() is None


def test_announce_decline_digit_is_honoured() -> None:
    m = machine(mode="announce", on_decline="hangup")
    m.start(0.0)
    out = m.digit("2", "rfc4733", 2.0, "external")
    assert without_decided(out) == [StopPrompt(), PlayPrompt("goodbye")]
    assert decided(out).result is ConsentResult.DECLINED


def test_off_connects_at_once_and_never_records() -> None:
    m = machine(mode="off")
    out = m.start(0.0)
    assert without_decided(out) == [ConnectOffice()]
    rec = decided(out)
    assert rec.result is ConsentResult.NOT_ASKED
    assert (rec.prompt_sha256, rec.language) == (None, None)
    for d in "12*1":
        assert m.digit(d, "info", 1.0, "external") == []
        assert m.digit(d, "info", 1.0, "office") == []
    assert m.call_ended(5.0) == []


@pytest.mark.parametrize("mode", ["keypress", "announce"])
def test_no_employee_consent_is_never_recorded_nor_asked(mode: str) -> None:
    m = machine(mode=mode, employee_consent=False)
    out = m.start(0.0)
    assert without_decided(out) == [ConnectOffice()]
    rec = decided(out)
    assert rec.result is ConsentResult.EMPLOYEE_NO_CONSENT
    assert rec.note is not None and "employee" in rec.note
    # Whatever the caller presses, nothing is recorded.
    actions = m.digit("1", "rfc4733", 1.0, "external") + m.prompt_finished(2.0)
    assert not any(isinstance(a, StartRecording) for a in actions)
    assert m.protocol_errors == 1  # prompt_finished without a prompt is the caller's bug


def test_default_employee_consent_is_false() -> None:
    m = ConsentMachine(mode="keypress")
    assert decided(m.start(0.0)).result is ConsentResult.EMPLOYEE_NO_CONSENT


# ------------------------------------------------------------------ mid-call


def recording_machine(**kw: Any) -> ConsentMachine:
    m = machine(**kw)
    m.start(0.0)
    m.digit("1", "rfc4733", 1.0, "external")
    m.prompt_finished(2.0)
    assert m.recording
    return m


def test_pause_code_toggles_pause_and_resume() -> None:
    m = recording_machine()
    assert m.digit("*", "rfc4733", 10.0, "office") == []
    assert m.get_timer() == 13.0  # inter-digit timeout
    assert m.digit("1", "rfc4733", 11.0, "office") == [PauseRecording(11.0)]
    assert state_of(m) is State.PAUSED
    assert m.get_timer() is None
    assert m.digit("*", "rfc4733", 40.0, "office") == []
    assert m.digit("1", "rfc4733", 40.5, "office") == [ResumeRecording(40.5)]
    assert state_of(m) is State.RECORDING
    assert m.pauses == [(11.0, 40.5)]


def test_pause_code_needs_its_digits_in_time_and_in_order() -> None:
    m = recording_machine()
    m.digit("*", "info", 10.0, "office")
    assert m.timer(13.0) == []  # the half-typed code expires
    assert m.get_timer() is None
    assert m.digit("1", "info", 13.5, "office") == []
    assert state_of(m) is State.RECORDING
    # A wrong key resets, but "*" may start the code again.
    m.digit("*", "info", 20.0, "office")
    m.digit("*", "info", 20.5, "office")
    assert m.digit("1", "info", 21.0, "office") == [PauseRecording(21.0)]


def test_external_party_cannot_pause() -> None:
    m = recording_machine()
    assert m.digit("*", "info", 10.0, "external") == []
    assert m.digit("1", "info", 10.2, "external") == []
    assert m.recording


def test_custom_pause_code() -> None:
    m = recording_machine(pause_code="#9")
    m.digit("#", "info", 10.0, "office")
    assert m.digit("9", "info", 10.5, "office") == [PauseRecording(10.5)]


def test_withdrawal_stops_recording_and_keeps_acceptance_time() -> None:
    m = recording_machine()
    out = m.digit("2", "inband", 30.0, "external")
    assert out[0] == StopRecording(30.0, "withdrawn")
    rec = decided(out)
    assert rec.result is ConsentResult.WITHDRAWN
    assert rec.at == 1.0
    assert rec.withdrawn_at == 30.0
    assert rec.digit == "1"
    assert out[-1] == PlayPrompt("stopped")
    assert state_of(m) is State.STOPPING
    assert m.prompt_finished(32.0) == []
    assert state_of(m) is State.UNRECORDED
    # Pressing the consent digit again does not restart the recording.
    assert m.digit("1", "info", 33.0, "external") == []
    assert m.digit("*", "info", 34.0, "office") == []
    assert m.digit("1", "info", 34.1, "office") == []
    assert m.call_ended(40.0) == []
    assert m.record == rec


def test_withdrawal_while_paused_closes_the_pause() -> None:
    m = recording_machine(confirm_withdrawal=False)
    m.digit("*", "info", 10.0, "office")
    m.digit("1", "info", 10.1, "office")
    out = m.digit("2", "info", 15.0, "external")
    assert without_decided(out) == [StopRecording(15.0, "withdrawn")]  # no prompt
    assert m.pauses == [(10.1, 15.0)]
    assert state_of(m) is State.UNRECORDED


def test_withdrawal_during_thanks_never_starts_recording() -> None:
    m = machine(on_decline="hangup")
    m.start(0.0)
    m.digit("1", "info", 1.0, "external")
    out = m.digit("2", "info", 1.2, "external")
    assert without_decided(out) == [StopPrompt(), ConnectOffice()]  # no hangup mid-call
    assert decided(out).result is ConsentResult.WITHDRAWN
    assert m.prompt_finished(2.0) == []
    assert m.protocol_errors == 1


def test_call_ended_while_paused_stops_recording() -> None:
    m = recording_machine()
    m.digit("*", "info", 10.0, "office")
    m.digit("1", "info", 10.1, "office")
    assert m.call_ended(12.0) == [StopRecording(12.0, "call_ended")]
    assert m.pauses == [(10.1, 12.0)]


# ------------------------------------------------------------------ ending early, errors


@pytest.mark.parametrize("prompt_done", [False, True])
def test_hangup_before_decision_is_abandoned(prompt_done: bool) -> None:
    m = machine()
    m.start(0.0)
    if prompt_done:
        m.prompt_finished(7.0)
    out = m.call_ended(8.0)
    assert decided(out).result is ConsentResult.ABANDONED
    assert (StopPrompt() in out) is not prompt_done
    assert m.get_timer() is None


def test_call_ended_before_start_leaves_no_record() -> None:
    m = machine()
    assert m.call_ended(1.0) == []
    assert m.record is None


def test_unexpected_inputs_are_counted_never_raised() -> None:
    m = machine()
    assert m.prompt_finished(0.0) == []  # before start
    assert m.digit("1", "info", 0.0, "external") == []
    m.start(1.0)
    assert m.start(1.5) == []  # twice
    m.call_ended(2.0)
    assert m.call_ended(2.5) == []
    assert m.digit("2", "info", 3.0, "external") == []
    assert m.protocol_errors == 5
    assert state_of(m) is State.ENDED


def test_table_has_a_row_for_every_digit_in_every_live_state() -> None:
    # Any key a person can press in a started, live call is a defined transition.
    recorded = {State.RECORDING, State.PAUSED}
    common = {Input.ACCEPT, Input.OTHER_DIGIT, Input.OFFICE_DIGIT}
    decline = {Input.DECLINE_CONNECT, Input.DECLINE_HANGUP}
    withdraw = {Input.WITHDRAW, Input.WITHDRAW_QUIET}
    live = set(State) - {State.IDLE, State.ENDED}
    missing = [
        (s, i)
        for s in live
        for i in common | (withdraw if s in recorded else decline)
        if (s, i) not in TABLE
    ]
    assert missing == []
    # And every state the call can be in when it ends has a row for the end.
    assert [s for s in State if s is not State.ENDED and (s, Input.CALL_ENDED) not in TABLE] == []


def test_no_path_records_before_consent() -> None:
    # Exhaustively: from every table row, StartRecording only follows a decision that
    # is "accepted" (the decision happens in the same or an earlier transition).
    for mode in ("keypress", "announce", "off"):
        for employee in (True, False):
            m = machine(mode=mode, employee_consent=employee)
            actions = m.start(0.0)
            actions += m.prompt_finished(5.0)
            actions += m.prompt_finished(6.0)
            for a in actions:
                if isinstance(a, StartRecording):
                    assert m.record is not None
                    assert m.record.result is ConsentResult.ACCEPTED
                    assert employee and mode != "off"


@pytest.mark.parametrize(
    "kw",
    [
        {"mode": "always"},
        {"on_decline": "drop"},
        {"consent_digit": "1", "decline_digit": "1"},
        {"consent_digit": "12"},
        {"timeout_s": 0},
    ],
)
def test_bad_configuration_raises(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"."):
        machine(**kw)
