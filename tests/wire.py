"""RawSocket: socket.io v5 over engine.io v4 written by hand, for frames that python-socketio's
client will not build (payloads nested past its recursion limit, 10 MB messages)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer


class RawSocket:
    """One websocket to ``/socket.io/`` joined to the ``/board`` namespace."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._next = 0

    @classmethod
    async def open(cls, http: aiohttp.ClientSession, server: TestServer, token: str) -> RawSocket:
        url = server.make_url("/socket.io/").with_query(EIO="4", transport="websocket")
        ws = await http.ws_connect(url)
        assert (await ws.receive_str()).startswith("0")  # engine.io open
        await ws.send_str("40/board," + json.dumps({"token": token}))
        assert (await ws.receive_str()).startswith("40/board,")
        return cls(ws)

    async def send(self, event: str, payload: str) -> int:
        """Send ``["event", <payload as given>]`` asking for an acknowledgement; its id."""
        self._next += 1
        await self.ws.send_str(f'42/board,{self._next}["{event}",{payload}]')
        return self._next

    async def call(self, event: str, payload: str) -> Any:
        ack = await self.send(event, payload)
        while True:
            text = await self.ws.receive_str(timeout=10)
            if text == "2":
                await self.ws.send_str("3")  # engine.io ping
            elif text.startswith(f"43/board,{ack}["):
                return json.loads(text[len(f"43/board,{ack}") :])[0]
