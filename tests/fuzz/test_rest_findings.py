"""Inputs the REST fuzzer found answered with a 500, each now refused by name."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

# "³".isdigit() is true and int("³") raises: a path id of such digits, or one past any
# 64-bit integer, was a 500 on every route with an id in its path.
NOT_IDS = ["%C2%B3", "%C2%B9%C2%B2", "99999999999999999999999", "1" * 5000]


@pytest.mark.parametrize("raw", NOT_IDS)
@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/api/cases/{}/opinions"),
        ("GET", "/api/cases/{}/attachments/1"),
        ("DELETE", "/api/agenda-items/{}"),
        ("GET", "/api/sessions/{}"),
    ],
)
async def test_a_path_id_that_is_not_an_id_is_not_found(
    client: TestClient[Any, Any], auth: dict[str, dict[str, str]], method: str, path: str, raw: str
) -> None:
    resp = await client.request(method, path.format(raw), headers=auth["admin"])
    assert resp.status == 404, await resp.text()
    assert "is not an id" in (await resp.json())["detail"]


@pytest.mark.parametrize("raw", ["165531653824087357088", "%C2%B3"])
async def test_a_board_filter_that_is_not_an_id_is_refused_by_name(
    client: TestClient[Any, Any], auth: dict[str, dict[str, str]], raw: str
) -> None:
    resp = await client.get(f"/api/cases?board_id={raw}", headers=auth["radiologist"])
    assert resp.status == 422, await resp.text()
    assert (await resp.json())["errors"][0]["field"] == "board_id"


@pytest.mark.parametrize("raw", ["%C2%B3", "9" * 5000])
async def test_a_qido_limit_that_is_not_a_number_is_refused_by_name(
    client: TestClient[Any, Any], auth: dict[str, dict[str, str]], raw: str
) -> None:
    resp = await client.get(f"/dicom-web/studies?limit={raw}", headers=auth["coordinator"])
    assert resp.status == 422, await resp.text()
    assert (await resp.json())["errors"][0]["field"] == "limit"
