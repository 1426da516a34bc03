"""Renderer: makes an export file (PDF, FHIR, HL7 or signed JSON) from a PlanRecord.

PDF layout and the FHIR and HL7 builders are CPU work of a tenth of a second to most of a
second per plan; the renderer does it in worker processes, so a bulk export never stalls the
server's event loop (live sessions share it). Each worker loads the note templates and the
PDF engine once; work crosses to it as a picklable ``Job``.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ..errors import Invalid, Unavailable
from ..notes.templates import TemplateSet
from .record import PlanRecord

log = logging.getLogger(__name__)

__all__ = ["FORMATS", "AUDIENCES", "LANGUAGES", "Format", "Options", "Job", "Renderer", "make"]


@dataclass(frozen=True)
class Format:
    name: str
    media_type: str
    suffix: str  # of the file name, after "<case>-plan-v<version>"


FORMATS: Mapping[str, Format] = {
    f.name: f
    for f in (
        Format("pdf", "application/pdf", ".pdf"),  # for people: en, zh-CN or both
        Format("fhir", "application/fhir+json", ".fhir.json"),  # FHIR R4 document Bundle
        # HL7 v2.5 MDM^T02 (T10 for amendments), with the media type FHIR and interface
        # engines use for ER7-encoded HL7 v2.
        Format("hl7", "x-application/hl7-v2+er7", ".hl7"),
        Format("json", "application/json", ".json"),  # signed, checked by `verify`
    )
}
# The PDF's languages: both side by side (en leading), or one.
LANGUAGES: Mapping[str, tuple[str, ...]] = {
    "both": ("en", "zh-CN"),
    "en": ("en",),
    "zh-CN": ("zh-CN",),
}
# home: the case's institution, with patient identifiers; external: a partner institution,
# with the pseudonymous case number only.
AUDIENCES = ("home", "external")


@dataclass(frozen=True)
class Options:
    """What an export asks for, checked: format, PDF languages, audience."""

    format: str
    language: str = "both"
    audience: str = "home"

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise Invalid.on(
                "format", f"unknown format {self.format!r} (use one of {', '.join(FORMATS)})"
            )
        if self.language not in LANGUAGES:
            raise Invalid.on(
                "language",
                f"unknown language {self.language!r} (use one of {', '.join(LANGUAGES)})",
            )
        if self.audience not in AUDIENCES:
            raise Invalid.on(
                "audience",
                f"unknown audience {self.audience!r} (use one of {', '.join(AUDIENCES)})",
            )

    @property
    def kind(self) -> Format:
        return FORMATS[self.format]

    @property
    def languages(self) -> tuple[str, ...]:
        return LANGUAGES[self.language]


@dataclass(frozen=True)
class Job:
    """One file to make, as it crosses to a worker process."""

    record: PlanRecord
    options: Options
    case_number: str
    institution_code: str  # MSH-4, the sending facility
    zone: str  # IANA name of the institution's time zone, for the PDF
    control_id: str  # MSH-10
    at: datetime  # when the message is made (MSH-7)
    jwks: Mapping[str, Any]  # the server's public keys, for the signed JSON

    @property
    def filename(self) -> str:
        version = self.record.payload["version"]
        return f"{self.case_number}-plan-v{version}{self.options.kind.suffix}"


_templates: TemplateSet | None = None
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _warm(server_pid: int) -> None:
    """Worker start: die with the server, then load the templates and the PDF engine before the
    first job."""
    global _templates
    _die_with(server_pid)
    _templates = TemplateSet()
    from . import fhir, hl7, pdf  # noqa: F401  (imports WeasyPrint, fhir.resources, hl7apy)


def _die_with(server_pid: int) -> None:
    """Linux: the kernel kills this worker when the server process dies, even by SIGKILL. Its
    task queue has writers in every worker, so end-of-file never tells a worker the server is
    gone; and while a worker lives, so does multiprocessing's resource tracker (it exits when the
    last holder of its pipe does)."""
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        log.warning("export worker: prctl failed (errno %d)", ctypes.get_errno())
    if os.getppid() != server_pid:  # the server died before the request took effect
        os._exit(1)


def make(job: Job, templates: TemplateSet | None = None) -> bytes:
    """The export file's bytes (runs in a worker; callable in-process for tests and tools)."""
    fmt = job.options.format
    record = job.record
    if fmt == "json":
        from ..notes.signature import export_file

        return export_file(job.case_number, record.versions, job.jwks)
    chosen = templates or _templates or TemplateSet()
    from .pdf import plan_pdf

    pdf = plan_pdf(record, chosen, languages=job.options.languages, zone=ZoneInfo(job.zone))
    if fmt == "pdf":
        return pdf
    if fmt == "fhir":
        import json

        from .fhir import plan_bundle

        bundle = plan_bundle(record, chosen, pdf=pdf)
        return json.dumps(bundle, ensure_ascii=False, indent=1).encode()
    from .hl7 import mdm_message

    message = mdm_message(
        record,
        pdf,
        sending_facility=job.institution_code,
        control_id=job.control_id,
        at=job.at,
    )
    # A file of one message: every segment ends with a carriage return, the last one too.
    return (message + "\r").encode()


def default_workers() -> int:
    """Leave a core for the event loop and media: one worker on a two-core machine."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


# A plan's PDF takes about half a second; one still being laid out after this is stuck (WeasyPrint
# on pathological text) and would hold its worker, and every export queued behind it, for good.
RENDER_SECONDS = 120.0


class Renderer:
    """Owns the worker pool (started on first use) and hands jobs to it."""

    def __init__(self, workers: int | None = None, *, timeout: float = RENDER_SECONDS) -> None:
        self.workers = workers or default_workers()
        self.timeout = timeout
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # Spawned, not forked: a fork of a process running an event loop, threads and open
            # sockets is not safe.
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_warm,
                initargs=(os.getpid(),),
            )
        return self._pool

    async def render(self, job: Job) -> bytes:
        if job.options.format == "json":
            return make(job)  # canonical JSON of what is already signed: microseconds
        try:
            return await self._in_worker(job)
        except BrokenProcessPool:
            # A worker died (killed, out of memory, or stopped below): the pool is unusable from
            # then on. A new one makes this file once more; a second death is the file's error.
            log.warning("an export worker died; starting a new pool")
            return await self._in_worker(job)

    async def _in_worker(self, job: Job) -> bytes:
        pool = self._executor()
        work = asyncio.get_running_loop().run_in_executor(pool, make, job)
        try:
            return await asyncio.wait_for(work, self.timeout)
        except BrokenProcessPool:
            self._drop(pool)
            raise
        except TimeoutError:
            # The worker goes on with it regardless: stop it (and with it the files other
            # exports had in that pool; they are made again in a new one).
            log.warning("an export took over %.0f s; stopping its worker", self.timeout)
            self._drop(pool)
            raise Unavailable(
                f"making the {job.options.format} file took longer than {self.timeout:.0f} s "
                "and was stopped; try again, or export it in another format"
            ) from None

    def _drop(self, pool: ProcessPoolExecutor) -> None:
        if self._pool is pool:
            self._pool = None
        _stop(pool)

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.to_thread(_stop, pool)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Stop a pool now: its workers hold no state worth waiting for."""
    # The executor has no public way to stop a running task; its processes are killed instead.
    for process in list(getattr(pool, "_processes", {}).values()):
        process.kill()
    pool.shutdown(wait=False, cancel_futures=True)
