"""MultipartRelated: a ``multipart/related`` reply of DICOMweb parts, built whole when it is
small and streamed part by part when it is not, so a reply costs memory of a part at most."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import cast

from aiohttp import web
from aiohttp.payload import AsyncIterablePayload

__all__ = ["MultipartRelated", "Part", "NO_STORE"]

Part = tuple[str, bytes | bytearray]  # (Content-Type of the part, its bytes)
# Imaging and its metadata are patient data: no cache, shared or private, may keep them.
NO_STORE = {"Cache-Control": "no-store"}


class MultipartRelated:
    """One reply: its boundary, and the parts of ``kind`` (the ``type`` parameter)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.boundary = secrets.token_hex(16)

    @property
    def headers(self) -> dict[str, str]:
        content_type = f'multipart/related; type="{self.kind}"; boundary={self.boundary}'
        return {"Content-Type": content_type, **NO_STORE}

    def whole(self, parts: Iterable[Part]) -> web.Response:
        """The reply in one body, with its length: for parts already in memory."""
        chunks: list[bytes | bytearray] = []
        for content_type, data in parts:
            chunks += (self._head(content_type), data, b"\r\n")
        chunks.append(self._tail())
        return web.Response(body=b"".join(chunks), headers=self.headers)

    def streamed(self, parts: AsyncIterable[Part]) -> web.Response:
        """The reply sent chunked as ``parts`` yields them, after the handler has returned (so
        no database session is held while a slow client reads)."""
        headers = self.headers
        # The writer takes any bytes-like chunk; the annotation says bytes only.
        chunks = cast(AsyncIterable[bytes], self._chunks(parts))
        payload = AsyncIterablePayload(chunks, content_type=headers["Content-Type"])
        return web.Response(body=payload, headers=headers)

    async def _chunks(self, parts: AsyncIterable[Part]) -> AsyncIterator[bytes | bytearray]:
        async for content_type, data in parts:
            yield self._head(content_type)
            yield data
            yield b"\r\n"
        yield self._tail()

    def _head(self, content_type: str) -> bytes:
        return f"--{self.boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode()

    def _tail(self) -> bytes:
        return f"--{self.boundary}--\r\n".encode()
