"""The Renderer's worker processes: a worker that dies (killed, out of memory) costs no export;
one stuck on a file is stopped."""

from __future__ import annotations

import os
import signal

import pytest

from server.errors import Unavailable
from server.export.exporter import Exporter
from server.export.renderer import Job, Options, Renderer
from server.models import Case
from server.services import Services


async def _job(services: Services, case_id: int, options: Options) -> Job:
    async with services.db.read() as db:
        case = await db.get(Case, case_id)
        assert case is not None
        return await Exporter(services).job(db, case, options)


async def test_an_export_survives_its_worker_being_killed(
    services: Services, ids: dict[str, int]
) -> None:
    job = await _job(services, ids["plan_case"], Options("hl7", "en"))
    renderer = Renderer(workers=1)
    try:
        first = await renderer.render(job)
        assert first.startswith(b"MSH|")
        pool = renderer._pool
        assert pool is not None
        workers = list(pool._processes)  # type: ignore[attr-defined]
        assert workers
        for pid in workers:
            os.kill(pid, signal.SIGKILL)

        again = await renderer.render(job)
        # The same message but for its time stamps: made by a new worker in a new pool.
        assert again.split(b"\r")[2:] == first.split(b"\r")[2:]
        assert renderer._pool is not pool
    finally:
        await renderer.close()


async def test_a_file_that_takes_too_long_is_stopped_and_the_renderer_goes_on(
    services: Services, ids: dict[str, int]
) -> None:
    job = await _job(services, ids["plan_case"], Options("pdf", "en"))
    # Starting a worker alone takes longer than this: the file cannot be made in time.
    renderer = Renderer(workers=1, timeout=0.05)
    try:
        with pytest.raises(Unavailable, match="took longer than"):
            await renderer.render(job)
        assert renderer._pool is None  # its worker was stopped with it
        renderer.timeout = 120
        assert (await renderer.render(job)).startswith(b"%PDF")
    finally:
        await renderer.close()
