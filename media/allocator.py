"""Allocator: shares one subscriber's estimated bandwidth among the tracks it wants.

Each round the room hands the allocator the subscriber's budget (from its send-side estimate)
and the tracks it would like to see, ranked (lower rank = more important: the presenter's screen
and the presenter, then the active and recent speakers, then the rest). The allocator answers,
per track, which simulcast layer to forward or that the track is paused, and whether the tile
shows it in full, reduced or paused, so the tile can say so. It knows nothing of RTP or rooms.

The rules, in the order they spend the budget:

1. Audio first, always: each audio track reserves its measured bitrate, at least
   ``audio_reserve_bps``, and is never paused; video gets what is left, possibly nothing.
2. Screens (only the presenter's is offered) next, at the one layer they want: a screen never
   drops resolution. If it cannot have that layer it is paused; cameras are cut before it, so
   it is the last video to go. (Dropping a screen's frame rate is the publisher's job: its
   encoder is told ``maintain-resolution``; the SFU cannot thin a VP8 stream without temporal
   layers.)
3. The stage cameras (``stage=True``: the presenter, or the active speaker when nobody
   presents) at a readable layer: the highest wanted one up to ``stage_layer`` (320×180 of
   the usual three) that fits, else a lower one. The stage is what the board looks at; a
   thumbnail is only there to say who is present, so it waits (Jitsi serves its on-stage
   endpoint first in the same way).
4. Every other camera's lowest arriving layer, in rank order, until the budget is gone. A
   camera that does not fit is paused and the next, maybe cheaper, one is tried. The Last-N
   ``cap`` counts the cameras given a layer, the stage's included: past it the rest are paused
   by the cap, not by bandwidth. Screens do not count against the cap.
5. Upgrades in rank order, each camera raised as far as it wants before the next gets more than
   its lowest layer: the stage (rank 0) is sharp before the thumbnails improve, as Jitsi's
   stage view does.

A camera's wanted layer is the highest arriving layer at or below ``max_layer`` (the tile's
size); a layer measured at 0 bit/s is not arriving and is skipped. If no layer at or below
``max_layer`` arrives, the lowest arriving one is wanted (a publisher sending only its full
layer is still seen in a small tile, as Jitsi does).

Hysteresis (state kept between rounds, per track key): lowering a layer or pausing happens in
the round the budget is short. Raising (a higher layer than now, or resuming a paused track)
needs the whole allocation after the raise to fit in the budget less ``margin``, and waits
``upgrade_delay`` seconds after that track's last bandwidth downgrade. So a budget that wobbles
a few per cent around a threshold costs one downgrade, not a flap every round.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from .sfu import MediaError

__all__ = ["Allocator", "Allocation", "Plan", "Track", "TileState", "PauseReason"]

Kind = Literal["audio", "video"]
TileState = Literal["full", "reduced", "paused"]
PauseReason = Literal["bandwidth", "cap", "unavailable"]

MAX_LAYERS = 8
MAX_BPS = 10_000_000_000  # 10 Gbit/s: anything above is a unit error, not a measurement
MAX_RANK = 1_000_000


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise MediaError(f"{name} must be an integer in [{low}, {high}], not {value!r}")
    return value


@dataclass(frozen=True)
class Track:
    """One track a subscriber wants: its measured layers (bit/s, low to high, 0 = not arriving)
    and the highest layer worth sending for the tile it is shown in."""

    key: Hashable
    kind: Kind
    rank: int
    layers: tuple[int, ...] = ()
    max_layer: int = MAX_LAYERS - 1
    screen: bool = False
    stage: bool = False

    def __post_init__(self) -> None:
        try:
            hash(self.key)
        except TypeError:
            raise MediaError(f"track key {self.key!r} is not hashable") from None
        if self.kind not in ("audio", "video"):
            raise MediaError(
                f"track {self.key!r}: kind must be 'audio' or 'video', not {self.kind!r}"
            )
        _check_int(f"track {self.key!r}: rank", self.rank, 0, MAX_RANK)
        if not isinstance(self.layers, tuple) or len(self.layers) > MAX_LAYERS:
            raise MediaError(
                f"track {self.key!r}: layers must be a tuple of at most {MAX_LAYERS} bitrates, "
                f"not {self.layers!r}"
            )
        for i, bps in enumerate(self.layers):
            _check_int(f"track {self.key!r}: layers[{i}]", bps, 0, MAX_BPS)
        _check_int(f"track {self.key!r}: max_layer", self.max_layer, 0, MAX_LAYERS - 1)
        if not isinstance(self.screen, bool) or (self.screen and self.kind != "video"):
            raise MediaError(f"track {self.key!r}: screen must be a bool, and only for video")
        if not isinstance(self.stage, bool) or (self.stage and self.kind != "video"):
            raise MediaError(f"track {self.key!r}: stage must be a bool, and only for video")

    @cached_property
    def wanted(self) -> tuple[int, ...]:
        """The layers worth choosing from, low to high: arriving ones up to ``max_layer``, or
        else the lowest arriving one; empty if nothing arrives."""
        arriving = [i for i, bps in enumerate(self.layers) if bps > 0]
        fitting = tuple(i for i in arriving if i <= self.max_layer)
        return fitting or tuple(arriving[:1])


@dataclass(frozen=True)
class Allocation:
    """What to do with one track this round: forward ``layer`` (``None``: paused) and how the
    tile should present it. ``reason`` says why a paused track is paused."""

    layer: int | None
    state: TileState
    bps: int = 0
    reason: PauseReason | None = None


@dataclass(frozen=True)
class Plan:
    """One round's answer: an allocation per track key; ``allocated_bps`` is what the chosen
    layers are expected to use, ``demand_bps`` what every wanted layer would use (the cap still
    applied) if the budget were unlimited, for the estimator's probing."""

    tracks: dict[Hashable, Allocation]
    allocated_bps: int
    demand_bps: int


