"""DICOMweb: the QIDO-RS / WADO-RS / STOW-RS subset viewers need, under ``/dicom-web/``.

Every request is authenticated and reaches only the studies of cases its user may read. A
viewer's burst of frame requests is answered from memory after the first (``FrameIndex``,
``Grants``): a change to access made through this server applies to the next request, one
made by another process within ``GRANT_SECONDS``. JSON is ``application/dicom+json`` exactly
(no charset); frames are ``multipart/related`` parts whose Content-Type names their
``transfer-syntax``, in what the Accept header prefers (``negotiate``): as stored
(``transfer-syntax=*`` or that syntax), JPEG-LS lossless (transcoded once and kept,
``imaging.transcode``), or decoded to native. JSON replies are gzipped by a middleware.

Bounds: a frame list names each frame once, at most ``MAX_FRAMES`` of them; frame replies
larger than ``INLINE_BYTES``, and every instance or series retrieval, are streamed part by
part (``MultipartRelated``). Imaging a user may not see answers 404
exactly as imaging that does not exist. Patient identifiers are refused as QIDO query keys
(they would travel in a URL). Every reply carries ``Cache-Control: no-store``.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import pydicom
from aiohttp import web
from sqlalchemy import func
from sqlmodel import col, select

from ..api.queries import QidoStudyQuery
from ..api.responses import DicomJson, DicomJsonList
from ..api.roles import CASE_AUTHORS, EVERYONE
from ..api.routing import Call, RouteTable
from ..errors import Forbidden, Invalid
from ..models import Case, DicomInstance, DicomSeries, ImagingStudy, Patient, User
from ..services import SERVICES
from .access import instance_for, sees_copies, series_for, study_for, visible_case_ids
from .frames import INLINE_BYTES, FrameIndex, read_frames
from .multipart import NO_STORE, MultipartRelated, Part
from .store import ENCAPSULATED_SYNTAXES, NATIVE_SYNTAXES, DicomStore
from .transcode import (
    JPEG_LS_LOSSLESS,
    LOSSY_SYNTAXES,
    NotAcceptable,
    PixelModule,
    Transcoder,
    decodable,
)
from .upload import read_parts

__all__ = ["routes", "MetadataCache", "METADATA", "FRAMES", "TRANSCODER", "MAX_FRAMES", "negotiate"]

routes = RouteTable()
DICOM_JSON = "application/dicom+json"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_FRAME_LIST = re.compile(r"\d{1,9}(,\d{1,9})*")
# Frames one request may name: a viewer asks for one at a time; a whole instance in one
# request is allowed up to this many.
MAX_FRAMES = 1000
# A streamed reply reads its frames this many bytes at a time (or one frame, if larger).
STREAM_BYTES = 1 << 20
# Patient identifiers would travel in the URL (logs, proxies, history): not accepted.
_PATIENT_KEYS = {
    "PatientID",
    "00100020",
    "PatientName",
    "00100010",
    "PatientBirthDate",
    "00100030",
}
_QIDO_STUDY_KEYS = {
    "StudyInstanceUID",
    "0020000D",
    "StudyDate",
    "00080020",
    "ModalitiesInStudy",
    "00080061",
    "limit",
    "offset",
    "includefield",
    "fuzzymatching",
}


class MetadataCache:
    """Series metadata (DICOM JSON with BulkDataURIs), built once per series, least recently
    used out first."""

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._items: OrderedDict[int, bytes] = OrderedDict()

    def get(self, series_id: int) -> bytes | None:
        found = self._items.get(series_id)
        if found is not None:
            self._items.move_to_end(series_id)
        return found

    def put(self, series_id: int, body: bytes) -> None:
        self._items[series_id] = body
        self._items.move_to_end(series_id)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def forget(self, series_id: int) -> None:
        self._items.pop(series_id, None)


def _dicom_json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body).encode(),
        status=status,
        headers={"Content-Type": DICOM_JSON, **NO_STORE},
    )


def _value(vr: str, *values: Any) -> dict[str, Any]:
    return (
        {"vr": vr, "Value": [v for v in values if v not in (None, "")]}
        if any(v not in (None, "") for v in values)
        else {"vr": vr}
    )


def _uid(call: Call, name: str) -> str:
    raw = call.request.match_info[name]
    if not _UID.match(raw) or len(raw) > 64:
        raise Invalid.on(name, f"{raw[:70]!r} is not a DICOM UID")
    return raw


def _base(call: Call) -> str:
    # The public base URL comes from settings, never from the request's Host header.
    return f"{call.services.settings.effective_public_url}/dicom-web"


def _int_param(call: Call, name: str, default: int, high: int) -> int:
    raw = call.request.query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > len(str(high)) or int(raw) > high:
        raise Invalid.on(name, f"{raw[:20]!r} must be a whole number up to {high}")
    return int(raw)


@routes.add(
    "GET",
    "/dicom-web/studies",
    roles=EVERYONE,
    summary="Search studies (QIDO-RS)",
    response=DicomJsonList,
    query=QidoStudyQuery,
    media_types=(DICOM_JSON,),
    writes=True,  # audited: the record must commit
    tag="dicomweb",
)
async def search_studies(call: Call) -> web.Response:
    q = call.request.query
    identifying = sorted(set(q) & _PATIENT_KEYS)
    if identifying:
        raise Invalid.on(
            identifying[0],
            "patient identifiers never travel in a URL: find a patient's cases by MRN with "
            'POST /api/cases/lookup {"mrn"}, then search by StudyInstanceUID',
        )
    unknown = sorted(set(q) - _QIDO_STUDY_KEYS)
    if unknown:
        raise Invalid.on(unknown[0], f"unsupported query parameter {unknown[0]!r}")
    limit = _int_param(call, "limit", 100, 1000)
    offset = _int_param(call, "offset", 0, 1_000_000)
    cases = await visible_case_ids(call.session, call.me)
    query = select(ImagingStudy, Case, Patient).where(
        ImagingStudy.case_id == Case.id,
        Case.patient_id == Patient.id,
        col(Case.id).in_(cases),
    )
    uid = q.get("StudyInstanceUID") or q.get("0020000D")
    if uid:
        if not _UID.match(uid):
            raise Invalid.on("StudyInstanceUID", f"{uid[:70]!r} is not a DICOM UID")
        query = query.where(ImagingStudy.study_instance_uid == uid)
    day = q.get("StudyDate") or q.get("00080020")
    if day and not re.fullmatch(r"\d{8}(-\d{8})?|\d{8}-|-\d{8}", day):
        raise Invalid.on("StudyDate", f"{day[:30]!r} is not YYYYMMDD or a range of them")
    rows = list(await call.session.exec(query.order_by(col(ImagingStudy.id))))
    cipher = call.services.cipher
    modality = q.get("ModalitiesInStudy") or q.get("00080061")
    out = []
    for study, case, patient in rows:
        copy = sees_copies(call.me, case)
        if study.deidentified != copy:
            continue
        # External participants see the pseudonymous case number in place of the patient.
        mrn = case.number if copy else cipher.open("patient.mrn", patient.mrn_enc)
        name = case.number if copy else cipher.open("patient.name", patient.name_enc)
        birth = "" if copy else cipher.open("patient.birth_date", patient.birth_date_enc)
        sday = study.study_date.strftime("%Y%m%d")
        if day:
            low, _, high = day.partition("-") if "-" in day else (day, "", day)
            if (low and sday < low) or (high and sday > high):
                continue
        series = list(
            await call.session.exec(select(DicomSeries).where(DicomSeries.study_id == study.id))
        )
        if not series:
            continue  # referenced on the case, nothing stored yet
        modalities = sorted(
            {s.modality for s in series if s.modality}
            | ({study.modality} if study.modality else set())
        )
        if modality and modality not in modalities:
            continue
        instances = (
            await call.session.exec(
                select(func.count())
                .select_from(DicomInstance)
                .where(col(DicomInstance.series_id).in_([s.id for s in series]))
            )
        ).one()
        out.append(
            {
                "00080005": _value("CS", "ISO_IR 192"),
                "00080020": _value("DA", sday),
                "00080050": _value("SH", ""),
                "00080061": _value("CS", *modalities),
                "00081030": _value("LO", study.description),
                "00081190": _value("UR", f"{_base(call)}/studies/{study.study_instance_uid}"),
                "00100010": {"vr": "PN", "Value": [{"Alphabetic": name}]},
                "00100020": _value("LO", mrn),
                "00100030": _value("DA", birth.replace("-", "")),
                "0020000D": _value("UI", study.study_instance_uid),
                "00201206": _value("IS", len(series)),
                "00201208": _value("IS", instances),
            }
        )
    await call.audit(
        action="dicomweb.search",
        target_type="dicomweb",
        target_id="studies",
        detail={"found": len(out)},
    )
    return _dicom_json(out[offset : offset + limit])


@routes.add(
    "GET",
    "/dicom-web/studies/{study}/series",
    roles=EVERYONE,
    summary="Search a study's series (QIDO-RS)",
    tag="dicomweb",
    response=DicomJsonList,
    media_types=(DICOM_JSON,),
    answers=(422,),
)
async def search_series(call: Call) -> web.Response:
    study = await study_for(call.session, call.me, _uid(call, "study"))
    series = list(
        await call.session.exec(
            select(DicomSeries)
            .where(DicomSeries.study_id == study.id)
            .order_by(col(DicomSeries.number), col(DicomSeries.id))
        )
    )
    out = []
    for s in series:
        count = (
            await call.session.exec(
                select(func.count())
                .select_from(DicomInstance)
                .where(DicomInstance.series_id == s.id)
            )
        ).one()
        out.append(
            {
                "0008103E": _value("LO", s.description),
                "00080060": _value("CS", s.modality),
                "0020000D": _value("UI", study.study_instance_uid),
                "0020000E": _value("UI", s.series_uid),
                "00200011": _value("IS", s.number),
                "00201209": _value("IS", count),
                "00081190": _value(
                    "UR", f"{_base(call)}/studies/{study.study_instance_uid}/series/{s.series_uid}"
                ),
            }
        )
    return _dicom_json(out)


async def _instances(call: Call, series: DicomSeries) -> list[DicomInstance]:
    return list(
        await call.session.exec(
            select(DicomInstance)
            .where(DicomInstance.series_id == series.id)
            .order_by(col(DicomInstance.instance_number), col(DicomInstance.id))
        )
    )


@routes.add(
    "GET",
    "/dicom-web/studies/{study}/series/{series}/instances",
    roles=EVERYONE,
    summary="Search a series' instances (QIDO-RS)",
    tag="dicomweb",
    response=DicomJsonList,
    media_types=(DICOM_JSON,),
    answers=(422,),
)
async def search_instances(call: Call) -> web.Response:
    study, series = await series_for(
        call.session, call.me, _uid(call, "study"), _uid(call, "series")
    )
    return _dicom_json(
        [
            {
                "00080016": _value("UI", i.sop_class_uid),
                "00080018": _value("UI", i.sop_uid),
                "0020000D": _value("UI", study.study_instance_uid),
                "0020000E": _value("UI", series.series_uid),
                "00200013": _value("IS", i.instance_number),
                "00280008": _value("IS", i.frames),
                "00280010": _value("US", i.rows),
                "00280011": _value("US", i.columns),
            }
            for i in await _instances(call, series)
        ]
    )


def _with_bulk(
    call: Call, study_uid: str, series_uid: str, instance: DicomInstance, meta: dict[str, Any]
) -> Any:
    frames = ",".join(str(n) for n in range(1, instance.frames + 1))
    meta["7FE00010"] = {
        "vr": "OW",
        "BulkDataURI": f"{_base(call)}/studies/{study_uid}/series/"
        f"{series_uid}/instances/{instance.sop_uid}"
        f"/frames/{frames}",
    }
    return meta


@routes.add(
    "GET",
    "/dicom-web/studies/{study}/series/{series}/metadata",
    roles=EVERYONE,
    summary="Retrieve a series' metadata (WADO-RS)",
    writes=True,  # audited: the record must commit
    tag="dicomweb",
    response=DicomJsonList,
    media_types=(DICOM_JSON,),
    answers=(422,),
)
async def series_metadata(call: Call) -> web.Response:
    # Always asked of the database; the answer is kept for the frame requests that follow.
    study, series = await call.request.app[FRAMES].grants.check(
        call.session, call.me, _uid(call, "study"), _uid(call, "series")
    )
    cache: MetadataCache = call.request.app[METADATA]
    assert series.id is not None
    body = cache.get(series.id)
    if body is None:
        instances = await _instances(call, series)
        # Decrypted once per fill of the cache, in a thread: a series is hundreds of instances.
        metas = await asyncio.to_thread(
            lambda: [call.services.dicom.metadata(i) for i in instances]
        )
        body = json.dumps(
            [
                _with_bulk(call, study.study_instance_uid, series.series_uid, i, meta)
                for i, meta in zip(instances, metas, strict=True)
            ]
        ).encode()
        cache.put(series.id, body)
    await call.audit(action="dicomweb.metadata", target_type="series", target_id=series.id)
    return web.Response(body=body, headers={"Content-Type": DICOM_JSON, **NO_STORE})


@routes.add(
    "GET",
    "/dicom-web/studies/{study}/series/{series}/instances/{instance}/metadata",
    roles=EVERYONE,
    summary="Retrieve an instance's metadata (WADO-RS)",
    tag="dicomweb",
    response=DicomJsonList,
    media_types=(DICOM_JSON,),
    answers=(422,),
)
async def instance_metadata(call: Call) -> web.Response:
    series, instance = await instance_for(
        call.session, call.me, _uid(call, "study"), _uid(call, "series"), _uid(call, "instance")
    )
    meta = call.services.dicom.metadata(instance)
    return _dicom_json([_with_bulk(call, _uid(call, "study"), series.series_uid, instance, meta)])


# What a frames request may get: the frames as stored, re-encoded to JPEG-LS lossless, or
# decoded to explicit little endian.
STORED, JPEG_LS, NATIVE = "stored", "jpeg-ls", "native"
_OFFERED = (
    f"this server sends transfer-syntax={JPEG_LS_LOSSLESS} (JPEG-LS lossless), "
    f"{EXPLICIT_LE} (explicit little endian) or * (each frame as stored)"
)


def _ranges(accept: str) -> list[tuple[str, str]]:
    """(type, transfer-syntax) of each media range of ``accept``, most preferred first (by q,
    then order); ranges with q=0 left out."""
    out: list[tuple[float, int, str, str]] = []
    for i, item in enumerate(accept.split(",")[:20]):
        params: dict[str, str] = {}
        for p in item.split(";")[1:]:
            name, _, value = p.partition("=")
            params[name.strip().lower()] = value.strip().strip('"')
        try:
            q = float(params.get("q", "1"))
        except ValueError:
            q = 1.0
        if q > 0:
            out.append((-q, i, params.get("type", ""), params.get("transfer-syntax", "")))
    return [(kind, syntax) for _, _, kind, syntax in sorted(out)]


def negotiate(accept: str, stored: str) -> list[str]:
    """What a frames request accepts of frames stored as ``stored``, best first (``STORED``,
    ``JPEG_LS``, ``NATIVE``); NotAcceptable naming what was asked if nothing."""
    native = stored in NATIVE_SYNTAXES
    if not accept.strip() or accept.strip() == "*/*":
        return [STORED if native else NATIVE]
    media = "application/octet-stream" if native else ENCAPSULATED_SYNTAXES[stored]
    choices: list[str] = []
    asked: list[str] = []
    for kind, syntax in _ranges(accept):
        if syntax in ("*", stored) or (not syntax and kind in (media, "*/*")):
            choice = STORED
        elif syntax == JPEG_LS_LOSSLESS or (not syntax and kind == "image/jls"):
            choice = STORED if stored == JPEG_LS_LOSSLESS else JPEG_LS
        elif syntax in ("", EXPLICIT_LE) and kind in ("", "application/octet-stream"):
            choice = STORED if native else NATIVE
        else:
            asked.append(f"transfer-syntax={syntax}" if syntax else f"type={kind}")
            continue
        if choice not in choices:
            choices.append(choice)
    if stored in LOSSY_SYNTAXES and STORED in choices:
        # A lossy frame gains nothing from a lossless re-encoding, and would grow.
        choices.remove(STORED)
        choices.insert(0, STORED)
    if not choices:
        raise NotAcceptable(
            f"cannot send frames stored as {stored} as {', '.join(asked)[:160]}: {_OFFERED}"
        )
    return choices


def _decode(data: bytes) -> Any:
    """The instance's pixels decoded, frames first (one frame is a stack of one)."""
    ds = pydicom.dcmread(io.BytesIO(data))
    array = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) == 1:
        array = array[np.newaxis, ...]
    return array


