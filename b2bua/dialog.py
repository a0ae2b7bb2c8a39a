"""SIP dialogs (RFC 3261 section 12): identity, CSeq, route set and remote target.

Theory of operation: a dialog is created by the UAC from a 1xx (with a To tag: early) or
2xx (confirmed) response to its INVITE (:meth:`Dialog.from_uac`), or by the UAS from the
INVITE it answers with a To tag (:meth:`Dialog.from_uas`). It then builds the requests
of this side (:meth:`Dialog.create_request`, :meth:`Dialog.create_ack`) and checks the
requests and responses of the other side (:meth:`Dialog.receive_request`,
:meth:`Dialog.receive_response`).

Its lifecycle is a table ``(DialogState, DialogInput) -> (actions, next_state)``:
early -> confirmed on a 2xx to the INVITE, -> terminated on a failure of the initial
INVITE, a BYE, or a 481/408 to any request in the dialog (12.2.1.2). The actions are
the target refresh (Contact of a re-INVITE/UPDATE/...) and the route-set recomputation
when an early dialog is confirmed (13.2.2.4). A request that the table lacks (anything
on a terminated dialog) is answered 481; a response it lacks is logged, counted and
ignored. A request with a CSeq lower than the last one is answered 500 (12.2.2).

The object is sans-I/O and has no clock: transactions, timers and bytes are the
transaction layer's job.
"""

from __future__ import annotations

import enum
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from b2bua.errors import SipError
from b2bua.headers import Address, Headers, Via
from b2bua.message import Request, Response
from b2bua.uri import URI

log = logging.getLogger("b2bua.dialog")

DialogId = tuple[str, str, str]  # (Call-ID, local tag, remote tag)

# Requests whose Contact replaces the remote target (RFC 3261 12.2, 3311, 6665, 3515).
TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})
# Parameters RFC 3261 19.1.1 does not allow in a Request-URI (strict routing, 12.2.1.1).
_NOT_IN_REQUEST_URI = frozenset({"method", "ttl"})
_MAX_CSEQ = 2**31 - 1


