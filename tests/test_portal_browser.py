"""End to end in real headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

The portal runs as its own process (`python -m b2bua.portal --config ...`, as `b2bua
serve` starts it), with production argon2 parameters. An agent logs in, finds the
recording, plays it (the element reaches the playing state, its duration matches the
recording, seeking works through Range requests), downloads it, and a second agent of
another extension gets 404 for it. The browser asks for German (locale de-DE, so
Accept-Language de-DE), the pages come in German; then the switch in the header turns them
English. The recording comes from `tests.test_portal_support.recording_for_browser`.

Set B2BUA_PORTAL_SCREENSHOT=docs/portal-recording-de.png (the German page) and
B2BUA_PORTAL_SCREENSHOT_EN=docs/portal-recording.png (after the switch) to refresh the
screenshots in docs.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from b2bua.archive.catalog import Catalog
from b2bua.archive.users import add_user
from b2bua.config import load_config
from tests.test_portal_support import (
    PASSWORD,
    free_port,
    make_keys,
    recording_for_browser,
    write_config,
)

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update"]

pytestmark = pytest.mark.timeout(90)


def _wait_listening(port: int, proc: subprocess.Popen[bytes], limit_s: float = 20.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"portal exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail("portal did not start listening in time")


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[tuple[str, str, np.ndarray]]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium not found: apt-get install chromium (Debian package)")
    identity, recipient = make_keys(tmp_path)
    port = free_port()
    # The configured default is English: German pages below come from Accept-Language.
    config_path = write_config(tmp_path, identity, listen=f"127.0.0.1:{port}", language="en")
    config = load_config(config_path)
    with Catalog.open(config.recording.directory) as cat:
        add_user(cat, "anna", PASSWORD, "agent", ["1000"], actor="test", source="test")
        add_user(cat, "bert", PASSWORD, "agent", ["1001"], actor="test", source="test")
        rid, frames = recording_for_browser(tmp_path, cat, recipient)
    proc = subprocess.Popen(  # the portal in its own process, as `b2bua serve` runs it
        [sys.executable, "-m", "b2bua.portal", "--config", str(config_path)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_listening(port, proc)
        yield f"http://127.0.0.1:{port}", rid, frames
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        assert proc.stderr is not None
        proc.stderr.close()


def test_browser_login_play_download_and_agent_isolation(
    portal: tuple[str, str, np.ndarray], tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    base, rid, frames = portal
    expected_s = len(frames) / 8000
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                accept_downloads=True, viewport={"width": 1180, "height": 900}, locale="de-DE"
            )
            page = context.new_page()
            page.set_default_timeout(15_000)
            audio_statuses: list[int] = []
            page.on(
                "response",
                lambda r: audio_statuses.append(r.status) if "/audio.wav" in r.url else None,
            )

            page.goto(base + "/login")
            assert page.get_attribute("html", "lang") == "de"
            page.fill("input[name=username]", "anna")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(base + "/recordings")

            page.fill("input[name=number]", "+4930123456")
            page.click("form.filters button[type=submit]")
            page.wait_for_url("**/recordings?*number=*")
            page.click(f'a[data-id="{rid}"]')
            page.wait_for_url(f"{base}/recordings/{rid}")
            assert "WAV herunterladen" in page.inner_text("main")
            assert "Nachweis der Einwilligung" in page.inner_text("main")

            # Autoplay policy: a user gesture on the page first, then play().
            page.click("h1")
            page.evaluate("document.querySelector('audio').play()")
            page.wait_for_function(
                "() => { const a = document.querySelector('audio');"
                " return a && !a.paused && a.readyState >= 3 && a.currentTime > 0.1; }"
            )
            duration = page.evaluate("document.querySelector('audio').duration")
            assert abs(duration - expected_s) < 0.05
            # Seeking: the browser fetches the part it needs with a Range request.
            page.evaluate("document.querySelector('audio').currentTime = 2.0")
            page.wait_for_function(
                "() => { const a = document.querySelector('audio');"
                " return !a.seeking && a.currentTime >= 2.0; }"
            )
            assert page.evaluate("document.querySelector('img.timeline').naturalWidth") > 0
            assert 206 in audio_statuses  # served as ranges, not only whole
            page.evaluate("document.querySelector('audio').pause()")

            shot = tmp_path / "recording.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            target = os.environ.get("B2BUA_PORTAL_SCREENSHOT")
            if target:
                shutil.copyfile(shot, REPO / target)

            # The language switch in the header: a form post back to this page.
            page.click("header button[lang=en]")
            page.wait_for_function("document.documentElement.lang === 'en'")
            assert page.url == f"{base}/recordings/{rid}"
            assert "Consent evidence" in page.inner_text("main")
            target = os.environ.get("B2BUA_PORTAL_SCREENSHOT_EN")
            if target:
                page.screenshot(path=str(REPO / target), full_page=True)

            with page.expect_download() as info:
                page.click("text=Download WAV")
            download = info.value
            assert download.suggested_filename == f"recording-{rid}.wav"
            data = Path(download.path()).read_bytes()
            got, rate = sf.read(io.BytesIO(data), dtype="int16", always_2d=True)
            assert rate == 8000 and np.array_equal(got, frames)

            # Another extension's agent: not in the list, 404 on the page.
            other = browser.new_context().new_page()
            other.set_default_timeout(15_000)
            other.goto(base + "/login")
            other.fill("input[name=username]", "bert")
            other.fill("input[name=password]", PASSWORD)
            other.click("button[type=submit]")
            other.wait_for_url(base + "/recordings")
            assert rid not in other.content()
            response = other.goto(f"{base}/recordings/{rid}")
            assert response is not None and response.status == 404
            response = other.goto(f"{base}/recordings/{rid}/audio.wav")
            assert response is not None and response.status == 404
        finally:
            browser.close()
