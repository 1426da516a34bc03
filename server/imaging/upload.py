"""Upload: the files of an imaging upload, from plain parts or a zip, streamed to a spool within
safe limits; nothing of it is held in memory whole."""

from __future__ import annotations

import asyncio
import zipfile
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from ..errors import EboardError, Invalid, TooLarge
from ..spool import Spool

__all__ = [
    "Upload",
    "ZipLimits",
    "files_from_zip",
    "is_zip",
    "read_part",
    "read_parts",
    "shown",
]

CHUNK = 256 * 1024
# Room for part headers and boundaries on top of the files' bytes when a request declares its
# length: a body longer than this is refused before any of it is read.
HEADROOM = 1024 * 1024
_END_RECORD = b"PK\x05\x06"
_END_RECORD_SIZE = 22

Upload = tuple[str, Path]  # (the name to report, its spooled file)


@dataclass(frozen=True)
class ZipLimits:
    """A zip bomb is refused before it is expanded: by declared sizes, ratio, entry count and
    the size of its directory, and again while reading, in case the declared sizes lie."""

    max_total: int = 2 * 1024 * 1024 * 1024
    max_ratio: int = 100
    max_entries: int = 10_000
    # The central directory is parsed whole into memory before any entry is counted: bound it.
    max_directory: int = 10_000 * 512


def shown(name: str) -> str:
    """A client's file name as it can be quoted back (undecodable bytes replaced)."""
    return name.encode("utf-8", "replace").decode("utf-8")[:200]


def is_zip(path: Path) -> bool:
    with path.open("rb") as fp:
        head = fp.read(4)
    # A local file header, or the end record that alone makes up an empty archive.
    return head in (b"PK\x03\x04", _END_RECORD)


def _safe_name(name: str) -> str:
    path = PurePosixPath(name.replace("\\", "/"))
    drive = bool(path.parts) and ":" in path.parts[0]
    if path.is_absolute() or drive:
        raise Invalid.on("file", f"zip entry {shown(name)!r} has an absolute path")
    if ".." in path.parts:
        raise Invalid.on("file", f"zip entry {shown(name)!r} climbs out of the archive ('..')")
    return shown(str(path))


def _directory_size(name: str, path: Path, limits: ZipLimits) -> None:
    """Refuse an archive whose central directory is too large to parse (read from its end
    record, before ``zipfile`` reads the directory)."""
    size = path.stat().st_size
    with path.open("rb") as fp:
        fp.seek(max(0, size - _END_RECORD_SIZE - 0xFFFF))
        tail = fp.read()
    at = tail.rfind(_END_RECORD)
    if at < 0 or len(tail) - at < _END_RECORD_SIZE:
        raise Invalid.on("file", f"{name} is not a readable zip (no end of central directory)")
    entries = int.from_bytes(tail[at + 10 : at + 12], "little")
    directory = int.from_bytes(tail[at + 12 : at + 16], "little")
    if entries == 0xFFFF or directory == 0xFFFFFFFF:
        raise Invalid.on("file", f"{name} is a ZIP64 archive, beyond the limits of an upload")
    if entries > limits.max_entries:
        raise Invalid.on("file", f"{name} has {entries} entries, more than {limits.max_entries}")
    if directory > limits.max_directory:
        raise Invalid.on(
            "file", f"{name} has a {directory}-byte directory, over {limits.max_directory}"
        )


def _entries(
    name: str, archive: zipfile.ZipFile, size: int, limits: ZipLimits
) -> list[zipfile.ZipInfo]:
    entries = [i for i in archive.infolist() if not i.is_dir()]
    if len(entries) > limits.max_entries:
        raise Invalid.on(
            "file", f"{name} has {len(entries)} entries, more than {limits.max_entries}"
        )
    declared = sum(i.file_size for i in entries)
    if declared > limits.max_total:
        raise TooLarge.on(
            "file", f"{name} expands to {declared} bytes, over the limit of {limits.max_total}"
        )
    if declared > max(1, size) * limits.max_ratio:
        raise Invalid.on(
            "file", f"{name} expands {declared // max(1, size)} times: refused as a zip bomb"
        )
    for info in entries:
        # Only deflate decompresses in bounded steps; bzip2 and LZMA expand a read whole.
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise Invalid.on(
                "file",
                f"zip entry {shown(info.filename)!r} uses compression method "
                f"{info.compress_type}: only stored and deflated entries are accepted",
            )
    return entries


def _expand(archive: zipfile.ZipFile, info: zipfile.ZipInfo, inner: str, out: BinaryIO) -> int:
    """Copy one entry to ``out`` a chunk at a time; the bytes written."""
    written = 0
    try:
        with archive.open(info) as fp:
            while chunk := fp.read(CHUNK):
                written += len(chunk)
                if written > info.file_size:
                    raise Invalid.on("file", f"zip entry {inner!r} is larger than it declares")
                out.write(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError) as exc:
        # RuntimeError: an encrypted entry. A CRC error: an entry longer than it declares.
        raise Invalid.on("file", f"zip entry {inner!r} cannot be read ({exc})") from exc
    return written


