"""Simulcast offers are read and checked; our answer asks for the layers a browser offered."""

from __future__ import annotations

import pytest
from aiortc.sdp import SessionDescription

from media.local import LocalSfu
from media.peer import UpPeer
from media.sfu import MediaError
from media.simulcast import (
    REPAIRED_RID_URI,
    RID_URI,
    layer_of,
    offered_rids,
    rid_extension_ids,
    with_simulcast_answer,
)

from .browser import CONFIGURATION

FINGERPRINT = ":".join(f"{b:02X}" for b in range(0x3C, 0x5C))  # any 32 bytes will do
# A Chrome offer (camera as sendEncodings q/h/f, microphone), trimmed of candidates: extension
# ids shared across the bundle, no a=ssrc for the simulcast streams (the rids name them).
CHROME_OFFER = """v=0
o=- 4611731400430051336 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
a=extmap-allow-mixed
a=msid-semantic: WMS stream
m=audio 9 UDP/TLS/RTP/SAVPF 111 63
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:Ql2q
a=ice-pwd:8Hc0qYDxTrmtTSxf8e4b3w1N
a=ice-options:trickle
a=fingerprint:sha-256 FINGERPRINT
a=setup:actpass
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid
a=sendonly
a=msid:stream mic
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=ssrc:1950211491 cname:VFpnhhSXmFNnnJEA
a=ssrc:1950211491 msid:stream mic
m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:Ql2q
a=ice-pwd:8Hc0qYDxTrmtTSxf8e4b3w1N
a=ice-options:trickle
a=fingerprint:sha-256 FINGERPRINT
a=setup:actpass
a=mid:1
a=extmap:14 urn:ietf:params:rtp-hdrext:toffset
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:13 urn:3gpp:video-orientation
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay
a=extmap:6 http://www.webrtc.org/experiments/rtp-hdrext/video-content-type
a=extmap:7 http://www.webrtc.org/experiments/rtp-hdrext/video-timing
a=extmap:8 http://www.webrtc.org/experiments/rtp-hdrext/color-space
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid
a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id
a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id
a=sendonly
a=msid:stream camera
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:96 VP8/90000
a=rtcp-fb:96 goog-remb
a=rtcp-fb:96 transport-cc
a=rtcp-fb:96 ccm fir
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=rtpmap:98 H264/90000
a=rtcp-fb:98 nack pli
a=fmtp:98 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
a=rtpmap:99 rtx/90000
a=fmtp:99 apt=98
a=rid:q send
a=rid:h send
a=rid:f send
a=simulcast:send q;h;f
""".replace("\n", "\r\n").replace("FINGERPRINT", FINGERPRINT)


def offer_with(simulcast: str, rids: list[str], *, drop: str | None = None) -> str:
    """The Chrome offer with other a=rid / a=simulcast lines (and without lines containing
    ``drop``)."""
    lines = [
        line
        for line in CHROME_OFFER.split("\r\n")
        if not line.startswith(("a=rid:", "a=simulcast:")) and (drop is None or drop not in line)
    ]
    lines = lines[:-1] + [f"a=rid:{r}" for r in rids] + [f"a=simulcast:{simulcast}", ""]
    return "\r\n".join(lines)


def test_chrome_offer_sends_three_layers_on_the_camera_section() -> None:
    assert offered_rids(CHROME_OFFER) == {"1": ["q", "h", "f"]}
    assert rid_extension_ids(CHROME_OFFER, "1") == (10, 11)
    assert [layer_of(r) for r in ("q", "h", "f")] == [0, 1, 2]


@pytest.mark.parametrize(
    "simulcast, rids, expected",
    [
        ("send q", ["q send"], ["q"]),  # one layer: a publisher may send only one
        ("send f;q", ["q send", "f send"], ["f", "q"]),
        ("send ~q;h;~f", ["q send", "h send", "f send"], ["q", "h", "f"]),  # paused
        ("send q,h;f", ["q send", "h send", "f send"], ["q", "f"]),  # alternatives
        ("send rid=q;h", ["q send", "h send"], ["q", "h"]),  # Firefox's older spelling
        ("send q;h", ["q send pt=96;max-width=320", "h send max-height=360"], ["q", "h"]),
    ],
)
def test_accepted_variants(simulcast: str, rids: list[str], expected: list[str]) -> None:
    assert offered_rids(offer_with(simulcast, rids)) == {"1": expected}


def test_a_section_without_simulcast_is_absent() -> None:
    plain = "\r\n".join(
        line
        for line in CHROME_OFFER.split("\r\n")
        if not line.startswith(("a=rid:", "a=simulcast:"))
    )
    assert offered_rids(plain) == {}


@pytest.mark.parametrize(
    "offer, problem",
    [
        (offer_with("send q;x", ["q send", "x send"]), "unknown rid 'x'; accepted: q, h, f"),
        (offer_with("send q;h", ["q send", "h send", "hi send"]), "unknown rid 'hi'"),
        (offer_with("send q;q", ["q send"]), "names rid 'q' twice"),
        (offer_with("send q;h", ["q send", "h send", "q send"]), "declares rid 'q' twice"),
        (
            offer_with("send q;h;f;q", ["q send", "h send", "f send"]),
            r"offers 4 simulcast streams; at most 3 \(q, h, f\)",
        ),
        (offer_with("send q;h;f", ["q send", "h send"]), "names rid 'f' without an a=rid"),
        (offer_with("send q;h", ["q send", "h recv"]), "a=rid:'h' is 'recv'; we only receive"),
        (offer_with("recv q;h", ["q send", "h send"]), "must be 'send' and one list"),
        (offer_with("send q;h recv f", ["q send", "h send"]), "must be 'send' and one list"),
        (offer_with("send q", ["q send"], drop=RID_URI), "without the extension"),
        (CHROME_OFFER.replace("a=mid:1\r\n", ""), "with a=simulcast has no a=mid"),
        (
            CHROME_OFFER + "a=simulcast:send q\r\n",
            "has 2 a=simulcast lines",
        ),
        (CHROME_OFFER.replace("a=extmap:10 ", "a=extmap:ten "), "malformed a=extmap id 'ten'"),
        (CHROME_OFFER.replace("a=extmap:10 ", "a=extmap:256 "), "id 256 out of range"),
    ],
)
def test_refused_offers_name_the_problem(offer: str, problem: str) -> None:
    with pytest.raises(MediaError, match=problem):
        offered_rids(offer)


