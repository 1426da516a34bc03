"""The load generator: a board of N participants played by real aiortc peer connections, each
publishing pre-encoded VP8 + Opus and subscribing to everyone else, with no codec anywhere
(``Publisher`` and ``Subscriber`` say how), and one pacer sending for every publisher.

Run by ``bench_sfu.py`` as ``python -m tests.bench.sfu_load``; JSON lines on stdin/stdout. For an
eBoard or transcoding target, its signalling goes through the runner (``{"call": id, "op",
"args"}`` → ``{"reply": id, "ok"|"error"}``, down offers as ``{"event": "DownOffer", ...}``); for
Janus it speaks Janus's HTTP API itself. The runner's commands: ``{"cmd": "window_start"}``,
``{"cmd": "window_end"}`` (answered with ``{"window": stats}``) and ``{"cmd": "stop"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aioice.ice

from .clip import AUDIO_PACKETS_PER_SECOND, FPS, MAX_PUBLISHERS, Clip
from .janus import JanusClient, JanusError, JanusHandle
from .publisher import Publisher
from .subscriber import Subscriber

__all__ = ["Load", "Pacer"]

logger = logging.getLogger(__name__)

_FROZEN = 0.5  # seconds without a frame


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Pacer:
    """Sends every publisher's frames at 30 fps and audio at 50 packets/s, publishers evenly
    staggered; a publisher more than a frame behind skips frames (and counts them), as a browser
    under load would."""

    def __init__(self, publishers: list[Publisher]) -> None:
        self._publishers = publishers
        self._task: asyncio.Task[None] | None = None
        self.late = 0.0  # worst lateness seen

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        count = len(self._publishers)
        start = loop.time() + 0.05
        order = itertools.count()
        due: list[tuple[float, int, int, Publisher]] = []
        for i, publisher in enumerate(self._publishers):
            heapq.heappush(due, (start + i / count / FPS, next(order), 0, publisher))
            heapq.heappush(
                due, (start + i / count / AUDIO_PACKETS_PER_SECOND, next(order), 1, publisher)
            )
        periods = (1 / FPS, 1 / AUDIO_PACKETS_PER_SECOND)
        while True:
            delay = due[0][0] - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            now = loop.time()
            while due[0][0] <= now + 0.0005:
                when, _, kind, publisher = heapq.heappop(due)
                self.late = max(self.late, now - when)
                if kind == 0:
                    publisher.send_frame()
                else:
                    publisher.send_audio()
                when += periods[kind]
                while when < now - periods[kind]:  # more than one period behind: drop
                    when += periods[kind]
                    if kind == 0:
                        publisher.frames_skipped += 1
                heapq.heappush(due, (when, next(order), kind, publisher))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


class Wire:
    """JSON lines with the runner: our calls and their replies, its events and commands."""

    def __init__(self) -> None:
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self.handlers: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @staticmethod
    def send(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    async def call(self, op: str, **args: Any) -> Any:
        call = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[call] = future
        self.send({"call": call, "op": op, "args": args})
        return await future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=8 * 1024 * 1024)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            message = json.loads(line)
            if "reply" in message:
                future = self._pending.pop(message["reply"])
                if "error" in message:
                    future.set_exception(RuntimeError(message["error"]))
                else:
                    future.set_result(message.get("ok"))
                continue
            kind = message.get("event") or message.get("cmd")
            task = asyncio.ensure_future(self.handlers[kind](message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


class Load:
    """The board: publishers, subscribers, the pacer, and the measurement windows."""

    def __init__(self, size: int, clip: Clip, *, latency: bool = True) -> None:
        if not 2 <= size <= MAX_PUBLISHERS:
            raise ValueError(f"participants must be 2…{MAX_PUBLISHERS}, not {size}")
        self.sent_at: dict[int, float] = {}
        self.publishers = [Publisher(i, clip, self.sent_at) for i in range(size)]
        # Without latency the subscribers look frames up in an empty table.
        sent_at = self.sent_at if latency else {}
        self.subscribers = {p.name: Subscriber(p.name, sent_at) for p in self.publishers}
        self.pacer = Pacer(self.publishers)
        self._window_start = 0.0
        self._window_counters: dict[str, int] = {}
        self._window_cpu = 0.0

    @property
    def expected_tracks(self) -> int:
        """Down-tracks of one kind across the board: everyone receives everyone else."""
        return len(self.publishers) * (len(self.publishers) - 1)

    def flowing(self, frames: int = 3) -> tuple[int, int]:
        """(video down-tracks with ≥ ``frames`` frames, audio down-tracks with a packet)."""
        video = audio = 0
        for subscriber in self.subscribers.values():
            for track in subscriber.tracks.values():
                video += track.kind == "video" and track.frames >= frames
                audio += track.kind == "audio" and track.packets > 0
        return video, audio

    async def wait_flowing(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.flowing() == (self.expected_tracks, self.expected_tracks):
                return
            await asyncio.sleep(0.1)

    def _counters(self) -> dict[str, int]:
        return {
            "keyframe_requests": sum(p.video.keyframe_requests for p in self.publishers),
            "nacked": sum(p.video.nacked + p.audio.nacked for p in self.publishers),
            "packets_sent": sum(p.video.packets + p.audio.packets for p in self.publishers),
            "frames_sent": sum(p.frames_sent for p in self.publishers),
            "frames_skipped": sum(p.frames_skipped for p in self.publishers),
        }

    def start_window(self) -> None:
        for subscriber in self.subscribers.values():
            subscriber.start_window()
        self.pacer.late = 0.0
        self._window_counters = self._counters()
        self._window_start = time.monotonic()
        self._window_cpu = time.process_time()

    def end_window(self) -> dict[str, Any]:
        now = time.monotonic()
        seconds = now - self._window_start
        fps: list[float] = []
        audio_pps: list[float] = []
        frozen = packets = lost = 0
        intervals: list[float] = []
        latencies: list[float] = []
        for subscriber in self.subscribers.values():
            intervals += subscriber.intervals
            latencies += subscriber.latencies
            video = audio = 0
            for track in subscriber.tracks.values():
                window_packets = track.packets - track.window_packets
                packets += window_packets
                lost += track.lost - track.window_lost
                if track.kind == "video":
                    video += 1
                    frames = track.frames - track.window_frames
                    fps.append(frames / seconds)
                    gap = max(track.max_gap, now - track.last_frame)
                    frozen += frames == 0 or gap > _FROZEN
                elif track.kind == "audio":
                    audio += 1
                    audio_pps.append(window_packets / seconds)
            expected = len(self.publishers) - 1
            frozen += max(0, expected - video)  # never arrived
            fps += [0.0] * max(0, expected - video)
            audio_pps += [0.0] * max(0, expected - audio)
        counters = self._counters()
        delta = {k: counters[k] - self._window_counters[k] for k in counters}
        ms = 1000.0
        return {
            "seconds": round(seconds, 3),
            "participants": len(self.publishers),
            "down_tracks_video": self.expected_tracks,
            "packets_received": packets,
            "packets_received_per_s": round(packets / seconds, 1),
            "packets_lost": lost,
            "fps_mean": round(sum(fps) / len(fps), 2) if fps else 0.0,
            "fps_min": round(min(fps), 2) if fps else 0.0,
            "audio_pps_mean": round(sum(audio_pps) / len(audio_pps), 2) if audio_pps else 0.0,
            "frozen_streams": frozen,
            "latency_p50_ms": _round(_percentile(latencies, 0.5), ms),
            "latency_p99_ms": _round(_percentile(latencies, 0.99), ms),
            "latency_samples": len(latencies),
            "frame_interval_p50_ms": _round(_percentile(intervals, 0.5), ms),
            "frame_interval_p99_ms": _round(_percentile(intervals, 0.99), ms),
            "frame_interval_max_ms": _round(max(intervals) if intervals else None, ms),
            "keyframe_requests": delta["keyframe_requests"],
            "keyframe_requests_total": counters["keyframe_requests"],
            "nacked_packets": delta["nacked"],
            "packets_sent": delta["packets_sent"],
            "frames_sent": delta["frames_sent"],
            "frames_skipped_by_sender": delta["frames_skipped"],
            "sender_worst_lateness_ms": _round(self.pacer.late, ms),
            "generator_cpu_s": round(time.process_time() - self._window_cpu, 3),
        }

    async def close(self) -> None:
        self.pacer.stop()
        for subscriber in self.subscribers.values():
            await subscriber.close()
        for publisher in self.publishers:
            await publisher.close()


def _round(value: float | None, scale: float) -> float | None:
    return None if value is None else round(value * scale, 2)


class PipeSignalling:
    """eBoard's ``Sfu`` interface (or the transcoding relay's), reached through the runner."""

    def __init__(self, wire: Wire, load: Load) -> None:
        self._wire = wire
        self._load = load
        self._offers: dict[str, asyncio.Queue[str]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        wire.handlers["DownOffer"] = self._on_offer

    async def join(self) -> None:
        for name in self._load.subscribers:
            self._offers[name] = asyncio.Queue()
            self._tasks.append(asyncio.ensure_future(self._answer(name)))
        await asyncio.gather(*(self._publish(p) for p in self._load.publishers))

    async def _publish(self, publisher: Publisher) -> None:
        offer = await publisher.offer()
        answer = await self._wire.call("publish", participant=publisher.name, offer_sdp=offer)
        await publisher.accept(answer)

    async def _on_offer(self, message: dict[str, Any]) -> None:
        self._offers[message["participant"]].put_nowait(message["sdp"])

    async def _answer(self, name: str) -> None:
        subscriber = self._load.subscribers[name]
        while True:
            offer = await self._offers[name].get()
            answer = await subscriber.answer(offer)
            await self._wire.call("answer_down", participant=name, answer_sdp=answer)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()


class JanusSignalling:
    """Janus VideoRoom over its HTTP API: a room without bitrate cap or periodic keyframes,
    a publisher handle and one multistream subscriber handle per participant."""

    ROOM = 4242

    def __init__(self, url: str, load: Load) -> None:
        self._client = JanusClient(url)
        self._load = load
        self._publisher_handles: list[JanusHandle] = []

    async def join(self) -> None:
        await self._client.start()
        admin = await self._client.attach()
        size = len(self._load.publishers)
        await admin.request(
            {
                "request": "create",
                "room": self.ROOM,
                "publishers": size + 1,
                "bitrate": 0,
                "fir_freq": 0,
                "videocodec": "vp8",
                "audiocodec": "opus",
                "notify_joining": False,
            }
        )
        feeds = await asyncio.gather(*(self._publish(p) for p in self._load.publishers))
        # Janus lists a feed for subscription only once its media is up.
        await asyncio.gather(*(handle.wait_for("webrtcup") for handle in self._publisher_handles))
        await asyncio.gather(
            *(
                self._subscribe(self._load.subscribers[p.name], [f for f in feeds if f != feed])
                for p, feed in zip(self._load.publishers, feeds, strict=True)
            )
        )

    async def _publish(self, publisher: Publisher) -> int:
        handle = await self._client.attach()
        self._publisher_handles.append(handle)
        offer = await publisher.offer()
        data, jsep = await handle.message(
            {
                "request": "joinandconfigure",
                "room": self.ROOM,
                "ptype": "publisher",
                "display": publisher.name,
                "audio": True,
                "video": True,
            },
            {"type": "offer", "sdp": offer},
            expect="id",
        )
        if jsep is None:
            raise RuntimeError(f"Janus joined {publisher.name} without an answer: {data}")
        await publisher.accept(jsep["sdp"])
        return int(data["id"])

    async def _subscribe(self, subscriber: Subscriber, feeds: list[int]) -> None:
        handle = await self._client.attach()
        for attempt in itertools.count():
            try:
                data, jsep = await handle.message(
                    {
                        "request": "join",
                        "room": self.ROOM,
                        "ptype": "subscriber",
                        "streams": [{"feed": feed} for feed in feeds],
                    },
                    expect="streams",
                )
                break
            except JanusError as exc:
                if "No such feed" not in str(exc) or attempt == 100:
                    raise
                await asyncio.sleep(0.1)  # that publisher's media is not up at Janus yet
        if jsep is None:
            raise RuntimeError(f"Janus attached {subscriber.name} without an offer: {data}")
        answer = await subscriber.answer(jsep["sdp"])
        await handle.message(
            {"request": "start"}, {"type": "answer", "sdp": answer}, expect="started"
        )

    async def close(self) -> None:
        await self._client.close()


async def main(args: argparse.Namespace) -> None:
    address = args.address
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [address]
    clip = Clip.load(Path(args.clip))
    wire = Wire()
    load = Load(args.participants, clip, latency=args.latency)
    signalling: PipeSignalling | JanusSignalling
    if args.janus:
        signalling = JanusSignalling(args.janus, load)
    else:
        signalling = PipeSignalling(wire, load)
    stopped = asyncio.Event()

    async def window_start(_: dict[str, Any]) -> None:
        load.start_window()
        wire.send({"window_started": True})

    async def window_end(_: dict[str, Any]) -> None:
        wire.send({"window": load.end_window()})

    async def stop(_: dict[str, Any]) -> None:
        stopped.set()

    wire.handlers.update(window_start=window_start, window_end=window_end, stop=stop)
    reader = asyncio.ensure_future(wire.run())
    started = time.monotonic()
    load.pacer.start()
    try:
        await signalling.join()
        await load.wait_flowing(args.flowing_timeout)
    except Exception as exc:
        logger.exception("setup failed")
        wire.send({"failed": f"{type(exc).__name__}: {exc}"})
    else:
        video, audio = load.flowing()
        wire.send(
            {
                "ready": {
                    "setup_s": round(time.monotonic() - started, 2),
                    "video_flowing": video,
                    "audio_flowing": audio,
                    "expected": load.expected_tracks,
                }
            }
        )
        await stopped.wait()
    await signalling.close()
    await load.close()
    wire.send({"stopped": True})
    reader.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", type=int, required=True)
    parser.add_argument("--clip", required=True, help="a file written by Clip.save")
    parser.add_argument("--address", required=True, help="the one address to gather ICE on")
    parser.add_argument("--janus", help="Janus's HTTP API URL (else signal through the runner)")
    parser.add_argument("--flowing-timeout", type=float, default=40.0)
    parser.add_argument(
        "--no-latency",
        dest="latency",
        action="store_false",
        help="the SFU re-encodes: PictureIDs no longer identify frames",
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main(parser.parse_args()))
