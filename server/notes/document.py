"""NoteDocument: the server's replica of one case's consensus note, a CRDT (pycrdt, which speaks
Yjs's update format), through which every update passes before it is stored.

The document's shape comes from the note's template: the root map ``note`` holds a map per
group, an array of maps per list, a text per free-text field (edited character-wise) and plain
values for codes, dates, numbers and yes/no. The server creates the whole skeleton once, so two
clients never race to create the same shared type (the loser's text would vanish).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pycrdt

from ..errors import Invalid
from .templates import Field

__all__ = ["NoteDocument", "ROOT", "MAX_DOCUMENT_BYTES"]

ROOT = "note"
# A note is a few pages of text; a document beyond this is abuse, not a discussion.
MAX_DOCUMENT_BYTES = 2 * 1024 * 1024
_MEASURE_EVERY = 64 * 1024
# While editing, lists may hold up to twice the template's maxItems: people adding at once may
# overshoot it (finalize holds to maxItems), but no client can make every edit walk a long list.
_LIST_SLACK = 2
_SCALARS = (str, int, float, bool, type(None))


class NoteDocument:
    """The live document and a shadow copy. An update is tried on the shadow first and reaches
    the live document only if it decodes, integrates fully, and keeps the template's shape; a
    refused update leaves the live document as it was (the shadow is rebuilt from it)."""

    def __init__(self, shape: Field) -> None:
        if shape.kind != "map":
            raise ValueError("a note template's root must be an object")
        self._shape = shape
        self._live: pycrdt.Doc[Any] = pycrdt.Doc()
        self._shadow: pycrdt.Doc[Any] = pycrdt.Doc()
        self._unmeasured = 0

    @classmethod
    def fresh(cls, shape: Field) -> tuple[NoteDocument, bytes]:
        """A new note with its skeleton, and the skeleton as the first update to store."""
        doc = cls(shape)
        root = doc._live.get(ROOT, type=pycrdt.Map)
        with doc._live.transaction():
            _build(root, shape)
        skeleton = doc._live.get_update()
        doc._shadow.apply_update(skeleton)
        return doc, skeleton

    @classmethod
    def restore(cls, shape: Field, updates: Iterable[bytes]) -> NoteDocument:
        """The note as its stored updates make it (already checked when they arrived)."""
        doc = cls(shape)
        for update in updates:
            doc._live.apply_update(update)
        doc._shadow.apply_update(doc._live.get_update())
        return doc

    def apply(self, update: bytes) -> None:
        """Integrate ``update`` or raise ``Invalid`` naming what is wrong with it."""
        try:
            self._shadow.apply_update(update)
        except ValueError as exc:
            self._rebuild_shadow()
            raise Invalid.on("update", f"is not a Yjs update ({exc})") from exc
        problem = self._problem(update)
        if problem is not None:
            self._rebuild_shadow()
            raise Invalid.on("update", problem)
        self._live.apply_update(update)

    def _problem(self, update: bytes) -> str | None:
        # Whatever did not integrate refers to items this note never had: it was made for
        # another document (another case's note), or against a state this server never stored.
        rest = pycrdt.get_update(update, self._shadow.get_state())
        if rest[:1] != b"\x00":
            return "does not fit this note: it builds on edits the note does not have"
        # Encoding the whole note costs what the note weighs: done once per 64 KiB of updates.
        self._unmeasured += len(update)
        if self._unmeasured > _MEASURE_EVERY:
            if len(self._shadow.get_update()) > MAX_DOCUMENT_BYTES:
                return f"would make the note larger than {MAX_DOCUMENT_BYTES // 1024} KiB"
            self._unmeasured = 0
        root = self._shadow.get(ROOT, type=pycrdt.Map)
        return _shape_problem(root, self._shape, "")

    def _rebuild_shadow(self) -> None:
        self._shadow = pycrdt.Doc()
        self._shadow.apply_update(self._live.get_update())

    def state(self) -> bytes:
        """The whole document as one update (what a client opening the note receives)."""
        return self._live.get_update()

    def content(self) -> dict[str, Any]:
        """The note as JSON, in the form the template validates: groups and lists always
        present, empty texts and unset values left out."""
        root = self._live.get(ROOT, type=pycrdt.Map)
        return _materialize_map(root, self._shape)


def _build(target: pycrdt.Map[Any], shape: Field) -> None:
    for name, child in shape.children.items():
        if child.kind == "map":
            target[name] = pycrdt.Map()
            _build(target[name], child)
        elif child.kind == "list":
            target[name] = pycrdt.Array()
        elif child.kind == "text":
            target[name] = pycrdt.Text()


def _shape_problem(node: Any, shape: Field, path: str, skeleton: bool = True) -> str | None:
    """What in ``node`` breaks ``shape`` (a dot path and why), or None. ``skeleton``: the node
    is part of what the server created (not inside a list item a client added)."""
    where = path or "note"
    if shape.kind == "map":
        if not isinstance(node, pycrdt.Map):
            return f"{where}: must stay a group"
        for key in node.keys():
            child = shape.children.get(key)
            at = f"{path}.{key}" if path else key
            if child is None:
                return f"{at}: is not a field of this note's template"
            problem = _shape_problem(node[key], child, at, skeleton)
            if problem is not None:
                return problem
        missing = [k for k, c in shape.children.items() if c.kind != "value" and k not in node]
        if missing and skeleton:
            # The server's skeleton of groups, lists and texts is never removed.
            at = f"{path}.{missing[0]}" if path else missing[0]
            return f"{at}: may not be removed"
        return None
    if shape.kind == "list":
        if not isinstance(node, pycrdt.Array):
            return f"{where}: must stay a list"
        assert shape.item is not None
        limit = None if shape.max_items is None else shape.max_items * _LIST_SLACK
        if limit is not None and len(node) > limit:
            return f"{where}: holds more than {limit} entries"
        for i, item in enumerate(node):
            problem = _shape_problem(item, shape.item, f"{path}.{i}", skeleton=False)
            if problem is not None:
                return problem
        return None
    if shape.kind == "text":
        return None if isinstance(node, pycrdt.Text) else f"{where}: must stay text"
    if not isinstance(node, _SCALARS):
        return f"{where}: must be a plain value"
    return None


def _materialize_map(node: pycrdt.Map[Any], shape: Field) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, child in shape.children.items():
        if name not in node:
            if child.kind in ("map", "list"):
                out[name] = {} if child.kind == "map" else []
            continue
        value = _materialize(node[name], child)
        if value is not None:
            out[name] = value
    return out


def _materialize(node: Any, shape: Field) -> Any:
    if shape.kind == "map":
        return _materialize_map(node, shape)
    if shape.kind == "list":
        assert shape.item is not None
        return [_materialize(item, shape.item) for item in node]
    if shape.kind == "text":
        return str(node) or None
    if isinstance(node, float) and node.is_integer():
        return int(node)  # Yjs and Yrs keep every number as a double
    return None if node == "" else node


def update_writing(state: bytes, shape: Field, content: dict[str, Any]) -> bytes:
    """The update a client would send to write ``content`` (JSON in the template's form) into
    the note whose whole state is ``state``: texts replaced, values set, list items appended.
    Used to seed the demo's note and by tests; browsers make their own updates with Yjs."""
    replica: pycrdt.Doc[Any] = pycrdt.Doc()
    replica.apply_update(state)
    before = replica.get_state()
    root = replica.get(ROOT, type=pycrdt.Map)
    with replica.transaction():
        _write_map(root, shape, content)
    return replica.get_update(before)


def _write_map(target: pycrdt.Map[Any], shape: Field, content: dict[str, Any]) -> None:
    for name, value in content.items():
        child = shape.children.get(name)
        if child is None:
            raise ValueError(f"{name} is not a field of this template")
        if child.kind == "map":
            if name not in target:
                target[name] = pycrdt.Map()
            _write_map(target[name], child, value)
        elif child.kind == "list":
            assert child.item is not None
            for item in value:
                target[name].append(_new_item(child.item, item))
        elif child.kind == "text":
            text = target[name]
            del text[:]
            text += str(value)
        else:
            target[name] = value


def _new_item(shape: Field, content: dict[str, Any]) -> pycrdt.Map[Any]:
    """A list item as a client adds it: a text for each free-text field, values as given."""
    prelim: dict[str, Any] = {}
    for name, child in shape.children.items():
        if child.kind == "text":
            prelim[name] = pycrdt.Text(str(content.get(name, "")))
        elif child.kind == "map":
            prelim[name] = pycrdt.Map()
        elif child.kind == "list":
            prelim[name] = pycrdt.Array()
        elif name in content:
            prelim[name] = content[name]
    item: pycrdt.Map[Any] = pycrdt.Map(prelim)
    return item
