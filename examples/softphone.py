"""A pyVoIP softphone: registers as an extension, answers calls, says something, listens.

    python examples/softphone.py --server 127.0.0.1:5060 --number 1000 --password secret \
        --ip 127.0.0.3 --seconds 30 [--calls 1] [--wav hello.wav]

It registers (digest auth), answers every incoming call, plays the WAV (or a 440 Hz tone)
and reports how much audio it heard. It exits after `--calls` calls have ended or after
`--seconds`, deregistering on the way out; exit 0 when every answered call heard audio.
pyVoIP is GPLv3 and in the `demo` extra: pip install -e '.[demo]'.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)

from b2bua.demo import DemoPhone, free_udp_port, rms, stop_phone, to_pyvoip  # noqa: E402


def audio(wav: str | None) -> bytes:
    if wav:
        from media.announcement import load_prompt

        return to_pyvoip(np.asarray(load_prompt(Path(wav)).samples))
    t = np.arange(3 * 8000) / 8000
    return to_pyvoip((np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16))


class Answerer:
    """Hands each incoming call to a DemoPhone (answer, speak, listen until it ends)."""

    def __init__(self, speech: bytes) -> None:
        self.speech = speech
        self.phones: list[DemoPhone] = []
        self.lock = threading.Lock()

    def __call__(self, call: object) -> None:
        phone = DemoPhone(self.speech)
        with self.lock:
            self.phones.append(phone)
        print(f"incoming call #{len(self.phones)}: answering", flush=True)
        phone(call)  # returns when the call has ended (bounded)
        heard = phone.heard_audio()
        print(f"call ended: heard {len(heard) / 8000:.1f} s, level {rms(heard):.0f}", flush=True)

    def ended(self) -> int:
        with self.lock:
            return sum(p.ended.is_set() for p in self.phones)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True, help="the B2BUA's SIP address host:port")
    parser.add_argument("--number", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--ip", default="127.0.0.3", help="this phone's address")
    parser.add_argument("--seconds", type=float, default=60.0, help="give up after this")
    parser.add_argument("--calls", type=int, default=1, help="exit after this many calls")
    parser.add_argument("--wav", help="what to say when answering (default: a tone)")
    args = parser.parse_args()
    try:
        from pyVoIP.VoIP import PhoneStatus, VoIPPhone
    except ImportError:
        print("pyVoIP is missing: pip install -e '.[demo]'", file=sys.stderr)
        return 1
    host, port = args.server.rsplit(":", 1)
    answerer = Answerer(audio(args.wav))
    rtp = free_udp_port(args.ip)
    phone = VoIPPhone(
        host,
        int(port),
        args.number,
        args.password,
        callCallback=answerer,
        myIP=args.ip,
        sipPort=free_udp_port(args.ip),
        rtpPortLow=rtp,
        rtpPortHigh=rtp,
    )
    phone.start()  # blocks until the REGISTER is answered
    try:
        if phone.get_status() != PhoneStatus.REGISTERED:
            print(f"registration failed: {phone.get_status()}", file=sys.stderr)
            return 1
        print(f"registered {args.number} from {args.ip} at {args.server}", flush=True)
        deadline = time.monotonic() + args.seconds
        while answerer.ended() < args.calls and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop_phone(phone)
    heard = [rms(p.heard_audio()) > 100 for p in answerer.phones if p.ended.is_set()]
    print(f"{len(heard)} call(s), {sum(heard)} with audio; deregistered", flush=True)
    return 0 if len(heard) >= args.calls and all(heard) else 1


if __name__ == "__main__":
    sys.exit(main())
