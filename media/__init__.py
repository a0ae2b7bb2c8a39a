"""Pure signal processing: codecs, mixer, DTMF, prompts, encrypted writer (imports nothing of ours)."""
