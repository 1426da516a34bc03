"""Seal: stored imaging encrypted at rest with the key ring (AES-GCM), in chunks, so that one
frame is read and decrypted alone and the frames route stays a seek, a read and a decrypt.

A sealed file is::

    b"EBSEAL1\\n" | key id length (1 byte) | key id | chunk count (4 bytes, big-endian)
    per chunk:    length (4 bytes) | nonce (12 bytes) | ciphertext and tag

Chunk 0 holds the original file's layout (its size, and where each frame's bytes sat in it)
and every byte that is not a frame's: the DICOM header and attributes, the fragments' item
tags, anything after the pixel data. Chunk n holds frame n's bytes. Each chunk's associated
data names the instance (its SOP Instance UID), the chunk's number and the chunk count, so a
chunk moved within a file, into another file, or a file cut short does not decrypt. The
original file is rebuilt from the chunks byte for byte.

An instance's DICOM JSON is sealed the same way, as one blob bound to the instance, and so is
each frame the server re-encodes for viewers (``imaging.transcode``), bound to its instance,
frame number and transfer syntax.

Keys: each field key of the ring (by id, so rotation adds keys and old files stay readable)
gives an imaging key by HKDF, so imaging and fields never share a key.
"""

from __future__ import annotations

import json
import os
import secrets
import struct
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import Invalid
from ..keys import KeyRing

__all__ = ["Seal", "Runs", "MAGIC"]

MAGIC = b"EBSEAL1\n"
_NONCE = 12
_LENGTH = struct.Struct(">I")
# Per frame, the (offset, length) runs of its bytes in a file.
Runs = list[list[list[int]]]


