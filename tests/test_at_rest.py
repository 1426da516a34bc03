"""Patient data at rest: after the demo is seeded and served as an operator runs it, and a bulk
export has been made, no byte under the data dir names a demo patient, in any encoding the
code writes; the data dir and every directory in it are 0700, every file 0600."""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from server.imaging.phantom import PhantomPatient, write_ct_series

from .cli import ROOT

# The demo's patients (server/demo.py; the CT's patient is the first, see PhantomPatient),
# and one the test registers with a Chinese name and imaging in GB18030.
PATIENTS = (
    ("Wang", "Fang", "HZ00012345", date(1961, 3, 2)),
    ("Liu", "Qiang", "HZ00067890", date(1955, 11, 20)),
    ("Zhou", "Min", "HZ00099887", date(1970, 6, 15)),
    ("Chen", "Hui", "HZ00054321", date(1958, 9, 9)),
    ("欧阳", "娜娜", "HZ00077777", date(1980, 1, 2)),
)
PASSWORD = "at-rest-demo-1"


def _forms(family: str, given: str, mrn: str, born: date) -> list[str]:
    """How the code may write a patient: plain, DICOM person name and dates, ISO dates."""
    return [
        f"{family}{given}",
        f"{family} {given}",
        f"{given} {family}",
        f"{family}^{given}",
        f"{family}, {given}",
        mrn,
        born.isoformat(),
        born.strftime("%Y%m%d"),
        born.strftime("%Y/%m/%d"),
        born.strftime("%d/%m/%Y"),
        born.strftime("%m/%d/%Y"),
    ]


def _json_escaped(text: str) -> str:
    return "".join(f"\\u{ord(c):04x}" for c in text)


# A base64 needle shorter than this says nothing: the four characters an 8-byte date leaves
# at one alignment turned up by chance in a sealed (AES-GCM) image (four given bytes occur in
# half a megabyte of ciphertext about once in 8,000; over the short needles and the sealed
# files, a few per cent of runs). The date's other two alignments leave 8 characters and are
# still looked for.
MIN_BASE64_NEEDLE = 8


def _base64_forms(raw: bytes) -> list[bytes]:
    """``raw`` as it appears inside base64 text, whatever its alignment there (the alignments
    that leave at least ``MIN_BASE64_NEEDLE`` characters of it)."""
    out = []
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + raw)
        # Only the characters that depend on ``raw`` alone, whole base64 quanta.
        start = 4 if pad else 0
        stop = len(encoded) - 4
        if stop - start >= MIN_BASE64_NEEDLE:
            out.append(encoded[start:stop])
    return out


@dataclass(frozen=True)
class Needles:
    """Byte strings to find: ``folded`` in lower-cased data, ``exact`` as they are."""

    folded: dict[bytes, str]
    exact: dict[bytes, str]


def needles() -> Needles:
    folded: dict[bytes, str] = {}
    exact: dict[bytes, str] = {}

    def add(found: dict[bytes, str], needle: bytes, label: str) -> None:
        # One needle may stand for several encodings (ASCII is the same in UTF-8, GB18030
        # and JSON): each is named.
        found[needle] = f"{found[needle]}, {label}" if needle in found else label

    for patient in PATIENTS:
        for form in _forms(*patient):
            for encoding in ("utf-8", "utf-16-le", "utf-16-be", "gb18030"):
                # Folded as the data is (bytes.lower: ASCII letters only, in any encoding).
                add(folded, form.encode(encoding).lower(), f"{form!r} in {encoding}")
            # As json.dumps writes it (non-ASCII escaped), and every character escaped.
            add(folded, json.dumps(form)[1:-1].encode().lower(), f"{form!r} in JSON")
            add(folded, _json_escaped(form).encode().lower(), f"{form!r} JSON-escaped")
            for encoding in ("utf-8", "utf-16-le"):
                for piece in _base64_forms(form.encode(encoding)):
                    add(exact, piece, f"{form!r} ({encoding}) in base64")
    return Needles(folded, exact)


def hits(root: Path, found: Needles) -> list[str]:
    out = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        lower = data.lower()
        for needle, label in found.folded.items():
            if needle in lower:
                out.append(f"{path.relative_to(root)}: {label}")
        for needle, label in found.exact.items():
            if needle in data:
                out.append(f"{path.relative_to(root)}: {label}")
    return out


def wrong_modes(root: Path) -> list[str]:
    out = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        want = 0o700 if path.is_dir() else 0o600
        if mode != want:
            out.append(f"{path.relative_to(root) or '.'}: {mode:o}, not {want:o}")
    return out


def test_needles_find_what_the_code_writes(tmp_path: Path) -> None:
    """The search itself: each form is found as the code writes it."""
    found = needles()
    samples = {
        "dicom.dcm": b"\x00PN\x08\x00Wang^Fang \x10\x00\x30\x00DA\x08\x0019610302",
        "field.json": json.dumps({"name": "Liu Qiang", "birth": "1955-11-20"}).encode(),
        "escaped.json": b'{"name": "' + _json_escaped("Zhou Min").encode() + b'"}',
        "wide.txt": "HZ00054321".encode("utf-16-le"),
        "gb.dcm": b"\x00PN" + "欧阳^娜娜".encode("gb18030"),
        "cjk.json": json.dumps({"name": "欧阳^娜娜"}).encode(),  # \uXXXX, as json.dumps does
        "b64.txt": b"x" + base64.b64encode(b"ab" + b"Chen Hui" + b"cd"),
    }
    for name, data in samples.items():
        (tmp_path / name).write_bytes(data)
    seen = {line.split(":", 1)[0] for line in hits(tmp_path, found)}
    assert seen == set(samples)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Served:
    url: str
    data_dir: Path