@dataclass
class _Memory:
    layer: int | None = None
    downgraded_at: float = -float("inf")


@dataclass
class _Round:
    """The working state of one allocation round."""

    budget: int
    raise_budget: float  # a raise must leave the total within this
    now: float
    used: int = 0
    chosen: dict[Hashable, int] = field(default_factory=dict)
    reasons: dict[Hashable, PauseReason] = field(default_factory=dict)


class Allocator:
    """Per subscriber: turns a budget and ranked tracks into a :class:`Plan`, with hysteresis.

    ``stage_layer`` is the layer a stage camera gets before any thumbnail gets its lowest;
    ``margin`` (a fraction) is the headroom a raise needs; ``upgrade_delay`` (seconds) the wait
    after a track's bandwidth downgrade before it may rise again; at most ``max_tracks`` tracks
    per round and remembered between rounds (the least recently seen are forgotten first)."""

    def __init__(
        self,
        *,
        audio_reserve_bps: int = 40_000,
        stage_layer: int = 1,
        margin: float = 0.15,
        upgrade_delay: float = 2.0,
        max_tracks: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_int("audio_reserve_bps", audio_reserve_bps, 0, MAX_BPS)
        _check_int("max_tracks", max_tracks, 1, 100_000)
        _check_int("stage_layer", stage_layer, 0, MAX_LAYERS - 1)
        if not 0.0 <= margin < 1.0:
            raise MediaError(f"margin must be in [0, 1), not {margin!r}")
        if not 0.0 <= upgrade_delay <= 3600.0:
            raise MediaError(f"upgrade_delay must be in [0, 3600] s, not {upgrade_delay!r}")
        self._audio_reserve = audio_reserve_bps
        self._stage_layer = stage_layer
        self._margin = margin
        self._upgrade_delay = upgrade_delay
        self._max_tracks = max_tracks
        self._clock = clock
        self._memory: dict[Hashable, _Memory] = {}

    def __len__(self) -> int:
        """How many tracks the allocator remembers."""
        return len(self._memory)

    def forget(self, key: Hashable) -> None:
        """Drop what is remembered of a track that is gone (unknown keys are ignored)."""
        self._memory.pop(key, None)

    def allocate(self, budget_bps: int, tracks: Iterable[Track], cap: int | None = None) -> Plan:
        """Share ``budget_bps`` among ``tracks``; at most ``cap`` cameras get video (``None``:
        no cap). Bad input raises :class:`MediaError` and changes no state."""
        _check_int("budget_bps", budget_bps, 0, MAX_BPS)
        if cap is not None:
            _check_int("cap", cap, 0, 100_000)
        wanted = self._validated(tracks)
        now = self._clock()
        round_ = _Round(budget_bps, budget_bps / (1.0 + self._margin), now)
        audio = [t for t in wanted if t.kind == "audio"]
        videos = sorted((t for t in wanted if t.kind == "video"), key=lambda t: t.rank)
        for track in audio:
            round_.used += self._audio_bps(track)
        screens = [t for t in videos if t.screen]
        cameras = [t for t in videos if not t.screen]
        for track in screens:
            self._place(round_, track, track.wanted[-1:])
        shown = 0
        for track in sorted(cameras, key=lambda t: not t.stage):  # stable: rank order kept
            if cap is not None and shown >= cap and track.wanted:
                round_.reasons[track.key] = "cap"
                continue
            if track.stage:
                readable = [layer for layer in track.wanted if layer <= self._stage_layer]
                self._place(round_, track, tuple(reversed(readable or track.wanted[:1])))
            else:
                self._place(round_, track, track.wanted[:1])
            shown += track.key in round_.chosen
        for track in cameras:
            if track.key in round_.chosen:
                self._raise(round_, track)
        return self._finish(round_, audio, videos)

    def _validated(self, tracks: Iterable[Track]) -> list[Track]:
        wanted: list[Track] = []
        keys: set[Hashable] = set()
        for track in tracks:
            if not isinstance(track, Track):
                raise MediaError(f"tracks must hold Track objects, not {type(track).__name__}")
            if track.key in keys:
                raise MediaError(f"track key {track.key!r} appears twice")
            keys.add(track.key)
            wanted.append(track)
            if len(wanted) > self._max_tracks:
                raise MediaError(f"at most {self._max_tracks} tracks per round")
        return wanted

    def _audio_bps(self, track: Track) -> int:
        return max(track.layers[0] if track.layers else 0, self._audio_reserve)

    def _may_raise(self, round_: _Round, key: Hashable, layer: int, extra: int) -> bool:
        """Whether ``key`` may go to ``layer`` at ``extra`` bit/s more than the round has spent:
        within the budget always; above what it had, also within the margin and the delay."""
        if round_.used + extra > round_.budget:
            return False
        memory = self._memory.get(key)
        held = memory.layer if memory is not None else None
        if held is not None and layer <= held:
            return True
        if memory is not None and round_.now - memory.downgraded_at < self._upgrade_delay:
            return False
        return round_.used + extra <= round_.raise_budget

    def _place(self, round_: _Round, track: Track, choices: tuple[int, ...]) -> None:
        """Give ``track`` the first layer of ``choices`` the rules allow, else pause it."""
        if not choices:
            round_.reasons[track.key] = "unavailable"
            return
        for layer in choices:
            cost = track.layers[layer]
            if self._may_raise(round_, track.key, layer, cost):
                round_.chosen[track.key] = layer
                round_.used += cost
                return
        round_.reasons[track.key] = "bandwidth"

    def _raise(self, round_: _Round, track: Track) -> None:
        """Raise a placed camera to the highest wanted layer the rules allow."""
        base = round_.chosen[track.key]
        base_cost = track.layers[base]
        for layer in reversed(track.wanted):
            if layer <= base:
                return
            extra = track.layers[layer] - base_cost
            if self._may_raise(round_, track.key, layer, extra):
                round_.chosen[track.key] = layer
                round_.used += extra
                return

    def _finish(self, round_: _Round, audio: list[Track], videos: list[Track]) -> Plan:
        out: dict[Hashable, Allocation] = {}
        demand = 0
        for track in audio:
            bps = self._audio_bps(track)
            out[track.key] = Allocation(0, "full", bps)
            demand += bps
        for track in videos:
            choices = track.wanted
            reason = round_.reasons.get(track.key)
            if reason != "cap" and choices:
                demand += track.layers[choices[-1]]
            layer = round_.chosen.get(track.key)
            if layer is None:
                out[track.key] = Allocation(None, "paused", 0, reason)
            else:
                state: TileState = "full" if layer == choices[-1] else "reduced"
                out[track.key] = Allocation(layer, state, track.layers[layer])
            self._remember(track, layer, reason, round_.now)
        return Plan(out, round_.used, demand)

    def _remember(
        self, track: Track, layer: int | None, reason: PauseReason | None, now: float
    ) -> None:
        memory = self._memory.pop(track.key, None) or _Memory()
        held = memory.layer
        # Only a cut for want of budget delays the next raise: not the cap moving a camera
        # out, nor a smaller tile, nor the held layer ceasing to arrive.
        if held is not None and held in track.wanted:
            if (layer is None and reason == "bandwidth") or (layer is not None and layer < held):
                memory.downgraded_at = now
        memory.layer = layer
        self._memory[track.key] = memory  # re-inserted: least recently seen come first
        while len(self._memory) > self._max_tracks:
            del self._memory[next(iter(self._memory))]
