"""JSON replies gzipped for a client that accepts it: series metadata, QIDO and /api JSON, with
Content-Length the compressed size; frames and clients that do not accept gzip left alone."""

from __future__ import annotations

import gzip
import json
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from server.middlewares import COMPRESS_BYTES

Auth = dict[str, dict[str, str]]


async def _get(
    http: aiohttp.ClientSession, url: Any, headers: dict[str, str]
) -> tuple[aiohttp.ClientResponse, bytes]:
    async with http.get(url, headers=headers) as resp:
        return resp, await resp.read()


def _json(resp: aiohttp.ClientResponse, body: bytes) -> Any:
    coded = resp.headers.get("Content-Encoding") == "gzip"
    return json.loads(gzip.decompress(body) if coded else body)


async def _demo_series(server: TestServer, http: aiohttp.ClientSession, auth: Auth) -> str:
    """The metadata URL of the demo CT's native series."""
    resp, body = await _get(
        http, server.make_url("/dicom-web/studies"), {**auth["coordinator"], "Accept-Encoding": ""}
    )
    study = _json(resp, body)[0]["0020000D"]["Value"][0]
    resp, body = await _get(
        http, server.make_url(f"/dicom-web/studies/{study}/series"), auth["coordinator"]
    )
    series = _json(resp, body)[0]["0020000E"]["Value"][0]
    return f"/dicom-web/studies/{study}/series/{series}/metadata"


async def test_series_metadata_is_gzipped_when_accepted(server: TestServer, auth: Auth) -> None:
    # Raw bytes as they travel: the client must not undo the coding itself.
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        url = server.make_url(await _demo_series(server, http, auth))
        plain, plain_body = await _get(http, url, {**auth["coordinator"], "Accept-Encoding": ""})
        assert plain.status == 200
        assert "Content-Encoding" not in plain.headers
        assert "Accept-Encoding" in plain.headers.get("Vary", "")
        assert int(plain.headers["Content-Length"]) == len(plain_body) >= COMPRESS_BYTES

        zipped, zipped_body = await _get(
            http, url, {**auth["coordinator"], "Accept-Encoding": "gzip, deflate, br"}
        )
        assert zipped.status == 200
        assert zipped.headers["Content-Encoding"] == "gzip"
        assert zipped.headers["Content-Type"] == "application/dicom+json"
        assert zipped.headers["Cache-Control"] == "no-store"
        assert "Accept-Encoding" in zipped.headers.get("Vary", "")
        assert int(zipped.headers["Content-Length"]) == len(zipped_body)
        assert gzip.decompress(zipped_body) == plain_body
        assert len(zipped_body) * 4 < len(plain_body)


async def test_qido_and_api_json_are_gzipped_frames_are_not(server: TestServer, auth: Auth) -> None:
    headers = {**auth["coordinator"], "Accept-Encoding": "gzip"}
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        metadata = await _demo_series(server, http, auth)
        series = metadata.removesuffix("/metadata")
        zipped = 0
        for path in ("/dicom-web/studies", series.rsplit("/", 1)[0], f"{series}/instances"):
            plain, plain_body = await _get(
                http, server.make_url(path), {**auth["coordinator"], "Accept-Encoding": ""}
            )
            resp, body = await _get(http, server.make_url(path), headers)
            assert resp.status == plain.status == 200
            # Short replies are not worth compressing; the others are gzipped.
            if len(plain_body) >= COMPRESS_BYTES:
                assert resp.headers["Content-Encoding"] == "gzip"
                assert gzip.decompress(body) == plain_body
                zipped += 1
            else:
                assert "Content-Encoding" not in resp.headers and body == plain_body
        assert zipped >= 1
        resp, body = await _get(http, server.make_url("/api/openapi.json"), headers)
        assert resp.status == 200 and resp.headers["Content-Encoding"] == "gzip"
        assert json.loads(gzip.decompress(body))
        resp, body = await _get(http, server.make_url(metadata), headers)
        frame_url = _json(resp, body)[0]["7FE00010"]["BulkDataURI"].split(",")[0]
        resp, body = await _get(
            http,
            frame_url,
            {**headers, "Accept": "multipart/related; type=application/octet-stream"},
        )
        assert resp.status == 200 and "Content-Encoding" not in resp.headers
        assert resp.headers["Content-Type"].startswith("multipart/related")
