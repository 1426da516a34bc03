"""Spool: the temporary files of one upload in flight, and the spools of every user's uploads.

An upload streams to files here before anything reads it, so no request body is held in memory
and none is read while the database's write unit is held. Each request gets its own 0700 folder
under ``DATA_DIR/spool/`` with server-made file names (0600, created exclusively, never through
a symbolic link); the folder is removed when the request ends, however it ends.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, BinaryIO

from .errors import TooMany

__all__ = ["Spool", "Spools", "create_exclusive"]

log = logging.getLogger(__name__)

# A spool folder untouched this long belongs to a process that died mid-upload (the request
# timeouts end any live upload long before): the next upload removes it.
STALE_SECONDS = 24 * 3600

_EXCLUSIVE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def create_exclusive(path: Path) -> BinaryIO:
    """A new file at ``path`` for writing, readable by this user only; never an existing file,
    never through a symbolic link."""
    fd = os.open(path, _EXCLUSIVE, 0o600)
    return os.fdopen(fd, "wb")


class Spool:
    """One request's folder of temporary files."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def create(self, suffix: str = ".part") -> tuple[Path, BinaryIO]:
        """A new empty file with a server-made name, open for writing."""
        path = self.folder / f"{secrets.token_hex(16)}{suffix}"
        return path, create_exclusive(path)


class Spools:
    """The uploads in flight in this process: at most ``per_user`` at once for one user."""

    def __init__(self, root: Path, per_user: int, retry_after: int = 10) -> None:
        self.root = root
        self.per_user = per_user
        self.retry_after = retry_after
        self._in_flight: dict[int, int] = {}

    def in_flight(self, user_id: int) -> int:
        return self._in_flight.get(user_id, 0)

    @asynccontextmanager
    async def slot(self, user_id: int) -> AsyncIterator[None]:
        """One of ``user_id``'s upload slots, held while inside; TooMany (with a Retry-After)
        while the user has ``per_user`` uploads in flight already."""
        if self.in_flight(user_id) >= self.per_user:
            raise TooMany(
                f"you have {self.per_user} uploads in progress already: wait for one to finish",
                retry_after=self.retry_after,
            )
        self._in_flight[user_id] = self.in_flight(user_id) + 1
        try:
            yield
        finally:
            left = self._in_flight.pop(user_id) - 1
            if left:
                self._in_flight[user_id] = left

    @asynccontextmanager
    async def open(self, user_id: int) -> AsyncIterator[Spool]:
        """A spool for one upload of ``user_id`` in one of their slots, removed with its files
        on leaving."""
        async with self.slot(user_id):
            folder = await asyncio.to_thread(self._make_folder)
            try:
                yield Spool(folder)
            finally:
                await asyncio.to_thread(shutil.rmtree, folder, False, _log_leftover)

    def _make_folder(self) -> Path:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._sweep()
        folder = self.root / secrets.token_hex(16)
        folder.mkdir(mode=0o700)
        return folder

    def _sweep(self) -> None:
        """Remove the spools of processes that died mid-upload."""
        stale = time.time() - STALE_SECONDS
        for folder in self.root.iterdir():
            try:
                if folder.is_dir() and not folder.is_symlink() and folder.stat().st_mtime < stale:
                    shutil.rmtree(folder, False, _log_leftover)
            except FileNotFoundError:
                continue  # another process swept it first


def _log_leftover(function: Any, path: str, info: Any) -> None:
    # The request's own answer matters more than one leftover temporary file (0600, no name
    # from the request): log it rather than turn the answer into an error.
    log.warning("Spool(%s) could not remove a temporary file: %s", Path(path).name, info[1])
