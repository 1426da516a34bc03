"""The Renderer's worker processes: a worker that dies (killed, out of memory) costs no export."""

from __future__ import annotations

import os
import signal

from server.export.exporter import Exporter
from server.export.renderer import Options, Renderer
from server.models import Case
from server.services import Services


async def test_an_export_survives_its_worker_being_killed(
    services: Services, ids: dict[str, int]
) -> None:
    async with services.db.read() as db:
        case = await db.get(Case, ids["plan_case"])
        assert case is not None
        job = await Exporter(services).job(db, case, Options("hl7", "en"))
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
