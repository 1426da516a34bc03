"""The allocator's rules, one test each, with an injected clock."""

from __future__ import annotations

import random

import pytest

from media.allocator import Allocator, Plan, Track
from media.sfu import MediaError

K = 1000
SIMULCAST = (100 * K, 300 * K, 900 * K)  # 160x90, 320x180, 640x360


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def plain(clock: Clock) -> Allocator:
    """No hysteresis: the rules of one round, alone."""
    return Allocator(margin=0.0, upgrade_delay=0.0, clock=clock)


@pytest.fixture
def allocator(clock: Clock) -> Allocator:
    return Allocator(margin=0.15, upgrade_delay=2.0, clock=clock)


def camera(key: str, rank: int, layers: tuple[int, ...] = SIMULCAST, max_layer: int = 2) -> Track:
    return Track(key, "video", rank, layers, max_layer)


def mic(key: str, measured: int = 0) -> Track:
    return Track(key, "audio", 0, (measured,) if measured else ())


def layers_of(plan: Plan) -> dict[object, int | None]:
    return {key: a.layer for key, a in plan.tracks.items()}


# Audio.


def test_audio_is_never_starved_even_with_30_kbits(plain: Allocator) -> None:
    tracks = [mic("a1"), mic("a2"), camera("v1", 0), camera("v2", 1)]
    plan = plain.allocate(30 * K, tracks)
    assert plan.tracks["a1"].layer == 0 and plan.tracks["a1"].state == "full"
    assert plan.tracks["a2"].layer == 0 and plan.tracks["a2"].state == "full"
    assert plan.tracks["v1"].state == "paused" and plan.tracks["v1"].reason == "bandwidth"
    assert plan.tracks["v2"].state == "paused"
    assert plan.allocated_bps == 80 * K  # the audio reserve is kept even over the budget


def test_audio_reserves_its_measured_rate_or_the_floor(plain: Allocator) -> None:
    tracks = [mic("a1", measured=90 * K), mic("a2", measured=10 * K), camera("v", 0)]
    # 90k + 40k (10k measured is below the floor) leaves 99k: no room for the 100k layer.
    assert plain.allocate(229 * K, tracks).tracks["v"].layer is None
    assert plain.allocate(230 * K, tracks).tracks["v"].layer == 0


def test_audio_comes_before_the_stage(plain: Allocator) -> None:
    tracks = [camera("stage", 0), mic("a", measured=50 * K)]
    plan = plain.allocate(120 * K, tracks)
    assert plan.tracks["a"].layer == 0
    assert plan.tracks["stage"].layer is None


# Cameras: order and layers.


def test_cameras_are_served_in_rank_order(plain: Allocator) -> None:
    tracks = [camera(f"v{rank}", rank) for rank in range(5)]
    random.Random(7).shuffle(tracks)
    plan = plain.allocate(250 * K, tracks)
    assert layers_of(plan) == {"v0": 0, "v1": 0, "v2": None, "v3": None, "v4": None}
    assert plan.tracks["v2"].reason == "bandwidth"


def test_everyone_gets_the_lowest_layer_before_any_upgrade(plain: Allocator) -> None:
    tracks = [camera(f"v{rank}", rank) for rank in range(3)]
    plan = plain.allocate(500 * K, tracks)
    assert layers_of(plan) == {"v0": 1, "v1": 0, "v2": 0}
    assert [plan.tracks[k].state for k in ("v0", "v1", "v2")] == ["reduced"] * 3


def test_the_stage_reaches_its_wanted_layer_before_others_improve(plain: Allocator) -> None:
    tracks = [camera(f"v{rank}", rank) for rank in range(3)]
    plan = plain.allocate(1100 * K, tracks)
    assert layers_of(plan) == {"v0": 2, "v1": 0, "v2": 0}
    assert plan.tracks["v0"].state == "full"
    assert plan.allocated_bps == 1100 * K
    # With more, the next in rank rises next.
    assert layers_of(plain.allocate(1300 * K, tracks)) == {"v0": 2, "v1": 1, "v2": 0}


def stage(key: str, rank: int = 0, layers: tuple[int, ...] = SIMULCAST) -> Track:
    return Track(key, "video", rank, layers, 2, stage=True)


