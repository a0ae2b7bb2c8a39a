"""What the running B2BUA does with bad, foreign and dead calls (GitHub issue 3).

Raw UDP peers on loopback talk to the real server (`start_server` on an event loop in a
background thread): requests are built with b2bua.message and answers parsed with
`parse_message`, so every status, header and retransmission is visible. After each bad
request the server must keep serving: a following valid call or OPTIONS works.

Addresses: the server 127.0.0.1, the trunk 127.0.0.2, the desk phone 1000 127.0.0.3 (a
static contact, so whatever reaches it is seen), an office phone placing calls
127.0.0.5, a stranger 127.0.0.9.
"""

from __future__ import annotations

import re
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from b2bua.auth import answer_challenge, pick_challenge
from b2bua.headers import Headers
from b2bua.media_control import media_target
from b2bua.message import Message, Request, Response, make_response, parse_message
from b2bua.sdp_parse import parse_sdp
from b2bua.transaction import new_branch
from b2bua.uri import URI, parse_uri
from tests.conftest import free_port, write_office
from tests.pyvoip_util import ServerThread
from tests.sipp_harness import media_leg_count

Addr = tuple[str, int]
TRUNK_IP, PHONE_IP, OFFICE_IP, STRANGER_IP = "127.0.0.2", "127.0.0.3", "127.0.0.5", "127.0.0.9"
ALLOWED = {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"}

pytestmark = pytest.mark.timeout(30)


# -- a raw SIP peer ---------------------------------------------------------------------


class Peer:
    """A SIP UA on one UDP socket; everything it receives is parsed and kept in order."""

    def __init__(self, ip: str, port: int = 0, user: str = "peer") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, port))
        self.addr: Addr = self.sock.getsockname()
        self.user = user
        self.received: list[Message] = []
        self._pending: list[Message] = []

    def close(self) -> None:
        self.sock.close()

    def send(self, message: Request | Response, dest: Addr) -> None:
        self.sock.sendto(message.to_bytes(), dest)

    def _read(self, timeout: float) -> Message | None:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(65535)
        except TimeoutError:
            return None
        message = parse_message(data)
        self.received.append(message)
        return message

    def wait(self, want: Callable[[Message], bool], timeout: float = 3.0) -> Message | None:
        """The first message (new or set aside earlier) that `want` accepts, or None."""
        for i, kept in enumerate(self._pending):
            if want(kept):
                return self._pending.pop(i)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self._read(left)
            if message is None:
                break
            if want(message):
                return message
            self._pending.append(message)
        return None

    def final(self, call_id: str, method: str, timeout: float = 3.0) -> Response:
        """The final response to our `method` request of dialog `call_id`."""
        got = self.wait(
            lambda m: (
                isinstance(m, Response)
                and m.status >= 200
                and m.call_id == call_id
                and m.cseq[1] == method
            ),
            timeout,
        )
        assert isinstance(got, Response), f"no final response to {method} {call_id}"
        return got

    def request_in(self, method: str, timeout: float = 3.0) -> Request | None:
        got = self.wait(lambda m: isinstance(m, Request) and m.method == method, timeout)
        assert got is None or isinstance(got, Request)
        return got

    def responses_for(self, call_id: str) -> list[Response]:
        return [m for m in self.received if isinstance(m, Response) and m.call_id == call_id]

    def requests(self) -> list[Request]:
        return [m for m in self.received if isinstance(m, Request)]

    def build(
        self,
        method: str,
        uri: URI,
        *,
        to: str,
        call_id: str,
        cseq: int,
        from_tag: str,
        from_user: str | None = None,
        to_tag: str | None = None,
        extra: tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
    ) -> Request:
        ip, port = self.addr
        user = from_user or self.user
        fields = [
            ("Via", f"SIP/2.0/UDP {ip}:{port};branch={new_branch()};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:{user}@{ip}>;tag={from_tag}"),
            ("To", f"<{to}>" + (f";tag={to_tag}" if to_tag else "")),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq} {method}"),
            ("Contact", f"<sip:{user}@{ip}:{port}>"),
            *extra,
        ]
        if body:
            fields.append(("Content-Type", "application/sdp"))
        return Request(method, uri, Headers.of(*fields), body)


