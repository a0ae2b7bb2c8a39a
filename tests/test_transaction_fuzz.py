"""Random interleavings of messages, TU answers and time never raise or leak transactions."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from b2bua.message import Request, make_response
from b2bua.transaction import (
    CancelReceived,
    Event,
    RequestReceived,
    TimerConfig,
    TransactionLayer,
    create_cancel,
)
from tests.test_transaction import UAC, UAS, request

METHODS = ["INVITE", "OPTIONS", "BYE"]

step = st.one_of(
    st.tuples(st.just("in"), st.integers(0, 3)),  # a request from the pool arrives
    st.tuples(st.just("cancel"), st.integers(0, 3)),  # a CANCEL for a pooled request
    st.tuples(st.just("answer"), st.sampled_from([100, 180, 200, 486])),
    st.tuples(st.just("out"), st.integers(0, 2)),  # we send a request
    st.tuples(st.just("reply"), st.sampled_from([100, 180, 200, 486])),  # peer answers ours
    st.tuples(st.just("wait"), st.sampled_from([0.0, 0.1, 0.5, 2.0, 40.0])),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(step, max_size=25), st.booleans(), st.booleans())
def test_random_interleavings(
    steps: list[tuple[str, float]], reliable: bool, auto100: bool
) -> None:
    layer = TransactionLayer(TimerConfig(trying_100=0.2 if auto100 else None))
    pool = [request(METHODS[i % 3]) for i in range(4)]
    ours: list[Request] = []
    pending: list[tuple[str, Request]] = []
    now = 0.0

    def take(events: list[Event]) -> None:
        for ev in events:
            if isinstance(ev, RequestReceived | CancelReceived):
                pending.append((ev.key, ev.request))

    for kind, arg in steps:
        if kind == "in":
            take(layer.receive_message(pool[int(arg)], UAC, now, reliable=reliable))
        elif kind == "cancel":
            take(layer.receive_message(create_cancel(pool[int(arg)]), UAC, now, reliable=reliable))
        elif kind == "answer" and pending:
            key, req = pending[-1]
            take(layer.send_response(key, make_response(req, int(arg), to_tag="t"), now))
        elif kind == "out":
            req = request(METHODS[int(arg)])
            ours.append(req)
            layer.send_request(req, UAS, now, reliable=reliable)
        elif kind == "reply" and ours:
            resp = make_response(ours[-1], int(arg), to_tag="r")
            take(layer.receive_message(resp, UAS, now, reliable=reliable))
        elif kind == "wait":
            now += arg
            take(layer.handle_timer(now))
        layer.datagrams_to_send()
    # Finish: every server transaction gets a final, every client one a final too.
    for key, req in pending:
        layer.send_response(key, make_response(req, 500, to_tag="t"), now)
    for req in ours:
        layer.receive_message(make_response(req, 500, to_tag="r"), UAS, now, reliable=reliable)
    for _ in range(200):
        deadline = layer.get_timer()
        if deadline is None:
            break
        assert deadline >= now
        now = deadline
        layer.handle_timer(now)
    assert layer.get_timer() is None
    assert len(layer) == 0
