"""LiveSession: who is in a session's live room, in what role, and where the board is."""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from media import IceConfig

from .errors import Conflict, Forbidden, Invalid, NotFound
from .viewer import SharedView

__all__ = [
    "Participant",
    "AgendaEntry",
    "LiveSession",
    "CHAIR_ROLES",
    "ICE",
    "media_caps",
    "participant_id",
]

# The STUN and TURN servers participants are given (with their own TURN credentials).
ICE = web.AppKey("ice", IceConfig)

# Board roles that may run the session: move the agenda, hand over presenting, admit.
CHAIR_ROLES = frozenset({"chair", "coordinator"})
CHAT_HISTORY = 100


def participant_id(user_id: int) -> str:
    """A user's id in live sessions (the SFU's and the wire's name for them)."""
    return f"u{user_id}"


def media_caps(role: str) -> dict[str, dict[str, int]]:
    """What the browser is asked to send, by role (RTCRtpEncodingParameters names). Cameras
    stay near 360p so a 15-person board fits; the presenter's screen share gets more bits at a
    low frame rate, so text and images stay sharp."""
    camera = {
        "maxBitrate": 150_000 if role == "observer" else 500_000,
        "maxFramerate": 30,
        "maxHeight": 360,
    }
    return {
        "camera": camera,
        "screen": {"maxBitrate": 1_500_000, "maxFramerate": 5},
        "audio": {"maxBitrate": 32_000},
    }


@dataclass
class Participant:
    """A person in a live session (one per user; a newer join replaces the older connection)."""

    id: str
    user_id: int
    name: str
    institution: str
    external: bool
    role: str
    specialty: str | None
    muted: bool = True
    camera: bool = False
    hand: bool = False
    connection: str = "connecting"
    quality: str = "unknown"

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def chairs(self) -> bool:
        return self.role in CHAIR_ROLES


@dataclass(frozen=True)
class AgendaEntry:
    id: int
    case_id: int
    case_number: str
    clinical_question: str
    timebox_minutes: int
    lane: str


@dataclass
class LiveSession:
    """The live state of one session. Pure state: no I/O; the signalling layer persists and
    broadcasts what changes."""

    session_id: int
    board_id: int
    board_name: str
    agenda: list[AgendaEntry]
    admission: bool = True  # external participants wait in the lobby until admitted
    participants: dict[str, Participant] = field(default_factory=dict)
    lobby: dict[str, Participant] = field(default_factory=dict)
    presenter: str | None = None
    speaker: str | None = None
    current: int | None = None
    current_started_at: datetime | None = None
    chat: deque[dict[str, str]] = field(default_factory=lambda: deque(maxlen=CHAT_HISTORY))
    # Whose media reaches the server now (from the SFU's joins and leaves).
    media_up: set[str] = field(default_factory=set)
    view: SharedView = field(default_factory=SharedView)
    # Image count per series alias of the agenda's cases, as last read (filled by signalling).
    images: dict[str, int] = field(default_factory=dict)

    def arrive(self, person: Participant) -> bool:
        """Place an arriving participant; True if admitted, False if sent to the lobby."""
        if person.id in self.participants:
            kept = self.participants[person.id]
            person.muted, person.camera, person.hand = kept.muted, kept.camera, kept.hand
            person.quality = kept.quality
            if person.id in self.media_up:  # a socket reconnect; the media never dropped
                person.connection = "connected"
            self.participants[person.id] = person
            return True
        if self.admission and person.external and person.id not in self.lobby:
            person.connection = "lobby"
            self.lobby[person.id] = person
            return False
        if person.id in self.lobby:
            self.lobby[person.id] = person
            return False
        self.participants[person.id] = person
        return True

    def admit(self, by: Participant, participant_id: str) -> Participant:
        self._require_chair(by, "admit participants")
        person = self.lobby.pop(participant_id, None)
        if person is None:
            raise NotFound(f"participant {participant_id} is not waiting in the lobby")
        person.connection = "connecting"
        self.participants[person.id] = person
        return person

    def depart(self, participant_id: str) -> Participant | None:
        self.lobby.pop(participant_id, None)
        self.media_up.discard(participant_id)
        person = self.participants.pop(participant_id, None)
        if self.presenter == participant_id:
            self.presenter = None
        if self.speaker == participant_id:
            self.speaker = None
        return person

    def get(self, participant_id: str) -> Participant:
        person = self.participants.get(participant_id)
        if person is None:
            raise Forbidden(f"participant {participant_id} has not been admitted")
        return person

    def set_presenter(self, by: Participant, participant_id: str | None) -> None:
        # The chair grants; the presenter may pass it on (or give it back with null).
        if by.id != self.presenter:
            self._require_chair(by, "choose the presenter")
        if participant_id is not None and participant_id not in self.participants:
            raise Invalid.on("participant", f"{participant_id} is not in the session")
        self.presenter = participant_id

    def move_agenda(self, by: Participant, item_id: int | None) -> None:
        self._require_chair(by, "move the agenda")
        if item_id is not None and item_id not in {e.id for e in self.agenda}:
            raise Invalid.on("item_id", f"agenda item {item_id} is not on this session's agenda")
        if item_id == self.current:
            raise Conflict.on("item_id", f"agenda item {item_id} is already current")
        self.current = item_id
        self.current_started_at = datetime.now(UTC) if item_id is not None else None

    def say(self, by: Participant, text: str) -> dict[str, str]:
        message = {
            "from": by.id,
            "name": by.name,
            "text": text,
            "at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        self.chat.append(message)
        return message

    @property
    def chair(self) -> str | None:
        chairs = [p for p in self.participants.values() if p.role == "chair"]
        return chairs[0].id if chairs else None

    def lobby_view(self) -> dict[str, Any]:
        """What someone waiting in the lobby may see: the board, nothing of the discussion."""
        view = self.snapshot()
        view.update(
            participants=[],
            chair=None,
            presenter=None,
            speaker=None,
            chat=[],
            agenda={"items": [], "current": None, "current_started_at": None},
            view=SharedView().snapshot(),
        )
        return view

    def snapshot(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "board_id": self.board_id,
            "board_name": self.board_name,
            "participants": [p.as_json() for p in self.participants.values()],
            "chair": self.chair,
            "presenter": self.presenter,
            "speaker": self.speaker,
            "agenda": {
                "items": [asdict(e) for e in self.agenda],
                "current": self.current,
                "current_started_at": (
                    self.current_started_at.isoformat().replace("+00:00", "Z")
                    if self.current_started_at
                    else None
                ),
            },
            "chat": list(self.chat),
            "admission": self.admission,
            "view": self.view.snapshot(),
        }

    def require_presenter(self, by: Participant) -> None:
        if by.id != self.presenter:
            raise Forbidden("only the presenter may change the shared view")

    @staticmethod
    def _require_chair(by: Participant, what: str) -> None:
        if not by.chairs:
            raise Forbidden(f"only the chair may {what}")
