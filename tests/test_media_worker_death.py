"""A media worker that dies (SIGKILL) costs a moment of media, not the session: every
participant's attendance span is closed, a new worker starts, the room is told, and real aiortc
peers publish again on fresh connections and see each other's media through the new worker."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from aiortc import RTCPeerConnection

from media.worker import WorkerSfu
from server.app import SFU, create_app
from server.config import Settings

from .test_live_media import CONFIG, Participant, _spans, _wait, loopback_only, next_session

__all__ = ["loopback_only"]  # the fixture, used by every test here


class Republisher(Participant):
    """A participant who, like the browser client, publishes afresh on ``media-reset``."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.resets: list[dict[str, Any]] = []
        self.sio.on("media-reset", self._on_reset, namespace="/board")

    async def _on_reset(self, data: dict[str, Any]) -> None:
        self.resets.append(data)
        self.tasks.append(asyncio.ensure_future(self._republish()))

    async def _republish(self) -> None:
        old_up, old_down = self.up, self.down
        self.up, self.down = RTCPeerConnection(CONFIG), None
        self.frames = Counter()
        await old_up.close()
        if old_down is not None:
            await old_down.close()
        await self.publish()


@pytest.fixture
async def server(settings: Settings, aiohttp_server: Callable[..., Any]) -> TestServer:
    return await aiohttp_server(create_app(settings, sfu_factory=WorkerSfu))


async def test_a_killed_media_worker_is_replaced_and_the_peers_come_back_by_themselves(
    server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    url = str(server.make_url("/"))
    sid = await next_session(server, auth, ids["board_id"])
    sfu = server.app[SFU]
    assert isinstance(sfu, WorkerSfu)
    chair, surgeon = Republisher("chair"), Republisher("surgeon")
    both = (chair, surgeon)

    def media_both_ways() -> bool:
        return all(p.frames["video"] >= 10 and p.frames["audio"] >= 10 for p in both)

    try:
        for p in both:
            await p.connect(url, auth[p.name]["Authorization"].split(" ", 1)[1])
            assert (await p.call("join", {"session_id": sid}))["ok"]
        await chair.publish()
        await surgeon.publish()
        await _wait(media_both_ways, 30, "media both ways")
        assert [s.left_at for s in await _spans(server, sid)] == [None, None]

        dead = sfu.pid
        assert dead is not None
        os.kill(dead, signal.SIGKILL)
        await _wait(lambda: all(p.resets for p in both), 20, "media-reset to everyone")
        assert sfu.pid not in (None, dead)
        # Each participant left the media when the worker died: both spans are closed.
        spans = await _spans(server, sid)
        assert len(spans) == 2 and all(s.left_at is not None for s in spans)

        await _wait(media_both_ways, 30, "media both ways through the new worker")
        spans = await _spans(server, sid)
        assert sorted(s.user_id for s in spans if s.left_at is None) == [3, 6]
        # The socket and the session were never lost: nobody left the room.
        assert (await chair.call("chat", {"text": "back"}))["ok"]
        assert chair.resets[0] == {"reason": "the media server restarted: publish again"}
    finally:
        for p in both:
            await p.close()
