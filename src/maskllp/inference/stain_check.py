"""Is a core stained like the cores a model was trained on? (the review flag "stain outside the
training range")

Training a proportion model records the stain vectors of its training cores
(:func:`maskllp.stains.estimate_stain_vectors`, on each core reduced to :data:`STAIN_MPP`) as
``stain-range.json`` in the model folder; ``predict`` estimates the same for each core and flags the
ones whose hematoxylin or DAB colour, or counterstain strength, lies outside that range. Folders
saved before the file existed have no range, and their cores are not checked.
"""

from __future__ import annotations

import json
from pathlib import Path

from maskllp.errors import InputError
from maskllp.io.atomic import write_text_atomic
from maskllp.io.grid import ImageSource
from maskllp.report.preview import preview_scale, read_preview
from maskllp.stains import StainRange, StainVectors, estimate_stain_vectors

STAIN_RANGE_FILE = "stain-range.json"
"""In a proportion model folder: the :class:`~maskllp.stains.StainRange` of its training cores."""
STAIN_MPP = 1.0
"""Um per pixel at which a core's stain vectors are estimated (cells still a few pixels wide)."""
MAX_SIDE = 2048
"""...and at most this many pixels along the longer side (a coarser scale for larger cores)."""


def core_stain_vectors(image: ImageSource) -> StainVectors | None:
    """The stain vectors of one core (an open image; without a pixel size it is used as it is, up
    to :data:`MAX_SIDE`). None when it holds too little tissue."""
    mpp = image.mpp
    scale = max(1.0 if mpp is None else STAIN_MPP / mpp, preview_scale(tuple(image.shape), MAX_SIDE))
    return estimate_stain_vectors(read_preview(image, scale))


def save_stain_range(folder: Path, stains: list[StainVectors | None]) -> StainRange | None:
    """Write the range of ``stains`` (the training cores'; None for a core without tissue) into
    ``folder``; returns it, or None (and writes nothing) when no core had tissue."""
    known = [s for s in stains if s is not None]
    if not known:
        return None
    stain_range = StainRange.of(known)
    write_text_atomic(folder / STAIN_RANGE_FILE, json.dumps(stain_range.to_json(), indent=1) + "\n")
    return stain_range


def load_stain_range(folder: Path) -> StainRange | None:
    """The range a model folder carries; None when it has none. A damaged file is an InputError."""
    path = folder / STAIN_RANGE_FILE
    if not path.is_file():
        return None
    try:
        return StainRange.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError is a ValueError
        raise InputError(path, f"is not a stain range ({str(e).splitlines()[0]})") from None
