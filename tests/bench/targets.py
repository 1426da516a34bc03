"""Targets: the SFUs under test, each started fresh per cell, with the process to charge."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

from media.events import DownOffer, MediaEvent
from media.local import LocalSfu
from media.sfu import Sfu
from media.worker import WorkerSfu

from .clip import MAX_PUBLISHERS
from .janus import JanusServer
from .machine import VETH, child_pid
from .transcode import TranscodeWorkerSfu

__all__ = ["ROOM", "DownOfferRelay", "JanusTarget", "SfuTarget", "Target"]

ROOM = "bench"


class Target(Protocol):
    """What serves the board, and which process to charge for it."""

    name: str
    sfu: Sfu | None  # signalled through the runner, or None: the generator talks to it itself
    janus_url: str | None
    # Whether VP8 payloads arrive as sent (so PictureIDs identify frames for the latency figure):
    # not through a relay that re-encodes.
    passes_payload: bool

    async def start(self) -> None: ...

    def pid(self) -> int: ...

    async def stats(self) -> dict[str, Any]: ...

    async def stop(self) -> None: ...


class SfuTarget:
    """An ``Sfu`` owned by the runner, which plays the server process."""

    janus_url: str | None = None

    def __init__(
        self,
        name: str,
        kind: type[WorkerSfu] | type[LocalSfu],
        module: str | None,
        relay: DownOfferRelay,
    ) -> None:
        self.name = name
        self.passes_payload = kind is not TranscodeWorkerSfu
        self._kind = kind
        self._module = module  # the worker process, or None: in the runner itself
        self._relay = relay
        self.sfu: Sfu | None = None

    async def start(self) -> None:
        # Last-N off: everyone receives everyone's video, as Janus's full mesh does.
        self.sfu = self._kind(self._relay, [], last_n=MAX_PUBLISHERS)

    def pid(self) -> int:
        return child_pid(self._module) if self._module else os.getpid()

    async def stats(self) -> dict[str, Any]:
        assert self.sfu is not None
        stats = await self.sfu.stats(ROOM)
        return {"packets_forwarded": stats.packets_forwarded, **stats.extra}

    async def stop(self) -> None:
        if self.sfu is not None:
            await self.sfu.close()
            self.sfu = None


class JanusTarget:
    """Janus, started per cell; the load generator speaks its HTTP API itself."""

    sfu: Sfu | None = None

    def __init__(self, event_loops: int) -> None:
        self.name = "janus"
        self._server = JanusServer(VETH[0], event_loops=event_loops)
        self.janus_url: str | None = self._server.url
        self.passes_payload = True

    async def start(self) -> None:
        self._server.start()
        await self._server.wait_ready()

    def pid(self) -> int:
        return self._server.pid

    async def stats(self) -> dict[str, Any]:
        return {}

    async def stop(self) -> None:
        self._server.stop()


class DownOfferRelay:
    """The runner's event sink: hands the SFU's down offers to the current load generator."""

    def __init__(self) -> None:
        self.send: Callable[[dict[str, Any]], None] | None = None  # to the generator's stdin

    def __call__(self, event: MediaEvent) -> None:
        if isinstance(event, DownOffer) and self.send is not None:
            self.send({"event": "DownOffer", "participant": event.participant, "sdp": event.sdp})
