"""SharedView: the view-state authority of one live session (schemas/view-state.json).

The presenter sends patches with a sequence number; the server keeps the whole state, drops
stale patches, refuses indices outside the series, and hands the state to late joiners. Series
are named by alias and images by index, never by URL or UID, so the state is the same for every
audience: an external participant's browser maps the alias to its de-identified copy itself.
Pure state, no I/O: the signalling layer looks up how many images each alias has.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from .errors import Invalid

__all__ = ["SharedView", "CELLS"]

CELLS = {"1x1": 1, "1x2": 2, "2x2": 4}


def _empty_state() -> dict[str, Any]:
    return {"layout": "1x1", "active": 0, "viewports": [], "annotations": []}


class SharedView:
    """The latest accepted view state and its sequence number."""

    def __init__(self) -> None:
        self.seq = 0
        self.state = _empty_state()

    def aliases(self, patch: Mapping[str, Any]) -> set[str]:
        """Every series alias a (schema-valid) patch names."""
        named = {v["series"] for v in patch.get("viewports", {}).values() if v["series"]}
        named.update(a["series"] for a in patch.get("annotations", []))
        return named

    def apply(self, seq: int, patch: Mapping[str, Any], images: Mapping[str, int]) -> bool:
        """Merge a presenter's patch. ``images`` gives the image count of every alias the patch
        names that belongs to this session's cases (a missing alias is refused). Returns False,
        changing nothing, when ``seq`` is not newer than the last accepted one."""
        if seq <= self.seq:
            return False
        for cell, viewport in patch.get("viewports", {}).items():
            self._check_image(
                f"patch.viewports.{cell}", viewport["series"], viewport["index"], images
            )
        for n, note in enumerate(patch.get("annotations", [])):
            self._check_image(f"patch.annotations.{n}", note["series"], note["index"], images)
        ids = [a["id"] for a in patch.get("annotations", [])]
        if len(ids) != len(set(ids)):
            raise Invalid.on("patch.annotations", "annotation ids must be unique")
        # Parts are replaced whole, never edited in place, so a shallow copy keeps the old state
        # intact until the new one is known to be valid (a patch arrives at up to 60 Hz).
        state = dict(self.state)
        for key in ("layout", "active", "annotations"):
            if key in patch:
                state[key] = copy.deepcopy(patch[key])
        viewports: list[Any] = list(state["viewports"])
        for cell, viewport in sorted(patch.get("viewports", {}).items()):
            index = int(cell)
            while len(viewports) <= index:
                viewports.append(None)
            viewports[index] = copy.deepcopy(viewport)
        # A hole left by a patch naming cell 2 before cell 1 becomes an empty cell.
        state["viewports"] = [v if v is not None else _empty_viewport() for v in viewports]
        if state["active"] >= CELLS[state["layout"]]:
            raise Invalid.on(
                "patch.active",
                f"cell {state['active']} is outside the {state['layout']} layout",
            )
        self.state = state
        self.seq = seq
        return True

    def snapshot(self) -> dict[str, Any]:
        return {"seq": self.seq, "state": copy.deepcopy(self.state)}

    @staticmethod
    def _check_image(field: str, alias: str | None, index: int, images: Mapping[str, int]) -> None:
        if alias is None:
            return
        count = images.get(alias)
        if count is None:
            raise Invalid.on(f"{field}.series", f"series {alias!r} is not on this session's agenda")
        if index >= count:
            raise Invalid.on(
                f"{field}.index", f"image {index} is out of range: the series has {count} images"
            )


def _empty_viewport() -> dict[str, Any]:
    return {
        "series": None,
        "index": 0,
        "voi": None,
        "invert": False,
        "presentation": {
            "zoom": 1,
            "pan": [0, 0],
            "rotation": 0,
            "flipHorizontal": False,
            "flipVertical": False,
        },
    }
