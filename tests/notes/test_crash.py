"""An acknowledged edit survives the server being killed: SIGKILL in the middle of three
clients' bursts of edits, restart on the same data, and every acknowledged edit is there."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pycrdt
import socketio

from ..bench.orthanc import free_port
from ..conftest import DemoTemplate

ROOT = Path(__file__).resolve().parents[2]
WRITERS = ("radiologist", "surgeon", "pathologist")
# Each writer types into the shared rationale and into a field of its own.
KILL_AFTER = 150  # acknowledged edits, all writers together
OWN_FIELD = {"radiologist": "dissent", "surgeon": "no_treatment_reason", "pathologist": "dissent"}


@contextmanager
def _server(
    data_dir: Path, port: int, *, media: str = "in-process"
) -> Iterator[subprocess.Popen[bytes]]:
    log = (data_dir / f"server-{port}.log").open("ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "server",
            "serve",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            "--media",
            media,
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
        log.close()


async def _healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            assert proc.poll() is None, "server exited while starting"
            try:
                async with http.get(f"{url}/api/health") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("server did not become healthy")


async def _login(url: str, username: str) -> str:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{url}/api/login", json={"username": username, "password": "eboard-demo"}
        ) as resp:
            assert resp.status == 200, await resp.text()
            return str((await resp.json())["token"])


async def _connect(url: str, username: str) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(
        url,
        namespaces=["/board"],
        auth={"token": await _login(url, username)},
        transports=["websocket"],
    )
    return client


class Writer:
    """One client making a burst of edits; remembers which were acknowledged."""

    def __init__(
        self, client: socketio.AsyncClient, name: str, case_id: int, acked: asyncio.Event
    ) -> None:
        self.client, self.name, self.case_id = client, name, case_id
        self.enough = acked
        self.doc: pycrdt.Doc[Any] = pycrdt.Doc()
        self.sent: list[str] = []
        self.acked: list[str] = []

    async def open(self) -> None:
        ack = await self.client.call("note-open", {"case_id": self.case_id}, namespace="/board")
        assert ack["ok"], ack
        self.doc.apply_update(base64.b64decode(ack["update"]))

    async def burst(self, edits: int) -> None:
        note = self.doc.get("note", type=pycrdt.Map)
        for i in range(edits):
            token = f"[{self.name}-{i}]"
            field = "rationale" if i % 2 == 0 else OWN_FIELD[self.name]
            before = self.doc.get_state()
            note[field].insert(len(str(note[field])), token)
            update = base64.b64encode(self.doc.get_update(before)).decode()
            self.sent.append(token)
            try:
                ack = await self.client.call(
                    "note-update",
                    {"case_id": self.case_id, "update": update},
                    namespace="/board",
                    timeout=3,
                )
            except (TimeoutError, socketio.exceptions.SocketIOError):
                return  # the server is gone
            assert ack["ok"], ack
            self.acked.append(token)
            if len(self.acked) >= KILL_AFTER // len(WRITERS):
                self.enough.set()


async def test_every_acknowledged_edit_survives_a_sigkill(
    demo_template: DemoTemplate, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(demo_template.path, data_dir)
    case_id = demo_template.ids["ready_case"]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with _server(data_dir, port) as proc:
        await _healthy(url, proc)
        enough = [asyncio.Event() for _ in WRITERS]
        writers = [
            Writer(await _connect(url, name), name, case_id, event)
            for name, event in zip(WRITERS, enough, strict=True)
        ]
        for w in writers:
            await w.open()
        bursts = [asyncio.ensure_future(w.burst(10_000)) for w in writers]
        # Kill once a good number of edits are acknowledged, while all three are still typing.
        await asyncio.gather(*(event.wait() for event in enough))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        await asyncio.gather(*bursts)
        for w in writers:
            await w.client.disconnect()
    acked = [t for w in writers for t in w.acked]
    assert all(w.acked for w in writers)
    assert all(len(w.sent) < 10_000 for w in writers), "the kill came in the middle of the bursts"

    with _server(data_dir, port) as proc:
        await _healthy(url, proc)
        reader = Writer(await _connect(url, "chair"), "chair", case_id, asyncio.Event())
        await reader.open()
        note = reader.doc.get("note", type=pycrdt.Map)
        fields = {f: str(note[f]) for f in ("rationale", "dissent", "no_treatment_reason")}
        await reader.client.disconnect()
    text = "".join(fields.values())
    missing = [t for t in acked if t not in text]
    assert not missing, f"{len(missing)} acknowledged edits lost, e.g. {missing[:5]}"
    # Each writer appended at the end of its own view: its edits keep their order in the field.
    rationale = fields["rationale"]
    for w in writers:
        positions = [rationale.index(t) for t in w.acked[::2]]
        assert positions == sorted(positions), w.name
