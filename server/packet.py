"""BoundedPacket: the socket.io packet as the server reads it, so no inbound event goes unanswered.

python-socketio drops (and only logs) a packet whose JSON it cannot read: nested past the
interpreter's recursion limit, malformed, or carrying ``NaN``/``Infinity`` (which Python's
``json`` accepts but JSON does not). Such an event would never be acknowledged. This packet
class reads the same wire format and, when the payload cannot be read, still delivers an event
whose data is an ``Unreadable`` naming the problem, so the namespace answers it like any other
refused event.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from socketio import packet

__all__ = ["BoundedPacket", "Unreadable", "MAX_DEPTH", "MAX_FRAME_BYTES", "depth_error"]

# The largest websocket frame read at all (engine.io's ``max_http_buffer_size``).
MAX_FRAME_BYTES = 1024 * 1024

# The deepest legitimate event (a view patch's annotation points) is 6 levels deep.
MAX_DEPTH = 32
# What of an unreadable payload's start names its event and first field: ["event",{"field":
_HEAD = re.compile(r'\["((?:[^"\\]|\\.){1,64})"(?:,\s*\{\s*"((?:[^"\\]|\\.){1,64})"\s*:)?')


@dataclass(frozen=True)
class Unreadable:
    """An inbound event's payload that is not JSON the server will read."""

    field: str
    message: str


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


class _StrictJson:
    """JSON as the wire contract means it: no NaN or Infinity."""

    @staticmethod
    def loads(text: str | bytes) -> Any:
        return json.loads(text, parse_constant=_refuse_constant)

    @staticmethod
    def dumps(data: Any, **kwargs: Any) -> str:
        return json.dumps(data, **kwargs)


class BoundedPacket(packet.Packet):  # type: ignore[misc]
    """A ``socketio.packet.Packet`` whose unreadable event payloads become ``Unreadable``."""

    json = _StrictJson

    def decode(self, encoded_packet: str | bytes) -> int:
        try:
            return int(super().decode(encoded_packet) or 0)
        except (ValueError, RecursionError) as exc:
            if self.packet_type != packet.EVENT or not isinstance(encoded_packet, str):
                raise
            self.data = _unreadable(encoded_packet, exc)
            return 0


def _unreadable(encoded: str, exc: Exception) -> list[Any]:
    start = encoded.find("[")
    head = _HEAD.match(encoded, start) if start >= 0 else None
    event = head.group(1) if head else "unreadable"
    field = head.group(2) if head and head.group(2) else "data"
    if isinstance(exc, RecursionError):
        message = f"is nested deeper than {MAX_DEPTH} levels"
    elif "is not a JSON number" in str(exc):
        message = str(exc)
    else:
        message = "is not valid JSON"
    return [event, Unreadable(field, message)]


def depth_error(data: Any) -> Unreadable | None:
    """The first place where ``data`` nests deeper than ``MAX_DEPTH``, named by its keys (list
    positions are left out: the field is what the schema names). Iterative, so any depth that
    JSON decoding produced is walked without recursion."""
    stack: list[tuple[Any, int, tuple[str, ...]]] = [(data, 0, ())]
    while stack:
        value, depth, keys = stack.pop()
        if depth > MAX_DEPTH:
            return Unreadable(".".join(keys) or "data", f"is nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            stack.extend((v, depth + 1, (*keys, str(k))) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, depth + 1, keys) for v in value)
    return None
