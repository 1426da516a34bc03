"""Nothing the server starts outlives it: SIGKILL the server and its media worker, export
workers and multiprocessing's resource tracker all exit by themselves."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from pathlib import Path

import aiohttp
import socketio

from .bench.orthanc import free_port
from .conftest import DemoTemplate
from .notes.test_crash import _healthy, _login, _server


def _alive(pid: int) -> bool:
    """Running: a zombie waiting for a reaper counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _descendants(root: int) -> dict[int, str]:
    """Every process below ``root``, with its command line."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            parents[int(entry.name)] = int(fields[1])
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                try:
                    command = (Path(f"/proc/{pid}/cmdline").read_bytes()).replace(b"\0", b" ")
                except (FileNotFoundError, ProcessLookupError):
                    continue
                found[pid] = command.decode(errors="replace")
                frontier.append(pid)
    return found


async def _start_every_child(url: str, session_board: int, plan_case: int) -> None:
    """The media worker starts with the first media call, the export pool with the first PDF."""
    chair = await _login(url, "chair")
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {chair}"}
        async with http.get(f"{url}/api/boards/{session_board}/sessions", headers=headers) as r:
            session_id = (await r.json())["items"][0]["id"]
        async with http.get(
            f"{url}/api/cases/{plan_case}/plan/export?format=pdf", headers=headers
        ) as resp:
            assert resp.status == 200, await resp.text()
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(
        url, namespaces=["/board"], auth={"token": chair}, transports=["websocket"]
    )
    try:
        joined = await client.call("join", {"session_id": session_id}, namespace="/board")
        assert joined["ok"], joined
        assert (await client.call("leave", {}, namespace="/board"))["ok"]
    finally:
        await client.disconnect()


async def test_children_exit_when_the_server_is_killed(
    demo_template: DemoTemplate, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(demo_template.path, data_dir)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with _server(data_dir, port, media="worker") as proc:
        await _healthy(url, proc)
        await _start_every_child(url, demo_template.ids["board_id"], demo_template.ids["plan_case"])
        children = _descendants(proc.pid)
        commands = " | ".join(children.values())
        assert "media.worker" in commands, commands
        assert "resource_tracker" in commands, commands
        assert "multiprocessing.spawn" in commands, commands
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        for _ in range(200):  # 20 s
            if not any(_alive(pid) for pid in children):
                break
            await asyncio.sleep(0.1)
        left = {pid: command for pid, command in children.items() if _alive(pid)}
        for pid in left:  # do not leave them to the next test
            os.kill(pid, signal.SIGKILL)
        assert left == {}
