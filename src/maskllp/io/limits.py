"""Budgets on what one input may cost, checked before the cost is paid (section ``[limits]``).

A file can declare more than it holds: a tiled TIFF of a few kilobytes whose header says 100 000 x
100 000 pixels, a 400 KB gzip GeoJSON that expands to 850 MB, a JSON file nested a million deep.
Each of these is refused here, with one line naming the file, the budget and the setting that
raises it, before any large allocation:

* ``max_read_pixels``: pixels decoded by one read (a whole PNG or JPEG, a whole pyramid level read
  to make a stage-2 input, one window);
* ``max_working_pixels``: area of one image at the pixel size a stage works at (stage 1's model
  grid), which sets the time a core takes;
* ``max_annotation_bytes``: an annotation or JSON file's size after decompression;
* ``max_json_depth``: nesting of arrays and objects in a JSON file (GeoJSON needs about 8).

The budgets in force are process-wide (like Pillow's ``MAX_IMAGE_PIXELS``): the command line sets
them from the run's config (:func:`use_limits`); library users may call it too.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from maskllp.errors import InputError


@dataclass(frozen=True)
class Limits:
    max_read_pixels: int = 500_000_000
    """Most pixels one read may decode (a 22 000 x 22 000 px level; 1.5 GB as RGB)."""
    max_working_pixels: int = 500_000_000
    """Most pixels of one image on stage 1's grid (a 10 000 px core at 0.25 um/px is 25 million
    at 0.5 um/px; a whole 15 x 15 mm slide is about 900 million)."""
    max_annotation_bytes: int = 256 << 20
    """Largest annotation / JSON file after decompression (256 MiB: the cells of a large core with
    their outlines, as QuPath exports them, take tens of MB)."""
    max_json_depth: int = 64
    """Deepest nesting of JSON arrays and objects."""

    def __post_init__(self) -> None:
        for key in ("max_read_pixels", "max_working_pixels", "max_annotation_bytes", "max_json_depth"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"limits.{key} must be a whole number >= 1, got {v!r}")


_current = Limits()


def current_limits() -> Limits:
    """The budgets in force."""
    return _current


def use_limits(limits: Limits) -> None:
    """Put ``limits`` in force for this process."""
    global _current
    _current = limits


def check_read(path: str | os.PathLike[str], height: int, width: int, what: str = "reading") -> None:
    """InputError when decoding ``height`` x ``width`` pixels at once is beyond ``max_read_pixels``."""
    limit = _current.max_read_pixels
    if int(height) * int(width) > limit:
        raise InputError(
            path, f"{what} needs {int(width)} x {int(height)} pixels decoded at once, beyond the budget of "
                  f"{limit:,} (setting limits.max_read_pixels; a tiled, pyramidal TIFF is read by parts)"
        )


def check_working_area(path: str | os.PathLike[str], shape: tuple[int, int], mpp: float, stage: str) -> None:
    """InputError when an image of ``shape`` (h, w) at ``mpp`` um/px is beyond ``max_working_pixels``."""
    limit = _current.max_working_pixels
    h, w = (int(s) for s in shape)
    if h * w > limit:
        raise InputError(
            path, f"{stage} would work on {w} x {h} pixels at {mpp:g} um/px, beyond the budget of "
                  f"{limit:,} (setting limits.max_working_pixels; check the image's pixel size)"
        )


def check_decompressed_size(path: str | os.PathLike[str], size: int) -> None:
    """InputError when ``size`` bytes (decompressed) is beyond ``max_annotation_bytes``."""
    limit = _current.max_annotation_bytes
    if size > limit:
        raise InputError(path, f"more than {limit:,} bytes after decompression (setting "
                               "limits.max_annotation_bytes)")


def decompress_gzip(path: str | os.PathLike[str], raw: bytes) -> bytes:
    """The content of gzip data (every member), stopping as soon as it passes ``max_annotation_bytes``
    (a small file that expands a thousandfold is refused without being expanded)."""
    import zlib

    limit = _current.max_annotation_bytes
    parts: list[bytes] = []
    total = 0
    data = raw
    try:
        while data:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            while data:
                chunk = d.decompress(data, limit + 1 - total)
                parts.append(chunk)
                total += len(chunk)
                check_decompressed_size(path, total)
                data = d.unconsumed_tail
                if d.eof:
                    break
            if not d.eof:
                raise InputError(path, "damaged gzip file (truncated)")
            data = d.unused_data.lstrip(b"\x00")
    except zlib.error as e:
        raise InputError(path, f"damaged gzip file ({e})") from None
    return b"".join(parts)


_ESCAPE = re.compile(rb"\\.", re.S)
_STRING = re.compile(rb'"[^"]*"')


def json_depth(raw: bytes) -> int:
    """Deepest nesting of ``[`` / ``{`` in JSON text ``raw`` (UTF-8 or ASCII), strings ignored.

    >>> json_depth(b'{"a": [[1], "[[["]}')
    3
    """
    text = _STRING.sub(b'""', _ESCAPE.sub(b"", raw))
    codes = np.frombuffer(text, dtype=np.uint8)
    step = np.zeros(len(codes), np.int32)
    step[(codes == ord("[")) | (codes == ord("{"))] = 1
    step[(codes == ord("]")) | (codes == ord("}"))] = -1
    return int(np.cumsum(step).max(initial=0))


def check_json_depth(path: str | os.PathLike[str], raw: bytes) -> None:
    """InputError when JSON text ``raw`` nests deeper than ``max_json_depth``."""
    limit = _current.max_json_depth
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return
    depth = json_depth(raw)
    if depth > limit:
        raise InputError(path, f"JSON nested {depth} deep, beyond {limit} (setting limits.max_json_depth)")


__all__ = ["Limits", "check_decompressed_size", "check_json_depth", "check_read", "check_working_area",
           "current_limits", "decompress_gzip", "json_depth", "use_limits"]
