"""read_frames: frames the page cache holds are read on the event loop, others in a thread,
and both give the store's bytes."""

from __future__ import annotations

import errno
import os

import pytest
from sqlmodel import col, select

from server.imaging import frames as frames_module
from server.imaging.frames import read_frames
from server.models import DicomInstance
from server.services import Services


async def _instances(services: Services) -> list[DicomInstance]:
    async with services.db.read() as session:
        return list(await session.exec(select(DicomInstance).order_by(col(DicomInstance.id))))


class ThreadReads:
    """Counts the frames the store reads (in a thread)."""

    def __init__(self, services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        read = services.dicom.read_frame

        def counted(instance: DicomInstance, number: int) -> bytes:
            self.count += 1
            return read(instance, number)

        monkeypatch.setattr(services.dicom, "read_frame", counted)


async def test_cached_frames_are_the_stores_bytes_read_without_a_thread(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    instances = await _instances(services)
    syntaxes = {i.transfer_syntax for i in instances}
    assert len(syntaxes) >= 2  # native and JPEG-LS
    expected = {i.sop_uid: services.dicom.read_frame(i, 1) for i in instances}  # now cached
    reads = ThreadReads(services, monkeypatch)
    for instance in instances:
        assert [bytes(f) for f in await read_frames(services.dicom, instance, [1])] == [
            expected[instance.sop_uid]
        ]
    assert reads.count == 0


async def test_a_frame_the_page_cache_lacks_is_read_in_a_thread(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read that would wait for the disk: the kernel answers a non-waiting read (RWF_NOWAIT)
    with EAGAIN, which is given here for every read on the event loop, whatever this machine's
    page cache holds; the store then reads the frame in a thread."""
    instance = (await _instances(services))[0]
    expected = services.dicom.read_frame(instance, 1)
    misses: list[int] = []

    def not_cached(fd: int, buffers: list[bytearray], offset: int, flags: int = 0) -> int:
        misses.append(flags)
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(frames_module.os, "preadv", not_cached)
    reads = ThreadReads(services, monkeypatch)
    assert [bytes(f) for f in await read_frames(services.dicom, instance, [1])] == [expected]
    assert misses == [os.RWF_NOWAIT] and reads.count == 1


async def test_a_large_request_is_read_in_a_thread_even_when_cached(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = (await _instances(services))[0]
    expected = services.dicom.read_frame(instance, 1)
    monkeypatch.setattr(frames_module, "INLINE_BYTES", len(expected) - 1)
    reads = ThreadReads(services, monkeypatch)
    assert [bytes(f) for f in await read_frames(services.dicom, instance, [1])] == [expected]
    assert reads.count == 1
