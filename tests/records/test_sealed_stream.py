"""A bulk export's zip is sealed on disk: it opens only whole, in order, with its job's key."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from server.records.sealed_stream import CHUNK, SealedWriter, open_sealed


def _sealed(path: Path, data: bytes, key: bytes) -> None:
    writer = SealedWriter(path, key)
    for i in range(0, len(data), 65_536):
        writer.write(data[i : i + 65_536])
    writer.close()
    assert writer.size == len(data)


def test_a_stream_opens_to_what_was_written_and_holds_none_of_it_plain(tmp_path: Path) -> None:
    key = AESGCM.generate_key(bit_length=256)
    data = b"Wang^Fang HZ00012345 " * (CHUNK // 10)  # over two chunks
    path = tmp_path / "s"
    _sealed(path, data, key)
    assert b"Wang^Fang" not in path.read_bytes()
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert b"".join(open_sealed(path, key)) == data


@pytest.mark.parametrize("damage", ["flip", "cut", "drop-last", "other-key"])
def test_a_changed_or_shortened_stream_does_not_open(tmp_path: Path, damage: str) -> None:
    key = AESGCM.generate_key(bit_length=256)
    path = tmp_path / "s"
    _sealed(path, os.urandom(2 * CHUNK + 10), key)
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 1
    elif damage == "cut":
        del raw[-100:]
    elif damage == "drop-last":
        del raw[-(10 + 4 + 12 + 16) :]  # the last chunk: its length, nonce, 10 bytes, tag
    else:
        key = AESGCM.generate_key(bit_length=256)
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError):
        b"".join(open_sealed(path, key))


def test_a_zip_written_through_it_reads_back(tmp_path: Path) -> None:
    key = AESGCM.generate_key(bit_length=256)
    path = tmp_path / "z"
    writer = SealedWriter(path, key)
    with zipfile.ZipFile(writer, "w") as archive:  # type: ignore[call-overload]
        archive.writestr("a.txt", b"plan")
    writer.close()
    plain = tmp_path / "plain.zip"
    plain.write_bytes(b"".join(open_sealed(path, key)))
    with zipfile.ZipFile(plain) as archive:
        assert archive.read("a.txt") == b"plan"