def _native(array: Any, number: int) -> bytes:
    frame = np.ascontiguousarray(array[number - 1])
    data: bytes = frame.astype(frame.dtype.newbyteorder("<")).tobytes()
    return data


def _frame_numbers(raw: str, count: int) -> list[int]:
    """The frames a request names (1-based, in its order), each between 1 and ``count``.

    A frame named twice is refused rather than sent twice or quietly dropped: the reply's
    parts answer the list in order, and a client that repeats a frame has a bug to hear of
    (repeats were how one request asked for 105 MB of the same frame)."""
    if not _FRAME_LIST.fullmatch(raw):
        raise Invalid.on("frames", f"{raw[:40]!r} is not a comma-separated list of numbers")
    numbers = [int(n) for n in raw.split(",")]
    if len(numbers) > MAX_FRAMES:
        raise Invalid.on("frames", f"asks for {len(numbers)} frames; at most {MAX_FRAMES}")
    seen: set[int] = set()
    for n in numbers:
        if n < 1 or n > count:
            raise Invalid.on("frames", f"this instance has frames 1 to {count}")
        if n in seen:
            raise Invalid.on("frames", f"names frame {n} more than once")
        seen.add(n)
    return numbers


def _size(instance: DicomInstance, number: int) -> int:
    return sum(run[1] for run in instance.frame_index[number - 1])


