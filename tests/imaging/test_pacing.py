"""Image replies paced at the rate a viewer names (X-Eboard-Pace): the kernel spreads the reply
over time instead of bursting it into a thin link's queue; the next reply is not held to it; a
bad rate is refused."""

from __future__ import annotations

import socket
import sys
import time
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from server.middlewares import PACE_HEADER

Auth = dict[str, dict[str, str]]
MSS = 1200
NATIVE = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="SO_MAX_PACING_RATE is Linux's"
)


async def _series_url(server: TestServer, http: aiohttp.ClientSession, auth: Auth) -> Any:
    async with http.get(server.make_url("/dicom-web/studies"), headers=auth["coordinator"]) as r:
        study = (await r.json(content_type=None))[0]["0020000D"]["Value"][0]
    base = f"/dicom-web/studies/{study}/series"
    async with http.get(server.make_url(base), headers=auth["coordinator"]) as r:
        series = (await r.json(content_type=None))[0]["0020000E"]["Value"][0]
    url = server.make_url(f"{base}/{series}/metadata")
    async with http.get(url, headers=auth["coordinator"]) as r:
        return server.make_url(f"{base}/{series}")


async def _timed(
    http: aiohttp.ClientSession, url: Any, headers: dict[str, str]
) -> tuple[float, int]:
    started = time.monotonic()
    async with http.get(url, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        size = len(await resp.read())
    return time.monotonic() - started, size


def _small_segments(address: Any) -> socket.socket:
    """A client socket that announces an MSS of 1,200 bytes, as across a real link (loopback's
    64 KB segments would leave the kernel's pacing nothing to spread)."""
    family, kind, proto = address[:3]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, MSS)
    return sock


async def test_a_paced_reply_takes_its_rate_and_the_next_one_is_unpaced(
    server: TestServer, auth: Auth
) -> None:
    headers = {**auth["coordinator"], **NATIVE}
    # One connection at a time: a paced one is closed after its reply, so the pace cannot
    # stick to a connection another request reuses.
    connector = aiohttp.TCPConnector(limit=1, socket_factory=_small_segments)
    async with aiohttp.ClientSession(connector=connector) as http:
        url = await _series_url(server, http, auth)
        rate = 100_000
        paced, size = await _timed(http, url, {**headers, PACE_HEADER: str(rate)})
        assert size > 30_000  # the test CT's series, every instance
        # The kernel lets the first segments go at once, then keeps the rate: a lower bound
        # only, which a loaded machine can but lengthen.
        assert paced >= (size - 10 * MSS) * 8 / rate, paced
        unpaced, _ = await _timed(http, url, headers)
        assert unpaced < paced / 2, (unpaced, paced)


@pytest.mark.parametrize("value", ["fast", "-5", "1e6", "63999", "10000000000001", "١٢٣٤٥٦٧"])
async def test_a_bad_pace_is_refused_naming_the_header(
    server: TestServer, auth: Auth, value: str
) -> None:
    async with aiohttp.ClientSession() as http:
        url = await _series_url(server, http, auth)
        headers = {**auth["coordinator"], **NATIVE, PACE_HEADER: value}
        async with http.get(url, headers=headers) as resp:
            assert resp.status == 400
            problem = await resp.json(content_type=None)
        assert PACE_HEADER in problem["detail"]
        assert problem["errors"][0]["field"] == PACE_HEADER
