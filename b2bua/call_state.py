"""The states, inputs and sides of a call (call.py), apart so that the modules holding a
call's steps (consent_phase.py, call_trunk.py, ...) can use them without importing
call.py at load time."""

from __future__ import annotations

import enum

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, REFER, NOTIFY"
CODECS = ("PCMU", "PCMA", "telephone-event")


class CallState(enum.Enum):
    ANNOUNCING = "announcing"  # the external party is answered and hears the prompt
    CALLING = "calling"  # B's INVITE sent, nothing back yet
    EARLY = "early"  # B sent a provisional; relayed to A
    ANSWERED = "answered"  # B answered; our 200 to A waits for A's ACK
    CONFIRMED = "confirmed"  # both dialogs up, media bridged
    CANCELLING = "cancelling"  # A cancelled; B's INVITE is being cancelled
    ENDING = "ending"  # BYE sent on the leg(s) still up
    ENDED = "ended"


class CallInput(enum.Enum):
    B_PROVISIONAL = "b_provisional"
    B_SUCCESS = "b_success"
    B_FAILURE = "b_failure"
    A_ACK = "a_ack"
    A_CANCEL = "a_cancel"
    A_BYE = "a_bye"
    B_BYE = "b_bye"
    HANGUP = "hangup"  # our own decision: media timeout, call too long, shutdown
    BYE_DONE = "bye_done"  # a BYE we sent was answered or timed out
    CONNECT_OFFICE = "connect_office"  # consent machine: go ahead with the office leg


class Side(enum.Enum):
    A = "a"
    B = "b"
    C = "c"  # a transfer target being called (transfer.py); becomes the office leg
