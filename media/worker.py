"""WorkerSfu: the SFU in its own process, behind the same ``Sfu`` interface.

The server's event loop can be busy (a slow query, a PDF, a large upload) without delaying a
video packet, and media gets the second core. Parent and worker speak JSON lines over the
worker's stdin/stdout: requests ``{"id", "op", "args"}``, replies ``{"id", "ok"|"error"}`` and
events ``{"event": <kind>, ...}``; a relay is a request without an id, and gets no reply. Run
the worker alone with ``python -m media.worker``.

A worker that dies on its own is started again, and every participant whose media it held is
reported lost (``MediaReset``, one per room) so that they publish afresh. The worker exits when
its stdin closes, which the kernel does when the server process dies, however it dies.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, Literal

from . import events as ev
from .sfu import EventSink, IceServer, MediaError, RoomStats

__all__ = ["WorkerSfu"]

log = logging.getLogger(__name__)

_EVENT_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (ev.DownOffer, ev.MediaJoined, ev.MediaLeft, ev.ActiveSpeaker, ev.LinkQuality)
}
_LIMIT = 8 * 1024 * 1024  # one line carries at most one SDP
_CALL_TIMEOUT = 30.0
_CRASH_LOOP_SECONDS = 2.0
_RELAY_BACKLOG = 1024 * 1024  # bytes waiting in the pipe past which relayed messages are dropped


class WorkerSfu:
    """Parent side: starts ``python -m media.worker`` on first use and forwards every call."""

    def __init__(self, sink: EventSink, ice_servers: list[IceServer], *, last_n: int = 6) -> None:
        self._sink = sink
        self._ice = [dataclasses.asdict(s) for s in ice_servers]
        self._options = {"last_n": last_n}
        self._proc: asyncio.subprocess.Process | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next = 0
        self._lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        # Who has media in the worker, by room: what a dead worker took with it.
        self._members: dict[str, set[str]] = {}
        self._closing = False
        self._started = 0.0

    @property
    def pid(self) -> int | None:
        """The worker's process id, while one runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    async def _ensure(self) -> asyncio.subprocess.Process:
        async with self._lock:
            if self._proc is None or self._proc.returncode is not None:
                self._proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "media.worker",
                    json.dumps(self._ice),
                    json.dumps(self._options),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    limit=_LIMIT,
                )
                self._started = time.monotonic()
                self._reader = asyncio.ensure_future(self._read(self._proc))
            return self._proc

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            message = json.loads(line)
            if "event" in message:
                event = _EVENT_TYPES[message.pop("event")](**message)
                if isinstance(event, ev.MediaLeft):
                    self._forget(event.room, event.participant)
                self._sink(event)
                continue
            future = self._pending.pop(message["id"], None)
            if future is None or future.done():
                continue
            if "error" in message:
                future.set_exception(MediaError(message["error"]))
            else:
                future.set_result(message.get("ok"))
        for future in self._pending.values():
            if not future.done():
                future.set_exception(MediaError("the media worker exited"))
        self._pending.clear()
        await proc.wait()
        if not self._closing:
            await self._restart(proc)

    async def _restart(self, dead: asyncio.subprocess.Process) -> None:
        """The worker died on its own (killed, out of memory, a crash in a codec): start a new
        one, then tell the owner whose media was lost, so they can publish again."""
        lost, self._members = self._members, {}
        log.error(
            "WorkerSfu(pid %d) exited with %s: starting a new worker", dead.pid, dead.returncode
        )
        if time.monotonic() - self._started < _CRASH_LOOP_SECONDS:
            await asyncio.sleep(_CRASH_LOOP_SECONDS)  # one that dies at start must not spin
        if self._closing:
            return
        await self._ensure()
        for room, participants in lost.items():
            self._sink(ev.MediaReset(room, tuple(sorted(participants))))

    def _forget(self, room: str, participant: str) -> None:
        members = self._members.get(room)
        if members is not None:
            members.discard(participant)
            if not members:
                del self._members[room]

    async def _call(self, op: str, **args: Any) -> Any:
        proc = await self._ensure()
        assert proc.stdin is not None
        self._next += 1
        request_id = self._next
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        line = json.dumps({"id": request_id, "op": op, "args": args}) + "\n"
        try:
            proc.stdin.write(line.encode())
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            self._pending.pop(request_id, None)
            raise MediaError("the media worker exited") from exc
        try:
            return await asyncio.wait_for(future, timeout=_CALL_TIMEOUT)
        except TimeoutError as exc:
            self._pending.pop(request_id, None)
            raise MediaError(
                f"the media worker did not answer {op} in {_CALL_TIMEOUT:.0f} s"
            ) from exc

    async def publish(self, room: str, participant: str, offer_sdp: str) -> str:
        # Counted from the request on: a worker dying mid-negotiation lost this one's media too.
        self._members.setdefault(room, set()).add(participant)
        return str(
            await self._call("publish", room=room, participant=participant, offer_sdp=offer_sdp)
        )

    async def answer_down(self, room: str, participant: str, answer_sdp: str) -> None:
        await self._call("answer_down", room=room, participant=participant, answer_sdp=answer_sdp)

    async def candidate(
        self,
        room: str,
        participant: str,
        direction: Literal["up", "down"],
        candidate: dict[str, Any],
    ) -> None:
        await self._call(
            "candidate",
            room=room,
            participant=participant,
            direction=direction,
            candidate=candidate,
        )

    async def leave(self, room: str, participant: str) -> None:
        self._forget(room, participant)
        await self._call("leave", room=room, participant=participant)

    async def set_presenter(self, room: str, participant: str | None) -> None:
        await self._call("set_presenter", room=room, participant=participant)

    async def images_first(self, room: str, participant: str, on: bool) -> None:
        await self._call("images_first", room=room, participant=participant, on=on)

    async def request_keyframe(self, room: str, participant: str) -> None:
        await self._call("request_keyframe", room=room, participant=participant)

    def relay(self, room: str, message: str, skip: str | None = None) -> None:
        # No reply and no wait: a relayed message is worth nothing late. Without a worker
        # nobody has media to relay to; with one that does not read, its pipe's buffer is
        # bounded here rather than growing.
        proc = self._proc
        if proc is None or proc.returncode is not None or proc.stdin is None:
            return
        if proc.stdin.transport.get_write_buffer_size() > _RELAY_BACKLOG:
            return
        args = {"room": room, "message": message, "skip": skip}
        proc.stdin.write((json.dumps({"op": "relay", "args": args}) + "\n").encode())

    async def stats(self, room: str) -> RoomStats:
        return RoomStats(**await self._call("stats", room=room))

    async def close(self) -> None:
        self._closing = True
        proc = self._proc
        if proc is not None and proc.returncode is None:
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), timeout=5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._reader is not None:
            await self._reader  # also one that was about to restart a worker that died