class DialogState(enum.Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class DialogInput(enum.Enum):
    RESP_1XX_INVITE = "1xx to INVITE"
    RESP_2XX_INVITE = "2xx to INVITE"
    RESP_ERROR_INVITE = "300-699 to INVITE"
    RESP_2XX_REFRESH = "2xx to another target refresh request"
    RESP_ENDS_DIALOG = "481/408, or a final to BYE"
    RESP_OTHER = "other response"
    REQ_TARGET_REFRESH = "target refresh request"
    REQ_BYE = "BYE"
    REQ_OTHER = "other request"
    LOCAL_TERMINATE = "local end"


class DialogAction(enum.Enum):
    REFRESH_TARGET = "take the remote target from Contact"
    RECOMPUTE_ROUTES = "route set from the 2xx's Record-Route, reversed"


_D = DialogState
_In = DialogInput
_A = DialogAction

DIALOG_TABLE: dict[
    tuple[DialogState, DialogInput], tuple[tuple[DialogAction, ...], DialogState]
] = {
    (_D.EARLY, _In.RESP_1XX_INVITE): ((_A.REFRESH_TARGET,), _D.EARLY),
    (_D.EARLY, _In.RESP_2XX_INVITE): ((_A.RECOMPUTE_ROUTES, _A.REFRESH_TARGET), _D.CONFIRMED),
    (_D.EARLY, _In.RESP_ERROR_INVITE): ((), _D.TERMINATED),
    (_D.EARLY, _In.RESP_2XX_REFRESH): ((_A.REFRESH_TARGET,), _D.EARLY),  # UPDATE, RFC 3311
    (_D.EARLY, _In.RESP_ENDS_DIALOG): ((), _D.TERMINATED),
    (_D.EARLY, _In.RESP_OTHER): ((), _D.EARLY),
    (_D.EARLY, _In.REQ_TARGET_REFRESH): ((_A.REFRESH_TARGET,), _D.EARLY),
    (_D.EARLY, _In.REQ_BYE): ((), _D.TERMINATED),  # the caller may BYE an early dialog
    (_D.EARLY, _In.REQ_OTHER): ((), _D.EARLY),
    (_D.EARLY, _In.LOCAL_TERMINATE): ((), _D.TERMINATED),
    # 1xx to a re-INVITE changes nothing; its 2xx refreshes the target, a failure of a
    # re-INVITE leaves the dialog as it was (14.1).
    (_D.CONFIRMED, _In.RESP_1XX_INVITE): ((), _D.CONFIRMED),
    (_D.CONFIRMED, _In.RESP_2XX_INVITE): ((_A.REFRESH_TARGET,), _D.CONFIRMED),
    (_D.CONFIRMED, _In.RESP_ERROR_INVITE): ((), _D.CONFIRMED),
    (_D.CONFIRMED, _In.RESP_2XX_REFRESH): ((_A.REFRESH_TARGET,), _D.CONFIRMED),
    (_D.CONFIRMED, _In.RESP_ENDS_DIALOG): ((), _D.TERMINATED),
    (_D.CONFIRMED, _In.RESP_OTHER): ((), _D.CONFIRMED),
    (_D.CONFIRMED, _In.REQ_TARGET_REFRESH): ((_A.REFRESH_TARGET,), _D.CONFIRMED),
    (_D.CONFIRMED, _In.REQ_BYE): ((), _D.TERMINATED),
    (_D.CONFIRMED, _In.REQ_OTHER): ((), _D.CONFIRMED),
    (_D.CONFIRMED, _In.LOCAL_TERMINATE): ((), _D.TERMINATED),
    # Late answers to our BYE (or to other requests) after the end are expected, and so
    # are answers to a re-INVITE or UPDATE that was pending when the dialog ended: their
    # 2xx is still ACKed by the caller (13.2.2.4) but refreshes nothing.
    (_D.TERMINATED, _In.RESP_ENDS_DIALOG): ((), _D.TERMINATED),
    (_D.TERMINATED, _In.RESP_1XX_INVITE): ((), _D.TERMINATED),
    (_D.TERMINATED, _In.RESP_2XX_INVITE): ((), _D.TERMINATED),
    (_D.TERMINATED, _In.RESP_ERROR_INVITE): ((), _D.TERMINATED),
    (_D.TERMINATED, _In.RESP_2XX_REFRESH): ((), _D.TERMINATED),
    (_D.TERMINATED, _In.RESP_OTHER): ((), _D.TERMINATED),
    (_D.TERMINATED, _In.LOCAL_TERMINATE): ((), _D.TERMINATED),
}


def _untagged(addr: Address) -> Address:
    return addr.without_param("tag")


def request_dialog_id(request: Request) -> DialogId:
    """The id, as seen by us, of the dialog a received request belongs to."""
    return (request.call_id, request.to_addr.tag or "", request.from_addr.tag or "")


def response_dialog_id(response: Response) -> DialogId:
    """The id, as seen by us, of the dialog a response to our request belongs to."""
    return (response.call_id, response.from_addr.tag or "", response.to_addr.tag or "")


@dataclass
class Dialog:
    """One dialog's state. ``local_party``/``remote_party`` are From/To without tags."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_party: Address
    remote_party: Address
    remote_target: URI
    route_set: tuple[Address, ...] = ()
    local_seq: int | None = None
    remote_seq: int | None = None
    secure: bool = False
    local_contact: Address | None = None
    # Headers every new request in this dialog carries (not ACK): a security agreement's
    # Security-Verify with Require/Proxy-Require (RFC 3329; the trunk's mediasec).
    request_headers: tuple[tuple[str, str], ...] = ()
    state: DialogState = DialogState.EARLY
    protocol_errors: int = field(default=0, compare=False)

    # -- creation ---------------------------------------------------------------------

    @classmethod
    def from_uac(
        cls, request: Request, response: Response, *, local_contact: Address | None = None
    ) -> Dialog:
        """The UAC's dialog from a 1xx (early) or 2xx (confirmed) response (12.1.2)."""
        status = response.status
        if not 101 <= status <= 299:
            raise ValueError(f"a {status} response creates no dialog")
        remote_tag = response.to_addr.tag
        if remote_tag is None:
            raise SipError(400, "Bad Request", f"{status} response without To tag")
        contacts = response.contacts
        if local_contact is None and request.contacts:
            local_contact = request.contacts[0]
        return cls(
            call_id=request.call_id,
            local_tag=request.from_addr.tag or "",
            remote_tag=remote_tag,
            local_party=_untagged(request.from_addr),
            remote_party=_untagged(response.to_addr),
            # A 1xx without Contact still makes an early dialog; its 2xx will have one.
            remote_target=contacts[0].uri if contacts else request.uri,
            route_set=tuple(reversed(response.addresses("Record-Route"))),
            local_seq=request.cseq[0],
            remote_seq=None,
            secure=request.uri.scheme == "sips",
            local_contact=local_contact,
            state=DialogState.CONFIRMED if status >= 200 else DialogState.EARLY,
        )

    @classmethod
    def from_uas(
        cls,
        request: Request,
        local_tag: str,
        local_contact: Address,
        *,
        local_seq: int | None = None,
        confirmed: bool = False,
    ) -> Dialog:
        """The UAS's dialog for the request it answers with ``local_tag`` (12.1.1).

        Early until :meth:`confirm` (when the 2xx is sent), unless ``confirmed``.
        """
        contacts = request.contacts
        if not contacts or contacts[0].wildcard:
            raise SipError(400, "Bad Request", "dialog-creating request without Contact")
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_addr.tag or "",
            local_party=_untagged(request.to_addr),
            remote_party=_untagged(request.from_addr),
            remote_target=contacts[0].uri,
            route_set=request.addresses("Record-Route"),
            local_seq=local_seq,
            remote_seq=request.cseq[0],
            secure=request.uri.scheme == "sips",
            local_contact=local_contact,
            state=DialogState.CONFIRMED if confirmed else DialogState.EARLY,
        )

    # -- identity ---------------------------------------------------------------------

    @property
    def dialog_id(self) -> DialogId:
        return (self.call_id, self.local_tag, self.remote_tag)

    @property
    def local_uri(self) -> URI:
        return self.local_party.uri

    @property
    def remote_uri(self) -> URI:
        return self.remote_party.uri

    @property
    def terminated(self) -> bool:
        return self.state is DialogState.TERMINATED

    # -- lifecycle --------------------------------------------------------------------

    def confirm(self) -> None:
        """The UAS sent its 2xx to the INVITE: the early dialog is confirmed."""
        if self.state is DialogState.EARLY:
            self.state = DialogState.CONFIRMED

    def terminate(self) -> None:
        """This side ends the dialog (sent BYE, or gave up waiting for the ACK)."""
        self._feed(DialogInput.LOCAL_TERMINATE, None)

    # -- requests of this side (12.2.1.1) ---------------------------------------------

    def create_request(
        self,
        method: str,
        *,
        via: Via | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> Request:
        """A new request in this dialog with the next local CSeq.

        ``via`` is usually left out here and prepended by the sender along with a fresh
        branch. ACK (use :meth:`create_ack`) and CANCEL (not a dialog request, see
        ``transaction.create_cancel``) are refused.
        """
        if method in ("ACK", "CANCEL"):
            raise ValueError(f"{method} does not take a new CSeq: see create_ack/create_cancel")
        if self.local_seq is None:
            # 8.1.1.5: any start value below 2**31; random keeps restarts distinct.
            self.local_seq = secrets.randbelow(2**30) + 1
        else:
            self.local_seq += 1
        if self.local_seq > _MAX_CSEQ:
            raise SipError(500, "Server Internal Error", "local CSeq exhausted")
        return self._build(
            method,
            self.local_seq,
            via=via,
            body=body,
            ctype=content_type,
            extra=(*self.request_headers, *headers),
        )

    def create_ack(
        self,
        response: Response,
        *,
        via: Via | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> Request:
        """The ACK for a 2xx to INVITE: the INVITE's CSeq number, method ACK (13.2.2.4).

        Pass the 2xx to :meth:`receive_response` first, so that an early dialog is
        confirmed and its route set taken from the 2xx.
        """
        number, method = response.cseq
        if method != "INVITE" or not 200 <= response.status < 300:
            raise ValueError("create_ack is for 2xx responses to INVITE")
        return self._build("ACK", number, via=via, body=body, ctype=content_type, extra=headers)

    def _build(
        self,
        method: str,
        cseq: int,
        *,
        via: Via | None,
        body: bytes,
        ctype: str | None,
        extra: Iterable[tuple[str, str]],
    ) -> Request:
        request_uri, routes = self._request_uri_and_routes()
        fields: list[tuple[str, str]] = []
        if via is not None:
            fields.append(("Via", str(via)))
        fields.append(("Max-Forwards", "70"))
        fields += [("Route", str(route)) for route in routes]
        fields.append(("From", str(self.local_party.with_param("tag", self.local_tag))))
        to = self.remote_party
        if self.remote_tag:
            to = to.with_param("tag", self.remote_tag)
        fields.append(("To", str(to)))
        fields.append(("Call-ID", self.call_id))
        fields.append(("CSeq", f"{cseq} {method}"))
        if self.local_contact is not None and method in TARGET_REFRESH_METHODS:
            fields.append(("Contact", str(self.local_contact)))
        fields += list(extra)
        if ctype is not None:
            fields.append(("Content-Type", ctype))
        fields.append(("Content-Length", str(len(body))))
        return Request(method, request_uri, Headers.of(*fields), body)

    def _request_uri_and_routes(self) -> tuple[URI, tuple[Address, ...]]:
        """Request-URI and Route set per 12.2.1.1 (loose and strict routing)."""
        if not self.route_set:
            return self.remote_target, ()
        first = self.route_set[0]
        if first.uri.has_param("lr"):
            return self.remote_target, self.route_set
        # Strict router: it goes into the Request-URI; the remote target goes last.
        uri = first.uri
        for name, _ in first.uri.params:
            if name.lower() in _NOT_IN_REQUEST_URI:
                uri = uri.without_param(name)
        uri = URI(uri.scheme, uri.user, uri.password, uri.host, uri.port, uri.params)
        return uri, (*self.route_set[1:], Address(self.remote_target))

    # -- the other side's messages ----------------------------------------------------

    def receive_request(self, request: Request) -> None:
        """Checks and applies a request from the peer (12.2.2); raises SipError.

        481 when it does not belong to this dialog (or the dialog ended), 500 when its
        CSeq is lower than the last one. ACK and CANCEL reuse the INVITE's number and
        are not checked.
        """
        if request_dialog_id(request) != self.dialog_id:
            raise SipError(481, "Call/Transaction Does Not Exist", "not this dialog")
        method = request.method
        number = request.cseq[0]
        in_order = self.remote_seq is None or number >= self.remote_seq
        if method not in ("ACK", "CANCEL") and not in_order:
            raise SipError(500, "Server Internal Error", "CSeq lower than the last one")
        if method == "BYE":
            inp = DialogInput.REQ_BYE
        elif method in TARGET_REFRESH_METHODS:
            inp = DialogInput.REQ_TARGET_REFRESH
        else:
            inp = DialogInput.REQ_OTHER
        if not self._feed(inp, request):
            raise SipError(481, "Call/Transaction Does Not Exist", "dialog terminated")
        if method not in ("ACK", "CANCEL"):
            self.remote_seq = number

    def receive_response(self, response: Response) -> bool:
        """Applies a response to a request of ours in this dialog (12.2.1.2, 13.2.2.4).

        Returns False (and counts) when the response does not belong here or the table
        has no row for it; it never raises for network input.
        """
        if response_dialog_id(response) != self.dialog_id:
            self.protocol_errors += 1
            log.warning("response for dialog %s applied to %s", response.call_id, self.call_id)
            return False
        status = response.status
        method = response.cseq[1]
        inp = DialogInput.RESP_OTHER
        if status in (481, 408) or (method == "BYE" and status >= 200):
            inp = DialogInput.RESP_ENDS_DIALOG
        elif method == "INVITE":
            if status < 200:
                inp = DialogInput.RESP_1XX_INVITE
            elif status < 300:
                inp = DialogInput.RESP_2XX_INVITE
            else:
                inp = DialogInput.RESP_ERROR_INVITE
        elif method in TARGET_REFRESH_METHODS and 200 <= status < 300:
            inp = DialogInput.RESP_2XX_REFRESH
        return self._feed(inp, response)

    def _feed(self, inp: DialogInput, message: Request | Response | None) -> bool:
        row = DIALOG_TABLE.get((self.state, inp))
        if row is None:
            self.protocol_errors += 1
            log.warning(
                "dialog %s: unexpected %s in state %s", self.call_id, inp.value, self.state.value
            )
            return False
        actions, next_state = row
        for action in actions:
            if message is None:
                continue
            if action is DialogAction.REFRESH_TARGET:
                contacts = message.contacts
                if contacts and not contacts[0].wildcard:
                    self.remote_target = contacts[0].uri
            elif action is DialogAction.RECOMPUTE_ROUTES:
                self.route_set = tuple(reversed(message.addresses("Record-Route")))
        self.state = next_state
        return True