def test_the_stage_is_readable_before_any_thumbnail(plain: Allocator) -> None:
    tracks = [stage("stage"), camera("v1", 1), camera("v2", 2)]
    # 300k + 100k: the stage at 320x180 first, then one thumbnail at its lowest.
    assert layers_of(plain.allocate(450 * K, tracks)) == {"stage": 1, "v1": 0, "v2": None}
    # Not even its 320x180: the stage takes its lowest layer, still before the thumbnails.
    assert layers_of(plain.allocate(250 * K, tracks)) == {"stage": 0, "v1": 0, "v2": None}
    # Its full layer only comes with the upgrades, after every thumbnail has its lowest.
    assert layers_of(plain.allocate(1100 * K, tracks)) == {"stage": 2, "v1": 0, "v2": 0}


def test_the_stage_counts_against_the_cap(plain: Allocator) -> None:
    tracks = [camera("v1", 1), stage("stage", 2), camera("v3", 3)]
    plan = plain.allocate(5000 * K, tracks, cap=2)
    assert layers_of(plan) == {"stage": 2, "v1": 2, "v3": None}
    assert plan.tracks["v3"].reason == "cap"


def test_the_stage_waits_its_delay_like_any_camera(allocator: Allocator, clock: Clock) -> None:
    tracks = [stage("stage"), camera("v1", 1)]
    assert allocator.allocate(2000 * K, tracks).tracks["stage"].layer == 2
    clock.now += 0.5
    assert allocator.allocate(450 * K, tracks).tracks["stage"].layer == 1
    clock.now += 0.5  # within the delay after its downgrade: no higher than it was cut to
    assert allocator.allocate(2000 * K, tracks).tracks["stage"].layer == 1
    clock.now += 2.0
    assert allocator.allocate(2000 * K, tracks).tracks["stage"].layer == 2


def test_small_tiles_want_small_layers(plain: Allocator) -> None:
    tracks = [camera("stage", 0), camera("thumb", 1, max_layer=0)]
    plan = plain.allocate(5000 * K, tracks)
    assert layers_of(plan) == {"stage": 2, "thumb": 0}
    assert plan.tracks["thumb"].state == "full"
    assert plan.demand_bps == 1000 * K


def test_a_camera_that_does_not_fit_is_paused_and_a_cheaper_one_tried(plain: Allocator) -> None:
    tracks = [camera("v0", 0), camera("v1", 1, layers=(1000 * K,)), camera("v2", 2)]
    plan = plain.allocate(500 * K, tracks)
    assert layers_of(plan) == {"v0": 1, "v1": None, "v2": 0}
    assert plan.tracks["v1"].reason == "bandwidth"


def test_nothing_fits_everything_paused(plain: Allocator) -> None:
    tracks = [camera(f"v{rank}", rank) for rank in range(3)]
    plan = plain.allocate(99 * K, tracks)
    assert {a.state for a in plan.tracks.values()} == {"paused"}
    assert plan.allocated_bps == 0
    assert plan.demand_bps == 3 * 900 * K


def test_demand_is_what_an_unlimited_budget_would_use(plain: Allocator) -> None:
    tracks = [mic("a", 30 * K), camera("v0", 0), camera("v1", 1, max_layer=1)]
    low = plain.allocate(0, tracks)
    high = plain.allocate(10**9, tracks)
    assert low.demand_bps == high.demand_bps == 40 * K + 900 * K + 300 * K
    assert high.allocated_bps == high.demand_bps


# Publishers' layers.


def test_a_publisher_sending_one_layer_is_forwarded_whatever_the_tile(plain: Allocator) -> None:
    tracks = [camera("big", 0, layers=(500 * K,)), camera("small", 1, (500 * K,), max_layer=0)]
    plan = plain.allocate(2000 * K, tracks)
    assert layers_of(plan) == {"big": 0, "small": 0}
    assert {a.state for a in plan.tracks.values()} == {"full"}


def test_layers_not_arriving_are_skipped(plain: Allocator) -> None:
    gap = camera("v", 0, layers=(100 * K, 0, 900 * K))
    assert plain.allocate(500 * K, [gap]).tracks["v"].layer == 0
    assert plain.allocate(1000 * K, [gap]).tracks["v"].layer == 2
    no_low = camera("v", 0, layers=(0, 300 * K, 900 * K))
    assert plain.allocate(350 * K, [no_low]).tracks["v"].layer == 1
    assert plain.allocate(250 * K, [no_low]).tracks["v"].layer is None


