"""Peer: a real socket.io client of the /board namespace that records what it receives."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import socketio


@dataclass
class Peer:
    """A socket.io client that records every event it receives."""

    client: socketio.AsyncClient
    events: list[tuple[str, Any]] = field(default_factory=list)

    async def call(self, event: str, data: Any = None) -> Any:
        return await self.client.call(event, data, namespace="/board", timeout=10)

    def seen(self, event: str) -> list[Any]:
        return [d for e, d in self.events if e == event]

    async def wait_for(
        self, event: str, predicate: Callable[[Any], bool] = lambda _: True, seconds: float = 5.0
    ) -> Any:
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            for data in self.seen(event):
                if predicate(data):
                    return data
            await asyncio.sleep(0.02)
        raise AssertionError(f"no {event} matching within {seconds}s; saw {self.events}")