async def _serve(ice: list[dict[str, Any]], options: dict[str, Any]) -> None:
    """Worker side: one LocalSfu, driven by the parent's JSON lines."""
    from .local import LocalSfu

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout

    def write(message: dict[str, Any]) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    def sink(event: ev.MediaEvent) -> None:
        write({"event": type(event).__name__, **dataclasses.asdict(event)})

    sfu = LocalSfu(sink, [IceServer(**s) for s in ice], **options)
    # Everything alive now (modules: aiortc, av, numpy…) stays alive: out of the collector's
    # full passes, which otherwise went through it all for nothing, 100-200 ms with every
    # packet held up (logged by _gc_timer below, over the emulated link at N = 8).
    gc.collect()
    gc.freeze()
    tasks: set[asyncio.Task[None]] = set()
    watch = asyncio.ensure_future(_watch_loop())
    gc.callbacks.append(_gc_timer())

    async def handle(request: dict[str, Any]) -> None:
        try:
            result = await getattr(sfu, request["op"])(**request["args"])
            if isinstance(result, RoomStats):
                result = dataclasses.asdict(result)
            write({"id": request["id"], "ok": result})
        except MediaError as exc:
            write({"id": request["id"], "error": str(exc)})
        except Exception as exc:  # noqa: BLE001 — the parent must never wait for a lost reply
            logging.getLogger(__name__).exception("WorkerSfu(%s) failed", request["op"])
            write({"id": request["id"], "error": f"media worker error: {type(exc).__name__}"})

    while line := await reader.readline():
        request = json.loads(line)
        if request["op"] == "relay":  # fire and forget: no id, no reply
            sfu.relay(**request["args"])
            continue
        # Each call runs on its own, as it would in-process: a slow negotiation for one
        # participant does not hold up another's.
        task = asyncio.ensure_future(handle(request))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    watch.cancel()
    await sfu.close()


_STALL_S = 0.1  # an event loop late by this much has held up every packet meanwhile


async def _watch_loop(interval: float = 0.05) -> None:
    """Log each time the worker's event loop was held up (a stall delays every packet)."""
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(interval)
        late = loop.time() - before - interval
        if late > _STALL_S:
            log.warning("WorkerSfu event loop held up %.0f ms", late * 1000)


def _gc_timer() -> Callable[[str, dict[str, int]], None]:
    """A gc callback that logs collections slow enough to hold up packets."""
    started = 0.0

    def timed(phase: str, info: dict[str, int]) -> None:
        nonlocal started
        if phase == "start":
            started = time.perf_counter()
            return
        took = time.perf_counter() - started
        if took > _STALL_S / 2:
            log.warning(
                "WorkerSfu garbage collection of generation %d took %.0f ms (%d collected)",
                info["generation"],
                took * 1000,
                info["collected"],
            )

    return timed


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    asyncio.run(
        _serve(
            json.loads(sys.argv[1]) if len(sys.argv) > 1 else [],
            json.loads(sys.argv[2]) if len(sys.argv) > 2 else {},
        )
    )