def _batches(instance: DicomInstance, numbers: list[int]) -> Iterator[list[int]]:
    """``numbers`` in runs of at most ``STREAM_BYTES`` (or one frame, if larger)."""
    batch: list[int] = []
    size = 0
    for n in numbers:
        length = _size(instance, n)
        if batch and size + length > STREAM_BYTES:
            yield batch
            batch, size = [], 0
        batch.append(n)
        size += length
    yield batch


async def _recent_user(request: web.Request, user_id: int) -> User | None:
    return await request.app[FRAMES].grants.user(request.app[SERVICES].db, user_id)


@routes.add(
    "GET",
    "/dicom-web/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
    roles=EVERYONE,
    summary="Retrieve frames (WADO-RS)",
    tag="dicomweb",
    media_types=("multipart/related",),
    answers=(406, 422),
    users=_recent_user,  # the token is verified each time; its user is at most GRANT_SECONDS old
)
async def frames(call: Call) -> web.Response:
    # A viewer asks for every frame of a series in a burst: the user record, the access
    # decision and the frame offsets come from memory (Grants, FrameIndex) after the first.
    instance = await call.request.app[FRAMES].instance(
        call.session, call.me, _uid(call, "study"), _uid(call, "series"), _uid(call, "instance")
    )
    numbers = _frame_numbers(call.request.match_info["frames"], instance.frames)
    choices = negotiate(call.request.headers.get("Accept", ""), instance.transfer_syntax)
    store = call.services.dicom
    unfit = ""
    for choice in choices:
        if choice == STORED:
            return await _as_stored(store, instance, numbers)
        if choice == NATIVE:
            if not decodable(instance.transfer_syntax):
                unfit = f"frames stored as {instance.transfer_syntax} are not decoded here"
                continue
            array = await asyncio.to_thread(lambda: _decode(store.read_file(instance)))
            reply = MultipartRelated("application/octet-stream")
            part = f"application/octet-stream; transfer-syntax={EXPLICIT_LE}"
            return reply.streamed(_native_parts(array, part, numbers))
        transcoder = call.request.app[TRANSCODER]
        pixels = await transcoder.pixels(call.session, instance)
        why = pixels.unfit() or (
            None
            if decodable(instance.transfer_syntax)
            else f"frames stored as {instance.transfer_syntax} are not decoded here"
        )
        if why is not None:
            unfit = why
            continue
        return await _transcoded(transcoder, instance, numbers, pixels)
    raise NotAcceptable(f"cannot send frames as JPEG-LS lossless: {unfit}; ask for * as stored")


