"""Pacs: a hospital PACS reached over DICOMweb, from which a case's study is imported.

QIDO-RS finds the study, WADO-RS retrieves it whole as ``application/dicom`` instances in the
transfer syntax the PACS holds them in (compressed pixel data arrives as acquired, not decoded
and re-encoded on the way); the caller stores them with ``DicomStore.ingest``, all or nothing.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
import pydicom
from pydicom.errors import InvalidDicomError

from ..errors import EboardError, NotFound, TooLarge
from ..spool import Spool

__all__ = ["Pacs", "PacsError"]

log = logging.getLogger(__name__)

DICOM_JSON = "application/dicom+json"
AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'
# PS3.18's default for application/dicom: explicit VR little endian, decoded by the PACS.
AS_DEFAULT = 'multipart/related; type="application/dicom"'


class PacsError(EboardError):
    """The PACS could not be reached, or answered with something other than DICOMweb."""

    status = 502
    title = "Bad gateway"


@dataclass(frozen=True)
class Pacs:
    """A DICOMweb root (``url``), e.g. ``https://pacs.example.org/dicom-web``; credentials,
    if the PACS wants them, go in the URL's user part (HTTP basic authentication)."""

    url: str
    max_bytes: int
    connect_timeout: float = 10.0
    read_timeout: float = 120.0

    @property
    def name(self) -> str:
        """The URL without credentials, for messages and logs."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    async def retrieve_study(self, study_uid: str, spool: Spool) -> list[tuple[str, Path]]:
        """Every instance of the study as ``(name, spooled file)``; NotFound if the PACS does
        not hold it, PacsError if it cannot be reached or answers out of turn."""
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.connect_timeout, sock_read=self.read_timeout
        )
        try:
            async with aiohttp.ClientSession(timeout=timeout) as http:
                await self._find(http, study_uid)
                files = await self._retrieve(http, study_uid, spool)
        except (aiohttp.ClientError, TimeoutError) as exc:
            # aiohttp's messages may quote the URL, credentials and all.
            reason = (str(exc) or type(exc).__name__).replace(self.url.rstrip("/"), self.name)
            raise PacsError(f"the PACS at {self.name} could not be reached ({reason})") from exc
        await asyncio.to_thread(self._check_study, files, study_uid)
        log.info("Pacs(%s) retrieved %d instances", self.name, len(files))
        return files

    def _study_url(self, study_uid: str) -> str:
        return f"{self.url.rstrip('/')}/studies/{quote(study_uid)}"

    async def _find(self, http: aiohttp.ClientSession, study_uid: str) -> None:
        """QIDO-RS: is the study there? (A retrieve of a missing study is not reliably a 404.)"""
        async with http.get(
            f"{self.url.rstrip('/')}/studies",
            params={"StudyInstanceUID": study_uid},
            headers={"Accept": DICOM_JSON},
        ) as resp:
            if resp.status == 204:
                found = []
            else:
                self._expect_ok(resp, "search")
                try:
                    found = await resp.json(content_type=None)
                except ValueError as exc:
                    raise PacsError(
                        f"the PACS at {self.name} answered a search with bad JSON"
                    ) from exc
        if not isinstance(found, list):
            raise PacsError(f"the PACS at {self.name} answered a search with no list")
        if not found:
            raise NotFound(f"study {study_uid} is not on the PACS at {self.name}")

    async def _retrieve(
        self, http: aiohttp.ClientSession, study_uid: str, spool: Spool
    ) -> list[tuple[str, Path]]:
        """WADO-RS: the study's instances as stored, or in the default syntax from a PACS that
        does not understand ``transfer-syntax=*``."""
        for accept in (AS_STORED, AS_DEFAULT):
            async with http.get(self._study_url(study_uid), headers={"Accept": accept}) as resp:
                if resp.status in (400, 406) and accept == AS_STORED:
                    continue
                if resp.status == 404:
                    raise NotFound(f"study {study_uid} is not on the PACS at {self.name}")
                self._expect_ok(resp, "retrieve")
                return await self._parts(resp, spool)
        raise AssertionError("unreachable: the default syntax is always asked for last")

    async def _parts(self, resp: aiohttp.ClientResponse, spool: Spool) -> list[tuple[str, Path]]:
        if not resp.content_type.startswith("multipart/"):
            raise PacsError(
                f"the PACS at {self.name} sent {resp.content_type or 'no type'}, "
                "not multipart/related instances"
            )
        reader = aiohttp.MultipartReader.from_response(resp)
        files: list[tuple[str, Path]] = []
        total = 0
        while (part := await reader.next()) is not None:
            if not isinstance(part, aiohttp.BodyPartReader):
                raise PacsError(f"the PACS at {self.name} sent a nested multipart body")
            path, fp = spool.create()
            with fp:
                while chunk := await part.read_chunk(1 << 20):
                    total += len(chunk)
                    if total > self.max_bytes:
                        raise TooLarge.on(
                            "study_instance_uid",
                            f"the study is over the imaging limit of {self.max_bytes} bytes",
                        )
                    await asyncio.to_thread(fp.write, chunk)
            files.append((f"PACS instance {len(files) + 1}", path))
        if not files:
            raise PacsError(f"the PACS at {self.name} found the study but sent no instances")
        return files

    def _expect_ok(self, resp: aiohttp.ClientResponse, what: str) -> None:
        if resp.status != 200:
            raise PacsError(f"the PACS at {self.name} answered the {what} with {resp.status}")

    def _check_study(self, files: list[tuple[str, Path]], study_uid: str) -> None:
        """Every instance belongs to the study asked for (a PACS must not slip in others)."""
        for name, path in files:
            try:
                ds = pydicom.dcmread(
                    str(path), stop_before_pixels=True, specific_tags=["StudyInstanceUID"]
                )
            except (InvalidDicomError, EOFError, OSError, ValueError) as exc:
                raise PacsError(f"the PACS at {self.name} sent {name}, not DICOM") from exc
            if str(ds.get("StudyInstanceUID", "")) != study_uid:
                raise PacsError(
                    f"the PACS at {self.name} sent {name} of another study than {study_uid}"
                )