class Seal:
    """Seals and opens imaging files and DICOM JSON with the imaging keys of ``keys``."""

    def __init__(self, keys: KeyRing) -> None:
        self._active = keys.active_field_key
        self._aeads = {kid: AESGCM(_imaging_key(key)) for kid, key in keys.field_keys.items()}

    @property
    def active_key(self) -> str:
        return self._active

    def write(self, path: Path, source: BinaryIO, runs: Runs, instance: str, name: str) -> Runs:
        """Write ``source`` (the DICOM file ``name``, frames at ``runs``) sealed to ``path``,
        0600 from the first byte; the sealed frames' runs in ``path`` are returned (one each).

        Written beside ``path`` and renamed over it when complete; nothing is left behind if
        anything fails. Frames that overlap or lie outside the file are refused."""
        size = source.seek(0, os.SEEK_END)
        _check_layout(runs, size, name)
        partial = path.with_name(path.name + ".part")
        partial.unlink(missing_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                index = self._write_chunks(out, source, runs, size, instance)
            os.replace(partial, path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return index

    def _write_chunks(
        self, out: BinaryIO, source: BinaryIO, runs: Runs, size: int, instance: str
    ) -> Runs:
        kid = self._active.encode()
        count = len(runs) + 1
        out.write(MAGIC + bytes([len(kid)]) + kid + _LENGTH.pack(count))
        layout = json.dumps({"size": size, "frames": runs}).encode()
        rest = _LENGTH.pack(len(layout)) + layout + _outside(source, runs, size)
        position = out.tell()
        position += self._write_chunk(out, rest, instance, 0, count)
        index: Runs = []
        for number, frame in enumerate(runs, start=1):
            data = b"".join(_read_at(source, offset, length) for offset, length in frame)
            written = self._write_chunk(out, data, instance, number, count)
            index.append([[position + _LENGTH.size, written - _LENGTH.size]])
            position += written
        return index

    def _write_chunk(
        self, out: BinaryIO, data: bytes, instance: str, number: int, count: int
    ) -> int:
        nonce = secrets.token_bytes(_NONCE)
        sealed = nonce + self._aeads[self._active].encrypt(
            nonce, data, _chunk_context(instance, number, count)
        )
        out.write(_LENGTH.pack(len(sealed)) + sealed)
        return _LENGTH.size + len(sealed)

    def open_frame(
        self, kid: str, sealed: bytes | bytearray, instance: str, number: int, frames: int
    ) -> bytes:
        """Frame ``number`` (1-based) of an instance of ``frames`` frames, from its sealed
        chunk as read from the file."""
        return self._open(kid, sealed, _chunk_context(instance, number, frames + 1))

    def read(self, path: Path, instance: str) -> bytes:
        """The original file, rebuilt byte for byte from its sealed chunks."""
        with path.open("rb") as fp:
            head = fp.read(len(MAGIC) + 1)
            if head[: len(MAGIC)] != MAGIC or len(head) != len(MAGIC) + 1:
                raise ValueError(f"stored file of instance {instance} is not sealed")
            kid = fp.read(head[-1]).decode("ascii")
            (count,) = _LENGTH.unpack(fp.read(_LENGTH.size))
            if count < 1:
                raise ValueError(f"stored file of instance {instance} has no chunks")
            chunks = [
                self._open(kid, _read_chunk(fp), _chunk_context(instance, n, count))
                for n in range(count)
            ]
        (length,) = _LENGTH.unpack(chunks[0][: _LENGTH.size])
        layout = json.loads(chunks[0][_LENGTH.size : _LENGTH.size + length])
        rest = memoryview(chunks[0])[_LENGTH.size + length :]
        return _rebuild(layout["size"], layout["frames"], rest, chunks[1:])

    def seal_json(self, instance: str, value: dict[str, Any]) -> bytes:
        """An instance's DICOM JSON, sealed: ``<key id>:<nonce><ciphertext>``."""
        nonce = secrets.token_bytes(_NONCE)
        data = json.dumps(value, separators=(",", ":")).encode()
        sealed = self._aeads[self._active].encrypt(nonce, data, _json_context(instance))
        return self._active.encode() + b":" + nonce + sealed

    def open_json(self, instance: str, blob: bytes) -> dict[str, Any]:
        kid, _, body = blob.partition(b":")
        value: dict[str, Any] = json.loads(
            self._open(kid.decode("ascii"), body, _json_context(instance))
        )
        return value

    def seal_blob(self, context: bytes, data: bytes) -> bytes:
        """``data`` sealed to ``context`` (what it is, whose): ``<key id>:<nonce><ciphertext>``."""
        nonce = secrets.token_bytes(_NONCE)
        sealed = self._aeads[self._active].encrypt(nonce, data, context)
        return self._active.encode() + b":" + nonce + sealed

    def open_blob(self, context: bytes, blob: bytes) -> bytes:
        """What ``seal_blob`` sealed to ``context``; ValueError if it was sealed to another."""
        kid, _, body = blob.partition(b":")
        return self._open(kid.decode("ascii", "replace"), body, context)

    def _open(self, kid: str, sealed: bytes | bytearray, context: bytes) -> bytes:
        aead = self._aeads.get(kid)
        if aead is None:
            raise ValueError(f"imaging sealed with unknown key id {kid!r}")
        view = memoryview(sealed)  # a frame is hundreds of kilobytes: sliced, not copied
        try:
            return aead.decrypt(view[:_NONCE], view[_NONCE:], context)
        except InvalidTag as exc:
            raise ValueError(f"stored imaging does not decrypt with key {kid}") from exc


def _imaging_key(field_key: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=None, info=b"eboard imaging files").derive(field_key)


def _chunk_context(instance: str, number: int, count: int) -> bytes:
    return b"eboard imaging chunk\x00" + instance.encode() + struct.pack(">II", number, count)


def _json_context(instance: str) -> bytes:
    return b"dicom_instance.dicom_json\x00" + instance.encode()


def _check_layout(runs: Runs, size: int, name: str) -> None:
    end = 0
    for offset, number, length in sorted((o, n, ln) for n, f in enumerate(runs, 1) for o, ln in f):
        if offset < end or length < 0 or offset + length > size:
            raise Invalid.on(
                "file", f"{name}'s frame {number} overlaps another or lies past the end of the file"
            )
        end = offset + length


def _read_at(source: BinaryIO, offset: int, length: int) -> bytes:
    source.seek(offset)
    data = source.read(length)
    if len(data) != length:
        raise ValueError("the file changed while it was sealed")
    return data


def _outside(source: BinaryIO, runs: Runs, size: int) -> bytes:
    """Every byte of ``source`` not in a frame's run, in file order."""
    out = []
    position = 0
    for offset, length in sorted(r for frame in runs for r in frame):
        out.append(_read_at(source, position, offset - position))
        position = offset + length
    out.append(_read_at(source, position, size - position))
    return b"".join(out)


def _read_chunk(fp: BinaryIO) -> bytes:
    (length,) = _LENGTH.unpack(fp.read(_LENGTH.size))
    data = fp.read(length)
    if len(data) != length:
        raise ValueError("sealed file is cut short")
    return data


def _rebuild(size: int, runs: Runs, rest: memoryview, frames: list[bytes]) -> bytes:
    out = bytearray(size)
    for frame, data in zip(runs, frames, strict=True):
        position = 0
        for offset, length in frame:
            out[offset : offset + length] = data[position : position + length]
            position += length
    position = 0
    cursor = 0
    for offset, length in sorted(r for frame in runs for r in frame):
        gap = offset - position
        out[position:offset] = rest[cursor : cursor + gap]
        cursor += gap
        position = offset + length
    out[position:] = rest[cursor:]
    return bytes(out)
