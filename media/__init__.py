"""Pure signal processing: codecs, mixer, DTMF, prompts, encrypted writer."""
