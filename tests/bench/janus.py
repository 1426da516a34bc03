"""Janus: the reference C SFU (Debian's ``janus`` 1.1.2, VideoRoom plugin), started from a
throwaway configuration, and a small client for its HTTP API.

Janus's ICE (libnice) gathers no loopback candidates, so the benchmark runs inside a private
network namespace and Janus is told to gather on one end of a veth pair only.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

__all__ = ["JanusServer", "JanusClient", "JanusHandle", "JanusError"]

LIB = Path("/usr/lib/x86_64-linux-gnu/janus")
PORT = 8088


class JanusError(Exception):
    """Janus refused a request; the message is Janus's."""


class JanusServer:
    """One Janus process with only the VideoRoom plugin and the HTTP transport on 127.0.0.1."""

    def __init__(self, interface: str, *, event_loops: int = 0) -> None:
        self.interface = interface
        self.event_loops = event_loops
        self.url = f"http://127.0.0.1:{PORT}/janus"
        self._dir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> str | None:
        """Why Janus cannot run here, or None."""
        if shutil.which("janus") is None:
            return "the janus binary is missing (Debian package 'janus')"
        if not (LIB / "plugins" / "libjanus_videoroom.so").exists():
            return f"{LIB}/plugins/libjanus_videoroom.so is missing"
        return None

    def start(self) -> None:
        folder = self._dir = Path(tempfile.mkdtemp(prefix="bench-janus-"))
        for kind, library in (
            ("plugins", "libjanus_videoroom.so"),
            ("transports", "libjanus_http.so"),
        ):
            (folder / kind).mkdir()
            (folder / kind / library).symlink_to(LIB / kind / library)
        (folder / "none").mkdir()
        loops = f"event_loops = {self.event_loops}" if self.event_loops else ""
        (folder / "janus.jcfg").write_text(f"""
general: {{
    configs_folder = "{folder}"
    plugins_folder = "{folder}/plugins"
    transports_folder = "{folder}/transports"
    events_folder = "{folder}/none"
    loggers_folder = "{folder}/none"
    debug_level = 3
    session_timeout = 0
    {loops}
}}
media: {{
    rtp_port_range = "20000-40000"
}}
nat: {{
    ice_enforce_list = "{self.interface}"
    nice_debug = false
}}
plugins: {{}}
transports: {{}}
events: {{}}
""")
        (folder / "janus.transport.http.jcfg").write_text(f"""
general: {{
    json = "plain"
    base_path = "/janus"
    http = true
    port = {PORT}
    ip = "127.0.0.1"
    https = false
}}
admin: {{
    admin_http = false
}}
""")
        (folder / "janus.plugin.videoroom.jcfg").write_text("general: {}\n")
        self.process = subprocess.Popen(
            ["janus", "-C", str(folder / "janus.jcfg"), "-F", str(folder), "-o"],
            stdout=open(folder / "janus.log", "wb"),
            stderr=subprocess.STDOUT,
        )

    async def wait_ready(self, seconds: float = 15.0) -> None:
        deadline = time.monotonic() + seconds
        async with aiohttp.ClientSession() as http:
            while True:
                if self.process is not None and self.process.poll() is not None:
                    raise JanusError(f"janus exited with {self.process.returncode}: {self.log()}")
                try:
                    async with http.get(self.url + "/info") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise JanusError(f"janus did not answer on {self.url}: {self.log()}")
                await asyncio.sleep(0.1)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self, tail: int = 2000) -> str:
        if self._dir is None or not (self._dir / "janus.log").exists():
            return ""
        return (self._dir / "janus.log").read_text(errors="replace")[-tail:]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._dir is not None and not os.environ.get("BENCH_KEEP_JANUS_LOG"):
            shutil.rmtree(self._dir, ignore_errors=True)


class JanusClient:
    """One Janus session over HTTP: requests, and a long-poll that hands each handle its
    asynchronous events."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._http = aiohttp.ClientSession()
        self._session: int | None = None
        self._transactions = (f"t{n}" for n in itertools.count())
        self._events: dict[int, asyncio.Queue[dict[str, Any]]] = {}
        self._poller: asyncio.Task[None] | None = None

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "transaction": next(self._transactions)}
        async with self._http.post(self.url + path, json=body) as resp:
            reply: dict[str, Any] = await resp.json(content_type=None)
        if reply.get("janus") == "error":
            raise JanusError(f"{body.get('janus')}: {reply['error']}")
        return reply

    async def start(self) -> None:
        self._session = (await self.post("", {"janus": "create"}))["data"]["id"]
        self._poller = asyncio.ensure_future(self._poll())

    async def attach(self) -> JanusHandle:
        reply = await self.post(
            f"/{self._session}", {"janus": "attach", "plugin": "janus.plugin.videoroom"}
        )
        handle = int(reply["data"]["id"])
        self._events[handle] = asyncio.Queue()
        return JanusHandle(self, handle, self._events[handle])

    async def _poll(self) -> None:
        while True:
            async with self._http.get(f"{self.url}/{self._session}?maxev=20") as resp:
                reply = await resp.json(content_type=None)
            for event in reply if isinstance(reply, list) else [reply]:
                queue = self._events.get(event.get("sender", -1))
                if queue is not None:
                    queue.put_nowait(event)

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        if self._session is not None:
            try:
                await self.post(f"/{self._session}", {"janus": "destroy"})
            except (aiohttp.ClientError, JanusError):
                pass
        await self._http.close()


class JanusHandle:
    """A VideoRoom handle: plugin messages and their events."""

    def __init__(
        self, client: JanusClient, handle: int, events: asyncio.Queue[dict[str, Any]]
    ) -> None:
        self._client = client
        self.id = handle
        self._events = events
        self._seen: set[str] = set()  # core events passed by while waiting for answers

    async def request(self, body: dict[str, Any]) -> dict[str, Any]:
        """A synchronous plugin request (``create``, ``destroy``, ``listparticipants``)."""
        reply = await self._client.post(
            f"/{self._client._session}/{self.id}", {"janus": "message", "body": body}
        )
        data: dict[str, Any] = reply.get("plugindata", {}).get("data", {})
        if "error" in data:
            raise JanusError(f"{body['request']}: {data['error']}")
        return data

    async def message(
        self,
        body: dict[str, Any],
        jsep: dict[str, str] | None = None,
        *,
        expect: str,
        seconds: float = 20.0,
    ) -> tuple[dict[str, Any], dict[str, str] | None]:
        """An asynchronous plugin request; returns the data and JSEP of its answer, the first
        event whose data has the key ``expect`` (other notifications are skipped)."""
        request: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            request["jsep"] = jsep
        await self._client.post(f"/{self._client._session}/{self.id}", request)
        async with asyncio.timeout(seconds):
            while True:
                event = await self._events.get()
                if event.get("janus") != "event":
                    self._seen.add(event.get("janus", ""))  # webrtcup, media, …: no answer
                    continue
                data = event.get("plugindata", {}).get("data", {})
                if "error" in data:
                    raise JanusError(f"{body['request']}: {data['error']}")
                if expect in data:
                    return data, event.get("jsep")

    async def wait_for(self, kind: str, seconds: float = 20.0) -> None:
        """Until Janus has sent a core event ``kind`` (``webrtcup``: the handle's media is up)."""
        async with asyncio.timeout(seconds):
            while kind not in self._seen:
                event = await self._events.get()
                self._seen.add(event.get("janus", ""))
