"""Orthanc: the reference open-source PACS (Debian's ``orthanc`` with ``orthanc-dicomweb``),
started from a throwaway configuration on loopback, for the PACS import test and the imaging
benchmark. Synchronous on purpose: it is started and fed before any event loop runs.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

__all__ = ["Orthanc", "OrthancError", "free_port"]

BINARY = "Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


class OrthancError(Exception):
    """Orthanc did not start, or refused an instance; the message carries its log or answer."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(
    process: subprocess.Popen[bytes], url: str, seconds: float, why: Callable[[], str]
) -> None:
    """Wait until an eBoard process answers ``/api/health``; raise with ``why()`` (where to look)
    if it exits or does not answer in time."""
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: exited with {process.returncode}: {why()}")
        try:
            with urllib.request.urlopen(f"{url}/api/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer: {why()}")
        time.sleep(0.2)


class Orthanc:
    """One Orthanc process with its own storage, HTTP and DICOM ports on 127.0.0.1, no
    authentication, and the DICOMweb plugin under ``/dicom-web/``."""

    def __init__(self) -> None:
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.dicomweb_url = f"{self.url}/dicom-web"
        self._dir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> str | None:
        """Why Orthanc cannot run here, or None."""
        if shutil.which(BINARY) is None:
            return "the Orthanc binary is missing (Debian package 'orthanc')"
        if not DICOMWEB_PLUGIN.exists():
            return f"{DICOMWEB_PLUGIN} is missing (Debian package 'orthanc-dicomweb')"
        return None

    def __enter__(self) -> Orthanc:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, seconds: float = 20.0) -> None:
        folder = self._dir = Path(tempfile.mkdtemp(prefix="eboard-orthanc-"))
        config = {
            "Name": "eboard-test-pacs",
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "storage"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            # Our server does not compress either; gzip of pixel data is CPU spent for nothing.
            "HttpCompressionEnabled": False,
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        (folder / "orthanc.json").write_text(json.dumps(config, indent=2))
        with (folder / "orthanc.log").open("wb") as log:
            self.process = subprocess.Popen(
                [BINARY, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + seconds
        while True:
            if self.process.poll() is not None:
                raise OrthancError(f"Orthanc exited with {self.process.returncode}: {self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/plugins", timeout=2) as resp:
                    if "dicom-web" in json.loads(resp.read()):
                        return
                    raise OrthancError(f"Orthanc runs without its DICOMweb plugin: {self.log()}")
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise OrthancError(f"Orthanc did not answer on {self.url}: {self.log()}")
            time.sleep(0.1)

    def upload(self, paths: list[Path], *, parallel: int = 4) -> None:
        """POST each file to Orthanc's REST API (``/instances``)."""
        with ThreadPoolExecutor(parallel) as pool:
            for _ in pool.map(self._upload_one, paths):
                pass

    def _upload_one(self, path: Path) -> None:
        request = urllib.request.Request(
            f"{self.url}/instances",
            data=path.read_bytes(),
            headers={"Content-Type": "application/dicom"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=60) as resp:
            answer = json.loads(resp.read())
        if answer.get("Status") not in ("Success", "AlreadyStored"):
            raise OrthancError(f"Orthanc refused {path.name}: {answer}")

    def log(self) -> str:
        if self._dir is None or not (self._dir / "orthanc.log").exists():
            return ""
        return (self._dir / "orthanc.log").read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
