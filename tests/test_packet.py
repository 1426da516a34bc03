"""BoundedPacket reads every event the server is sent; what it will not read becomes an
``Unreadable`` naming the field, so the event is answered instead of dropped."""

from __future__ import annotations

import pytest

from server.packet import MAX_DEPTH, MAX_EVENT_CHARS, MAX_VALUES, BoundedPacket, Unreadable


def _nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def _decode(payload: str, event: str = "join") -> list[object]:
    data = BoundedPacket(encoded_packet=f'2/board,7["{event}",{payload}]').data
    assert isinstance(data, list)
    return data


def test_nesting_up_to_the_limit_is_read_and_one_more_level_is_refused() -> None:
    # The payload object is one level, the list inside it the rest.
    assert _decode('{"session_id": ' + _nested(MAX_DEPTH - 1) + "}")[0] == "join"
    assert not isinstance(_decode('{"session_id": ' + _nested(MAX_DEPTH - 1) + "}")[1], Unreadable)
    refused = _decode('{"session_id": ' + _nested(MAX_DEPTH) + "}")[1]
    assert refused == Unreadable("session_id", f"is nested deeper than {MAX_DEPTH} levels")


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        ('{"session_id": ' + _nested(100_000) + "}", "session_id", "is nested deeper"),
        ('{"a": {"b": ' + _nested(500) + "}}", "a.b", "is nested deeper"),
        ('{"a": ' + "[[1]," * 40 + "1" + "]" * 40 + "}", "a", "is nested deeper"),
        ('{"session_id": NaN}', "session_id", "NaN is not a JSON number"),
        ('{"session_id": Infinity}', "session_id", "Infinity is not a JSON number"),
        ('{"session_id": 1,}', "session_id", "is not valid JSON"),
        ('{"text": "' + "x" * MAX_EVENT_CHARS + '"}', "text", "makes the event longer"),
        ('{"case_id": 1, "update": "' + "A" * MAX_EVENT_CHARS + '"}', "update", "makes the event"),
        ("[" + ",".join(["0"] * MAX_EVENT_CHARS) + "]", "data", "makes the event longer"),
        ('{"session_id": [' + ",".join(["[]"] * 20_000) + "]}", "session_id", "has more than"),
        ('{"seq": 1, "patch": [' + ",".join(["0"] * 20_000) + "]}", "patch", "has more than"),
    ],
)
def test_what_is_not_read_is_named(payload: str, field: str, message: str) -> None:
    event, refused = _decode(payload)
    assert event == "join"
    assert isinstance(refused, Unreadable)
    assert refused.field == field and refused.message.startswith(message)


def test_a_full_view_patch_is_well_within_the_value_limit() -> None:
    point = "[0.5, 0.25, 0]"
    annotation = (
        '{"id": "a-1", "tool": "Length", "series": "s1", "index": 3, "text": "x, y", "points": ['
        + ", ".join([point] * 8)
        + "]}"
    )
    patch = '{"seq": 1, "patch": {"annotations": [' + ", ".join([annotation] * 200) + "]}}"
    assert patch.count(",") * 2 < MAX_VALUES
    assert not isinstance(_decode(patch, "view")[1], Unreadable)


def test_brackets_and_commas_inside_strings_do_not_count() -> None:
    commas = "," * (MAX_VALUES + 1)
    assert _decode('{"text": "' + commas + '"}')[1] == {"text": commas}
    text = '"' + "[" * 100 + '\\"' + "{" * 100 + '"'
    assert _decode('{"text": ' + text + "}")[1] == {"text": text[1:-1].replace('\\"', '"')}


def test_the_header_is_kept_so_the_refusal_is_acknowledged() -> None:
    packet = BoundedPacket(encoded_packet='2/board,41["chat",{"text":' + _nested(100) + "}]")
    assert (packet.namespace, packet.id) == ("/board", 41)


def test_a_connect_packet_nested_too_deep_is_dropped_as_before() -> None:
    with pytest.raises(ValueError, match="nested deeper"):
        BoundedPacket(encoded_packet='0/board,{"token":' + _nested(100) + "}")