async def _as_stored(
    store: DicomStore, instance: DicomInstance, numbers: list[int]
) -> web.Response:
    native = instance.transfer_syntax in NATIVE_SYNTAXES
    media = (
        "application/octet-stream" if native else ENCAPSULATED_SYNTAXES[instance.transfer_syntax]
    )
    syntax = EXPLICIT_LE if native else instance.transfer_syntax
    part = f"{media}; transfer-syntax={syntax}"
    reply = MultipartRelated(media)
    if sum(_size(instance, n) for n in numbers) <= INLINE_BYTES:
        # A viewer's request (a frame or a few): one read, one body.
        return reply.whole((part, d) for d in await read_frames(store, instance, numbers))
    batches = list(_batches(instance, numbers))
    # Read before answering, so a missing file is an error reply, not a cut-off one.
    first = await read_frames(store, instance, batches[0])
    return reply.streamed(_stored_parts(store, instance, part, first, batches[1:]))


async def _transcoded(
    transcoder: Transcoder, instance: DicomInstance, numbers: list[int], pixels: PixelModule
) -> web.Response:
    reply = MultipartRelated("image/jls")
    part = f"image/jls; transfer-syntax={JPEG_LS_LOSSLESS}"
    # The first made before answering, so a frame that cannot be made is an error reply.
    first = await transcoder.frame(instance, numbers[0], pixels)
    if len(numbers) == 1:
        return reply.whole([(part, first)])
    return reply.streamed(_transcoded_parts(transcoder, instance, numbers, pixels, part, first))