def _call(url: str, body: Any = None, token: str = "") -> Any:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        url, data=None if body is None else json.dumps(body).encode(), headers=headers
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """``python -m server demo`` as an operator runs it (umask 022 inherited), until the test
    ends: its database open, its WAL in use."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data_dir.chmod(0o755)  # made by the operator, open to all: the server closes it
    port = _free_port()
    log = (tmp_path / "server.log").open("w")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EBOARD_")}
    before = os.umask(0o022)
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "server",
                "demo",
                "--data-dir",
                str(data_dir),
                "--port",
                str(port),
                "--media",
                "in-process",
                "--export-workers",
                "1",
                "--client-dir",
                str(tmp_path / "no-client"),
                "--demo-password",
                PASSWORD,
                # Real 512² slices (JPEG-LS and native, with de-identified copies); few of them.
                "--demo-ct",
                "3x512",
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**clean, "PYTHONPATH": str(ROOT)},
        )
    finally:
        os.umask(before)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            _call(f"{url}/api/health")
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                output = (tmp_path / "server.log").read_text()
                raise RuntimeError(f"server did not start: {output}") from None
            time.sleep(0.2)  # waiting for it to listen, not for something to happen
    try:
        yield Served(url, data_dir)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def _multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = secrets.token_hex(16)
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def _chinese_patient(served: Served, tmp_path: Path) -> None:
    """The last patient registered through the API, looked up by MRN, and given a CT whose
    DICOM attributes are in GB18030."""
    family, given, mrn, born = PATIENTS[-1]
    token = _call(f"{served.url}/api/login", {"username": "coordinator", "password": PASSWORD})[
        "token"
    ]
    board = _call(f"{served.url}/api/boards", token=token)["items"][0]["id"]
    case = _call(
        f"{served.url}/api/cases",
        {
            "board_id": board,
            "patient": {
                "name": f"{family}{given}",
                "mrn": mrn,
                "birth_date": born.isoformat(),
                "sex": "female",
            },
            "clinical_question": "Nodule: biopsy?",
        },
        token,
    )
    assert _call(f"{served.url}/api/cases/lookup", {"mrn": mrn}, token)["items"]
    patient = PhantomPatient(f"{family}^{given}", mrn, born, "F", "GB18030")
    [path] = write_ct_series(tmp_path / "gb18030", slices=1, size=64, patient=patient)
    raw = path.read_bytes()
    assert f"{family}^{given}".encode("gb18030") in raw
    body, kind = _multipart("gb.dcm", raw)
    request = urllib.request.Request(
        f"{served.url}/api/cases/{case['id']}/imaging",
        data=body,
        headers={"Content-Type": kind, "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=60) as resp:
        assert resp.status == 201


def _bulk_export(served: Served) -> dict[str, Any]:
    """A home-audience bulk export of the signed demo plan, run to its end; its job."""
    token = _call(f"{served.url}/api/login", {"username": "records", "password": PASSWORD})["token"]
    today = date.today()
    job: dict[str, Any] = _call(
        f"{served.url}/api/exports",
        {
            "from": (today - timedelta(days=1)).isoformat(),
            "to": (today + timedelta(days=1)).isoformat(),
            "format": "fhir",
            "audience": "home",
        },
        token,
    )
    deadline = time.monotonic() + 120
    while job["state"] == "running":
        assert time.monotonic() < deadline, job
        time.sleep(0.1)  # polling the job until its state changes
        job = _call(f"{served.url}/api/exports/{job['id']}", token=token)
    assert job["state"] == "done", job
    return job


def test_no_demo_patient_at_rest(served: Served, tmp_path: Path) -> None:
    _chinese_patient(served, tmp_path)
    job = _bulk_export(served)
    root = served.data_dir
    imaging = [p for p in (root / "imaging").rglob("*") if p.is_file()]
    assert len(imaging) == 14  # 3 native + 3 JPEG-LS slices, the GB18030 one, their copies
    assert (root / "eboard.sqlite3-wal").exists()  # searched while the server has it open
    zips = list((root / "exports").rglob("*.zip"))
    assert len(zips) == 1 and job["id"] in zips[0].name
    # What its owner downloads names the patients (home audience): the search finds them there,
    # so it would find them on disk too. On disk the zip is sealed.
    token = _call(f"{served.url}/api/login", {"username": "records", "password": PASSWORD})["token"]
    request = urllib.request.Request(
        f"{served.url}/api/exports/{job['id']}/file",
        headers={"Authorization": f"Bearer {token}"},
    )
    downloaded = tmp_path / "downloaded"
    downloaded.mkdir()
    with urllib.request.urlopen(request, timeout=60) as resp:
        (downloaded / "plans.zip").write_bytes(resp.read())
    with zipfile.ZipFile(downloaded / "plans.zip") as archive:
        assert "manifest.json" in archive.namelist()
    assert any(":" in h for h in hits(downloaded, needles()))
    assert hits(root, needles()) == []
    assert wrong_modes(root) == []


def test_fixture_data_dir_is_private(data_dir: Path) -> None:
    """The tests' own data dirs, seeded in the test process (its umask, not the server's)."""
    assert wrong_modes(data_dir) == []
