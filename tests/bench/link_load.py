"""The link benchmark's local participants: N−1 aiortc peers with the pre-encoded clip (the SFU
benchmark's ``Load``), joined to a real eBoard server over socket.io as board members would be,
or to Janus's VideoRoom over its HTTP API; they also receive the remote participant's camera and
count its frames.

Run by ``bench_link.py`` as ``python -m tests.bench.link_load``; JSON lines on stdin/stdout:
``{"ready": ...}`` once every local sees every other local, then the runner's commands
``{"cmd": "remote", "id": ...}`` (who the remote is: an eBoard participant id or a Janus feed),
``{"cmd": "window_start"}``, ``{"cmd": "window_end"}`` (answered with ``{"window": stats}``),
``{"cmd": "view", "patch": ...}`` (the presenter changes the shared view; answered with
``{"view_sent": {"seq", "at"}}``), ``{"cmd": "chair", "name": ..., "data": ...}`` (the chair
sends an event, e.g. ``agenda``; answered with ``{"chair_reply": ack}``) and ``{"cmd": "stop"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import aioice.ice
import socketio

from .clip import Clip
from .janus import JanusError, JanusHandle
from .publisher import Publisher
from .sfu_load import JanusSignalling, Load, Wire
from .subscriber import Subscriber

__all__ = ["video_sections"]

logger = logging.getLogger(__name__)
NAMESPACE = "/board"


def video_sections(sdp: str) -> list[dict[str, Any]]:
    """Each ``m=video`` section of an SDP: its mid, msid stream id and first SSRC."""
    sections: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for line in sdp.splitlines():
        if line.startswith("m="):
            current = {"mid": None, "stream": None, "ssrc": None} if line[2:7] == "video" else None
            if current is not None:
                sections.append(current)
        elif current is None:
            continue
        elif line.startswith("a=mid:"):
            current["mid"] = line[6:].strip()
        elif line.startswith("a=msid:"):
            current["stream"] = line[7:].split()[0]
        elif line.startswith("a=ssrc:") and current["ssrc"] is None:
            current["ssrc"] = int(line[7:].split()[0])
            if " msid:" in line and current["stream"] is None:
                current["stream"] = line.split(" msid:", 1)[1].split()[0]
    return sections


class Offers:
    """The last offer each subscriber answered (its SSRCs name the streams it carries)."""

    def __init__(self, load: Load) -> None:
        self.last: dict[str, str] = {}
        for subscriber in load.subscribers.values():
            self._hook(subscriber)

    def _hook(self, subscriber: Subscriber) -> None:
        original = subscriber.answer

        async def answer(offer_sdp: str) -> str:
            self.last[subscriber.name] = offer_sdp
            return await original(offer_sdp)

        subscriber.answer = answer  # type: ignore[method-assign]


class EboardSignalling:
    """Board members over eBoard's socket.io ``/board``: join (the chair first, who admits
    whoever waits in the lobby and makes itself the presenter), publish, answer down offers."""

    def __init__(self, url: str, session_id: int, tokens: list[str], load: Load) -> None:
        self._url = url
        self._session_id = session_id
        self._tokens = tokens
        self._load = load
        self.clients: list[socketio.AsyncClient] = []
        self.ids: dict[str, str] = {}  # local name → participant id
        self.presenter: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._view_seq = 0

    async def _call(self, client: socketio.AsyncClient, event: str, data: Any) -> Any:
        reply = await client.call(event, data, namespace=NAMESPACE, timeout=30)
        if isinstance(reply, dict) and reply.get("ok") is False:
            raise RuntimeError(f"{event}: {reply}")
        return reply

    async def join(self) -> None:
        publishers = self._load.publishers
        for token, publisher in zip(self._tokens, publishers, strict=False):
            client = socketio.AsyncClient(reconnection=False)
            subscriber = self._load.subscribers[publisher.name]
            self._on_offer(client, subscriber)
            await client.connect(
                self._url, auth={"token": token}, namespaces=[NAMESPACE], transports=["websocket"]
            )
            self.clients.append(client)
        chair = self.clients[0]
        chair.on("lobby", self._admit_all, namespace=NAMESPACE)
        for client, publisher in zip(self.clients, publishers, strict=False):
            reply = await self._call(client, "join", {"session_id": self._session_id})
            self.ids[publisher.name] = reply["you"]
            view = (reply.get("snapshot") or {}).get("view") or {}
            self._view_seq = max(self._view_seq, int(view.get("seq") or 0))
            if not reply.get("admitted"):
                await self._call(chair, "admit", {"participant": reply["you"]})
        self.presenter = self.ids[publishers[0].name]
        await self._call(chair, "presenter", {"participant": self.presenter})
        await asyncio.gather(
            *(self._publish(c, p) for c, p in zip(self.clients, publishers, strict=False))
        )

    def _admit_all(self, data: dict[str, Any]) -> None:
        for person in data.get("waiting", []):
            task = asyncio.ensure_future(
                self._call(self.clients[0], "admit", {"participant": person["id"]})
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _on_offer(self, client: socketio.AsyncClient, subscriber: Subscriber) -> None:
        queue: asyncio.Queue[str] = asyncio.Queue()

        async def answer_all() -> None:
            while True:
                offer = await queue.get()
                answer = await subscriber.answer(offer)
                await self._call(client, "answer", {"sdp": answer, "type": "answer"})

        task = asyncio.ensure_future(answer_all())
        self._tasks.add(task)
        client.on("down-offer", lambda data: queue.put_nowait(data["sdp"]), namespace=NAMESPACE)

    async def view(self, patch: dict[str, Any]) -> dict[str, Any]:
        """The presenter (the chair) changes the shared view by ``patch``: the sequence number
        the server gave it and when it went out, in ms since the epoch (the clock the remote's
        page reads as ``performance.timeOrigin + performance.now()``)."""
        self._view_seq += 1
        at = time.time() * 1000
        reply = await self._call(self.clients[0], "view", {"seq": self._view_seq, "patch": patch})
        if reply.get("dropped"):  # someone else's view was newer: send after it
            self._view_seq = int(reply["seq"]) + 1
            at = time.time() * 1000
            body = {"seq": self._view_seq, "patch": patch}
            reply = await self._call(self.clients[0], "view", body)
        return {"seq": int(reply["seq"]), "at": at, "dropped": bool(reply.get("dropped"))}

    async def _publish(self, client: socketio.AsyncClient, publisher: Any) -> None:
        offer = await publisher.offer()
        reply = await self._call(client, "publish", {"sdp": offer, "type": "offer"})
        await publisher.accept(reply["sdp"])

    def remote_ssrc(self, offers: Offers, name: str, remote: str) -> int | None:
        sdp = offers.last.get(name, "")
        for section in video_sections(sdp):
            if section["stream"] == remote:
                return section["ssrc"]  # type: ignore[no-any-return]
        return None

    async def add_remote(self, remote: str) -> None:
        return None  # the SFU offers the remote's tracks to everyone by itself

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for client in self.clients:
            if client.connected:
                await client.disconnect()


class JanusLinkSignalling(JanusSignalling):
    """The SFU benchmark's Janus signalling, keeping each subscriber's handle so the remote's
    feed can be added once it publishes, and which mid carries which feed."""

    def __init__(self, url: str, load: Load) -> None:
        super().__init__(url, load)
        self.handles: dict[str, JanusHandle] = {}
        self.mids: dict[str, dict[str, int]] = {}  # local name → mid → feed
        self.presenter: str | None = None
        self.ids: dict[str, str] = {}

    async def join(self) -> None:
        await super().join()
        self.presenter = self.ids.get(self._load.publishers[0].name)

    async def _publish(self, publisher: Any) -> int:
        feed = await super()._publish(publisher)
        self.ids[publisher.name] = str(feed)
        return feed

    def _learn(self, name: str, data: dict[str, Any]) -> None:
        for stream in data.get("streams", []):
            if "feed_id" in stream and "mid" in stream:
                self.mids.setdefault(name, {})[str(stream["mid"])] = int(stream["feed_id"])

    async def _subscribe(self, subscriber: Subscriber, feeds: list[int]) -> None:
        handle = await self._client.attach()
        self.handles[subscriber.name] = handle
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
                await asyncio.sleep(0.1)
        self._learn(subscriber.name, data)
        if jsep is None:
            raise RuntimeError(f"Janus attached {subscriber.name} without an offer: {data}")
        answer = await subscriber.answer(jsep["sdp"])
        await handle.message(
            {"request": "start"}, {"type": "answer", "sdp": answer}, expect="started"
        )

    async def add_remote(self, remote: str) -> None:
        async def one(name: str, handle: JanusHandle) -> None:
            subscriber = self._load.subscribers[name]
            for attempt in itertools.count():
                try:
                    data, jsep = await handle.message(
                        {"request": "subscribe", "streams": [{"feed": int(remote)}]},
                        expect="streams",
                    )
                    break
                except JanusError as exc:
                    if "No such feed" not in str(exc) or attempt == 200:
                        raise
                    await asyncio.sleep(0.1)  # the remote's media is not up at Janus yet
            self._learn(name, data)
            if jsep is not None:
                answer = await subscriber.answer(jsep["sdp"])
                await handle.message(
                    {"request": "start"}, {"type": "answer", "sdp": answer}, expect="started"
                )

        await asyncio.gather(*(one(n, h) for n, h in self.handles.items()))

    def remote_ssrc(self, offers: Offers, name: str, remote: str) -> int | None:
        mids = self.mids.get(name, {})
        for section in video_sections(offers.last.get(name, "")):
            if mids.get(str(section["mid"])) == int(remote):
                return section["ssrc"]  # type: ignore[no-any-return]
        return None


TURN_S, PAUSE_S = 4.0, 2.0


async def take_turns(publishers: list[Publisher]) -> None:
    """One local talks at a time, each for ``TURN_S`` seconds in turn with a ``PAUSE_S`` pause
    before the next; the others are silent (Opus DTX), as in a board where one person speaks
    while the rest listen (and the remote may speak into a pause)."""
    for turn in itertools.count():
        for i, publisher in enumerate(publishers):
            publisher.talking = i == turn % len(publishers)
        await asyncio.sleep(TURN_S)
        for publisher in publishers:
            publisher.talking = False
        await asyncio.sleep(PAUSE_S)


async def main(args: argparse.Namespace) -> None:
    address = args.address
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [address]
    clip = Clip.load(Path(args.clip))
    wire = Wire()
    load = Load(args.participants, clip, latency=False)
    offers = Offers(load)
    signalling: EboardSignalling | JanusLinkSignalling
    if args.janus:
        signalling = JanusLinkSignalling(args.janus, load)
    else:
        roster = args.roster_data
        signalling = EboardSignalling(args.url, roster["session_id"], roster["tokens"], load)
    stopped = asyncio.Event()
    remote: list[str] = []
    window: dict[str, Any] = {}

    def remote_frames() -> dict[str, tuple[int, float]]:
        """Per local: (frames of the remote's camera so far, now)."""
        out: dict[str, tuple[int, float]] = {}
        for name, subscriber in load.subscribers.items():
            ssrc = signalling.remote_ssrc(offers, name, remote[0]) if remote else None
            track = subscriber.tracks.get(ssrc) if ssrc is not None else None
            out[name] = (track.frames if track is not None else 0, time.monotonic())
        return out

    async def on_remote(message: dict[str, Any]) -> None:
        remote[:] = [str(message["id"])]
        try:
            await signalling.add_remote(remote[0])
            wire.send({"remote_added": True})
        except Exception as exc:
            logger.exception("adding the remote failed")
            wire.send({"remote_added": False, "error": f"{type(exc).__name__}: {exc}"})

    async def window_start(_: dict[str, Any]) -> None:
        load.start_window()
        window["start"] = remote_frames()
        wire.send({"window_started": True})

    async def window_end(_: dict[str, Any]) -> None:
        stats = load.end_window()
        end = remote_frames()
        per_local = {}
        for name, (frames, t) in end.items():
            frames0, t0 = window["start"][name]
            per_local[name] = round((frames - frames0) / max(1e-3, t - t0), 2)
        stats["locals_see_remote_fps"] = per_local
        wire.send({"window": stats})

    async def stop(_: dict[str, Any]) -> None:
        stopped.set()

    async def view(message: dict[str, Any]) -> None:
        if not isinstance(signalling, EboardSignalling):
            wire.send({"view_sent": {"error": "Janus has no shared view"}})
            return
        try:
            wire.send({"view_sent": await signalling.view(message["patch"])})
        except Exception as exc:
            wire.send({"view_sent": {"error": f"{type(exc).__name__}: {exc}"}})

    async def chair(message: dict[str, Any]) -> None:
        if not isinstance(signalling, EboardSignalling):
            wire.send({"chair_reply": {"error": "Janus has no chair"}})
            return
        reply = await signalling.clients[0].call(
            message["name"], message["data"], namespace=NAMESPACE, timeout=30
        )
        wire.send({"chair_reply": reply})

    wire.handlers.update(
        remote=on_remote,
        window_start=window_start,
        window_end=window_end,
        stop=stop,
        view=view,
        chair=chair,
    )
    reader = asyncio.ensure_future(wire.run())
    started = time.monotonic()
    load.pacer.start()
    turns = asyncio.ensure_future(take_turns(load.publishers)) if args.talk == "turns" else None
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
                    "presenter": signalling.presenter,
                    "ids": signalling.ids,
                }
            }
        )
        await stopped.wait()
    if turns is not None:
        turns.cancel()
    await signalling.close()
    await load.close()
    wire.send({"stopped": True})
    reader.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", type=int, required=True, help="local participants")
    parser.add_argument("--clip", required=True, help="a file written by Clip.save")
    parser.add_argument("--address", required=True, help="the one address to gather ICE on")
    parser.add_argument("--janus", help="Janus's HTTP API URL")
    parser.add_argument("--url", help="the eBoard server's URL")
    parser.add_argument("--roster", help="eBoard: JSON file with session_id and tokens")
    parser.add_argument("--flowing-timeout", type=float, default=40.0)
    parser.add_argument(
        "--talk",
        choices=("turns", "all"),
        default="turns",
        help="turns: one local talks at a time, the rest silent with DTX; all: everyone talks",
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    arguments = parser.parse_args()
    arguments.roster_data = (
        json.loads(Path(arguments.roster).read_text()) if arguments.roster else None
    )
    asyncio.run(main(arguments))