def test_only_a_layer_above_the_tile_arriving_is_still_shown(plain: Allocator) -> None:
    only_high = camera("v", 0, layers=(0, 0, 800 * K), max_layer=0)
    plan = plain.allocate(1000 * K, [only_high])
    assert plan.tracks["v"].layer == 2 and plan.tracks["v"].state == "full"


def test_a_camera_sending_nothing_is_paused_as_unavailable(plain: Allocator) -> None:
    plan = plain.allocate(5000 * K, [camera("v", 0, layers=(0, 0, 0)), camera("w", 1, ())])
    assert plan.tracks["v"].reason == "unavailable" and plan.tracks["w"].reason == "unavailable"
    assert plan.demand_bps == 0


# Screens.


def test_a_screen_is_never_reduced_only_paused(plain: Allocator) -> None:
    screen = Track("screen", "video", 0, (200 * K, 1500 * K), 1, screen=True)
    plan = plain.allocate(1000 * K, [screen])
    assert plan.tracks["screen"].layer is None and plan.tracks["screen"].reason == "bandwidth"
    plan = plain.allocate(1600 * K, [screen])
    assert plan.tracks["screen"].layer == 1 and plan.tracks["screen"].state == "full"


def test_cameras_go_before_the_screen(plain: Allocator) -> None:
    screen = Track("screen", "video", 0, (1200 * K,), 0, screen=True)
    tracks = [screen, *(camera(f"v{r}", r + 1) for r in range(3)), mic("a")]
    wide = plain.allocate(1540 * K, tracks)
    assert layers_of(wide) == {"screen": 0, "v0": 0, "v1": 0, "v2": 0, "a": 0}
    narrow = plain.allocate(1350 * K, tracks)
    assert layers_of(narrow) == {"screen": 0, "v0": 0, "v1": None, "v2": None, "a": 0}
    # Too little for the screen: it goes, and the cameras use what is left.
    thin = plain.allocate(1000 * K, tracks)
    assert layers_of(thin) == {"screen": None, "v0": 1, "v1": 1, "v2": 1, "a": 0}


# The Last-N cap.


def test_the_cap_limits_cameras_forwarded_by_rank(plain: Allocator) -> None:
    tracks = [camera(f"v{rank}", rank) for rank in range(5)]
    plan = plain.allocate(10_000 * K, tracks, cap=2)
    assert layers_of(plan) == {"v0": 2, "v1": 2, "v2": None, "v3": None, "v4": None}
    assert plan.tracks["v3"].reason == "cap"
    assert plan.demand_bps == 2 * 900 * K


def test_the_presenters_screen_does_not_count_against_the_cap(plain: Allocator) -> None:
    screen = Track("screen", "video", 0, (1000 * K,), 0, screen=True)
    tracks = [screen, camera("v0", 1), camera("v1", 2), camera("v2", 3)]
    plan = plain.allocate(10_000 * K, tracks, cap=2)
    assert layers_of(plan) == {"screen": 0, "v0": 2, "v1": 2, "v2": None}
    assert layers_of(plain.allocate(10_000 * K, tracks, cap=0))["screen"] == 0


def test_a_camera_sending_nothing_takes_no_place_under_the_cap(plain: Allocator) -> None:
    tracks = [camera("silent", 0, layers=(0, 0, 0)), camera("v1", 1), camera("v2", 2)]
    plan = plain.allocate(10_000 * K, tracks, cap=2)
    assert layers_of(plan) == {"silent": None, "v1": 2, "v2": 2}


def test_a_camera_paused_for_bandwidth_takes_no_place_under_the_cap(plain: Allocator) -> None:
    tracks = [camera("v0", 0), camera("big", 1, (2000 * K,)), camera("v2", 2), camera("v3", 3)]
    plan = plain.allocate(400 * K, tracks, cap=2)
    assert layers_of(plan) == {"v0": 1, "big": None, "v2": 0, "v3": None}
    assert plan.tracks["big"].reason == "bandwidth" and plan.tracks["v3"].reason == "cap"


# Hysteresis.


