"""The worker-process SFU answers every call, even one that fails unexpectedly inside it."""

from __future__ import annotations

import pytest

from media import MediaError
from media.worker import WorkerSfu


async def test_unexpected_failure_in_the_worker_is_answered_not_left_hanging() -> None:
    sfu = WorkerSfu(lambda event: None, [])
    try:
        with pytest.raises(MediaError, match="media worker error: AttributeError"):
            await sfu._call("no_such_operation")
        stats = await sfu.stats("board")  # the worker still serves
        assert stats.participants == 0
    finally:
        await sfu.close()
