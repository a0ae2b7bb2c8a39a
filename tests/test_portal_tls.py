"""The portal over real TLS (GitHub issue 7): `python -m b2bua.portal` with tls_cert and
tls_key from the config, a certificate for 127.0.0.1 made at test time by our own CA,
reached with httpx that trusts only that CA.

The keys and the user come from the `b2bua` command itself (`keygen`, `users add`), as
an administrator would make them; the portal runs in its own process, as `b2bua serve`
starts it.
"""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.test_portal_support import PASSWORD, free_port, write_config
from tests.test_tls_support import issue, make_ca

REPO = Path(__file__).resolve().parent.parent
B2BUA = str(Path(sys.executable).with_name("b2bua"))

pytestmark = pytest.mark.timeout(60)


@dataclass(frozen=True)
class TlsPortal:
    base: str
    port: int
    ca: Path


def _wait_listening(port: int, proc: subprocess.Popen[bytes], limit_s: float = 20.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:  # bounded by the deadline
        if proc.poll() is not None:
            assert proc.stderr is not None
            pytest.fail(f"portal exited with {proc.returncode}: {proc.stderr.read()[-2000:]!r}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail("portal did not start listening in time")


def _trusting(ca: Path) -> ssl.SSLContext:
    """A client context that trusts only `ca` (httpx deprecates verify=<path>)."""
    return ssl.create_default_context(cafile=str(ca))


def _b2bua(*args: str, stdin: str | None = None) -> None:
    done = subprocess.run(  # our own command
        [B2BUA, *args],
        check=False,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)


@pytest.fixture
def tls_portal(tmp_path: Path) -> Iterator[TlsPortal]:
    ca = make_ca(tmp_path, "portal-ca")
    server = issue(ca, tmp_path, "portal", ("127.0.0.1",))
    identity = tmp_path / "recorder.key"
    _b2bua("keygen", str(identity))
    port = free_port()
    config = write_config(
        tmp_path, identity, listen=f"127.0.0.1:{port}", tls=(server.cert, server.key)
    )
    _b2bua("users", "add", "--config", str(config), "--role", "admin", "--password-stdin",
           "anna", stdin=PASSWORD + "\n")  # fmt: skip
    proc = subprocess.Popen(  # the portal in its own process, as serve runs it
        [sys.executable, "-m", "b2bua.portal", "--config", str(config)],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_listening(port, proc)
        yield TlsPortal(f"https://127.0.0.1:{port}", port, ca.path)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        assert proc.stderr is not None
        proc.stderr.close()


def test_login_over_tls_gives_secure_host_cookie_and_hsts(tls_portal: TlsPortal) -> None:
    with httpx.Client(
        base_url=tls_portal.base,
        verify=_trusting(tls_portal.ca),
        follow_redirects=False,
        timeout=10,
    ) as client:
        page = client.get("/login")
        assert page.status_code == 200
        assert page.url.scheme == "https"
        assert page.headers["strict-transport-security"].startswith("max-age=")
        # Every cookie set over TLS is Secure, the login form's token cookie too.
        assert all("Secure" in c for c in page.headers.get_list("set-cookie"))
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token is not None
        r = client.post(
            "/login", data={"csrf": token.group(1), "username": "anna", "password": PASSWORD}
        )
        assert r.status_code == 303, r.text
        assert "strict-transport-security" in r.headers
        session = [c for c in r.headers.get_list("set-cookie") if "b2bua_session=" in c]
        assert len(session) == 1, r.headers.get_list("set-cookie")
        assert all("Secure" in c for c in r.headers.get_list("set-cookie"))
        cookie = session[0]
        assert cookie.startswith("__Host-b2bua_session=")
        attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
        assert {"secure", "httponly", "path"} <= attrs and "domain" not in attrs
        # The cookie comes back over TLS: the list page opens for the logged-in user.
        listing = client.get("/recordings")
        assert listing.status_code == 200
        assert "anna" in listing.text
        token = re.search(r'name="csrf" value="([^"]+)"', listing.text)
        assert token is not None
        out = client.post("/logout", data={"csrf": token.group(1)})
        assert out.status_code == 303
        ended = out.headers.get_list("set-cookie")
        assert any(c.startswith("__Host-b2bua_session=") for c in ended)
        assert all("Secure" in c for c in ended)
        assert client.get("/recordings").status_code in (303, 401, 403)


def test_tls_port_refuses_plain_http(tls_portal: TlsPortal) -> None:
    plain = f"http://127.0.0.1:{tls_portal.port}/login"
    with pytest.raises(httpx.HTTPError):
        httpx.get(plain, timeout=5)


def test_certificate_from_another_ca_is_refused(tls_portal: TlsPortal, tmp_path: Path) -> None:
    other = make_ca(tmp_path, "other-ca")
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_portal.base}/login", verify=_trusting(other.path), timeout=5)


def test_unusable_certificate_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from b2bua.portal.cli import EXIT_CONFIG, main

    ca = make_ca(tmp_path, "portal-ca")
    one = issue(ca, tmp_path, "one", ("127.0.0.1",))
    two = issue(ca, tmp_path, "two", ("127.0.0.1",))
    identity = tmp_path / "recorder.key"
    _b2bua("keygen", str(identity))
    for cert, key, why in (
        (one.cert, two.key, "KEY_VALUES_MISMATCH"),  # a key that is not the cert's
        (tmp_path / "missing.crt", one.key, "No such file"),
    ):
        config = write_config(tmp_path, identity, listen=f"127.0.0.1:{free_port()}",
                              tls=(cert, key))  # fmt: skip
        assert main(["--config", str(config)]) == EXIT_CONFIG
        err = capsys.readouterr().err
        assert "portal.tls_cert" in err and why in err, err
