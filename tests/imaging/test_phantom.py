"""The demo CT: seeded noise, so its pixels are the same run after run and JPEG-LS lossless
compresses it about as much as real CT (2-3:1), not the 12:1 of a noiseless drawing."""

from __future__ import annotations

from pathlib import Path

import pydicom

from server.imaging.phantom import write_ct_series


def _pixels(paths: list[Path]) -> list[bytes]:
    return [bytes(pydicom.dcmread(p).PixelData) for p in paths]


def test_the_same_seed_gives_the_same_pixels(tmp_path: Path) -> None:
    first = _pixels(write_ct_series(tmp_path / "a", slices=3, size=128))
    again = _pixels(write_ct_series(tmp_path / "b", slices=3, size=128))
    other = _pixels(write_ct_series(tmp_path / "c", slices=3, size=128, seed=7))
    assert first == again
    assert all(a != b for a, b in zip(first, other, strict=True))


def test_jpeg_ls_compresses_it_as_real_ct(tmp_path: Path) -> None:
    native = write_ct_series(tmp_path / "native", slices=4, size=512)
    jls = write_ct_series(tmp_path / "jls", slices=4, size=512, jpegls=True)
    ratio = sum(map(len, _pixels(native))) / sum(map(len, _pixels(jls)))
    assert 2.0 <= ratio <= 3.2, ratio
    # The JPEG-LS series holds the same pixels.
    for a, b in zip(native, jls, strict=True):
        assert (pydicom.dcmread(a).pixel_array == pydicom.dcmread(b).pixel_array).all()
