"""eBoard's media plane: a forwarding SFU over aiortc. Imports nothing of the server."""

from .events import ActiveSpeaker, DownOffer, MediaEvent, MediaJoined, MediaLeft, MediaReset
from .ice import IceConfig, turn_credentials
from .local import LocalSfu
from .sfu import EventSink, IceServer, MediaError, RoomStats, Sfu

__all__ = [
    "ActiveSpeaker",
    "DownOffer",
    "EventSink",
    "IceConfig",
    "IceServer",
    "LocalSfu",
    "MediaError",
    "MediaEvent",
    "MediaJoined",
    "MediaLeft",
    "MediaReset",
    "RoomStats",
    "Sfu",
    "turn_credentials",
]
