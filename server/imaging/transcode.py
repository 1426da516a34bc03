"""Transcoder: frames re-encoded to JPEG-LS lossless for viewers, once each, kept sealed.

Whatever a study was stored as (native pixels, RLE, JPEG 2000 lossless…), the viewer asks
for JPEG-LS lossless (1.2.840.10008.1.2.4.80): a CT frame travels in a third to a half of
its native size, and Cornerstone3D decodes it (CharLS in WebAssembly). The first request for a
frame decodes the stored frame (pydicom) and encodes it again (CharLS through pyjpegls), in a
thread; the codestream is sealed (``Seal.seal_blob``, bound to the instance, the frame number
and the syntax) and written under ``<store>/jls/``, so every later request is a read and a
decryption. The decoded pixels are the stored ones bit for bit: lossless both ways, signed
pixels as JPEG-LS carries them (the low Bits Stored bits, sign-extended on decoding).

Cache file names are an HMAC of the stored file's (server-made) name and the frame number
under the store's hash key: never from a request or a file's contents, and they tell nothing
about the instance. A failed transcode writes nothing. Two requests for one frame at once
share one transcode (in this process; processes racing write the same bytes, each through its
own temporary file and an atomic rename).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import secrets
import struct
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.encaps import encapsulate
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.encoders.base import JPEGLSLosslessEncoder
from pydicom.uid import ExplicitVRLittleEndian
from sqlmodel import select

from ..db import AsyncSession
from ..errors import EboardError
from ..models import DicomInstance
from .frames import read_frames
from .sealed import Seal
from .store import NATIVE_SYNTAXES, DicomStore

__all__ = ["Transcoder", "PixelModule", "NotAcceptable", "JPEG_LS_LOSSLESS", "LOSSY_SYNTAXES"]

log = logging.getLogger(__name__)

JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
# Stored lossy: a lossless re-encoding of these is larger than what is stored, and no better.
LOSSY_SYNTAXES = frozenset(
    {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.91"}
)
_PHOTOMETRIC = frozenset({"MONOCHROME1", "MONOCHROME2", "RGB"})
# Pixel modules of recently transcoded instances (small): the DICOM JSON is opened once.
_PIXEL_MODULES = 4096


class NotAcceptable(EboardError):
    status = 406
    title = "Not acceptable"


@dataclass(frozen=True)
class PixelModule:
    """What a frame's bytes mean (the Image Pixel module), from the instance's DICOM JSON."""

    rows: int
    columns: int
    samples: int
    photometric: str
    bits_allocated: int
    bits_stored: int
    signed: bool

    @classmethod
    def of(cls, meta: dict[str, Any]) -> PixelModule:
        def value(tag: str, default: Any) -> Any:
            values = meta.get(tag, {}).get("Value") or [default]
            return values[0]

        return cls(
            rows=int(value("00280010", 0)),
            columns=int(value("00280011", 0)),
            samples=int(value("00280002", 1)),
            photometric=str(value("00280004", "MONOCHROME2")),
            bits_allocated=int(value("00280100", 16)),
            bits_stored=int(value("00280101", value("00280100", 16))),
            signed=int(value("00280103", 0)) == 1,
        )

    def unfit(self) -> str | None:
        """Why JPEG-LS cannot carry these pixels losslessly, or None if it can."""
        if self.photometric not in _PHOTOMETRIC:
            return f"photometric interpretation {self.photometric[:20]} is not transcoded"
        if self.bits_allocated not in (8, 16) or not 2 <= self.bits_stored <= 16:
            return f"{self.bits_allocated}-bit pixels do not fit JPEG-LS"
        if self.samples not in (1, 3) or self.rows < 1 or self.columns < 1:
            return "the image pixel module is incomplete"
        return None

    def options(self, bits_stored: int | None = None) -> dict[str, Any]:
        """pydicom's decoding and encoding options for one frame."""
        return {
            "rows": self.rows,
            "columns": self.columns,
            "samples_per_pixel": self.samples,
            "photometric_interpretation": self.photometric,
            "bits_allocated": self.bits_allocated,
            "bits_stored": bits_stored or self.bits_stored,
            "pixel_representation": int(self.signed),
            "planar_configuration": 0,
            "number_of_frames": 1,
        }


def decodable(syntax: str) -> bool:
    """Whether this server can decode frames stored as ``syntax``."""
    if syntax in NATIVE_SYNTAXES:
        return True
    try:
        return bool(get_decoder(syntax).is_available)
    except NotImplementedError:
        return False


