"""age v1 format: interoperability with the real `age`/`age-keygen` tools and failure modes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from media.agefile import (
    CHUNK_SIZE,
    ENCRYPTED_CHUNK_SIZE,
    AgeEncryptor,
    AgeError,
    AgeKeyError,
    AgeTampered,
    AgeTruncated,
    AgeWrongKey,
    bech32_decode,
    bech32_encode,
    decrypt_bytes,
    encrypt_bytes,
    generate_identity,
    parse_identities,
    parse_recipients,
    recipient_from_identity,
)

BOUNDARY_SIZES = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE]


def _payload(n: int, seed: int = 1) -> bytes:
    # Cheap non-repeating bytes (a repeated pattern would hide chunk mix-ups).
    out = bytearray()
    x = seed
    block = 0
    while len(out) < n:
        x = (x * 6364136223846793005 + 1442695040888963407 + block) % (1 << 64)
        out += x.to_bytes(8, "little")
        block += 1
    return bytes(out[:n])


def _age_keygen(path: Path) -> tuple[str, str]:
    subprocess.run(["age-keygen", "-o", str(path)], check=True, capture_output=True, timeout=10)
    text = path.read_text()
    public = next(
        line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("# public key:")
    )
    return parse_identities(text)[0], public


def _header_len(data: bytes) -> int:
    """Bytes before the payload nonce: through the MAC line."""
    mac = data.index(b"\n---")
    return data.index(b"\n", mac + 1) + 1


# --- keys ---


@pytest.mark.agetool
def test_recipient_matches_age_keygen_y(tmp_path: Path) -> None:
    ids = [generate_identity() for _ in range(3)]
    key_file = tmp_path / "ids.txt"
    key_file.write_text("".join(f"{i}\n" for i, _ in ids))
    out = subprocess.run(
        ["age-keygen", "-y", str(key_file)], check=True, capture_output=True, timeout=10
    )
    assert out.stdout.decode().split() == [r for _, r in ids]
    assert [recipient_from_identity(i) for i, _ in ids] == [r for _, r in ids]


@pytest.mark.agetool
def test_age_keygen_identity_is_parsed(tmp_path: Path) -> None:
    identity, public = _age_keygen(tmp_path / "k.txt")
    assert identity.startswith("AGE-SECRET-KEY-1")
    assert recipient_from_identity(identity) == public


def test_bech32_round_trip_and_checksum() -> None:
    data = bytes(range(32))
    text = bech32_encode("age", data)
    assert bech32_decode(text) == ("age", data)
    assert bech32_decode(text.upper()) == ("age", data)
    broken = text[:-1] + ("q" if text[-1] != "q" else "p")
    with pytest.raises(AgeKeyError, match="checksum"):
        bech32_decode(broken)
    with pytest.raises(AgeKeyError, match="mixed case"):
        bech32_decode(text[:5] + text[5:].upper())


def test_bech32_bip173_valid_vector() -> None:
    # BIP 173 "Test vectors", valid Bech32 string (data part empty).
    assert bech32_decode("A12UEL5L") == ("a", b"")
    assert bech32_encode("a", b"") == "a12uel5l"


def test_parse_files_skip_comments_and_name_bad_lines() -> None:
    (i1, r1), (i2, r2) = generate_identity(), generate_identity()
    assert parse_recipients(f"# office\n{r1}\n\n  # escrow\n{r2}\n") == [r1, r2]
    assert parse_identities(f"# created: x\n# public key: {r1}\n{i1}\n{i2}\n") == [i1, i2]
    with pytest.raises(AgeKeyError, match="line 3"):
        parse_recipients(f"# a\n{r1}\nage1notakey\n")
    with pytest.raises(AgeKeyError, match="line 2"):
        parse_identities(f"{i1}\n{r1}\n")
    with pytest.raises(AgeKeyError, match="no recipients"):
        parse_recipients("# nothing\n")
    # An identity never passes as a recipient, so the writer can not be handed one.
    with pytest.raises(AgeKeyError):
        AgeEncryptor([i1])


def test_secret_key_not_echoed_in_errors() -> None:
    identity, _ = generate_identity()
    damaged = identity[:-1] + ("Q" if identity[-1] != "Q" else "P")
    with pytest.raises(AgeKeyError) as info:
        parse_identities(damaged)
    assert damaged[16:40] not in str(info.value)


# --- interoperability ---


@pytest.mark.agetool
@pytest.mark.parametrize("size", [*BOUNDARY_SIZES, 3 * 1024 * 1024 + 7])
def test_age_tool_decrypts_our_files(tmp_path: Path, size: int) -> None:
    identity, recipient = generate_identity()
    key = tmp_path / "key.txt"
    key.write_text(identity + "\n")
    plain = _payload(size)
    enc = tmp_path / "f.age"
    enc.write_bytes(encrypt_bytes(plain, [recipient]))
    out = subprocess.run(
        ["age", "-d", "-i", str(key), str(enc)], check=True, capture_output=True, timeout=30
    )
    assert out.stdout == plain


@pytest.mark.agetool
@pytest.mark.parametrize("size", [*BOUNDARY_SIZES, 2 * 1024 * 1024 + 3])
def test_we_decrypt_age_tool_files(tmp_path: Path, size: int) -> None:
    identity, recipient = _age_keygen(tmp_path / "k.txt")
    plain = _payload(size, seed=size)
    out = subprocess.run(
        ["age", "-r", recipient], input=plain, check=True, capture_output=True, timeout=30
    )
    assert decrypt_bytes(out.stdout, [identity]) == plain


@pytest.mark.agetool
def test_two_recipients_file_both_directions(tmp_path: Path) -> None:
    office_id, office = _age_keygen(tmp_path / "office.txt")
    escrow_id, escrow = _age_keygen(tmp_path / "escrow.txt")
    rfile = tmp_path / "recipients.txt"
    rfile.write_text(f"# office key\n{office}\n\n# escrow key\n{escrow}\n")
    plain = _payload(CHUNK_SIZE * 3 + 5)
    # age -R with two recipients -> our decryptor, with either identity.
    by_age = subprocess.run(
        ["age", "-R", str(rfile)], input=plain, check=True, capture_output=True, timeout=30
    ).stdout
    assert decrypt_bytes(by_age, [office_id]) == plain
    assert decrypt_bytes(by_age, [escrow_id]) == plain
    # Ours with the same recipients file -> age -d with either identity file.
    ours = tmp_path / "ours.age"
    ours.write_bytes(encrypt_bytes(plain, parse_recipients(rfile.read_text())))
    for key in ("office.txt", "escrow.txt"):
        out = subprocess.run(
            ["age", "-d", "-i", str(tmp_path / key), str(ours)],
            check=True,
            capture_output=True,
            timeout=30,
        )
        assert out.stdout == plain


def test_own_round_trip_with_identity_list_order() -> None:
    (i1, r1), (i2, _) = generate_identity(), generate_identity()
    plain = _payload(100_000)
    data = encrypt_bytes(plain, [r1])
    assert decrypt_bytes(data, [i2, i1]) == plain  # key rotation: old identities kept


# --- failures ---


def test_wrong_identity() -> None:
    (_, r1), (i2, _) = generate_identity(), generate_identity()
    with pytest.raises(AgeWrongKey):
        decrypt_bytes(encrypt_bytes(b"secret", [r1]), [i2])


@pytest.mark.agetool
def test_wrong_identity_on_age_file(tmp_path: Path) -> None:
    _, recipient = _age_keygen(tmp_path / "k.txt")
    other, _ = generate_identity()
    data = subprocess.run(
        ["age", "-r", recipient], input=b"x" * 10, check=True, capture_output=True, timeout=10
    ).stdout
    with pytest.raises(AgeWrongKey):
        decrypt_bytes(data, [other])


@pytest.fixture(scope="module")
def three_and_a_half() -> tuple[str, bytes, bytes]:
    identity, recipient = generate_identity()
    plain = _payload(3 * CHUNK_SIZE + 1000)
    return identity, plain, encrypt_bytes(plain, [recipient])


@pytest.mark.parametrize("whole_chunks", [1, 2, 3])
def test_cut_at_chunk_boundary_is_truncated(
    three_and_a_half: tuple[str, bytes, bytes], whole_chunks: int
) -> None:
    identity, plain, data = three_and_a_half
    start = _header_len(data) + 16
    cut = data[: start + whole_chunks * ENCRYPTED_CHUNK_SIZE]
    with pytest.raises(AgeTruncated) as info:
        decrypt_bytes(cut, [identity])
    assert info.value.plaintext == plain[: whole_chunks * CHUNK_SIZE]
    assert info.value.recovered_bytes == whole_chunks * CHUNK_SIZE


@pytest.mark.parametrize("extra", [1, 15, 16, 17, 30_000, ENCRYPTED_CHUNK_SIZE - 1])
def test_cut_mid_chunk_keeps_whole_chunks(
    three_and_a_half: tuple[str, bytes, bytes], extra: int
) -> None:
    identity, plain, data = three_and_a_half
    start = _header_len(data) + 16
    cut = data[: start + 2 * ENCRYPTED_CHUNK_SIZE + extra]
    with pytest.raises(AgeTruncated) as info:
        decrypt_bytes(cut, [identity])
    assert info.value.plaintext == plain[: 2 * CHUNK_SIZE]


@pytest.mark.parametrize("keep", [0, 5, 16])
def test_cut_right_after_header_is_truncated_empty(
    three_and_a_half: tuple[str, bytes, bytes], keep: int
) -> None:
    identity, _, data = three_and_a_half
    with pytest.raises(AgeTruncated) as info:
        decrypt_bytes(data[: _header_len(data) + keep], [identity])
    assert info.value.plaintext == b""


def test_cut_inside_header_is_tampered(three_and_a_half: tuple[str, bytes, bytes]) -> None:
    identity, _, data = three_and_a_half
    with pytest.raises(AgeTampered):
        decrypt_bytes(data[: _header_len(data) - 10], [identity])


def _flip(data: bytes, pos: int) -> bytes:
    out = bytearray(data)
    out[pos] ^= 0x01
    return bytes(out)


def test_flipped_byte_after_header_is_tampered() -> None:
    identity, recipient = generate_identity()
    # Ends in a full-length final chunk, so every payload byte is covered by this test.
    plain = _payload(3 * CHUNK_SIZE)
    data = encrypt_bytes(plain, [recipient])
    start = _header_len(data)
    positions = [
        start,  # payload nonce
        start + 15,
        start + 16,  # first chunk
        start + 16 + ENCRYPTED_CHUNK_SIZE - 1,  # first chunk's tag
        start + 16 + ENCRYPTED_CHUNK_SIZE + 12345,  # middle chunk
        len(data) - ENCRYPTED_CHUNK_SIZE + 7,  # final chunk
        len(data) - 1,  # final tag
    ]
    for pos in positions:
        with pytest.raises(AgeTampered):
            decrypt_bytes(_flip(data, pos), [identity])


def test_flipped_mac_or_version_is_tampered() -> None:
    identity, recipient = generate_identity()
    data = encrypt_bytes(b"hello", [recipient])
    mac_pos = data.index(b"\n--- ") + 10
    # Another valid base64 character in the middle of the MAC (flipping a bit could give
    # a character that is not base64 at all, which is caught earlier, as bad base64).
    damaged = bytearray(data)
    damaged[mac_pos] = ord("A") if data[mac_pos] != ord("A") else ord("B")
    with pytest.raises(AgeTampered, match="MAC"):
        decrypt_bytes(bytes(damaged), [identity])
    with pytest.raises(AgeTampered):
        decrypt_bytes(_flip(data, 3), [identity])


def test_flipped_stanza_is_indistinguishable_from_wrong_key() -> None:
    identity, recipient = generate_identity()
    data = encrypt_bytes(b"hello", [recipient])
    pos = data.index(b"\n", data.index(b"-> X25519")) + 5
    damaged = bytearray(data)
    damaged[pos] = ord("A") if data[pos] != ord("A") else ord("B")  # still valid base64
    with pytest.raises(AgeWrongKey):
        decrypt_bytes(bytes(damaged), [identity])


def test_single_chunk_file_flipped_is_tampered() -> None:
    identity, recipient = generate_identity()
    data = encrypt_bytes(_payload(5000), [recipient])
    with pytest.raises(AgeTampered):
        decrypt_bytes(_flip(data, len(data) - 100), [identity])


def test_flip_in_short_final_chunk_reads_as_cut(
    three_and_a_half: tuple[str, bytes, bytes],
) -> None:
    # Documented limit: a damaged short last chunk and a half-written one look alike; only
    # authenticated chunks are returned either way.
    identity, plain, data = three_and_a_half
    with pytest.raises(AgeTruncated) as info:
        decrypt_bytes(_flip(data, len(data) - 20), [identity])
    assert info.value.plaintext == plain[: 3 * CHUNK_SIZE]


def test_data_after_final_chunk_is_tampered() -> None:
    identity, recipient = generate_identity()
    data = encrypt_bytes(_payload(1000), [recipient])
    with pytest.raises(AgeTampered):
        decrypt_bytes(data + b"\x00", [identity])
    full = encrypt_bytes(_payload(CHUNK_SIZE), [recipient])
    with pytest.raises(AgeTampered):
        decrypt_bytes(full + b"x" * 40, [identity])


def test_encryptor_enforces_chunk_rules() -> None:
    _, recipient = generate_identity()
    enc = AgeEncryptor([recipient])
    with pytest.raises(AgeError, match="exactly 64 KiB"):
        enc.encrypt_chunk(b"short", last=False)
    enc.encrypt_chunk(bytes(CHUNK_SIZE), last=False)
    with pytest.raises(AgeError, match="must not be empty"):
        enc.encrypt_chunk(b"", last=True)
    enc.encrypt_chunk(b"end", last=True)
    assert enc.finished
    with pytest.raises(AgeError, match="already"):
        enc.encrypt_chunk(b"more", last=True)


def test_each_file_has_fresh_keys() -> None:
    _, recipient = generate_identity()
    a, b = AgeEncryptor([recipient]), AgeEncryptor([recipient])
    assert a.header() != b.header()
    assert a.encrypt_chunk(b"same", True) != b.encrypt_chunk(b"same", True)
