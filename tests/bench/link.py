"""Link: a user-space emulator of the cross-border link between two network namespaces.

This kernel has no ``netem`` qdisc, so the link is a process: one TUN device in the local
namespace (the SFU and the local participants), one in the remote namespace (Chromium), and a
relay between them that, per direction, drops packets at random, then queues them in a
rate-limited FIFO with a packet limit (tail drop), then delays them by a fixed time. A switch
raises the random loss for a few seconds (a loss burst). Every packet between the two sides
(UDP media, TCP signalling and HTTP) crosses it.

``Direction`` is the model, pure and driven by an injected clock and random source (tested in
test_link.py); ``Relay`` runs two of them between two file descriptors on an asyncio loop. Run as
``python -m tests.bench.link`` by bench_link.py: it creates the TUN devices, prints
``{"ready": ...}`` and obeys JSON lines on stdin (``{"cmd": "set", ...}``, ``{"cmd": "burst",
...}``, ``{"cmd": "stats"}``).
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import os
import random
import struct
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Direction", "LinkConfig", "Relay", "open_tun"]

# The trans-Pacific link: 125 ms one way, 1 % loss, 2 Mbit/s each way.
DELAY_S = 0.125
LOSS = 0.01
RATE_BPS = 2_000_000
QUEUE_PACKETS = 64  # ≈ 300 ms of 1,200-byte packets at 2 Mbit/s
BURST_LOSS = 0.30
BURST_S = 3.0


@dataclass(frozen=True)
class LinkConfig:
    """One direction's impairments; ``rate_bps`` None is no rate limit (and no queue)."""

    delay_s: float = DELAY_S
    loss: float = LOSS
    rate_bps: float | None = RATE_BPS
    queue_packets: int = QUEUE_PACKETS

    def __post_init__(self) -> None:
        if not 0 <= self.delay_s <= 10:
            raise ValueError(f"delay_s must be 0…10, not {self.delay_s}")
        if not 0 <= self.loss <= 1:
            raise ValueError(f"loss must be 0…1, not {self.loss}")
        if self.rate_bps is not None and self.rate_bps <= 0:
            raise ValueError(f"rate_bps must be positive or None, not {self.rate_bps}")
        if not 1 <= self.queue_packets <= 100_000:
            raise ValueError(f"queue_packets must be 1…100000, not {self.queue_packets}")


OFF = LinkConfig(delay_s=0.0, loss=0.0, rate_bps=None)


class Direction:
    """One direction of the link: random loss, then a rate-limited FIFO with a packet limit,
    then a fixed delay. Times are the caller's clock (seconds); nothing here reads a clock.

    A FIFO with a fixed service rate is computed on arrival: a packet leaves the queue at
    ``max(arrival, previous departure) + size / rate``; packets still waiting or on the wire
    are those whose departure lies ahead, and a packet finding ``queue_packets`` of them is
    dropped. Its delivery is its departure plus the delay, so deliveries come in order.
    """

    def __init__(self, config: LinkConfig, rng: Callable[[], float]) -> None:
        self.config = config
        self._rng = rng
        self._departures: deque[float] = deque()  # of packets queued or being sent
        self._last_departure = 0.0
        self._pending: deque[tuple[float, bytes]] = deque()  # (delivery time, packet)
        self._burst = (0.0, -1.0)  # [start, end) of the loss burst
        self._burst_loss = 0.0
        self.offered = self.lost = self.tail_dropped = self.delivered = 0
        self.bytes_delivered = 0

    def configure(self, config: LinkConfig) -> None:
        self.config = config

    def burst(self, now: float, seconds: float = BURST_S, loss: float = BURST_LOSS) -> None:
        """Random loss ``loss`` instead of the configured one from ``now`` for ``seconds``."""
        if not 0 <= loss <= 1 or not 0 < seconds <= 60:
            raise ValueError(f"a burst is 0…1 loss for 0…60 s, not {loss} for {seconds} s")
        self._burst = (now, now + seconds)
        self._burst_loss = loss

    def loss_at(self, now: float) -> float:
        start, end = self._burst
        return self._burst_loss if start <= now < end else self.config.loss

    def queued(self, now: float) -> int:
        """Packets in the FIFO (waiting or being sent) at ``now``."""
        departures = self._departures
        while departures and departures[0] <= now:
            departures.popleft()
        return len(departures)

    def offer(self, packet: bytes, now: float) -> bool:
        """A packet enters the link at ``now``; False if it was dropped (lost or tail drop)."""
        self.offered += 1
        loss = self.loss_at(now)
        if loss and self._rng() < loss:
            self.lost += 1
            return False
        config = self.config
        if config.rate_bps is None:
            departure = now
        else:
            if self.queued(now) >= config.queue_packets:
                self.tail_dropped += 1
                return False
            start = max(now, self._last_departure)
            departure = start + len(packet) * 8 / config.rate_bps
            self._last_departure = departure
            self._departures.append(departure)
        delivery = departure + config.delay_s
        if self._pending and delivery < self._pending[-1][0]:
            delivery = self._pending[-1][0]  # after a configuration change: keep the order
        self._pending.append((delivery, packet))
        return True

    def next_delivery(self) -> float | None:
        return self._pending[0][0] if self._pending else None

    def due(self, now: float) -> list[bytes]:
        """The packets whose delivery time has come, in order."""
        out = []
        pending = self._pending
        while pending and pending[0][0] <= now:
            out.append(pending.popleft()[1])
        self.delivered += len(out)
        self.bytes_delivered += sum(len(p) for p in out)
        return out

    def counters(self) -> dict[str, int]:
        return {
            "offered": self.offered,
            "lost": self.lost,
            "tail_dropped": self.tail_dropped,
            "delivered": self.delivered,
            "bytes_delivered": self.bytes_delivered,
        }