def to_jpeg_ls(data: bytes | bytearray, syntax: str, pixels: PixelModule) -> bytes:
    """One stored frame (``syntax``) as a JPEG-LS lossless codestream of the same pixels (CPU
    work: run in a thread). ValueError if it cannot be decoded or encoded."""
    if syntax in NATIVE_SYNTAXES:
        # The stored words as they are: unused high bits are kept, not cleared.
        src: bytes | bytearray = data
        decoder = get_decoder(ExplicitVRLittleEndian)
    else:
        src = encapsulate([bytes(data)])
        decoder = get_decoder(syntax)
    try:
        options: dict[str, Any] = {
            **pixels.options(),
            "pixel_keyword": "PixelData",
            "correct_unused_bits": False,
        }
        array, _ = decoder.as_array(src, raw=True, **options)
    except (RuntimeError, NotImplementedError) as exc:
        raise ValueError(f"the stored frame does not decode ({exc})") from exc
    try:
        return bytes(JPEGLSLosslessEncoder.encode(array, **pixels.options()))
    except ValueError:
        # Values beyond Bits Stored (some scanners set the unused bits): keep every bit.
        wide = pixels.options(bits_stored=pixels.bits_allocated)
        return bytes(JPEGLSLosslessEncoder.encode(np.ascontiguousarray(array), **wide))


class Transcoder:
    """JPEG-LS lossless frames of ``store``'s instances, made on first request and kept sealed
    under ``<store root>/jls``."""

    def __init__(self, store: DicomStore) -> None:
        self._store = store
        self._seal: Seal = store.seal
        self._key = store.derived_key(b"transcoded frame names")
        self.root = store.root / "jls"
        self._pending: dict[Path, asyncio.Future[bytes]] = {}
        self._pixels: OrderedDict[str, PixelModule] = OrderedDict()

    def path(self, instance: DicomInstance, number: int) -> Path:
        """Where frame ``number`` of ``instance`` is kept (it may not be there yet)."""
        name = hmac.new(
            self._key, f"{instance.path}\x00{number}".encode(), hashlib.sha256
        ).hexdigest()[:40]
        return self.root / name[:2] / f"{name}.jls"

    async def pixels(self, session: AsyncSession, instance: DicomInstance) -> PixelModule:
        """The instance's pixel module, from its (sealed) DICOM JSON."""
        found = self._pixels.get(instance.sop_uid)
        if found is not None:
            self._pixels.move_to_end(instance.sop_uid)
            return found
        row = (
            await session.exec(
                select(DicomInstance.dicom_enc, DicomInstance.dicom_json).where(
                    DicomInstance.id == instance.id
                )
            )
        ).one()
        meta = (
            self._seal.open_json(instance.sop_uid, row[0])
            if row[0] is not None
            else dict(row[1] or {})
        )
        found = PixelModule.of(meta)
        self._pixels[instance.sop_uid] = found
        while len(self._pixels) > _PIXEL_MODULES:
            self._pixels.popitem(last=False)
        return found

    async def frame(self, instance: DicomInstance, number: int, pixels: PixelModule) -> bytes:
        """Frame ``number`` of ``instance`` as JPEG-LS lossless: kept, or made now and kept.
        NotAcceptable (and nothing kept) if it cannot be made."""
        path = self.path(instance, number)
        kept = await asyncio.to_thread(self._read, path, instance, number)
        if kept is not None:
            return kept
        pending = self._pending.get(path)
        if pending is None:
            pending = asyncio.ensure_future(self._make(path, instance, number, pixels))
            self._pending[path] = pending
            pending.add_done_callback(lambda _: self._pending.pop(path, None))
        return await asyncio.shield(pending)

    async def _make(
        self, path: Path, instance: DicomInstance, number: int, pixels: PixelModule
    ) -> bytes:
        stored = (await read_frames(self._store, instance, [number]))[0]
        try:
            return await asyncio.to_thread(self._encode, path, instance, number, stored, pixels)
        except ValueError as exc:
            log.warning("Transcoder(instance %s) frame %s not transcoded", instance.id, number)
            raise NotAcceptable(
                f"frame {number} of instance {instance.sop_uid} (stored as "
                f"{instance.transfer_syntax}) cannot be sent as JPEG-LS lossless: {exc}"
            ) from exc

    def _encode(
        self,
        path: Path,
        instance: DicomInstance,
        number: int,
        stored: bytes | bytearray,
        pixels: PixelModule,
    ) -> bytes:
        data = to_jpeg_ls(stored, instance.transfer_syntax, pixels)
        self._write(path, self._seal.seal_blob(_context(instance, number), data))
        return data

    def _read(self, path: Path, instance: DicomInstance, number: int) -> bytes | None:
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return self._seal.open_blob(_context(instance, number), blob)
        except ValueError:
            # Torn or from a key no longer held: made again.
            log.warning(
                "Transcoder(instance %s) frame %s kept copy unreadable", instance.id, number
            )
            path.unlink(missing_ok=True)
            return None

    def _write(self, path: Path, blob: bytes) -> None:
        """Written beside ``path`` under a name of its own, then renamed over it: 0600 from the
        first byte, nothing partial ever under the final name."""
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        root = self._store.root.resolve()
        if not path.parent.resolve().is_relative_to(root):
            raise OSError(f"transcoded frames folder resolves outside {self._store.root}")
        partial = path.with_name(f"{path.name}.{secrets.token_hex(4)}.part")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(blob)
            os.replace(partial, path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise


def _context(instance: DicomInstance, number: int) -> bytes:
    return (
        b"eboard transcoded frame\x00"
        + instance.sop_uid.encode()
        + struct.pack(">II", number, instance.frames)
        + JPEG_LS_LOSSLESS.encode()
    )