def test_a_raise_needs_the_margin(allocator: Allocator) -> None:
    tracks = [camera("v", 0)]
    assert allocator.allocate(200 * K, tracks).tracks["v"].layer == 0  # 100k * 1.15 fits
    # Layer 1 needs 300k; within 15 % of the budget it is not taken.
    assert allocator.allocate(330 * K, tracks).tracks["v"].layer == 0
    assert allocator.allocate(350 * K, tracks).tracks["v"].layer == 1
    # Holding it needs only the budget itself.
    assert allocator.allocate(300 * K, tracks).tracks["v"].layer == 1


def test_a_new_track_needs_the_margin_to_start(allocator: Allocator) -> None:
    assert allocator.allocate(105 * K, [camera("v", 0)]).tracks["v"].layer is None
    assert allocator.allocate(116 * K, [camera("v", 0)]).tracks["v"].layer == 0


def test_downgrade_is_immediate(allocator: Allocator, clock: Clock) -> None:
    tracks = [camera("v", 0)]
    assert allocator.allocate(2000 * K, tracks).tracks["v"].layer == 2
    clock.now += 0.01
    plan = allocator.allocate(899 * K, tracks)
    assert plan.tracks["v"].layer == 1 and plan.tracks["v"].state == "reduced"
    clock.now += 0.01
    assert allocator.allocate(99 * K, tracks).tracks["v"].layer is None


def test_no_raise_sooner_than_the_delay_after_a_downgrade(
    allocator: Allocator, clock: Clock
) -> None:
    tracks = [camera("v", 0)]
    allocator.allocate(2000 * K, tracks)
    clock.now += 1.0
    assert allocator.allocate(500 * K, tracks).tracks["v"].layer == 1
    clock.now += 1.75
    assert allocator.allocate(2000 * K, tracks).tracks["v"].layer == 1
    clock.now += 0.25
    assert allocator.allocate(2000 * K, tracks).tracks["v"].layer == 2


def test_a_paused_track_resumes_only_after_the_delay(allocator: Allocator, clock: Clock) -> None:
    tracks = [camera("v", 0)]
    allocator.allocate(2000 * K, tracks)
    allocator.allocate(50 * K, tracks)
    clock.now += 1.5
    assert allocator.allocate(2000 * K, tracks).tracks["v"].layer is None
    clock.now += 0.5
    assert allocator.allocate(2000 * K, tracks).tracks["v"].layer == 2


@pytest.mark.parametrize("threshold", [900 * K, 300 * K, 100 * K])
def test_no_flapping_when_the_budget_wobbles_5_percent(
    allocator: Allocator, clock: Clock, threshold: int
) -> None:
    """The budget swings ±5 % around what a layer needs, every 200 ms for a minute: one
    downgrade at most, never back and forth."""
    tracks = [camera("v", 0)]
    wobble = random.Random(threshold)
    first = allocator.allocate(2 * threshold, tracks).tracks["v"]  # needs ``threshold``
    assert first.bps == threshold
    layers = [first.layer]
    for _ in range(300):
        clock.now += 0.2
        budget = int(threshold * (1 + wobble.uniform(-0.05, 0.05)))
        layers.append(allocator.allocate(budget, tracks).tracks["v"].layer)
    changes = sum(1 for a, b in zip(layers, layers[1:], strict=False) if a != b)
    assert changes <= 1
    assert len(set(layers)) == 2  # the wobble did cross the threshold: one downgrade happened


def test_no_flapping_among_several_tracks(allocator: Allocator, clock: Clock) -> None:
    tracks = [mic("a"), *(camera(f"v{rank}", rank) for rank in range(6))]
    wobble = random.Random(3)
    base = 1900 * K
    seen: list[dict[object, int | None]] = []
    for _ in range(300):
        clock.now += 0.2
        budget = int(base * (1 + wobble.uniform(-0.05, 0.05)))
        seen.append(layers_of(allocator.allocate(budget, tracks)))
    changes = sum(1 for a, b in zip(seen, seen[1:], strict=False) for k in a if a[k] != b[k])
    assert changes <= 3


