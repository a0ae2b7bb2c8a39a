"""The age v1 file format (https://age-encryption.org/v1, C2SP age.md), X25519 recipients only.

Theory of operation. An age file is a textual header followed by a binary payload:

    age-encryption.org/v1
    -> X25519 <ephemeral share, base64>
    <file key wrapped for one recipient, base64>
    ... one stanza per recipient ...
    --- <HMAC-SHA-256 of the header up to and including "---", base64>
    <16-byte payload nonce><chunk 0><chunk 1>...<final chunk>

A fresh 16-byte file key is wrapped once per recipient (X25519 with an ephemeral key,
HKDF-SHA-256, ChaCha20-Poly1305 with a zero nonce). The payload key is
HKDF-SHA-256(file key, salt = payload nonce, info = "payload"); the plaintext is cut in
64 KiB chunks, each sealed with ChaCha20-Poly1305 under the nonce
`11-byte big-endian counter || last flag (0x01 on the final chunk)`. The final chunk may be
short but is empty only when the whole payload is empty.

This module is pure: it turns keys and plaintext into bytes and reads from a file object
that the caller opened. The encryptor needs only recipients (public keys), never an
identity, so the recording process can not decrypt what it wrote.

Decryption verdicts (the exceptions below):
- AgeWrongKey: no stanza opens with the identities given (a corrupted stanza looks the same).
- AgeTampered: malformed header, header MAC mismatch, a chunk that does not authenticate
  while more data follows it, a full-length last chunk that authenticates in neither role,
  a final chunk followed by more data, or a file whose only chunk fails.
- AgeTruncated: the payload ends without a final chunk after at least one good chunk
  (or right after the header). A short trailing piece that does not authenticate after
  good chunks counts as a cut: a crash can leave a half-written chunk, and dropping
  unauthenticated bytes gives the same guarantee as a cut (only authenticated bytes are
  ever returned).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import io
import os
from collections.abc import Iterator, Sequence
from hashlib import sha256
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "CHUNK_SIZE",
    "AgeDecryptor",
    "AgeEncryptor",
    "AgeError",
    "AgeKeyError",
    "AgeTampered",
    "AgeTruncated",
    "AgeWrongKey",
    "decrypt_bytes",
    "decrypt_stream",
    "encrypt_bytes",
    "generate_identity",
    "parse_identities",
    "parse_recipients",
    "read_header",
    "recipient_from_identity",
]

CHUNK_SIZE = 64 * 1024  # plaintext bytes per STREAM chunk (age.md, "Payload")
TAG_SIZE = 16  # Poly1305 tag
ENCRYPTED_CHUNK_SIZE = CHUNK_SIZE + TAG_SIZE
NONCE_SIZE = 16  # payload nonce after the header
FILE_KEY_SIZE = 16

VERSION_LINE = b"age-encryption.org/v1\n"
X25519_INFO = b"age-encryption.org/v1/X25519"
RECIPIENT_HRP = "age"
IDENTITY_HRP = "age-secret-key-"  # written upper case; checksum over lower case (age.md)
MAX_HEADER_BYTES = 1 << 20  # a bound on what we read before the MAC: 1 MiB of stanzas
MAX_STANZAS = 1000
_STANZA_COLUMNS = 64
_MAX_COUNTER = 1 << 88  # 11-byte counter


class AgeError(Exception):
    """Anything that stops an age file from being read or written."""


class AgeKeyError(AgeError, ValueError):
    """A recipient or identity string (or file line) that is not a valid X25519 key."""


class AgeWrongKey(AgeError):  # noqa: N818 - names fixed by the interface brief
    """None of the identities opens any recipient stanza of the file."""


class AgeTampered(AgeError):  # noqa: N818
    """The file is malformed or fails authentication: nothing of it can be trusted."""


class AgeTruncated(AgeError):  # noqa: N818
    """The payload ended without a final chunk; everything before the cut is authentic.

    `recovered_bytes` counts the authenticated plaintext. `plaintext` holds it when the
    whole file was decrypted in memory (decrypt_bytes); decrypt_stream has already yielded
    it chunk by chunk, so there it is empty.
    """

    def __init__(self, recovered_bytes: int, plaintext: bytes = b"") -> None:
        super().__init__(
            f"age payload truncated: no final chunk; {recovered_bytes} bytes recovered"
        )
        self.recovered_bytes = recovered_bytes
        self.plaintext = plaintext


# --- Bech32 (BIP 173, https://github.com/bitcoin/bips/blob/master/bip-0173.mediawiki) ---
# Written from the BIP's description; age drops the 90-character length limit.

_BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _bech32_polymod(values: Sequence[int]) -> int:
    chk = 1
    for value in values:
        top = chk >> 25
        chk = ((chk & 0x1FFFFFF) << 5) ^ value
        for i, gen in enumerate(_BECH32_GENERATOR):
            if (top >> i) & 1:
                chk ^= gen
    return chk


def _bech32_hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: Sequence[int], from_bits: int, to_bits: int, pad: bool) -> list[int]:
    """Regroup bits (BIP 173 reference algorithm); strict about padding when decoding."""
    acc = 0
    bits = 0
    out: list[int] = []
    maxv = (1 << to_bits) - 1
    for value in data:
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (to_bits - bits)) & maxv)
    elif bits >= from_bits or ((acc << (to_bits - bits)) & maxv):
        raise AgeKeyError("bech32: non-zero or excess padding")
    return out


def bech32_encode(hrp: str, data: bytes) -> str:
    """Encode bytes with a lower-case human-readable part (checksum constant 1, BIP 173)."""
    words = _convert_bits(data, 8, 5, pad=True)
    polymod = _bech32_polymod([*_bech32_hrp_expand(hrp), *words, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_BECH32_CHARSET[w] for w in words + checksum)


def bech32_decode(text: str) -> tuple[str, bytes]:
    """Decode a Bech32 string to (lower-case hrp, bytes); raises AgeKeyError."""
    if text.lower() != text and text.upper() != text:
        raise AgeKeyError("bech32: mixed case")
    if any(ord(c) < 33 or ord(c) > 126 for c in text):
        raise AgeKeyError("bech32: invalid character")
    lower = text.lower()
    sep = lower.rfind("1")
    if sep < 1 or sep + 7 > len(lower):
        raise AgeKeyError("bech32: separator missing or data too short")
    hrp = lower[:sep]
    try:
        words = [_BECH32_CHARSET.index(c) for c in lower[sep + 1 :]]
    except ValueError:
        raise AgeKeyError("bech32: invalid data character") from None
    if _bech32_polymod([*_bech32_hrp_expand(hrp), *words]) != 1:
        raise AgeKeyError("bech32: bad checksum")
    return hrp, bytes(_convert_bits(words[:-6], 5, 8, pad=False))


# --- Keys ---


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _raw_private(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )


def _decode_recipient(recipient: str) -> bytes:
    hrp, data = bech32_decode(recipient)
    if hrp != RECIPIENT_HRP or len(data) != 32 or recipient != recipient.lower():
        raise AgeKeyError(f"not an X25519 age recipient (age1...): {recipient[:12]}...")
    return data


def _decode_identity(identity: str) -> X25519PrivateKey:
    try:
        hrp, data = bech32_decode(identity)
    except AgeKeyError as exc:
        # Never echo a secret key into an error message.
        raise AgeKeyError(f"not an age identity: {exc}") from None
    if hrp != IDENTITY_HRP or len(data) != 32 or identity != identity.upper():
        raise AgeKeyError("not an X25519 age identity (AGE-SECRET-KEY-1...)")
    return X25519PrivateKey.from_private_bytes(data)


def generate_identity() -> tuple[str, str]:
    """A new X25519 key pair: (AGE-SECRET-KEY-1..., age1...)."""
    key = X25519PrivateKey.generate()
    identity = bech32_encode(IDENTITY_HRP, _raw_private(key)).upper()
    return identity, bech32_encode(RECIPIENT_HRP, _raw_public(key.public_key()))


def recipient_from_identity(identity: str) -> str:
    """The age1... recipient that belongs to an AGE-SECRET-KEY-1... identity."""
    key = _decode_identity(identity)
    return bech32_encode(RECIPIENT_HRP, _raw_public(key.public_key()))


def _key_lines(text: str) -> Iterator[tuple[int, str]]:
    """Non-empty, non-comment lines with their 1-based numbers (age's file syntax)."""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            yield number, line


def parse_recipients(text: str) -> list[str]:
    """Recipients from a recipients file: one age1... per line, '#' comments skipped."""
    out: list[str] = []
    for number, line in _key_lines(text):
        try:
            _decode_recipient(line)
        except AgeKeyError as exc:
            raise AgeKeyError(f"line {number}: {exc}") from None
        out.append(line)
    if not out:
        raise AgeKeyError("no recipients found")
    return out


def parse_identities(text: str) -> list[str]:
    """Identities from an identity file (as age-keygen writes), '#' comments skipped."""
    out: list[str] = []
    for number, line in _key_lines(text):
        try:
            _decode_identity(line)
        except AgeKeyError as exc:
            raise AgeKeyError(f"line {number}: {exc}") from None
        out.append(line)
    if not out:
        raise AgeKeyError("no identities found")
    return out


# --- Primitives ---


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def _b64encode(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def _b64decode(text: bytes) -> bytes:
    """Strict unpadded base64: non-canonical encodings are rejected (age.md)."""
    if text.endswith(b"=") or len(text) % 4 == 1:
        raise AgeTampered("header: invalid base64")
    try:
        data = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise AgeTampered("header: invalid base64") from None
    if _b64encode(data) != text:
        raise AgeTampered("header: non-canonical base64")
    return data


def _stream_nonce(counter: int, last: bool) -> bytes:
    if counter >= _MAX_COUNTER:
        raise AgeError("age payload too long: chunk counter overflow")
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def _wrap_for(recipient: str, file_key: bytes) -> bytes:
    """One X25519 recipient stanza (age.md, "X25519 recipient stanza")."""
    their_public = _decode_recipient(recipient)
    ephemeral = X25519PrivateKey.generate()
    share = _raw_public(ephemeral.public_key())
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(their_public))
    wrap_key = _hkdf(shared, share + their_public, X25519_INFO)
    body = ChaCha20Poly1305(wrap_key).encrypt(bytes(12), file_key, None)
    lines = [b"-> X25519 " + _b64encode(share)]
    encoded = _b64encode(body)
    # Body wrapped at 64 columns; the last line is always shorter than 64 (may be empty).
    lines.extend(encoded[i : i + _STANZA_COLUMNS] for i in range(0, len(encoded), 64))
    if len(encoded) % _STANZA_COLUMNS == 0:
        lines.append(b"")
    return b"\n".join(lines) + b"\n"


class AgeEncryptor:
    """Produces one age file as bytes: header() first, then encrypt_chunk() per 64 KiB.

    Only recipients are needed. encrypt_chunk takes exactly CHUNK_SIZE bytes for every
    chunk but the last; the last is 1..CHUNK_SIZE bytes, or empty only as the sole chunk.
    """

    def __init__(self, recipients: Sequence[str]) -> None:
        if not recipients:
            raise AgeKeyError("at least one recipient is needed")
        self._file_key = os.urandom(FILE_KEY_SIZE)
        self._nonce = os.urandom(NONCE_SIZE)
        stanzas = b"".join(_wrap_for(r, self._file_key) for r in recipients)
        mac_input = VERSION_LINE + stanzas + b"---"
        mac_key = _hkdf(self._file_key, b"", b"header")
        mac = hmac.new(mac_key, mac_input, sha256).digest()
        self._header = mac_input + b" " + _b64encode(mac) + b"\n" + self._nonce
        self._aead = ChaCha20Poly1305(_hkdf(self._file_key, self._nonce, b"payload"))
        self._counter = 0
        self._finished = False

    def header(self) -> bytes:
        """The textual header and the 16-byte payload nonce: everything before chunk 0."""
        return self._header

    @property
    def finished(self) -> bool:
        return self._finished

    def encrypt_chunk(self, data: bytes, last: bool) -> bytes:
        if self._finished:
            raise AgeError("the final chunk was already written")
        if last:
            if not data and self._counter:
                raise AgeError("the final chunk must not be empty unless the payload is")
            if len(data) > CHUNK_SIZE:
                raise AgeError("chunk larger than 64 KiB")
        elif len(data) != CHUNK_SIZE:
            raise AgeError("every chunk but the last must be exactly 64 KiB")
        sealed = self._aead.encrypt(_stream_nonce(self._counter, last), bytes(data), None)
        self._counter += 1
        self._finished = last
        return sealed


def encrypt_bytes(plaintext: bytes, recipients: Sequence[str]) -> bytes:
    """A whole age file in memory (tests and small files)."""
    enc = AgeEncryptor(recipients)
    parts = [enc.header()]
    starts = range(0, max(len(plaintext), 1), CHUNK_SIZE)
    for start in starts:
        last = start + CHUNK_SIZE >= len(plaintext)
        parts.append(enc.encrypt_chunk(plaintext[start : start + CHUNK_SIZE], last))
    return b"".join(parts)


# --- Decryption ---


def read_header(f: BinaryIO) -> bytes:
    """Read the textual header (through the MAC line) from f, bounded in size."""
    lines: list[bytes] = []
    total = 0
    while True:
        line = f.readline(MAX_HEADER_BYTES - total + 1)
        total += len(line)
        if not line.endswith(b"\n"):
            raise AgeTampered("header: unexpected end or header too long")
        lines.append(line)
        if line.startswith(b"---"):
            return b"".join(lines)
        if len(lines) > MAX_STANZAS * 4:
            raise AgeTampered("header: too many lines")


def _parse_header(header: bytes) -> tuple[list[tuple[list[bytes], bytes]], bytes, bytes]:
    """Split a header into stanzas [(args, body)], the MAC input and the MAC."""
    if not header.startswith(VERSION_LINE):
        raise AgeTampered("not an age v1 file (bad version line)")
    lines = header[len(VERSION_LINE) :].split(b"\n")
    if lines[-1] != b"":
        raise AgeTampered("header: does not end with a newline")
    lines.pop()
    stanzas: list[tuple[list[bytes], bytes]] = []
    i = 0
    while i < len(lines) and lines[i].startswith(b"-> "):
        args = lines[i][3:].split(b" ")
        if any(not a or any(c < 33 or c > 126 for c in a) for a in args):
            raise AgeTampered("header: bad stanza argument")
        i += 1
        body_lines: list[bytes] = []
        while True:
            if i >= len(lines):
                raise AgeTampered("header: stanza body not terminated")
            body_lines.append(lines[i])
            i += 1
            if len(body_lines[-1]) > _STANZA_COLUMNS:
                raise AgeTampered("header: stanza line too long")
            if len(body_lines[-1]) < _STANZA_COLUMNS:
                break
        stanzas.append((args, _b64decode(b"".join(body_lines))))
        if len(stanzas) > MAX_STANZAS:
            raise AgeTampered("header: too many stanzas")
    if not stanzas:
        raise AgeTampered("header: no recipient stanza")
    if i != len(lines) - 1 or not lines[i].startswith(b"--- "):
        raise AgeTampered("header: missing or misplaced MAC line")
    mac_text = lines[i][4:]
    if len(mac_text) != 43:
        raise AgeTampered("header: bad MAC length")
    mac = _b64decode(mac_text)
    mac_input = header[: len(header) - len(lines[i]) - 1 + 3]
    return stanzas, mac_input, mac


def _unwrap(stanza: tuple[list[bytes], bytes], identity: X25519PrivateKey) -> bytes | None:
    args, body = stanza
    if args[0] != b"X25519":
        return None  # other recipient types are ignored (age.md)
    if len(args) != 2:
        raise AgeTampered("X25519 stanza: wrong number of arguments")
    share = _b64decode(args[1])
    if len(share) != 32 or len(body) != 32:
        raise AgeTampered("X25519 stanza: wrong share or body length")
    try:
        shared = identity.exchange(X25519PublicKey.from_public_bytes(share))
    except ValueError:
        raise AgeTampered("X25519 stanza: low-order ephemeral share") from None
    if shared == bytes(32):
        raise AgeTampered("X25519 stanza: all-zero shared secret")
    own = _raw_public(identity.public_key())
    wrap_key = _hkdf(shared, share + own, X25519_INFO)
    try:
        return ChaCha20Poly1305(wrap_key).decrypt(bytes(12), body, None)
    except InvalidTag:
        return None  # addressed to someone else


class AgeDecryptor:
    """Opens a header with identities, then decrypts chunks (sans-I/O core).

    `AgeDecryptor(header, nonce, identities)` raises AgeWrongKey or AgeTampered;
    `decrypt_chunk(sealed, last)` returns plaintext or raises AgeTampered.
    """

    def __init__(self, header: bytes, nonce: bytes, identities: Sequence[str]) -> None:
        stanzas, mac_input, mac = _parse_header(header)
        keys = [_decode_identity(i) for i in identities]
        file_key: bytes | None = None
        for stanza in stanzas:
            for key in keys:
                file_key = _unwrap(stanza, key)
                if file_key is not None:
                    break
            if file_key is not None:
                break
        if file_key is None:
            raise AgeWrongKey("no identity matches any recipient stanza of this file")
        if len(file_key) != FILE_KEY_SIZE:
            raise AgeTampered("wrapped file key has the wrong length")
        expected = hmac.new(_hkdf(file_key, b"", b"header"), mac_input, sha256).digest()
        if not hmac.compare_digest(expected, mac):
            raise AgeTampered("header MAC mismatch")
        if len(nonce) != NONCE_SIZE:
            raise AgeTampered("payload nonce missing")
        self._aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
        self.counter = 0

    def try_chunk(self, sealed: bytes, last: bool) -> bytes | None:
        """Plaintext of the next chunk in the given role, or None; advances on success."""
        if len(sealed) < TAG_SIZE or len(sealed) > ENCRYPTED_CHUNK_SIZE:
            return None
        try:
            plain = self._aead.decrypt(_stream_nonce(self.counter, last), sealed, None)
        except InvalidTag:
            return None
        self.counter += 1
        return plain

    def decrypt_chunk(self, sealed: bytes, last: bool) -> bytes:
        plain = self.try_chunk(sealed, last)
        if plain is None:
            raise AgeTampered(f"chunk {self.counter} fails authentication")
        if last and not plain and self.counter > 1:
            raise AgeTampered("empty final chunk after other chunks")
        return plain


def _read_full(f: BinaryIO, size: int) -> bytes:
    """Read up to size bytes, looping over short reads (pipes, raw files)."""
    parts: list[bytes] = []
    remaining = size
    while remaining > 0:
        piece = f.read(remaining)
        if not piece:
            break
        parts.append(piece)
        remaining -= len(piece)
    return b"".join(parts)


def decrypt_stream(f: BinaryIO, identities: Sequence[str]) -> Iterator[bytes]:
    """Yield authenticated plaintext chunk by chunk from the age file f.

    Raises (lazily, on iteration) AgeWrongKey, AgeTampered, or, after yielding every
    authentic chunk of a cut file, AgeTruncated. Returns normally only for a complete file.
    """
    header = read_header(f)
    nonce = _read_full(f, NONCE_SIZE)
    if len(nonce) < NONCE_SIZE:
        # Cut right after the header: authenticate the header, then report the cut.
        AgeDecryptor(header, bytes(NONCE_SIZE), identities)
        raise AgeTruncated(0)
    dec = AgeDecryptor(header, nonce, identities)
    recovered = 0
    current = _read_full(f, ENCRYPTED_CHUNK_SIZE)
    if not current:
        raise AgeTruncated(0)
    while True:
        following = _read_full(f, ENCRYPTED_CHUNK_SIZE)
        if following:
            plain = dec.try_chunk(current, last=False)
            if plain is None:
                raise AgeTampered(f"chunk {dec.counter} fails authentication")
        else:
            plain = dec.try_chunk(current, last=True)
            if plain is not None:
                if not plain and dec.counter > 1:
                    raise AgeTampered("empty final chunk after other chunks")
                yield plain
                return
            good_before = dec.counter > 0
            plain = dec.try_chunk(current, last=False)
            if plain is not None:
                yield plain
                raise AgeTruncated(recovered + len(plain))
            if good_before and len(current) < ENCRYPTED_CHUNK_SIZE:
                raise AgeTruncated(recovered)
            raise AgeTampered(f"chunk {dec.counter} fails authentication")
        yield plain
        recovered += len(plain)
        current = following


def decrypt_bytes(data: bytes, identities: Sequence[str]) -> bytes:
    """A whole age file in memory; AgeTruncated carries the recovered plaintext."""
    parts: list[bytes] = []
    try:
        for piece in decrypt_stream(io.BytesIO(data), identities):
            parts.append(piece)
    except AgeTruncated as exc:
        raise AgeTruncated(exc.recovered_bytes, b"".join(parts)) from None
    return b"".join(parts)