async def _transcoded_parts(
    transcoder: Transcoder,
    instance: DicomInstance,
    numbers: list[int],
    pixels: PixelModule,
    part: str,
    first: bytes,
) -> AsyncIterator[Part]:
    yield part, first
    for n in numbers[1:]:
        yield part, await transcoder.frame(instance, n, pixels)


async def _stored_parts(
    store: DicomStore,
    instance: DicomInstance,
    part: str,
    first: list[bytes | bytearray],
    rest: list[list[int]],
) -> AsyncIterator[Part]:
    for data in first:
        yield part, data
    for batch in rest:
        for data in await read_frames(store, instance, batch):
            yield part, data


async def _native_parts(array: Any, part: str, numbers: list[int]) -> AsyncIterator[Part]:
    for n in numbers:
        yield part, _native(array, n)


@routes.add(
    "GET",
    "/dicom-web/studies/{study}/series/{series}/instances/{instance}",
    roles=EVERYONE,
    summary="Retrieve an instance (WADO-RS)",
    writes=True,  # audited: the record must commit
    tag="dicomweb",
    media_types=("multipart/related",),
    answers=(422,),
)
async def retrieve_instance(call: Call) -> web.Response:
    _, instance = await instance_for(
        call.session, call.me, _uid(call, "study"), _uid(call, "series"), _uid(call, "instance")
    )
    data = await asyncio.to_thread(call.services.dicom.read_file, instance)
    await call.audit(action="dicomweb.retrieve", target_type="instance", target_id=instance.id)
    return MultipartRelated("application/dicom").streamed(_listed([("application/dicom", data)]))


