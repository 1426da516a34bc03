"""Upload: the files of an imaging upload, from plain parts or a zip, within safe limits."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath

from aiohttp import BodyPartReader, web

from ..errors import Invalid, TooLarge

__all__ = ["ZipLimits", "files_from_zip", "is_zip", "read_parts"]


@dataclass(frozen=True)
class ZipLimits:
    """A zip bomb is refused before it is expanded: by declared sizes, ratio and entry count,
    and again while reading, in case the declared sizes lie."""

    max_total: int = 2 * 1024 * 1024 * 1024
    max_ratio: int = 100
    max_entries: int = 10_000


def is_zip(data: bytes) -> bool:
    # A local file header, or the end record that alone makes up an empty archive.
    return data[:4] in (b"PK\x03\x04", b"PK\x05\x06")


def _safe_name(name: str) -> str:
    path = PurePosixPath(name.replace("\\", "/"))
    drive = bool(path.parts) and ":" in path.parts[0]
    if path.is_absolute() or drive:
        raise Invalid.on("file", f"zip entry {name!r} has an absolute path")
    if ".." in path.parts:
        raise Invalid.on("file", f"zip entry {name!r} climbs out of the archive ('..')")
    return str(path)


def files_from_zip(
    name: str, data: bytes, limits: ZipLimits = ZipLimits()
) -> list[tuple[str, bytes]]:
    """The regular files inside the zip ``data`` (directories and DICOMDIR index skipped)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise Invalid.on("file", f"{name} is not a readable zip ({exc})") from exc
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
    if declared > max(1, len(data)) * limits.max_ratio:
        raise Invalid.on(
            "file", f"{name} expands {declared // max(1, len(data))} times: refused as a zip bomb"
        )
    out: list[tuple[str, bytes]] = []
    total = 0
    for info in entries:
        inner = _safe_name(info.filename)
        if PurePosixPath(inner).name.upper() == "DICOMDIR":
            continue
        with archive.open(info) as fp:
            chunk = fp.read(info.file_size + 1)
        if len(chunk) > info.file_size:
            raise Invalid.on("file", f"zip entry {inner!r} is larger than it declares")
        total += len(chunk)
        if total > limits.max_total:
            raise TooLarge.on("file", f"{name} expands past the limit of {limits.max_total}")
        out.append((f"{name}:{inner}", chunk))
    if not out:
        raise Invalid.on("file", f"{name} contains no files")
    return out


async def read_parts(
    request: web.Request, limit: int, field: str | None = None
) -> list[tuple[str, bytes]]:
    """The (file name, bytes) of each part of a multipart request (only those named ``field``
    when given; zips expanded), refusing the whole request past ``limit`` bytes."""
    reader = await request.multipart()
    files: list[tuple[str, bytes]] = []
    total = 0
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise Invalid.on("body", "nested multipart bodies are not accepted")
        if field is not None and part.name != field:
            continue
        data = bytearray()
        while chunk := await part.read_chunk(256 * 1024):
            data += chunk
            total += len(chunk)
            if total > limit:
                raise TooLarge.on("file", f"the upload is over the limit of {limit} bytes")
        name = part.filename or f"part {len(files) + 1}"
        content = bytes(data)
        files.extend(files_from_zip(name, content) if is_zip(content) else [(name, content)])
    return files
