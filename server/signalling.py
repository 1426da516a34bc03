"""Signalling: the socket.io namespace ``/board``. Every event is authenticated, rate-limited,
validated against its schema, authorised, and only then handed to the live session or the SFU."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from http.cookies import SimpleCookie
from typing import Any

import socketio
from sqlalchemy import func
from sqlmodel import col, select

from media import (
    ActiveSpeaker,
    DownOffer,
    IceConfig,
    MediaError,
    MediaEvent,
    MediaJoined,
    MediaLeft,
    MediaReset,
    Sfu,
)
from media.events import LinkQuality

from .access import may_join
from .accounts import token_user
from .agenda import items_of
from .api.routing import TOKEN_COOKIE
from .attendance import close_spans, open_span, switch_item
from .contract import EventContract
from .errors import Conflict, EboardError, Forbidden, Invalid, Unauthenticated
from .live import AgendaEntry, LiveSession, Participant, media_caps, participant_id
from .models import (
    Board,
    Case,
    DicomInstance,
    DicomSeries,
    ImagingStudy,
    Institution,
    User,
    utcnow,
)
from .notes.channel import NoteChannel
from .packet import Unreadable
from .ratelimit import TokenBucket
from .services import Services

__all__ = ["Signalling", "NAMESPACE"]

log = logging.getLogger(__name__)

NAMESPACE = "/board"
Handler = Callable[[str, Any], Awaitable[dict[str, Any]]]
VIEW_EVENTS = frozenset({"view", "pointer"})
# Typing: each keystroke may be an update, so notes have an allowance of their own.
NOTE_EVENTS = frozenset({"note-update", "note-focus"})


def _room(session_id: int) -> str:
    return f"session-{session_id}"


def _lobby(session_id: int) -> str:
    # Those waiting for admission hear nothing of the session's own room.
    return f"lobby-{session_id}"


class Signalling(socketio.AsyncNamespace):  # type: ignore[misc]
    """One instance per server process; live sessions are held here, keyed by session id."""

    def __init__(
        self, services: Services, sfu: Sfu, contract: EventContract, ice: IceConfig
    ) -> None:
        super().__init__(NAMESPACE)
        self._services = services
        self._sfu = sfu
        self._contract = contract
        self._ice = ice
        self._live: dict[int, LiveSession] = {}
        self._sids: dict[tuple[int, str], str] = {}
        self._grace: dict[tuple[int, str], asyncio.Task[None]] = {}
        # The up offer a join brought while its participant waits in the lobby (one each, at
        # most the contract's 100 KB): published when the chair admits them.
        self._lobby_offers: dict[tuple[int, str], str] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._handlers: dict[str, Handler] = {
            "join": self._join,
            "leave": self._leave,
            "publish": self._publish,
            "answer": self._answer,
            "candidate": self._candidate,
            "media-state": self._media_state,
            "hand": self._hand,
            "chat": self._chat,
            "presenter": self._presenter,
            "agenda": self._agenda,
            "admit": self._admit,
            "view": self._view,
            "pointer": self._pointer,
            "images-first": self._images_first,
            "note-open": self._note_open,
            "note-close": self._note_close,
            "note-update": self._note_update,
            "note-focus": self._note_focus,
        }
        self._notes = NoteChannel(self, services.db, services.audit, services.notes)
        self._note_buckets: dict[str, TokenBucket] = {}
        self._view_buckets: dict[str, TokenBucket] = {}
        self._view_locks: dict[int, asyncio.Lock] = {}

    # -- connection ---------------------------------------------------------------------------

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not token:
            cookie = SimpleCookie(environ.get("HTTP_COOKIE", ""))
            token = cookie[TOKEN_COOKIE].value if TOKEN_COOKIE in cookie else None
        if not token:
            raise socketio.exceptions.ConnectionRefusedError("log in first: no token was sent")
        try:
            user = await token_user(self._services, str(token))
        except Unauthenticated as exc:
            raise socketio.exceptions.ConnectionRefusedError(exc.detail) from exc
        await self.save_session(sid, {"user_id": user.id})
        settings = self._services.settings
        self._buckets[sid] = TokenBucket(settings.event_rate_per_second, settings.event_burst)
        self._view_buckets[sid] = TokenBucket(settings.view_rate_per_second, settings.view_burst)
        self._note_buckets[sid] = TokenBucket(settings.note_rate_per_second, settings.note_burst)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        self._buckets.pop(sid, None)
        self._view_buckets.pop(sid, None)
        self._note_buckets.pop(sid, None)
        await self._notes.disconnect(sid)
        where = await self.get_session(sid)
        key = self._key(where)
        if key is None or self._sids.get(key) != sid:
            return  # never joined, or replaced by a newer connection
        live = self._live.get(key[0])
        person = live.participants.get(key[1]) if live else None
        if live is not None and person is not None:
            person.connection = "reconnecting"
            await self.emit("participant", person.as_json(), room=_room(live.session_id))
        self._grace[key] = self._spawn(self._expire(key, sid))

    async def _expire(self, key: tuple[int, str], sid: str) -> None:
        await asyncio.sleep(self._services.settings.reconnect_grace_seconds)
        if self._sids.get(key) == sid:
            await self._depart(key, "disconnected")

    # -- dispatch -----------------------------------------------------------------------------

    async def trigger_event(self, event: str, *args: Any) -> Any:
        if event in ("connect", "disconnect"):
            return await super().trigger_event(event, *args)
        sid = args[0]
        data = args[1] if len(args) > 1 else None
        buckets = (
            self._view_buckets
            if event in VIEW_EVENTS
            else self._note_buckets
            if event in NOTE_EVENTS
            else self._buckets
        )
        bucket = buckets.get(sid)
        try:
            if bucket is not None and not bucket.take():
                raise EboardError("too many events: slow down (rate limited)")
            if isinstance(data, Unreadable):  # too long, too deep or not JSON: see packet.py
                raise Invalid.on(data.field, data.message)
            handler = self._handlers.get(event)
            if handler is None or event not in self._contract.inbound():
                raise Invalid.on("event", f"unknown event {event!r}")
            self._contract.check(event, data)
            return await handler(sid, data)
        except (EboardError, MediaError) as exc:
            error = self._error(event, exc)
            await self.emit("error", error, to=sid)
            return {"ok": False, "error": error}

    @staticmethod
    def _error(event: str, exc: Exception) -> dict[str, Any]:
        if isinstance(exc, EboardError):
            field = exc.errors[0].field if exc.errors else None
            return {"event": event, "field": field, "message": exc.detail}
        return {"event": event, "field": "sdp", "message": str(exc)}

    @staticmethod
    def _key(where: dict[str, Any]) -> tuple[int, str] | None:
        if "session_id" not in where:
            return None
        return int(where["session_id"]), str(where["participant"])

    async def _joined(self, sid: str) -> tuple[LiveSession, Participant]:
        key = self._key(await self.get_session(sid))
        live = self._live.get(key[0]) if key else None
        if key is None or live is None or self._sids.get(key) != sid:
            raise Forbidden("join a session first")
        return live, live.get(key[1])

    # -- events -------------------------------------------------------------------------------

    async def _join(self, sid: str, data: dict[str, Any]) -> dict[str, Any]:
        where = await self.get_session(sid)
        if "session_id" in where:
            raise Conflict.on("session_id", "this connection has already joined a session")
        session_id = int(data["session_id"])
        async with self._services.db.write() as db:
            user = await db.get(User, int(where["user_id"]))
            assert user is not None and user.id is not None
            meeting, member = await may_join(db, user, session_id)
            board = await db.get(Board, meeting.board_id)
            institution = await db.get(Institution, user.institution_id)
            assert board is not None and institution is not None
            live = self._live.get(session_id) or LiveSession(
                session_id=session_id, board_id=board.id or 0, board_name=board.name, agenda=[]
            )
            live.agenda = await self._agenda_of(db, session_id)
            await self._services.audit.append(
                db,
                actor_id=user.id,
                action="session.join",
                target_type="session",
                target_id=session_id,
            )
        person = Participant(
            id=participant_id(user.id),
            user_id=user.id,
            name=user.display_name,
            institution=institution.name,
            external=user.institution_id != board.home_institution_id,
            role=member.role,
            specialty=user.specialty,
        )
        key = (session_id, person.id)
        await self._replace_older(key)
        self._live[session_id] = live
        admitted = live.arrive(person)
        self._sids[key] = sid
        await self.save_session(sid, {**where, "session_id": session_id, "participant": person.id})
        resumed = admitted and person.id in live.media_up
        if admitted:
            await self.enter_room(sid, _room(session_id))
            await self.emit("participant", person.as_json(), room=_room(session_id), skip_sid=sid)
        else:
            await self.enter_room(sid, _lobby(session_id))
            await self._tell_chairs(live)
        reply = {
            "ok": True,
            "you": person.id,
            "admitted": admitted,
            # True when this is a reconnect whose media never dropped: keep the peer connections.
            "resumed": resumed,
            "snapshot": live.snapshot() if admitted else live.lobby_view(),
            "ice_servers": [asdict(s) for s in self._ice.servers_for(person.id)],
            "media_caps": media_caps(person.role),
        }
        if "offer" in data and not admitted:
            self._lobby_offers[key] = data["offer"]["sdp"]  # published on admission
        elif "offer" in data and not resumed:
            # Published with the join: a round trip less to the first picture. An offer the
            # SFU refuses only goes unanswered: the client publishes it again with `publish`,
            # whose refusal names what is wrong, and the join stands.
            answer = await self._publish_offer(session_id, person.id, data["offer"]["sdp"])
            if answer is not None:
                reply["answer"] = answer
        return reply

    async def _publish_offer(self, session_id: int, participant: str, sdp: str) -> str | None:
        """The SFU's answer to an offer that came with a join, or None if it refused it."""
        try:
            return await self._sfu.publish(str(session_id), participant, sdp)
        except MediaError as exc:
            log.info("Signalling(%s) the offer of a join was refused: %s", session_id, exc)
            return None

    async def _answer_admitted(self, session_id: int, participant: str, sdp: str) -> None:
        """Publish the offer an admitted participant's join brought; `up-answer` tells them
        the SFU's answer, or null: publish again (and learn why it was refused)."""
        answer = await self._publish_offer(session_id, participant, sdp)
        sid = self._sids.get((session_id, participant))
        if sid is not None:
            await self.emit("up-answer", {"sdp": answer}, to=sid)

    async def _replace_older(self, key: tuple[int, str]) -> None:
        grace = self._grace.pop(key, None)
        if grace is not None:
            grace.cancel()
        older = self._sids.pop(key, None)
        if older is not None:
            # The newest join wins: the older connection is told why and closed cleanly.
            await self.emit("kicked", {"reason": "joined again from another connection"}, to=older)
            await self.disconnect(older)

    @staticmethod
    async def _agenda_of(db: Any, session_id: int) -> list[AgendaEntry]:
        """The agenda as stored now (coordinators may edit it during the session)."""
        entries = []
        for item in await items_of(db, session_id):
            case = await db.get(Case, item.case_id)
            assert case is not None and item.id is not None and case.id is not None
            entries.append(
                AgendaEntry(
                    item.id,
                    case.id,
                    case.number,
                    case.clinical_question,
                    item.timebox_minutes,
                    item.lane,
                )
            )
        return entries

    async def _leave(self, sid: str, data: Any) -> dict[str, Any]:
        live, person = await self._joined(sid)
        await self._depart((live.session_id, person.id), "left")
        return {"ok": True}

    async def _unbind(self, sid: str, session_id: int) -> None:
        """The connection (if still open) is no longer in the session and may join again."""
        try:
            where = await self.get_session(sid)
        except KeyError:
            return  # already disconnected
        await self.save_session(sid, {"user_id": where["user_id"]})
        await self.leave_room(sid, _room(session_id))
        await self.leave_room(sid, _lobby(session_id))

    async def _depart(self, key: tuple[int, str], reason: str) -> None:
        sid = self._sids.pop(key, None)
        self._grace.pop(key, None)
        self._lobby_offers.pop(key, None)  # even when the live session is already gone
        if sid is not None:
            await self._unbind(sid, key[0])
        live = self._live.get(key[0])
        if live is None:
            return
        try:
            await self._sfu.leave(str(key[0]), key[1])
        except MediaError as exc:
            # A media worker that died holds nothing to leave; the departure goes on.
            log.warning("Signalling(%s) media leave failed: %s", key[0], exc)
        person = live.depart(key[1])
        if person is not None:
            async with self._services.db.write() as db:
                await close_spans(db, key[0], person.user_id, utcnow())
            await self.emit(
                "participant-left", {"id": key[1], "reason": reason}, room=_room(key[0])
            )
        if not live.participants and not live.lobby:
            self._live.pop(key[0], None)
            self._view_locks.pop(key[0], None)

    async def _publish(self, sid: str, data: dict[str, Any]) -> dict[str, Any]:
        live, person = await self._joined(sid)
        answer = await self._sfu.publish(str(live.session_id), person.id, data["sdp"])
        return {"ok": True, "sdp": answer, "type": "answer"}

    async def _answer(self, sid: str, data: dict[str, Any]) -> dict[str, Any]:
        live, person = await self._joined(sid)
        await self._sfu.answer_down(str(live.session_id), person.id, data["sdp"])
        return {"ok": True}

    async def _candidate(self, sid: str, data: dict[str, Any]) -> dict[str, Any]:
        live, person = await self._joined(sid)
        await self._sfu.candidate(
            str(live.session_id), person.id, data["direction"], data["candidate"]
        )
        return {"ok": True}

    async def _media_state(self, sid: str, data: dict[str, Any]) -> dict[str, Any]:
        live, person = await self._joined(sid)
        for name in ("muted", "camera", "quality"):
            if name in data:
                setattr(person, name, data[name])
        await self.emit("participant", person.as_json(), room=_room(live.session_id))
        return {"ok": True}

    async def _hand(self, sid: str, data: dict[str, Any]) -> dict[str, Any]:
        live, person = await self._joined(sid)
        person.hand = bool(data["raised"])
        await self.emit("participant", person.as_json(), room=_room(live.session_id))
        return {"ok": True}

    async def _chat(self, sid: str, data: dict[str, Any]) -> dict[str, Any]:
        live, person = await self._joined(sid)
        message = live.say(person, data["text"])
        await self.emit("chat-message", message, room=_room(live.session_id))
        return {"ok": True}

    async def _presenter(self, sid: str, data: dict[str, Any]) -> dict[str, Any]:
        live, person = await self._joined(sid)
        live.set_presenter(person, data["participant"])
        await self._sfu.set_presenter(str(live.session_id), live.presenter)
        await self.emit("state", live.snapshot(), room=_room(live.session_id))
        return {"ok": True}

    async def _agenda(self, sid: str, data: dict[str, Any]) -> dict[str, Any]:
        live, person = await self._joined(sid)
        async with self._services.db.read() as db:
            live.agenda = await self._agenda_of(db, live.session_id)
        live.move_agenda(person, data["item_id"])
        connected = [p.user_id for p in live.participants.values() if p.connection == "connected"]
        async with self._services.db.write() as db:
            users = list(await db.exec(select(User).where(col(User.id).in_(connected))))
            await switch_item(db, live.session_id, users, live.current, utcnow())
            await self._services.audit.append(
                db,
                actor_id=person.user_id,
                action="session.agenda",
                target_type="session",
                target_id=live.session_id,
                detail={"item_id": live.current},
            )
        await self.emit("state", live.snapshot(), room=_room(live.session_id))
        return {"ok": True}

    async def _admit(self, sid: str, data: dict[str, Any]) -> dict[str, Any]:
        live, person = await self._joined(sid)
        admitted = live.admit(person, data["participant"])
        other = self._sids.get((live.session_id, admitted.id))
        offer = self._lobby_offers.pop((live.session_id, admitted.id), None)
        if other is not None:
            await self.leave_room(other, _lobby(live.session_id))
            await self.enter_room(other, _room(live.session_id))
            await self.emit("state", live.snapshot(), to=other)
            if offer is not None:
                self._spawn(self._answer_admitted(live.session_id, admitted.id, offer))
        await self.emit("participant", admitted.as_json(), room=_room(live.session_id))
        await self._tell_chairs(live)
        return {"ok": True}

    async def _view(self, sid: str, data: dict[str, Any]) -> dict[str, Any]:
        live, person = await self._joined(sid)
        live.require_presenter(person)
        # socket.io runs each event in its own task: without the lock, a patch that waits for
        # its series' image count could be overtaken by the next and dropped as stale.
        async with self._view_locks.setdefault(live.session_id, asyncio.Lock()):
            return await self._apply_view(sid, live, person, data)

    async def _apply_view(
        self, sid: str, live: LiveSession, person: Participant, data: dict[str, Any]
    ) -> dict[str, Any]:
        patch = data["patch"]
        named = live.view.aliases(patch)
        after = live.view.seq
        try:
            accepted = live.view.apply(data["seq"], patch, live.images)
        except Invalid:
            # Unknown to the cache: imaging may have been added since; read once and retry.
            await self._count_images(live, named)
            accepted = live.view.apply(data["seq"], patch, live.images)
        if not accepted:
            return {"ok": True, "dropped": True, "seq": live.view.seq}
        update = {"seq": live.view.seq, "after": after, "by": person.id, "patch": patch}
        # Twice: over the down connections' data channels, which a lost packet does not hold
        # up (on a lossy link TCP's retransmission costs a follower 0.5-1 s), and over the
        # socket, which always arrives. Followers apply whichever comes first (viewsync.js).
        self._sfu.relay(
            str(live.session_id),
            json.dumps({"event": "view-update", "data": update}, separators=(",", ":")),
            skip=person.id,
        )
        await self.emit("view-update", update, room=_room(live.session_id), skip_sid=sid)
        return {"ok": True, "seq": live.view.seq}

    async def _count_images(self, live: LiveSession, aliases: set[str]) -> None:
        """How many images each named series has, if it belongs to a case on the agenda. Only
        original series are named on the wire; a copy shares its source's alias and count."""
        async with self._services.db.read() as db:
            # The agenda as stored now: coordinators may add a case during the session.
            cases = {item.case_id for item in await items_of(db, live.session_id)}
            rows = await db.exec(
                select(DicomSeries.alias, func.sum(DicomInstance.frames))
                .where(
                    DicomInstance.series_id == DicomSeries.id,
                    DicomSeries.study_id == ImagingStudy.id,
                    col(DicomSeries.alias).in_(aliases),
                    col(DicomSeries.source_id).is_(None),
                    col(ImagingStudy.case_id).in_(cases),
                )
                .group_by(col(DicomSeries.alias))
            )
            for alias, count in rows:
                live.images[alias] = int(count)

    async def _pointer(self, sid: str, data: dict[str, Any]) -> dict[str, Any]:
        live, person = await self._joined(sid)
        live.require_presenter(person)
        # Volatile: relayed to the room as it comes, never stored or replayed.
        move = {"by": person.id, "viewport": data["viewport"], "point": data["point"]}
        await self.emit("pointer-move", move, room=_room(live.session_id), skip_sid=sid)
        return {"ok": True}

    async def _images_first(self, sid: str, data: dict[str, Any]) -> dict[str, Any]:
        # Only this participant's own down link changes: nobody else is affected.
        live, person = await self._joined(sid)
        await self._sfu.images_first(str(live.session_id), person.id, bool(data["on"]))
        return {"ok": True}

    # -- consensus notes (server/notes/channel.py) ----------------------------------------------

    async def _note_open(self, sid: str, data: dict[str, Any]) -> dict[str, Any]:
        where = await self.get_session(sid)
        return await self._notes.open(sid, int(where["user_id"]), data)

    async def _note_close(self, sid: str, data: dict[str, Any]) -> dict[str, Any]:
        return await self._notes.close(sid, data)

    async def _note_update(self, sid: str, data: dict[str, Any]) -> dict[str, Any]:
        return await self._notes.update(sid, data)

    async def _note_focus(self, sid: str, data: dict[str, Any]) -> dict[str, Any]:
        return await self._notes.focus(sid, data)

    async def _tell_chairs(self, live: LiveSession) -> None:
        waiting = {"waiting": [p.as_json() for p in live.lobby.values()]}
        for p in live.participants.values():
            sid = self._sids.get((live.session_id, p.id))
            if p.chairs and sid is not None:
                await self.emit("lobby", waiting, to=sid)

    # -- media events -------------------------------------------------------------------------

    def on_media_event(self, event: MediaEvent) -> None:
        """The SFU's event sink (called from the media plane; never blocks)."""
        if not self._closing:
            self._spawn(self._media_event(event))

    async def _media_event(self, event: MediaEvent) -> None:
        session_id = int(event.room)
        live = self._live.get(session_id)
        if live is None:
            return
        if isinstance(event, MediaReset):
            await self._media_reset(live, event.participants)
            return
        sid = self._sids.get((session_id, event.participant))
        if isinstance(event, DownOffer) and sid is not None:
            await self.emit("down-offer", {"sdp": event.sdp, "type": "offer"}, to=sid)
        elif isinstance(event, MediaJoined):
            person = live.participants.get(event.participant)
            if person is None:
                return
            person.connection = "connected"
            live.media_up.add(person.id)
            async with self._services.db.write() as db:
                user = await db.get(User, person.user_id)
                assert user is not None
                await close_spans(db, session_id, person.user_id, utcnow())
                await open_span(db, session_id, user, live.current, utcnow())
            await self.emit("participant", person.as_json(), room=_room(session_id))
        elif isinstance(event, MediaLeft):
            live.media_up.discard(event.participant)
            person = live.participants.get(event.participant)
            if person is None:
                return
            async with self._services.db.write() as db:
                await close_spans(db, session_id, person.user_id, utcnow())
            if event.reason in ("failed", "timeout"):
                if sid is not None:
                    await self.emit(
                        "error",
                        {
                            "event": "publish",
                            "field": None,
                            "message": f"media connection {event.reason}",
                        },
                        to=sid,
                    )
                await self._depart((session_id, event.participant), f"media {event.reason}")
        elif isinstance(event, ActiveSpeaker):
            live.speaker = event.participant
            await self.emit("speaker", {"participant": event.participant}, room=_room(session_id))
        elif isinstance(event, LinkQuality) and sid is not None:
            await self._media_quality(sid, event)

    async def _media_quality(self, sid: str, event: LinkQuality) -> None:
        """Tell one participant (and nobody else) what their link carries and how each of their
        down-tracks is forwarded. Checked against the contract first: an event the media plane
        got wrong is logged and dropped, never sent."""
        quality = {"estimate_kbps": event.estimate_kbps, "tracks": dict(event.tracks)}
        try:
            self._contract.check("media-quality", quality)
        except Invalid as exc:
            reason = exc.errors[0].message if exc.errors else exc.detail
            log.warning("Signalling(%s) media-quality not sent: %s", event.room, reason)
            return
        await self.emit("media-quality", quality, to=sid)

    async def _media_reset(self, live: LiveSession, lost: tuple[str, ...]) -> None:
        """The media plane restarted and lost these participants' connections: each leaves the
        media (attendance closed, shown as reconnecting), then the room is told to publish
        afresh. One task, in this order, so a quick republish cannot open a span that a late
        close would then end."""
        now = utcnow()
        for participant in lost:
            live.media_up.discard(participant)
            person = live.participants.get(participant)
            if person is None:
                continue
            async with self._services.db.write() as db:
                await close_spans(db, live.session_id, person.user_id, now)
            person.connection = "connecting"
            await self.emit("participant", person.as_json(), room=_room(live.session_id))
        reset = {"reason": "the media server restarted: publish again"}
        await self.emit("media-reset", reset, room=_room(live.session_id))

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("Signalling task failed", exc_info=task.exception())

    async def close(self) -> None:
        self._closing = True
        for task in list(self._grace.values()):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