def offer(ip: str, port: int) -> bytes:
    return (
        f"v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    ).encode()


def rtp_target(message: Request | Response) -> Addr:
    remote, _fmt, _hold = media_target(parse_sdp(message.body))
    assert remote is not None
    return remote


def authorization(challenge: Response, method: str, uri: URI, user: str, password: str) -> str:
    value = pick_challenge(challenge.headers.raw("WWW-Authenticate"))
    assert value is not None, challenge
    return answer_challenge(
        value,
        method=method,
        uri=str(uri),
        username=user,
        password=password,
        cnonce=secrets.token_hex(4),
    )


def ack_for(peer: Peer, invite: Request, response: Response) -> Request:
    """The ACK for a non-2xx final: same branch as the INVITE (RFC 3261 17.1.1.3)."""
    fields = [
        ("Via", invite.headers.raw("Via")[0]),
        ("Max-Forwards", "70"),
        ("From", invite.headers.raw("From")[0]),
        ("To", response.headers.raw("To")[0]),
        ("Call-ID", invite.call_id),
        ("CSeq", f"{invite.cseq[0]} ACK"),
    ]
    return Request("ACK", invite.uri, Headers.of(*fields))


# -- the office ---------------------------------------------------------------------


@dataclass
class Office:
    server: ServerThread
    trunk: Peer
    phone: Peer  # extension 1000's static contact
    sip: Addr

    def uri(self, user: str) -> URI:
        return parse_uri(f"sip:{user}@{self.sip[0]}:{self.sip[1]}")

    def stats(self) -> dict[str, int]:
        return self.server.call(lambda: dict(vars(self.server.server.switch.stats)))

    def options_ok(self, peer: Peer) -> Response:
        call_id = secrets.token_hex(8)
        request = peer.build(
            "OPTIONS",
            self.uri("ping"),
            to=f"sip:ping@{self.sip[0]}",
            call_id=call_id,
            cseq=1,
            from_tag=secrets.token_hex(4),
        )
        peer.send(request, self.sip)
        response = peer.final(call_id, "OPTIONS")
        assert response.status == 200
        return response


def office_config(
    tmp_path: Path, rtp_keys: str = "", sip_extra: str = ""
) -> tuple[Path, int, int]:
    trunk_port, phone_port = free_port(TRUNK_IP), free_port(PHONE_IP)
    config = write_office(
        tmp_path,
        trunk=(TRUNK_IP, trunk_port),
        phones={"1000": f"sip:1000@{PHONE_IP}:{phone_port}", "1001": ""},
        sip_extra=sip_extra,
    )
    if rtp_keys:
        text = config.read_text().replace("inactivity_timeout_s = 30\n", rtp_keys + "\n")
        assert rtp_keys in text
        config.write_text(text)
    return config, trunk_port, phone_port


@pytest.fixture
def make_office(tmp_path: Path) -> Iterator[Callable[[str], Office]]:
    opened: list[tuple[ServerThread, list[Peer]]] = []

    def make(rtp_keys: str = "", sip_extra: str = "") -> Office:
        config, trunk_port, phone_port = office_config(tmp_path, rtp_keys, sip_extra)
        server = ServerThread(config).__enter__()
        trunk = Peer(TRUNK_IP, trunk_port, "trunk")
        phone = Peer(PHONE_IP, phone_port, "1000")
        opened.append((server, [trunk, phone]))
        return Office(server, trunk, phone, server.call(lambda: server.server.sip_address))

    yield make
    for server, peers in opened:
        for peer in peers:
            peer.close()
        server.__exit__(None, None, None)


# -- a complete call between raw peers -------------------------------------------------


@dataclass
class Established:
    call_id: str  # the caller's
    from_tag: str
    invite: Request  # as the callee received it
    answer: Response  # as the caller received it
    caller: Peer
    callee: Peer
    caller_rtp: socket.socket
    callee_rtp: socket.socket

    def close(self) -> None:
        self.caller_rtp.close()
        self.callee_rtp.close()


def establish(
    office: Office, caller: Peer, callee: Peer, auth: tuple[str, str] | None
) -> Established:
    """`caller` calls extension 1000 (`callee` answers 200); returns after the ACK."""
    caller_rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    callee_rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        caller_rtp.bind((caller.addr[0], 0))
        callee_rtp.bind((callee.addr[0], 0))
        return _establish(office, caller, callee, auth, caller_rtp, callee_rtp)
    except BaseException:
        caller_rtp.close()
        callee_rtp.close()
        raise


def _establish(
    office: Office,
    caller: Peer,
    callee: Peer,
    auth: tuple[str, str] | None,
    caller_rtp: socket.socket,
    callee_rtp: socket.socket,
) -> Established:
    call_id, from_tag, uri = secrets.token_hex(8), secrets.token_hex(4), office.uri("1000")
    body = offer(caller.addr[0], caller_rtp.getsockname()[1])
    to = f"sip:1000@{office.sip[0]}"
    extra: tuple[tuple[str, str], ...] = ()
    if auth is not None:
        first = caller.build(
            "INVITE", uri, to=to, call_id=call_id, cseq=1, from_tag=from_tag, body=body
        )
        caller.send(first, office.sip)
        challenge = caller.final(call_id, "INVITE")
        assert challenge.status == 401
        caller.send(ack_for(caller, first, challenge), office.sip)
        extra = (("Authorization", authorization(challenge, "INVITE", uri, *auth)),)
    cseq = 1 if auth is None else 2
    invite = caller.build(
        "INVITE", uri, to=to, call_id=call_id, cseq=cseq, from_tag=from_tag, body=body, extra=extra
    )
    caller.send(invite, office.sip)
    incoming = callee.request_in("INVITE")
    assert incoming is not None, "the call never reached the callee"
    answer = make_response(
        incoming,
        200,
        to_tag=secrets.token_hex(4),
        headers=[("Contact", f"<sip:1000@{callee.addr[0]}:{callee.addr[1]}>")],
        body=offer(callee.addr[0], callee_rtp.getsockname()[1]),
    )
    callee.send(answer, office.sip)
    ok = caller.final(call_id, "INVITE")
    assert ok.status == 200, ok
    ack = caller.build(
        "ACK",
        ok.contacts[0].uri,
        to=ok.headers.raw("To")[0].split("<", 1)[1].split(">", 1)[0],
        to_tag=ok.to_addr.tag,
        cseq=invite.cseq[0],
        call_id=call_id,
        from_tag=from_tag,
    )
    caller.send(ack, office.sip)
    assert callee.request_in("ACK") is not None
    return Established(call_id, from_tag, incoming, ok, caller, callee, caller_rtp, callee_rtp)


def hang_up(office: Office, call: Established) -> None:
    """The caller sends BYE; the callee must get one and both BYEs must be answered."""
    ok = call.answer
    bye = call.caller.build(
        "BYE",
        ok.contacts[0].uri,
        to=str(ok.to_addr.uri),
        to_tag=ok.to_addr.tag,
        cseq=call.answer.cseq[0] + 1,
        call_id=call.call_id,
        from_tag=call.from_tag,
    )
    call.caller.send(bye, office.sip)
    relayed = call.callee.request_in("BYE")
    assert relayed is not None, "the BYE was not relayed to the callee"
    call.callee.send(make_response(relayed, 200), office.sip)
    assert call.caller.final(call.call_id, "BYE").status == 200


# -- negative cases ----------------------------------------------------------------------


def shape(response: Response) -> tuple[int, str, tuple[str, ...], tuple[str, ...]]:
    """What a response reveals, apart from its nonce, tags and Call-ID."""
    challenges = tuple(
        re.sub(r'nonce="[^"]*"', 'nonce="-"', value)
        for value in response.headers.raw("WWW-Authenticate")
    )
    names = tuple(name for name, _ in response.headers)
    return response.status, response.reason, names, challenges


def register(
    office: Office, peer: Peer, user: str, password: str | None
) -> tuple[Response, Response | None]:
    """REGISTER for `user`: the challenge, then (with a password) the answer to it."""
    call_id, tag, uri = (
        secrets.token_hex(8),
        secrets.token_hex(4),
        parse_uri(f"sip:{office.sip[0]}"),
    )
    to = f"sip:{user}@{office.sip[0]}"
    first = peer.build(
        "REGISTER", uri, to=to, call_id=call_id, cseq=1, from_tag=tag, from_user=user
    )
    peer.send(first, office.sip)
    challenge = peer.final(call_id, "REGISTER")
    if password is None:
        return challenge, None
    credentials = ("Authorization", authorization(challenge, "REGISTER", uri, user, password))
    second = peer.build(
        "REGISTER",
        uri,
        to=to,
        call_id=call_id,
        cseq=2,
        from_tag=tag,
        from_user=user,
        extra=(credentials,),
    )
    peer.send(second, office.sip)
    return challenge, peer.final(call_id, "REGISTER")


def invite_as(office: Office, peer: Peer, user: str, password: str) -> tuple[Response, Response]:
    """INVITE to 1000 as `user`: the challenge, then the answer to credentials."""
    call_id, tag, uri = secrets.token_hex(8), secrets.token_hex(4), office.uri("1000")
    to, body = f"sip:1000@{office.sip[0]}", offer(peer.addr[0], 40000)
    first = peer.build(
        "INVITE", uri, to=to, call_id=call_id, cseq=1, from_tag=tag, from_user=user, body=body
    )
    peer.send(first, office.sip)
    challenge = peer.final(call_id, "INVITE")
    peer.send(ack_for(peer, first, challenge), office.sip)
    credentials = ("Authorization", authorization(challenge, "INVITE", uri, user, password))
    second = peer.build(
        "INVITE",
        uri,
        to=to,
        call_id=call_id,
        cseq=2,
        from_tag=tag,
        from_user=user,
        body=body,
        extra=(credentials,),
    )
    peer.send(second, office.sip)
    verdict = peer.final(call_id, "INVITE")
    peer.send(ack_for(peer, second, verdict), office.sip)
    # No 100 Trying before a challenge or a refusal (the contract; nothing was started).
    assert [r.status for r in peer.responses_for(call_id)] == [401, verdict.status]
    return challenge, verdict


def test_wrong_password_register_403_invite_401_then_403(
    make_office: Callable[[str], Office],
) -> None:
    office = make_office("")
    office_phone = Peer(OFFICE_IP, user="1001")
    try:
        challenge, verdict = register(office, office_phone, "1001", "wrong")
        assert challenge.status == 401 and challenge.headers.raw("WWW-Authenticate")
        assert verdict is not None and verdict.status == 403
        challenge, verdict = invite_as(office, office_phone, "1001", "wrong")
        assert (challenge.status, verdict.status) == (401, 403)
        assert office.phone.wait(lambda m: True, timeout=0.5) is None  # nothing rang
        stats = office.stats()
        assert stats["auth_failures"] == 1 and stats["calls_started"] == 0
        # Still serving: the right password registers, and an authenticated call works.
        _, verdict = register(office, office_phone, "1001", "pw1001")
        assert verdict is not None and verdict.status == 200
        call = establish(office, office_phone, office.phone, ("1001", "pw1001"))
        hang_up(office, call)
        call.close()
        assert office.server.wait_for(lambda: office.server.server.switch.stats.calls_ended == 1, 3)
    finally:
        office_phone.close()


def test_credentials_resent_on_the_challenged_branch_start_a_call(
    make_office: Callable[[str], Office],
) -> None:
    """pyVoIP 1.6.8 resends the INVITE with credentials on the branch of the challenged
    one (CSeq 2, same Via branch; RFC 3261 8.1.1.7 wants a new branch). The new CSeq
    makes it a new request, not a retransmission of the INVITE that got the 401."""
    office = make_office("")
    caller = Peer(OFFICE_IP, user="1001")
    try:
        call_id, tag, uri = secrets.token_hex(8), secrets.token_hex(4), office.uri("1000")
        to, body = f"sip:1000@{office.sip[0]}", offer(OFFICE_IP, 40000)
        first = caller.build("INVITE", uri, to=to, call_id=call_id, cseq=1, from_tag=tag, body=body)
        caller.send(first, office.sip)
        challenge = caller.final(call_id, "INVITE")
        assert challenge.status == 401
        caller.send(ack_for(caller, first, challenge), office.sip)
        credentials = ("Authorization", authorization(challenge, "INVITE", uri, "1001", "pw1001"))
        fields = [(n, v) for n, v in first.headers if n not in ("CSeq", "Content-Type")]
        fields += [("CSeq", "2 INVITE"), credentials, ("Content-Type", "application/sdp")]
        second = Request("INVITE", uri, Headers.of(*fields), body)
        assert second.branch == first.branch
        caller.send(second, office.sip)
        incoming = office.phone.request_in("INVITE", timeout=3.0)
        assert incoming is not None, (
            "the INVITE with credentials was taken for a retransmission of the challenged one;"
            f" the caller got {[r.status for r in caller.responses_for(call_id)]}"
        )
        office.phone.send(make_response(incoming, 486), office.sip)
        assert caller.final(call_id, "INVITE").status == 486
    finally:
        caller.close()


def test_unknown_extension_gets_the_same_answers_as_a_known_one(
    make_office: Callable[[str], Office],
) -> None:
    office = make_office("")
    known, unknown = Peer(OFFICE_IP, user="1001"), Peer(OFFICE_IP, user="4711")
    try:
        known_reg = register(office, known, "1001", "wrong")
        unknown_reg = register(office, unknown, "4711", "wrong")
        known_inv = invite_as(office, known, "1001", "wrong")
        unknown_inv = invite_as(office, unknown, "4711", "wrong")
        for mine, theirs in (known_reg, unknown_reg), (known_inv, unknown_inv):
            assert mine[1] is not None and theirs[1] is not None
            assert shape(mine[0]) == shape(theirs[0])  # the challenges
            assert shape(mine[1]) == shape(theirs[1])  # the refusals
            assert mine[1].status == 403
        # Even with no password at all, the first answer does not depend on the user.
        assert shape(register(office, unknown, "99999", None)[0]) == shape(known_reg[0])
        assert office.phone.wait(lambda m: True, timeout=0.3) is None
        office.options_ok(unknown)
    finally:
        known.close()
        unknown.close()


def test_stranger_invite_is_challenged_and_never_reaches_a_phone(
    make_office: Callable[[str], Office],
) -> None:
    office = make_office("")
    stranger = Peer(STRANGER_IP, user="+4930123456")
    try:
        call_id = secrets.token_hex(8)
        # It claims to be the trunk in every header; only the socket source counts.
        invite = stranger.build(
            "INVITE",
            office.uri("1000"),
            to=f"sip:1000@{office.sip[0]}",
            call_id=call_id,
            cseq=1,
            from_tag=secrets.token_hex(4),
            extra=(("P-Asserted-Identity", f"<sip:+4930123456@{TRUNK_IP}>"),),
            body=offer(STRANGER_IP, 40000),
        )
        stranger.send(invite, office.sip)
        answer = stranger.final(call_id, "INVITE")
        assert answer.status == 401
        assert [r.status for r in stranger.responses_for(call_id)] == [401]  # no 100 first
        stranger.send(ack_for(stranger, invite, answer), office.sip)
        assert office.phone.wait(lambda m: True, timeout=1.0) is None, "the phone rang"
        assert office.stats()["calls_started"] == 0
        assert office.server.call(lambda: not media_leg_count(office.server.server))
        # Still serving: a real call from the trunk rings the phone.
        call = establish(office, office.trunk, office.phone, None)
        hang_up(office, call)
        call.close()
        assert office.stats()["calls_started"] == 1
    finally:
        stranger.close()


def test_bye_for_unknown_dialog_gets_481(make_office: Callable[[str], Office]) -> None:
    office = make_office("")
    peer = Peer(STRANGER_IP)
    try:
        for to_tag in ("deadbeef", None):
            call_id = secrets.token_hex(8)
            bye = peer.build(
                "BYE",
                office.uri("1000"),
                to=f"sip:1000@{office.sip[0]}",
                to_tag=to_tag,
                call_id=call_id,
                cseq=7,
                from_tag=secrets.token_hex(4),
            )
            peer.send(bye, office.sip)
            assert peer.final(call_id, "BYE").status == 481
        assert office.phone.wait(lambda m: True, timeout=0.3) is None
        office.options_ok(peer)
    finally:
        peer.close()


def test_options_answered_200_with_allow(make_office: Callable[[str], Office]) -> None:
    office = make_office("")
    peer = Peer(STRANGER_IP)
    try:
        response = office.options_ok(peer)
        allowed = {m.strip() for m in response.headers.get_all("Allow")}
        assert allowed >= ALLOWED, allowed
        assert office.options_ok(peer).status == 200  # and again
        assert office.phone.wait(lambda m: True, timeout=0.3) is None
    finally:
        peer.close()


def test_no_product_name_unless_configured(make_office: Callable[..., Office]) -> None:
    peer = Peer(STRANGER_IP)
    try:
        plain = make_office("").options_ok(peer)
        assert plain.headers.get("Server") is None
        assert plain.headers.get("User-Agent") is None
        named = make_office("", 'user_agent = "Office PBX"').options_ok(peer)
        assert named.headers.get("Server") == "Office PBX"
    finally:
        peer.close()
