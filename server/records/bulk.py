"""Bulk exports: every agreed plan of a date range in one format, into a directory (CLI) or a
zip file (records page), with progress, a manifest and an audit record per plan.

The renderer's workers are kept busy (a few jobs in flight each); one plan that fails does not
stop the others: it is listed under ``failed`` with the reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
import socket
import threading
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import Conflict, EboardError, Invalid, NotFound
from ..export.exporter import Exporter
from ..export.renderer import Options
from ..models import Case, User, utcnow
from ..services import Services
from .range import DateRange
from .sealed_stream import SealedWriter

__all__ = ["BulkExport", "BulkExports", "DirectorySink", "ZipSink", "run", "new_id"]

log = logging.getLogger(__name__)

# Zips of finished jobs are kept this long for download, then removed (and all of them when the
# server stops: a job lives in one process's memory, and its zip holds patient data).
KEEP_SECONDS = 3600
RUNNING_PER_USER = 2


def _private_file(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file only the server's user may read (it may name a patient)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


class Sink(Protocol):
    def write(self, name: str, data: bytes) -> None: ...
    def close(self) -> None: ...


class DirectorySink:
    """Files into a directory; an existing non-empty one only with ``force``."""

    def __init__(self, folder: Path, *, force: bool) -> None:
        if folder.exists() and not folder.is_dir():
            raise Invalid.on("out", f"{folder} exists and is not a directory")
        if folder.is_dir() and any(folder.iterdir()) and not force:
            raise Invalid.on(
                "out", f"{folder} is not empty; choose an empty directory or pass --force"
            )
        if not folder.parent.is_dir():
            raise Invalid.on("out", f"{folder.parent} is not a directory")
        folder.mkdir(mode=0o700, exist_ok=True)
        self.folder = folder

    def write(self, name: str, data: bytes) -> None:
        target = self.folder / name
        partial = target.with_name(f".{name}.partial")
        _private_file(partial, data)
        os.replace(partial, target)

    def close(self) -> None:
        pass


class ZipSink:
    """Files into one zip archive, written to a partial name and renamed when complete."""

    def __init__(self, path: Path, key: bytes) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = path
        self._partial = path.with_name(f".{path.name}.partial")
        # Home-audience files name the patient: sealed under a key only this process holds,
        # and readable by the server's user alone.
        handle = SealedWriter(self._partial, key)
        # PDFs and base64 are already dense: stored, not deflated.
        self._zip = zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED)
        self._handle = handle
        # Writes run in threads; a cancelled job's discard must not close the zip mid-write.
        self._lock = threading.Lock()

    def write(self, name: str, data: bytes) -> None:
        with self._lock:
            if not self._handle.closed:
                self._zip.writestr(name, data)

    def close(self) -> None:
        with self._lock:
            self._zip.close()
            self._handle.close()
            os.replace(self._partial, self.path)

    def discard(self) -> None:
        with self._lock:
            self._zip.close()
            self._handle.close()
            self._partial.unlink(missing_ok=True)

    @property
    def size(self) -> int:
        """The zip's plain size (all of it once closed)."""
        return self._handle.size


@dataclass
class BulkExport:
    """One bulk export and how far it has got."""

    id: str
    owner_id: int | None
    options: Options
    days: DateRange
    zone: str  # IANA name of the zone the days are in
    board_id: int | None
    case_ids: list[int]
    state: str = "running"  # running | done | failed
    done: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    created_at: str = field(
        default_factory=lambda: utcnow().isoformat(timespec="seconds").replace("+00:00", "Z")
    )
    finished: float | None = None
    path: Path | None = None
    # The zip's key (see sealed_stream): in this process's memory only, like the job itself.
    key: bytes = field(default_factory=lambda: AESGCM.generate_key(bit_length=256), repr=False)
    size: int = 0  # the zip's plain size, once written

    @property
    def total(self) -> int:
        return len(self.case_ids)

    @property
    def download_name(self) -> str:
        return f"eboard-plans-{self.days.start}-{self.days.end}-{self.options.format}.zip"

    def _what(self) -> dict[str, Any]:
        """What was asked for: the same in the progress report and in the manifest."""
        return {
            "format": self.options.format,
            "media_type": self.options.kind.media_type,
            "language": self.options.language,
            "audience": self.options.audience,
            "from": str(self.days.start),
            "to": str(self.days.end),
            "zone": self.zone,
            "board_id": self.board_id,
            "created_at": self.created_at,
        }

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            **self._what(),
            "done": self.done,
            "total": self.total,
            "failed": self.failed,
            "error": self.error,
        }

    def manifest(self) -> bytes:
        body = {**self._what(), "files": self.files, "failed": self.failed}
        return json.dumps(body, ensure_ascii=False, indent=1).encode()