def test_simulcast_on_audio_is_refused() -> None:
    offer = CHROME_OFFER.replace(
        "a=ssrc:1950211491 cname", "a=rid:q send\r\na=simulcast:send q\r\na=ssrc:1950211491 cname"
    )
    with pytest.raises(MediaError, match=r"m=audio \(mid '0'\) offers simulcast; only video"):
        offered_rids(offer)


def test_a_long_unknown_rid_is_cut_short_in_the_error() -> None:
    rid = "x" * 500
    with pytest.raises(MediaError) as caught:
        offered_rids(offer_with(f"send {rid}", [f"{rid} send"]))
    assert len(str(caught.value)) < 150


def test_rid_extension_ids_of_unknown_section_or_without_the_extension() -> None:
    with pytest.raises(MediaError, match="no section with mid '7'"):
        rid_extension_ids(CHROME_OFFER, "7")
    with pytest.raises(MediaError, match="mid '0' has no urn:ietf:params:rtp-hdrext:sdes:rtp"):
        rid_extension_ids(CHROME_OFFER, "0")
    no_repair = CHROME_OFFER.replace(f"a=extmap:11 {REPAIRED_RID_URI}\r\n", "")
    assert rid_extension_ids(no_repair, "1") == (10, None)


async def test_an_up_peer_answers_a_simulcast_offer_with_simulcast_and_aiortc_parses_it() -> None:
    peer = UpPeer(CONFIGURATION, lambda state: None)
    try:
        munged = await peer.accept(CHROME_OFFER)  # aiortc's answer, given our simulcast lines
        assert [layer.rid for layer in peer.tracks["video"].layers] == ["q", "h", "f"]
    finally:
        await peer.close()
    parsed = SessionDescription.parse(munged)
    video = next(m for m in parsed.media if m.kind == "video")
    audio = next(m for m in parsed.media if m.kind == "audio")
    extensions = {e.uri: e.id for e in video.rtp.headerExtensions}
    assert extensions[RID_URI] == 10 and extensions[REPAIRED_RID_URI] == 11
    assert RID_URI not in {e.uri for e in audio.rtp.headerExtensions}
    sections = munged.split("m=")
    assert "a=simulcast" not in sections[1]  # audio untouched
    video_lines = sections[2].split("\r\n")
    assert [line for line in video_lines if line.startswith(("a=rid", "a=simulcast"))] == [
        "a=rid:q recv",
        "a=rid:h recv",
        "a=rid:f recv",
        "a=simulcast:recv q;h;f",
    ]
    assert munged.endswith("\r\n") and munged.count("\r\n\r\n") == 0


def test_answer_lines_go_only_to_the_named_sections_and_once() -> None:
    answer = "\r\n".join(
        line
        for line in CHROME_OFFER.split("\r\n")
        if not line.startswith(("a=rid:", "a=simulcast:", "a=extmap:10", "a=extmap:11"))
    )
    munged = with_simulcast_answer(answer, {"1": ["h", "q"]}, offer_sdp=CHROME_OFFER)
    assert munged.count(f"a=extmap:10 {RID_URI}") == 1
    assert "a=simulcast:recv h;q" in munged.split("m=")[2]
    again = with_simulcast_answer(munged, {}, offer_sdp=CHROME_OFFER)
    assert again == munged
    # An answer that already has the extension does not get it twice.
    kept = with_simulcast_answer(CHROME_OFFER, {"1": ["q"]}, offer_sdp=CHROME_OFFER)
    assert kept.count(f"a=extmap:10 {RID_URI}") == 1


@pytest.mark.parametrize(
    "rids_by_mid, problem",
    [
        ({"9": ["q"]}, "no section with mid '9'"),
        ({"1": ["x"]}, "unknown rid 'x'"),
        ({"1": []}, "cannot answer simulcast rids"),
        ({"1": ["q", "q"]}, "cannot answer simulcast rids"),
        ({"0": ["q"]}, "mid '0' has no urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"),
    ],
)
def test_answer_refuses_what_the_offer_cannot_back(
    rids_by_mid: dict[str, list[str]], problem: str
) -> None:
    with pytest.raises(MediaError, match=problem):
        with_simulcast_answer(CHROME_OFFER, rids_by_mid, offer_sdp=CHROME_OFFER)


@pytest.mark.parametrize(
    "simulcast, rids, problem",
    [
        ("send q;h;x", ["q send", "h send", "x send"], "'x'"),
        ("send q;h;h", ["q send", "h send"], "'h'"),
    ],
)
async def test_a_bad_simulcast_offer_is_refused_by_the_sfu_and_changes_nothing(
    sfu: LocalSfu, simulcast: str, rids: list[str], problem: str
) -> None:
    with pytest.raises(MediaError, match=problem):
        await sfu.publish("board", "mallory", offer_with(simulcast, rids))
    stats = await sfu.stats("board")
    assert stats.participants == 0  # nothing half-made
    # The same participant's good simulcast offer is still answered, with simulcast.
    answer = await sfu.publish("board", "mallory", CHROME_OFFER)
    assert "a=simulcast:recv q;h;f" in answer
