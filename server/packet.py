"""BoundedPacket: the socket.io packet as the server reads it, so no inbound event goes unanswered.

python-socketio drops (and only logs) a packet whose JSON it cannot read: nested past the
interpreter's recursion limit, malformed, or carrying ``NaN``/``Infinity`` (which Python's
``json`` accepts but JSON does not). Such an event would never be acknowledged. This packet
class reads the same wire format and, when the payload cannot or should not be read (too long,
too many values, too deep), still delivers the event with an ``Unreadable`` as its data, naming
the field, so the namespace answers it like any other refused event. What is refused for its
size, values or depth is never parsed: the checks work on the text, in C-speed passes.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

from socketio import packet

__all__ = [
    "BoundedPacket",
    "Unreadable",
    "MAX_DEPTH",
    "MAX_EVENT_CHARS",
    "MAX_VALUES",
    "MAX_FRAME_BYTES",
    "depth_error",
]

# The largest websocket frame read at all (engine.io's ``max_http_buffer_size``); larger ones
# are refused from their header, unread, and the connection is closed with 1009.
MAX_FRAME_BYTES = 1024 * 1024
# The longest event parsed. The largest valid one is a note update (174,764 characters of
# base64) or an SDP (100,000); longer ones are answered without being parsed.
MAX_EVENT_CHARS = 256 * 1024
# The deepest legitimate event (a view patch's annotation points) is 6 levels deep.
MAX_DEPTH = 32
# Values (commas) in one event: a full view patch (200 annotations) has about 6,000. Parsing
# many small values is what costs; this bounds it.
MAX_VALUES = 16384

# What of a payload's start names its event and first field: ["event",{"field":
_HEAD = re.compile(r'\["((?:[^"\\]|\\.){1,64})"(?:,\s*\{\s*"((?:[^"\\]|\\.){1,64})"\s*:)?')
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))
_TOO_MANY_OPEN = re.compile(rb"[\[{]{" + str(MAX_DEPTH + 2).encode() + rb"}")
_KEYS_LOOKED_AT = 64
_KEY = re.compile(r'"([A-Za-z_][A-Za-z0-9_-]{0,63})"\s*:')


@dataclass(frozen=True)
class Unreadable:
    """An inbound event's payload that the server will not read, and why."""

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
        if isinstance(encoded_packet, str):
            refused = _refusal(encoded_packet)
            if refused is not None:
                return self._refuse(encoded_packet, refused)
        try:
            return int(super().decode(encoded_packet) or 0)
        except (ValueError, RecursionError) as exc:
            if self.packet_type != packet.EVENT or not isinstance(encoded_packet, str):
                raise
            if isinstance(exc, RecursionError):
                message = f"is nested deeper than {MAX_DEPTH} levels"
            elif "is not a JSON number" in str(exc):
                message = str(exc)
            else:
                message = "is not valid JSON"
            self.data = [_event(encoded_packet), Unreadable(_first_field(encoded_packet), message)]
            return 0

    def _refuse(self, encoded: str, refused: Unreadable) -> int:
        """Read the header only (type, namespace, ack id); the payload becomes ``refused``."""
        start = min((i for i in (encoded.find("["), encoded.find("{")) if i >= 0), default=0)
        super().decode(encoded[:start])
        if self.packet_type != packet.EVENT:
            raise ValueError(f"{refused.field}: {refused.message}")
        self.data = [_event(encoded), refused]
        return 0


def _refusal(encoded: str) -> Unreadable | None:
    if len(encoded) > MAX_EVENT_CHARS:
        return Unreadable(
            _longest_field(encoded), f"makes the event longer than {MAX_EVENT_CHARS} characters"
        )
    if encoded.count(",") <= MAX_VALUES and encoded.count("[") + encoded.count("{") <= MAX_DEPTH:
        return None  # nearly every event: too few values or brackets to matter
    bare = _STRING.sub("", encoded)  # commas and brackets inside strings do not count
    if bare.count(",") > MAX_VALUES:
        return Unreadable(_longest_field(encoded), f"has more than {MAX_VALUES} values")
    if _too_deep(bare):
        return Unreadable(_deep_field(encoded), f"is nested deeper than {MAX_DEPTH} levels")
    return None


def _too_deep(bare: str) -> bool:
    """Whether JSON text without its strings nests deeper than ``MAX_DEPTH``, by C-speed passes
    over its brackets: each pass looks for a run of opening brackets deeper than the limit, then
    removes the innermost pairs. The event's own array is one level more. Unbalanced brackets
    are left to the JSON reader to refuse."""
    brackets = bare.encode().translate(None, _NOT_BRACKETS)
    while brackets:
        if _TOO_MANY_OPEN.search(brackets):
            return True
        reduced = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if reduced == brackets:
            return False
        brackets = reduced
    return False


def _event(encoded: str) -> str:
    start = encoded.find("[")
    head = _HEAD.match(encoded, start) if start >= 0 else None
    return head.group(1) if head else "unreadable"


def _first_field(encoded: str) -> str:
    start = encoded.find("[")
    head = _HEAD.match(encoded, start) if start >= 0 else None
    return head.group(2) if head and head.group(2) else "data"


def _longest_field(encoded: str) -> str:
    """The field whose value makes most of an over-long event (a value runs to the next key),
    else ``data``. Only the first keys are looked at: a long event of many keys is named
    ``data``."""
    keys = list(itertools.islice(_KEY.finditer(encoded), _KEYS_LOOKED_AT + 1))
    if not keys or len(keys) > _KEYS_LOOKED_AT:
        return "data"
    ends = [k.start() for k in keys[1:]] + [len(encoded)]
    spans = [(end - key.end(), key.group(1)) for key, end in zip(keys, ends, strict=True)]
    longest = max(spans)
    if 2 * longest[0] < len(encoded):
        return "data"
    return longest[1]


def _deep_field(encoded: str) -> str:
    try:
        data = json.loads(encoded[encoded.index("[") :])
    except (ValueError, RecursionError):
        return _first_field(encoded)
    found = depth_error(data[1] if isinstance(data, list) and len(data) > 1 else None)
    return found.field if found is not None else "data"


def depth_error(data: Any) -> Unreadable | None:
    """The first place where ``data`` nests deeper than ``MAX_DEPTH`` (more containers, one in
    another), named by its keys (list positions are left out: the field is what the schema
    names). Iterative, so any depth that JSON decoding produced is walked without recursion;
    only containers are visited."""
    if not isinstance(data, dict | list):
        return None
    stack: list[tuple[Any, int, tuple[str, ...]]] = [(data, 1, ())]
    while stack:
        value, depth, keys = stack.pop()
        if depth > MAX_DEPTH:
            return Unreadable(".".join(keys) or "data", f"is nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            stack.extend(
                (v, depth + 1, (*keys, str(k)))
                for k, v in value.items()
                if isinstance(v, dict | list)
            )
        elif isinstance(value, list):
            stack.extend((v, depth + 1, keys) for v in value if isinstance(v, dict | list))
    return None
