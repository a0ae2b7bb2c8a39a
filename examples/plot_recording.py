"""Decrypt a recording and plot both channels as a waveform PNG.

    python examples/plot_recording.py --identity recorder.key \
        recordings/01J....wav.age call.png

Left channel (top): the external party; right channel (bottom): the office. Needs
matplotlib (pip install matplotlib). The WAV is decrypted into a temporary directory and
removed afterwards; only the picture stays. Exit status as `b2bua decrypt` (0 complete,
3 truncated but plotted, 1 tampered or wrong key).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile

from b2bua.archive.keys import EXIT_OK, EXIT_TRUNCATED, decrypt_file


def plot(wav: Path, png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    data, rate = soundfile.read(wav, dtype="int16", always_2d=True)
    t = np.arange(len(data)) / rate
    fig, axes = plt.subplots(2, 1, sharex=True, figsize=(10, 4.5))
    for ax, channel, label in zip(
        axes, (0, 1), ("external party (left)", "office (right)"), strict=True
    ):
        ax.plot(t, data[:, channel] / 32768.0, linewidth=0.4)
        ax.set_ylim(-1, 1)
        ax.set_ylabel(label, fontsize=8)
    axes[-1].set_xlabel("seconds")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identity", required=True, help="age identity (recorder.key)")
    parser.add_argument("recording", help="the .wav.age file")
    parser.add_argument("png", help="the picture to write")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        wav = Path(work) / "call.wav"
        code = decrypt_file(Path(args.identity), Path(args.recording), wav)
        if code not in (EXIT_OK, EXIT_TRUNCATED):
            return code
        plot(wav, Path(args.png), Path(args.recording).name)
    print(f"wrote {args.png}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
