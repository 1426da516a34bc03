"""Bounded uploads: bodies stream to a spool outside the write unit, hostile zips and malformed
multipart bodies are refused by name, and one user cannot hold more than their share of uploads
(issue #13). Peak memory under these refusals is measured by tests/bench/bench_upload_rss.py."""

from __future__ import annotations

import asyncio
import io
import os
import struct
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from sqlalchemy import func
from sqlmodel import select

from server.app import create_app
from server.config import Settings
from server.imaging.phantom import write_ct_series
from server.models import Attachment, DicomInstance
from server.services import SERVICES
from server.spool import Spools

Client = TestClient[Any, Any]
BOUNDARY = "B0undary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


@pytest.fixture(scope="module")
def ct(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_ct_series(tmp_path_factory.mktemp("ct"), slices=1, size=32)[0].read_bytes()


def _head(name: str = "file", filename: str = "a.dcm") -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; '
        f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()


TAIL = f"\r\n--{BOUNDARY}--\r\n".encode()


def _disk(client: Client) -> set[str]:
    services = client.app[SERVICES]
    roots = (services.dicom.root, services.settings.data_dir / "spool")
    return {str(p) for root in roots if root.exists() for p in root.rglob("*") if p.is_file()}


async def _rows(client: Client) -> tuple[int, int]:
    async with client.app[SERVICES].db.read() as session:
        instances = (await session.exec(select(func.count()).select_from(DicomInstance))).one()
        attachments = (await session.exec(select(func.count()).select_from(Attachment))).one()
    return instances, attachments


def _zip(entries: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _lying_zip() -> bytes:
    """A zip whose one entry declares 1,000 bytes (in both headers) but inflates to 4 MiB."""
    data = _zip({"small.dcm": b"\0" * (4 * 1024 * 1024)})
    real = struct.pack("<I", 4 * 1024 * 1024)
    lie = struct.pack("<I", 1000)
    local = data.index(b"PK\x03\x04")
    central = data.index(b"PK\x01\x02")
    out = bytearray(data)
    # Uncompressed size: at 22 in the local header, at 24 in the central directory entry.
    assert out[local + 22 : local + 26] == real and out[central + 24 : central + 28] == real
    out[local + 22 : local + 26] = lie
    out[central + 24 : central + 28] = lie
    return bytes(out)


def _many_entries() -> bytes:
    return _zip({f"{i}.dcm": b"" for i in range(10_001)}, zipfile.ZIP_STORED)


def _form(name: str, data: bytes) -> FormData:
    form = FormData()
    form.add_field("file", data, filename=name, content_type="application/octet-stream")
    return form


@pytest.mark.parametrize(
    ("make", "status", "fragment"),
    [
        (_lying_zip, 422, "cannot be read"),
        (lambda: _zip({"a.dcm": b"\0" * 1000}, zipfile.ZIP_BZIP2), 422, "compression method"),
        (lambda: _zip({"a.dcm": b"\0" * 1000}, zipfile.ZIP_LZMA), 422, "compression method"),
        (_many_entries, 422, "more than 10000"),
    ],
    ids=["declared-sizes-lie", "bzip2", "lzma", "too-many-entries"],
)
async def test_a_hostile_zip_is_refused_by_name_and_leaves_nothing(
    client: Client,
    auth: dict[str, dict[str, str]],
    ids: dict[str, int],
    make: Callable[[], bytes],
    status: int,
    fragment: str,
) -> None:
    before = _disk(client), await _rows(client)
    resp = await client.post(
        f"/api/cases/{ids['preparing_case']}/imaging",
        data=_form("hostile.zip", make()),
        headers=auth["coordinator"],
    )
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert body["errors"][0]["field"] == "file" and fragment in body["detail"]
    assert (_disk(client), await _rows(client)) == before


@pytest.fixture
async def small(settings: Settings, aiohttp_client: Callable[..., Awaitable[Client]]) -> Client:
    """The app with a 1 MiB imaging limit."""
    return await aiohttp_client(
        create_app(Settings(**{**settings.__dict__, "max_imaging_upload_bytes": 1 << 20}))
    )


async def _streamed(size: int, name: str = "file") -> AsyncIterator[bytes]:
    """A part of ``size`` bytes, sent chunked (no Content-Length), never held whole."""
    yield _head(name)
    chunk = b"\x5a" * (64 * 1024)
    for _ in range(size // len(chunk)):
        yield chunk
    yield TAIL


async def test_an_upload_over_the_limit_is_refused_whether_declared_or_streamed(
    small: Client, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    url = f"/api/cases/{ids['preparing_case']}/imaging"
    before = _disk(small), await _rows(small)
    declared = await small.post(
        url,
        data=_head() + b"\0" * (3 << 20) + TAIL,
        headers={**auth["coordinator"], "Content-Type": MULTIPART},
    )
    streamed = await small.post(
        url,
        data=_streamed(3 << 20),
        headers={**auth["coordinator"], "Content-Type": MULTIPART},
    )
    # A part of another name is not read for free: its bytes count too.
    other = await small.post(
        url,
        data=_streamed(3 << 20, name="other"),
        headers={**auth["coordinator"], "Content-Type": MULTIPART},
    )
    for resp in (declared, streamed, other):
        assert resp.status == 413, await resp.text()
        body = await resp.json()
        assert body["errors"][0]["field"] == "file"
        assert "over the limit of 1048576 bytes" in body["detail"]
    assert (_disk(small), await _rows(small)) == before


MALFORMED = {
    "header-without-colon": (
        f'--{BOUNDARY}\r\nContent-Disposition form-data; name="file"\r\n\r\nx' + TAIL.decode()
    ).encode(),
    "control-character-in-name": (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="fi\x01le"\r\n\r\nx' + TAIL.decode()
    ).encode(),
    "header-line-too-long": f"--{BOUNDARY}\r\nX: {'a' * 20000}\r\n\r\nx".encode() + TAIL,
    "no-starting-boundary": b"--other\r\n\r\nx\r\n--other--\r\n",
    "cut-short": _head() + b"x" * 100,
}


@pytest.mark.parametrize("body", list(MALFORMED.values()), ids=list(MALFORMED))
@pytest.mark.parametrize(
    ("route", "kind"),
    [
        ("/api/cases/{case}/imaging", MULTIPART),
        ("/api/cases/{case}/attachments", MULTIPART),
        ("/dicom-web/studies", f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'),
    ],
    ids=["imaging", "attachment", "stow"],
)
async def test_a_malformed_multipart_body_is_a_400_naming_body(
    client: Client,
    auth: dict[str, dict[str, str]],
    ids: dict[str, int],
    route: str,
    kind: str,
    body: bytes,
) -> None:
    before = _disk(client), await _rows(client)
    resp = await client.post(
        route.format(case=ids["preparing_case"]),
        data=body,
        headers={**auth["coordinator"], "Content-Type": kind},
    )
    assert resp.status == 400, await resp.text()
    problem = await resp.json()
    assert problem["errors"][0]["field"] == "body"
    assert "multipart" in problem["detail"]
    assert (_disk(client), await _rows(client)) == before


class HeldUpload:
    """An upload whose body stops after its first bytes until ``release`` is set."""

    def __init__(self, client: Client, url: str, headers: dict[str, str], data: bytes) -> None:
        self.release = asyncio.Event()
        self._data = data
        self.task = asyncio.ensure_future(
            client.post(url, data=self._body(), headers={**headers, "Content-Type": MULTIPART})
        )

    async def _body(self) -> AsyncIterator[bytes]:
        yield _head() + self._data[:1000]
        await self.release.wait()
        yield self._data[1000:] + TAIL

    async def finish(self) -> int:
        self.release.set()
        resp = await self.task
        return resp.status


class WatchedSpools(Spools):
    """The app's spools, telling the test when an upload takes or gives back a slot."""

    def __init__(self, spools: Spools) -> None:
        super().__init__(spools.root, spools.per_user, spools.retry_after)
        self.changed = asyncio.Condition()

    @asynccontextmanager
    async def slot(self, user_id: int) -> AsyncIterator[None]:
        async with super().slot(user_id):
            async with self.changed:
                self.changed.notify_all()
            yield

    async def reach(self, user_id: int, count: int) -> None:
        async with asyncio.timeout(10), self.changed:
            await self.changed.wait_for(lambda: self.in_flight(user_id) == count)


@pytest.fixture
async def watched(settings: Settings, aiohttp_client: Callable[..., Awaitable[Client]]) -> Client:
    app = create_app(settings)
    app[SERVICES] = replace(app[SERVICES], spools=WatchedSpools(app[SERVICES].spools))
    return await aiohttp_client(app)


def _user_id(client: Client, headers: dict[str, str]) -> int:
    token = headers["Authorization"].split(" ", 1)[1]
    return int(client.app[SERVICES].tokens.verify("access", token).subject)


async def _reach(client: Client, headers: dict[str, str], count: int) -> None:
    """Until ``count`` uploads of the user behind ``headers`` have reached their handler."""
    spools = client.app[SERVICES].spools
    assert isinstance(spools, WatchedSpools)
    await spools.reach(_user_id(client, headers), count)


async def test_a_third_upload_at_once_is_refused_with_retry_after_and_others_go_on(
    watched: Client, auth: dict[str, dict[str, str]], ids: dict[str, int], ct: bytes
) -> None:
    client = watched
    url = f"/api/cases/{ids['preparing_case']}/imaging"
    me = auth["coordinator"]
    held = [HeldUpload(client, url, me, ct), HeldUpload(client, url, me, ct)]
    await _reach(client, me, 2)
    third = await client.post(url, data=_form("c.dcm", ct), headers=me)
    assert third.status == 429, await third.text()
    assert int(third.headers["Retry-After"]) > 0
    assert "2 uploads in progress" in (await third.json())["detail"]
    # Someone else's upload is not held back by them.
    other = await client.post(
        f"/api/cases/{ids['preparing_case']}/attachments",
        data=_form("report.txt", b"pathology: benign"),
        headers=auth["radiologist"],
    )
    assert other.status in (201, 422), await other.text()  # 422: content type not accepted
    assert [await h.finish() for h in held] == [201, 201]
    again = await client.post(url, data=_form("c.dcm", ct), headers=me)
    assert again.status == 201, await again.text()


async def test_a_slow_upload_does_not_hold_the_write_unit(
    watched: Client, auth: dict[str, dict[str, str]], ids: dict[str, int], ct: bytes
) -> None:
    client = watched
    me = auth["coordinator"]
    held = HeldUpload(client, f"/api/cases/{ids['preparing_case']}/imaging", me, ct)
    await _reach(client, me, 1)
    form = FormData()
    form.add_field("file", b"%PDF-1.4 report", filename="r.pdf", content_type="application/pdf")
    # Another user writes while the upload is still arriving: before issue #13 this waited
    # for the upload's write unit.
    async with asyncio.timeout(10):
        other = await client.post(
            f"/api/cases/{ids['preparing_case']}/attachments", data=form, headers=auth["chair"]
        )
    assert other.status == 201, await other.text()
    assert await held.finish() == 201


async def test_spools_left_by_a_dead_process_are_swept_and_live_ones_kept(
    client: Client, auth: dict[str, dict[str, str]], ids: dict[str, int], ct: bytes
) -> None:
    root = client.app[SERVICES].spools.root
    dead, live = root / "left-by-a-crash", root / "another-process-uploading"
    for folder in (dead, live):
        folder.mkdir(parents=True)
        (folder / "part").write_bytes(b"patient data")
    day_ago = time.time() - 24 * 3600 - 60
    os.utime(dead, (day_ago, day_ago))
    resp = await client.post(
        f"/api/cases/{ids['preparing_case']}/imaging",
        data=_form("a.dcm", ct),
        headers=auth["coordinator"],
    )
    assert resp.status == 201, await resp.text()
    assert not dead.exists() and (live / "part").exists()


def test_upload_limits_come_from_flags_or_the_environment_and_bad_ones_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from server.__main__ import parser, settings_from
    from server.errors import ConfigError

    serve = ["serve", "--data-dir", str(tmp_path)]
    flags = ["--max-imaging-upload-bytes", "1000", "--uploads-per-user", "3"]
    settings = settings_from(parser().parse_args(serve + flags))
    assert (settings.max_imaging_upload_bytes, settings.uploads_per_user) == (1000, 3)
    monkeypatch.setenv("EBOARD_UPLOADS_PER_USER", "0")
    with pytest.raises(ConfigError, match="uploads-per-user must be .* at least 1, not '0'"):
        settings_from(parser().parse_args(serve))
    with pytest.raises(ConfigError, match="max-imaging-upload-bytes must be .*, not '2G'"):
        settings_from(parser().parse_args([*serve, "--max-imaging-upload-bytes", "2G"]))