# The TUN plumbing.

_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000
_MAX_PACKET = 65536


def open_tun(name: str) -> int:
    """A non-blocking file descriptor of a new TUN device ``name`` (IP packets, no header);
    the device lives as long as the descriptor (needs CAP_NET_ADMIN)."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TUN | _IFF_NO_PI))
    return fd


class Relay:
    """Two ``Direction``s between two file descriptors (``a`` → ``b`` is upstream of the
    remote's view: local to remote is ``down``), driven by the running loop's clock."""

    def __init__(self, local_fd: int, remote_fd: int, config: LinkConfig, seed: int = 1) -> None:
        rng = random.Random(seed)
        self.down = Direction(config, rng.random)  # local → remote
        self.up = Direction(config, rng.random)  # remote → local
        self._fds = {local_fd: (self.down, remote_fd), remote_fd: (self.up, local_fd)}
        self._timers: dict[int, asyncio.TimerHandle | None] = {local_fd: None, remote_fd: None}
        self._loop = asyncio.get_running_loop()
        self.write_errors = 0

    def start(self) -> None:
        for fd in self._fds:
            self._loop.add_reader(fd, self._readable, fd)

    def stop(self) -> None:
        for fd, timer in self._timers.items():
            self._loop.remove_reader(fd)
            if timer is not None:
                timer.cancel()

    def configure(self, config: LinkConfig) -> None:
        self.down.configure(config)
        self.up.configure(config)

    def burst(self, seconds: float, loss: float) -> None:
        now = self._loop.time()
        self.down.burst(now, seconds, loss)
        self.up.burst(now, seconds, loss)

    def _readable(self, fd: int) -> None:
        direction, _ = self._fds[fd]
        now = self._loop.time()
        for _ in range(64):  # a bounded batch, then let the other side have the loop
            try:
                packet = os.read(fd, _MAX_PACKET)
            except BlockingIOError:
                break
            direction.offer(packet, now)
        if self._timers[fd] is None:
            self._flush(fd)

    def _flush(self, fd: int) -> None:
        """Write what is due, then wake again at the next delivery (one timer per side)."""
        direction, out = self._fds[fd]
        for packet in direction.due(self._loop.time()):
            try:
                os.write(out, packet)
            except OSError:
                self.write_errors += 1
        when = direction.next_delivery()
        self._timers[fd] = None if when is None else self._loop.call_at(when, self._flush, fd)

    def counters(self) -> dict[str, Any]:
        return {
            "down": self.down.counters(),
            "up": self.up.counters(),
            "write_errors": self.write_errors,
        }


def _prioritize() -> str:
    """Keep the relay from being starved by the SFU on a small machine: a real-time round-robin
    priority where allowed, else the highest nice."""
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(10))
        return "SCHED_RR 10"
    except (OSError, AttributeError):
        pass
    try:
        os.nice(-15)
        return "nice -15"
    except OSError:
        return "default"


async def _serve(local: str, remote: str, config: LinkConfig) -> None:
    local_fd, remote_fd = open_tun(local), open_tun(remote)
    relay = Relay(local_fd, remote_fd, config)
    relay.start()
    out = sys.stdout

    def send(message: dict[str, Any]) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    send({"ready": {"local": local, "remote": remote, "priority": _prioritize()}})
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        message = json.loads(line)
        cmd = message.get("cmd")
        try:
            if cmd == "set":
                config = OFF if message.get("off") else LinkConfig(**message.get("config", {}))
                relay.configure(config)
                send({"ok": asdict(config)})
            elif cmd == "burst":
                relay.burst(
                    float(message.get("seconds", BURST_S)), float(message.get("loss", BURST_LOSS))
                )
                send({"ok": "burst"})
            elif cmd == "stats":
                send({"stats": relay.counters()})
            else:
                send({"error": f"unknown cmd {cmd!r}"})
        except (TypeError, ValueError) as exc:
            send({"error": str(exc)})
    relay.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--local", default="ebl0", help="the local side's TUN device")
    parser.add_argument("--remote", default="ebl1", help="the remote side's TUN device")
    args = parser.parse_args()
    asyncio.run(_serve(args.local, args.remote, OFF))


if __name__ == "__main__":
    main()
