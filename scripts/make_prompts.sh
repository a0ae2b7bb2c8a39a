#!/bin/sh
# Generates the shipped announcement prompts in media/prompts/ (run once; the WAVs are
# committed, so neither espeak-ng nor sox is needed at run time).
#
#   scripts/make_prompts.sh            # writes media/prompts/<language>_<name>.wav
#
# Each prompt: espeak-ng (voices de, en) -> sox: 8 kHz, mono, 16-bit PCM, band-limited
# to the telephone band, normalised to -3 dBFS peak, 150 ms of silence at both ends.
# The consent prompt names the default digits 1 (agree) and 2 (decline): a config with
# other digits needs its own announcement (see docs/consent.md).
# Output is deterministic for a given espeak-ng/sox version (no dither).
set -eu
command -v espeak-ng >/dev/null 2>&1 || { echo "espeak-ng not found" >&2; exit 1; }
command -v sox >/dev/null 2>&1 || { echo "sox not found" >&2; exit 1; }

OUT="$(cd "$(dirname "$0")/.." && pwd)/media/prompts"
mkdir -p "$OUT"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# say LANGUAGE NAME TEXT
say() {
    espeak-ng -v "$1" -s 160 -w "$TMP/raw.wav" "$3"
    sox -D "$TMP/raw.wav" -r 8000 -c 1 -b 16 -e signed-integer "$OUT/$1_$2.wav" \
        highpass 200 lowpass 3400 pad 0.15 0.15 gain -n -3
    echo "$OUT/$1_$2.wav: $(soxi -D "$OUT/$1_$2.wav") s"
}

say en consent "This call may be recorded for documentation. To agree, press 1. To decline, press 2."
say en announce "This call is recorded for documentation. By continuing the call, you agree to the recording."
say en thanks "Thank you."
say en goodbye "You declined the recording. Goodbye."
say en stopped "The recording has been stopped."
say en noanswer "Sorry, nobody is answering right now. Please call again later. Goodbye."

say de consent "Dieses Gespräch kann zu Dokumentationszwecken aufgezeichnet werden. Zum Zustimmen drücken Sie die 1, zum Ablehnen die 2."
say de announce "Dieses Gespräch wird zu Dokumentationszwecken aufgezeichnet. Wenn Sie das Gespräch fortsetzen, stimmen Sie der Aufzeichnung zu."
say de thanks "Vielen Dank."
say de goodbye "Sie haben die Aufzeichnung abgelehnt. Auf Wiederhören."
say de stopped "Die Aufzeichnung wurde beendet."
say de noanswer "Leider ist gerade niemand erreichbar. Bitte rufen Sie später wieder an. Auf Wiederhören."