def files_from_zip(
    name: str, path: Path, spool: Spool, limits: ZipLimits = ZipLimits()
) -> list[Upload]:
    """The regular files inside the zip at ``path``, each expanded to its own spooled file
    (directories and the DICOMDIR index skipped). Blocking: run in a thread."""
    _directory_size(name, path, limits)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise Invalid.on("file", f"{name} is not a readable zip ({exc})") from exc
    out: list[Upload] = []
    total = 0
    with archive:
        for info in _entries(name, archive, path.stat().st_size, limits):
            inner = _safe_name(info.filename)
            if PurePosixPath(inner).name.upper() == "DICOMDIR":
                continue
            target, fp = spool.create()
            with fp:
                total += _expand(archive, info, inner, fp)
            if total > limits.max_total:
                raise TooLarge.on("file", f"{name} expands past the limit of {limits.max_total}")
            out.append((f"{name}:{inner}", target))
    if not out:
        raise Invalid.on("file", f"{name} contains no files")
    return out


def _unreadable(exc: Exception) -> EboardError:
    reason = str(exc).replace("\n", " ").strip()[:200] or type(exc).__name__
    return EboardError.on("body", f"is not a readable multipart body ({reason})")


async def _parts(request: web.Request) -> AsyncIterator[BodyPartReader]:
    """The parts of a multipart request; a malformed body is refused naming ``body``."""
    try:
        reader: MultipartReader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise Invalid.on("body", "nested multipart bodies are not accepted")
            yield part
    except (HttpProcessingError, ValueError, AssertionError) as exc:
        raise _unreadable(exc) from exc


async def _chunks(part: BodyPartReader, room: int, limit: int) -> AsyncIterator[bytes]:
    """The part's bytes a chunk at a time; TooLarge past ``room`` bytes (of ``limit``), a
    malformed body refused naming ``body``."""
    size = 0
    while True:
        try:
            chunk = await part.read_chunk(CHUNK)
        except (HttpProcessingError, ValueError, AssertionError) as exc:
            raise _unreadable(exc) from exc
        if not chunk:
            return
        size += len(chunk)
        if size > room:
            raise TooLarge.on("file", f"the upload is over the limit of {limit} bytes")
        yield chunk


async def _skip(part: BodyPartReader, room: int, limit: int) -> int:
    """Read past a part nobody asked for (its bytes count towards the limit all the same)."""
    size = 0
    async for chunk in _chunks(part, room, limit):
        size += len(chunk)
    return size


async def _spool_part(
    part: BodyPartReader, spool: Spool, room: int, limit: int
) -> tuple[Path, int]:
    """Stream one part to a spooled file; its path and size. TooLarge past ``room`` bytes."""
    path, fp = spool.create()
    size = 0
    with fp:
        buffer = bytearray()
        async for chunk in _chunks(part, room, limit):
            size += len(chunk)
            buffer += chunk
            if len(buffer) >= 4 * CHUNK:
                await asyncio.to_thread(fp.write, buffer)
                buffer = bytearray()
        await asyncio.to_thread(fp.write, buffer)
    return path, size


async def read_part(request: web.Request, limit: int, field: str) -> tuple[BodyPartReader, bytes]:
    """The first part named ``field`` and its bytes, read into memory up to ``limit`` (for
    small files only); TooLarge past it, Invalid if there is no such part."""
    if request.content_length is not None and request.content_length > limit + HEADROOM:
        raise TooLarge.on(field, f"is over the limit of {limit} bytes")
    found: tuple[BodyPartReader, bytes] | None = None
    total = 0
    async for part in _parts(request):
        # Stepping past the part read checks that it ended with a boundary (not cut short).
        if found is not None:
            break
        if part.name != field:
            total += await _skip(part, limit - total, limit)
            continue
        data = bytearray()
        async for chunk in _chunks(part, limit - total, limit):
            data += chunk
        found = part, bytes(data)
    if found is None:
        raise Invalid.on(field, f"no part named {field}")
    return found


async def read_parts(
    request: web.Request, limit: int, spool: Spool, field: str | None = None
) -> list[Upload]:
    """Each part of a multipart request (only those named ``field`` when given) spooled to a
    file, zips expanded; the whole request is refused past ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit + HEADROOM:
        raise TooLarge.on("file", f"the upload is over the limit of {limit} bytes")
    files: list[Upload] = []
    total = 0  # bytes received
    expanded = 0  # bytes of the files they make, zips expanded: bounded by the same limit
    async for part in _parts(request):
        if field is not None and part.name != field:
            total += await _skip(part, limit - total, limit)
            continue
        path, size = await _spool_part(part, spool, limit - total, limit)
        total += size
        name = shown(part.filename or f"part {len(files) + 1}")
        if not await asyncio.to_thread(is_zip, path):
            expanded += size
            files.append((name, path))
            continue
        limits = ZipLimits(max_total=limit - expanded)
        inside = await asyncio.to_thread(files_from_zip, name, path, spool, limits)
        await asyncio.to_thread(path.unlink)  # expanded: the archive itself is done with
        expanded += sum(p.stat().st_size for _, p in inside)
        files += inside
    return files