@routes.add(
    "GET",
    "/dicom-web/studies/{study}/series/{series}",
    roles=EVERYONE,
    summary="Retrieve a series (WADO-RS)",
    writes=True,  # audited: the record must commit
    tag="dicomweb",
    media_types=("multipart/related",),
    answers=(422,),
)
async def retrieve_series(call: Call) -> web.Response:
    _, series = await series_for(call.session, call.me, _uid(call, "study"), _uid(call, "series"))
    store = call.services.dicom
    instances = await _instances(call, series)
    await call.audit(action="dicomweb.retrieve", target_type="series", target_id=series.id)
    return MultipartRelated("application/dicom").streamed(_files(store, instances))


async def _listed(parts: list[Part]) -> AsyncIterator[Part]:
    for item in parts:
        yield item


async def _files(store: DicomStore, instances: list[DicomInstance]) -> AsyncIterator[Part]:
    """Each instance's file, read in a thread when its turn comes."""
    for i in instances:
        yield "application/dicom", await asyncio.to_thread(store.read_file, i)


@routes.add(
    "POST",
    "/dicom-web/studies",
    roles=CASE_AUTHORS,
    summary="Store instances (STOW-RS)",
    tag="dicomweb",
    raw_body="multipart/related",
    writes=False,
    response=DicomJson,
    media_types=(DICOM_JSON,),
    answers=(409, 413),
)
async def stow(call: Call) -> web.Response:
    """Instances are stored against the case that references their study (add the study's UID
    to the case first); nothing is stored if any part is refused. The body streams to a spool
    and is checked there before the write unit is taken."""
    if not call.request.content_type.startswith("multipart/related"):
        raise Invalid.on("body", 'send multipart/related; type="application/dicom"')
    services = call.services
    assert call.me.id is not None
    async with services.spools.open(call.me.id) as spool:
        limit = services.settings.max_imaging_upload_bytes
        files = await read_parts(call.request, limit, spool)
        parsed = await services.dicom.check(files)
        studies = {p.study_uid for p in parsed}
        if len(studies) != 1:
            raise Invalid.on("file", "one STOW request stores instances of one study")
        async with services.db.write() as session:
            study = await study_for(session, call.me, next(iter(studies)))
            case = await session.get(Case, study.case_id)
            assert case is not None
            if case.home_institution_id != call.me.institution_id:
                raise Forbidden("only staff of the case's institution may store its imaging")
            stored = await services.dicom.ingest(session, case, call.me, parsed)
            await services.audit.append(
                session,
                actor_id=call.me.id,
                action="dicomweb.store",
                target_type="case",
                target_id=case.id,
                detail={"instances": len(files)},
            )
    for series in stored:
        assert series.id is not None
        call.request.app[METADATA].forget(series.id)
    return _dicom_json(
        {
            "00081190": _value("UR", f"{_base(call)}/studies/{study.study_instance_uid}"),
            "00081199": {
                "vr": "SQ",
                "Value": [
                    {
                        "00081150": _value("UI", str(p.dataset.SOPClassUID)),
                        "00081155": _value("UI", p.sop_uid),
                    }
                    for p in parsed
                ],
            },
        }
    )


METADATA = web.AppKey("dicom_metadata", MetadataCache)
FRAMES = web.AppKey("dicom_frames", FrameIndex)
TRANSCODER = web.AppKey("dicom_transcoder", Transcoder)
