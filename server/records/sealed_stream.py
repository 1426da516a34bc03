"""SealedStream: a file written and read back as AES-GCM chunks under a key that lives only in
the memory of the process that made it (a bulk export's zip, which names patients).

A stream is ``b"EBSTRM1\\n"`` then chunks of ``length (4 bytes, big-endian) | nonce (12) |
ciphertext and tag``; each chunk's associated data is its number and whether it is the last, so
a chunk moved, dropped or a stream cut short does not open. The key is made per stream and never
written anywhere: the file is of no use once its process is gone (the process removes it then
anyway).
"""

from __future__ import annotations

import os
import secrets
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["SealedWriter", "open_sealed", "MAGIC", "CHUNK"]

MAGIC = b"EBSTRM1\n"
CHUNK = 1 << 20
_NONCE = 12
_LENGTH = struct.Struct(">I")


def _context(number: int, last: bool) -> bytes:
    return b"eboard-stream:%d:%d" % (number, int(last))


class SealedWriter:
    """A write-only binary file whose bytes reach ``path`` sealed (created 0600, never through
    a link). ``size`` is how many plain bytes were written."""

    def __init__(self, path: Path, key: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        self._out: BinaryIO = os.fdopen(fd, "wb")
        self._out.write(MAGIC)
        self._aead = AESGCM(key)
        self._buffer = bytearray()
        self._number = 0
        self.size = 0
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._buffer += data
        self.size += len(data)
        while len(self._buffer) > CHUNK:
            self._seal(bytes(self._buffer[:CHUNK]), last=False)
            del self._buffer[:CHUNK]
        return len(data)

    def flush(self) -> None:
        """Nothing to do: bytes are sealed a whole chunk at a time (zipfile calls this)."""

    def close(self) -> None:
        if self.closed:
            return
        self._seal(bytes(self._buffer), last=True)
        self._buffer.clear()
        self._out.close()
        self.closed = True

    def _seal(self, data: bytes, *, last: bool) -> None:
        nonce = secrets.token_bytes(_NONCE)
        sealed = nonce + self._aead.encrypt(nonce, data, _context(self._number, last))
        self._out.write(_LENGTH.pack(len(sealed)) + sealed)
        self._number += 1


def open_sealed(path: Path, key: bytes) -> Iterator[bytes]:
    """The plain bytes of the stream at ``path``, a chunk at a time; ValueError if it was
    changed, reordered or cut short."""
    aead = AESGCM(key)
    with path.open("rb") as fp:
        if fp.read(len(MAGIC)) != MAGIC:
            raise ValueError("not a sealed stream")
        number = 0
        header = fp.read(_LENGTH.size)
        while header:
            (length,) = _LENGTH.unpack(header)
            sealed = fp.read(length)
            header = fp.read(_LENGTH.size)
            last = not header
            if len(sealed) != length or length < _NONCE:
                raise ValueError("sealed stream cut short")
            try:
                yield aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], _context(number, last))
            except Exception as exc:  # InvalidTag: changed, moved or the last chunk missing
                raise ValueError(f"sealed stream does not open at chunk {number}") from exc
            number += 1
        if number == 0:
            raise ValueError("sealed stream has no chunks")