async def run(
    services: Services,
    user: User | None,
    job: BulkExport,
    sink: Sink,
    *,
    via: str,
    progress: Callable[[BulkExport], None] | None = None,
) -> BulkExport:
    """Export every case of ``job`` into ``sink`` (closing it), updating ``job`` as it goes."""
    exporter = Exporter(services)
    renderer = services.renderer
    slots = asyncio.Semaphore(renderer.workers * 2)

    async def one(case_id: int) -> None:
        async with slots:
            number = str(case_id)
            try:
                async with services.db.read() as db:
                    case = await db.get(Case, case_id)
                    assert case is not None
                    number = case.number
                    work = await exporter.job(db, case, job.options)
                data = await renderer.render(work)
                # On record before it is in the file: no plan leaves unaudited.
                async with services.db.write() as db:
                    await exporter.audit(db, user, case_id, work, via=via, bulk=job.id)
                await asyncio.to_thread(sink.write, work.filename, data)
            except Exception as exc:  # one plan's failure is reported, the rest go on
                job.failed.append({"case": number, "error": _reason(exc)})
            else:
                job.files.append(
                    {
                        "case": number,
                        "version": work.record.payload["version"],
                        "plan_hash": work.record.signed["hash"],  # of the signed version
                        "file": work.filename,
                        "bytes": len(data),
                        "sha256": hashlib.sha256(data).hexdigest(),
                    }
                )
            job.done += 1
            if progress is not None:
                progress(job)

    try:
        await asyncio.gather(*(one(i) for i in job.case_ids))
        job.files.sort(key=lambda f: str(f["file"]))
        await asyncio.to_thread(sink.write, "manifest.json", job.manifest())
        await asyncio.to_thread(sink.close)
    except BaseException as exc:  # failed, or cancelled when the server stops
        job.state, job.error = "failed", _reason(exc)
        if isinstance(sink, ZipSink):
            sink.discard()
        raise
    finally:
        job.finished = time.monotonic()
    job.state = "done"
    return job


class BulkExports:
    """The bulk exports started from the records page, by id.

    Jobs live in this process's memory, and their zips in a folder of this process's own
    (several server processes may share the data directory): a job is followed and downloaded
    through the process that runs it. A finished job's zip is removed after KEEP_SECONDS, and
    every zip when the server stops.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.folder = root / f"{socket.gethostname()}-{os.getpid()}"
        self._jobs: dict[str, BulkExport] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._purge()

    def start(self, services: Services, user: User, job: BulkExport) -> BulkExport:
        self._forget_old()
        running = [j for j in self._jobs.values() if j.owner_id == user.id and j.state == "running"]
        if len(running) >= RUNNING_PER_USER:
            raise Conflict(
                f"you already have {len(running)} bulk exports running; wait for one to finish"
            )
        job.path = self.folder / f"{job.id}.zip"
        self._jobs[job.id] = job
        task = asyncio.create_task(self._run(services, user, job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, services: Services, user: User, job: BulkExport) -> None:
        assert job.path is not None
        try:
            sink = await asyncio.to_thread(ZipSink, job.path, job.key)
            await run(services, user, job, sink, via="api")
            job.size = sink.size
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # recorded on the job, which the page shows
            if job.state == "running":  # the zip could not be made
                job.state, job.error = "failed", f"the zip file could not be made ({_reason(exc)})"
                job.finished = time.monotonic()
            log.exception("bulk export %s failed", job.id)
        finally:
            # Its zip goes when its time is up, whether or not anyone asks again.
            timer = asyncio.get_running_loop().call_later(KEEP_SECONDS + 1, self._forget_old)
            self._timers.add(timer)

    def get(self, user: User, job_id: str) -> BulkExport:
        self._forget_old()
        job = self._jobs.get(job_id)
        if job is None or job.owner_id != user.id:
            raise NotFound(f"no bulk export {job_id}")
        return job

    def _forget_old(self) -> None:
        now = time.monotonic()
        self._timers = {t for t in self._timers if t.when() > asyncio.get_running_loop().time()}
        for job_id, job in list(self._jobs.items()):
            if job.finished is not None and now - job.finished > KEEP_SECONDS:
                del self._jobs[job_id]
                if job.path is not None:
                    job.path.unlink(missing_ok=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for timer in self._timers:  # after the tasks: a cancelled one still sets its timer
            timer.cancel()
        self._purge()

    def _purge(self) -> None:
        """Remove this process's zips, and the folders of processes gone for over KEEP_SECONDS
        (one that crashed cleaned nothing up; a live one never keeps a file that long)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.root.is_dir():
            stale = time.time() - KEEP_SECONDS * 2
            for path in self.root.iterdir():
                if path.is_dir() and path != self.folder and _last_change(path) < stale:
                    shutil.rmtree(path, ignore_errors=True)
                elif path.is_file() and path.name.endswith((".zip", ".partial")):
                    path.unlink(missing_ok=True)  # left by a version before per-process folders


def _last_change(folder: Path) -> float:
    """When ``folder`` or a file in it last changed (now, if it changes as we look)."""
    try:
        return max([folder.stat().st_mtime, *(p.stat().st_mtime for p in folder.iterdir())])
    except OSError:  # another process removed something meanwhile: it is alive
        return time.time()


def _reason(exc: BaseException) -> str:
    """Why something failed, for the records page: never a path on the server."""
    if isinstance(exc, EboardError):
        return exc.detail
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, asyncio.CancelledError):
        return "stopped: the server is shutting down"
    return type(exc).__name__


def new_id() -> str:
    return uuid.uuid4().hex