def test_moving_out_of_the_cap_does_not_delay_coming_back(
    allocator: Allocator, clock: Clock
) -> None:
    a, b = camera("a", 0), camera("b", 1)
    allocator.allocate(5000 * K, [a, b], cap=1)
    clock.now += 0.2
    plan = allocator.allocate(5000 * K, [camera("a", 1), camera("b", 0)], cap=1)
    assert layers_of(plan) == {"a": None, "b": 2}
    clock.now += 0.2
    assert layers_of(allocator.allocate(5000 * K, [a, b], cap=1)) == {"a": 2, "b": None}


def test_a_smaller_tile_does_not_delay_growing_again(allocator: Allocator, clock: Clock) -> None:
    allocator.allocate(5000 * K, [camera("v", 0)])
    clock.now += 0.2
    assert allocator.allocate(5000 * K, [camera("v", 0, max_layer=0)]).tracks["v"].layer == 0
    clock.now += 0.2
    assert allocator.allocate(5000 * K, [camera("v", 0)]).tracks["v"].layer == 2


def test_the_stage_takes_budget_from_thumbnails_when_it_may_rise(
    allocator: Allocator, clock: Clock
) -> None:
    tracks = [camera("stage", 0), camera("thumb", 1)]
    allocator.allocate(1300 * K, [camera("thumb", 1)])  # the thumbnail alone, at layer 2
    clock.now += 0.5
    plan = allocator.allocate(1300 * K, tracks)
    assert layers_of(plan) == {"stage": 2, "thumb": 1}


# State.


def test_forget_drops_a_tracks_history(allocator: Allocator, clock: Clock) -> None:
    tracks = [camera("v", 0)]
    allocator.allocate(2000 * K, tracks)
    allocator.allocate(50 * K, tracks)
    assert len(allocator) == 1
    allocator.forget("v")
    allocator.forget("never-seen")
    assert len(allocator) == 0
    clock.now += 0.1
    assert allocator.allocate(2000 * K, tracks).tracks["v"].layer == 2


def test_state_is_bounded(clock: Clock) -> None:
    allocator = Allocator(max_tracks=8, clock=clock)
    for round_ in range(50):
        allocator.allocate(10_000 * K, [camera(f"v{round_}-{i}", i) for i in range(8)])
        assert len(allocator) <= 8
    with pytest.raises(MediaError, match="at most 8 tracks"):
        allocator.allocate(10_000 * K, [camera(f"x{i}", i) for i in range(9)])


# Bad input.


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: Track("v", "data", 0), "kind"),  # type: ignore[arg-type]
        (lambda: Track("v", "video", -1), "rank"),
        (lambda: Track("v", "video", True), "rank"),
        (lambda: Track("v", "video", 0, (100, -5)), r"layers\[1\]"),
        (lambda: Track("v", "video", 0, [100]), "layers"),  # type: ignore[arg-type]
        (lambda: Track("v", "video", 0, (1,) * 9), "layers"),
        (lambda: Track("v", "video", 0, (1,), max_layer=-1), "max_layer"),
        (lambda: Track("a", "audio", 0, (1,), screen=True), "screen"),
        (lambda: Track("a", "audio", 0, (1,), stage=True), "stage"),
        (lambda: Track("v", "video", 0, (1,), stage=1), "stage"),  # type: ignore[arg-type]
        (lambda: Track(["v"], "video", 0), "hashable"),
    ],
)
def test_a_bad_track_is_refused_naming_the_field(make: object, field: str) -> None:
    with pytest.raises(MediaError, match=field):
        make()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("budget", "tracks", "cap", "field"),
    [
        (-1, [], None, "budget_bps"),
        (1.5, [], None, "budget_bps"),
        (True, [], None, "budget_bps"),
        (10**12, [], None, "budget_bps"),
        (1000, [], -1, "cap"),
        (1000, [camera("v", 0), camera("v", 1)], None, "appears twice"),
        (1000, [camera("v", 0), "v"], None, "Track objects"),
    ],
)
def test_a_bad_round_is_refused_and_changes_nothing(
    allocator: Allocator, clock: Clock, budget: object, tracks: object, cap: object, field: str
) -> None:
    good = [camera("v", 0), camera("w", 1)]
    before = allocator.allocate(2000 * K, good)
    with pytest.raises(MediaError, match=field):
        allocator.allocate(budget, tracks, cap)  # type: ignore[arg-type]
    assert len(allocator) == 2
    clock.now += 0.1
    assert allocator.allocate(2000 * K, good) == before
