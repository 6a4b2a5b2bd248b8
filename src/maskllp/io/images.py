"""Reading and writing IHC images of any size, by window, as RGB uint8.

One reader API for every format (:func:`open_image` -> :class:`ImageReader`):

* **PNG, JPEG** (and other formats Pillow reads) through Pillow. These formats cannot be read by
  window, so the first read decodes the whole image and keeps it; use a tiled TIFF for very large
  images. Pillow's decompression-bomb limit is raised on purpose to :data:`MAX_DECODED_PIXELS`.
* **TIFF, BigTIFF, OME-TIFF** through tifffile (+ imagecodecs for JPEG / JPEG 2000 tiles). Windows
  are read tile by tile (or strip by strip) without decoding the whole page; pyramid levels come from
  SubIFDs or from the series' levels (OME-TIFF, SVS, NDPI...).
* **Whole-slide formats** (``.svs``, ``.ndpi``, ``.mrxs``, ``.scn``, ``.bif``, ``.vms`` ...) through
  OpenSlide when ``openslide`` imports (``pip install 'maskllp[openslide]'``); TIFF-based slides fall
  back to tifffile when it does not.

Conversions: 16-bit samples are scaled to 8 bits (``v * 255 / max`` where ``max`` is the TIFF
MaxSampleValue tag if present, else 65535); an alpha channel is composited onto white (glass); palette
images are mapped to RGB. Images that cannot be IHC RGB (one grey channel, zero size, truncated or
damaged files, a declared side above :data:`MAX_SIDE` pixels) are refused with an ``InputError``.

Pixel size (``mpp``, microns per pixel at level 0) is read from OME ``PhysicalSizeX/Y`` (unit-aware),
Aperio ``MPP``, OpenSlide ``openslide.mpp-x/y``, TIFF X/YResolution with a centimetre or inch unit, or
PNG pHYs / JPEG EXIF density. Values from resolution tags outside [0.01, 50] µm are ignored: they are
not microscope pixel sizes but defaults such as 72 dpi.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
import uuid
import warnings
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from maskllp.errors import InputError
from maskllp.io.atomic import atomic_file
from maskllp.io.limits import check_read

MAX_SIDE = 200_000
"""Largest image side (pixels) accepted; larger declared sizes are refused before decoding."""
MAX_DECODED_PIXELS = 1_500_000_000
"""Largest image (pixels) accepted in formats that must be decoded whole (PNG, JPEG)."""
PLAUSIBLE_MPP = (0.01, 50.0)
"""Pixel sizes (µm) taken from resolution tags only inside this range (72 dpi is 352.8 µm)."""

OPENSLIDE_SUFFIXES = (".svs", ".ndpi", ".mrxs", ".scn", ".bif", ".vms", ".vmu", ".svslide", ".dcm")
TIFF_SUFFIXES = (".tif", ".tiff", ".ome.tif", ".ome.tiff", ".btf", ".tf8")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_UM_PER = {"m": 1e6, "cm": 1e4, "mm": 1e3, "µm": 1.0, "um": 1.0, "\u03bcm": 1.0, "micron": 1.0,
           "microns": 1.0, "micrometer": 1.0, "nm": 1e-3, "pm": 1e-6, "å": 1e-4, "a": 1e-4}
_CACHE_BYTES = 128 * 2**20


# ============================================================================ pixel conversions
def to_rgb8(samples: np.ndarray, max_value: float | None = None, alpha: str | None = None) -> np.ndarray:
    """Convert decoded samples to RGB uint8.

    ``samples``: (h, w, S) uint8 or uint16 with S >= 3 (R, G, B, optional extra samples).
    ``max_value``: the value that maps to 255 for 16-bit data (default: 65535).
    ``alpha``: ``"straight"`` or ``"premultiplied"`` when sample 3 is alpha (composited on white),
    else None (extra samples are dropped). Returns (h, w, 3) uint8.
    """
    if samples.dtype == np.uint8:
        scale = 255.0
        data = samples
    else:
        scale = float(max_value or np.iinfo(samples.dtype).max)
        data = samples
    if alpha is None:
        rgb = data[..., :3]
        if rgb.dtype == np.uint8:
            return np.ascontiguousarray(rgb)
        return np.clip(np.rint(rgb.astype(np.float32) * (255.0 / scale)), 0, 255).astype(np.uint8)
    rgb = data[..., :3].astype(np.float32) / scale
    a = np.clip(data[..., 3:4].astype(np.float32) / scale, 0.0, 1.0)
    if alpha == "premultiplied":
        out = rgb + (1.0 - a)
    else:
        out = rgb * a + (1.0 - a)
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def _palette_to_rgb8(index: np.ndarray, colormap: np.ndarray) -> np.ndarray:
    """(h, w) palette indices and a (3, n) uint16 TIFF colormap -> (h, w, 3) uint8."""
    cmap = np.asarray(colormap)
    if cmap.max() > 255:
        cmap = np.rint(cmap.astype(np.float64) * (255.0 / 65535.0))
    lut = cmap.T.astype(np.uint8)
    return lut[np.clip(index, 0, len(lut) - 1)]


def _is_tiff_name(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in TIFF_SUFFIXES)


def _plausible(mpp: float | None) -> float | None:
    if mpp is None or not math.isfinite(mpp):
        return None
    return mpp if PLAUSIBLE_MPP[0] <= mpp <= PLAUSIBLE_MPP[1] else None


def _check_shape(path: Path, height: int, width: int) -> None:
    if height <= 0 or width <= 0:
        raise InputError(path, f"image has zero size ({width} x {height} pixels)")
    if height > MAX_SIDE or width > MAX_SIDE:
        raise InputError(
            path, f"declared image size {width} x {height} pixels is beyond {MAX_SIDE} px a side "
            "(damaged file or not an image)"
        )


# ============================================================================ backends
class _Backend:
    """What a format reader provides: level shapes, pixel size, and in-bounds region reads."""

    level_shapes: list[tuple[int, int]]
    mpp: float | None = None

    def read_region(self, level: int, top: int, left: int, height: int, width: int) -> np.ndarray:
        """(height, width, 3) uint8 of a region that lies inside ``level``."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the file."""


class _PillowBackend(_Backend):
    """PNG / JPEG / other Pillow formats: one level, decoded whole on first read."""

    def __init__(self, path: Path, kind: str) -> None:
        from PIL import Image

        if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < MAX_DECODED_PIXELS:
            Image.MAX_IMAGE_PIXELS = MAX_DECODED_PIXELS  # deliberately: 10 000 x 10 000 cores
        self.path = path
        self.kind = kind
        self._pixels: np.ndarray | None = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    width, height = im.size
                    self._mode = im.mode
                    self._info = dict(im.info)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InputError(
                path, f"image declares more than {MAX_DECODED_PIXELS} pixels; "
                "store very large images as tiled (OME-)TIFF"
            ) from None
        except Image.UnidentifiedImageError:
            raise InputError(path, "not a readable image (unknown or damaged format)") from None
        except (OSError, ValueError, SyntaxError) as e:
            raise InputError(path, f"not a readable image ({e})") from None
        _check_shape(path, height, width)
        if height * width > MAX_DECODED_PIXELS:
            raise InputError(path, f"image has more than {MAX_DECODED_PIXELS} pixels; use a tiled TIFF")
        what = kind.upper() if kind != "other" else "image"
        check_read(path, height, width, f"this {what} (decoded whole)")
        if self._mode in ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
            raise InputError(path, f"not an RGB IHC image (one grey channel, Pillow mode {self._mode})")
        self.level_shapes = [(height, width)]
        self._check_complete()
        dpi = self._info.get("dpi")
        if dpi and dpi[0] and float(dpi[0]) > 0:
            xs = [25400.0 / float(d) for d in dpi[:2] if d and float(d) > 0]
            self.mpp = _plausible(float(np.mean(xs)))

    def _check_complete(self) -> None:
        """Refuse truncated files without decoding: PNG chunk CRCs, JPEG end-of-image marker."""
        from PIL import Image

        if self.kind == "png":
            try:
                with Image.open(self.path) as im:
                    im.verify()
            except Exception as e:  # Pillow raises several types for a damaged PNG
                raise InputError(self.path, f"truncated or damaged PNG ({e})") from None
        elif self.kind == "jpeg":
            size = self.path.stat().st_size
            with open(self.path, "rb") as f:
                f.seek(max(0, size - 65536))
                tail = f.read()
            if b"\xff\xd9" not in tail:
                raise InputError(self.path, "truncated JPEG (no end-of-image marker)")

    def _decode(self) -> np.ndarray:
        if self._pixels is None:
            from PIL import Image

            try:
                with Image.open(self.path) as im:
                    im.load()
                    self._pixels = _pillow_to_rgb8(im)
            except InputError:
                raise
            except (OSError, ValueError, SyntaxError) as e:
                raise InputError(self.path, f"truncated or damaged image ({e})") from None
        return self._pixels

    def read_region(self, level: int, top: int, left: int, height: int, width: int) -> np.ndarray:
        return self._decode()[top : top + height, left : left + width]

    def close(self) -> None:
        self._pixels = None


def _pillow_to_rgb8(im: Any) -> np.ndarray:
    """A loaded Pillow image -> (H, W, 3) uint8 (alpha and palette transparency onto white)."""
    mode = im.mode
    if mode == "P" or mode == "PA":
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "RGBa"):
        arr = np.asarray(im)
        return to_rgb8(arr, alpha="premultiplied" if mode == "RGBa" else "straight")
    if mode != "RGB":
        im = im.convert("RGB")
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))


class _TiffLevel:
    """One pyramid level of a TIFF: its page, and how to turn its samples into RGB."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.height, self.width = int(page.imagelength), int(page.imagewidth)
        self.separate = page.planarconfig == 2
        if page.is_tiled:
            self.seg_h, self.seg_w = int(page.tilelength), int(page.tilewidth)
        else:
            self.seg_h, self.seg_w = int(page.rowsperstrip or self.height), self.width
            self.seg_h = min(self.seg_h, self.height)
        self.across = -(-self.width // self.seg_w)
        self.down = -(-self.height // self.seg_h)


class _TiffBackend(_Backend):
    """TIFF / BigTIFF / OME-TIFF / TIFF-based slides via tifffile, read segment by segment."""

    def __init__(self, path: Path) -> None:
        import tifffile

        self.path = path
        try:
            self._tif = tifffile.TiffFile(path)
        except Exception as e:  # tifffile raises TiffFileError, ValueError, struct errors...
            raise InputError(path, f"not a readable TIFF ({_first_line(e)})") from None
        try:
            self._setup()
        except BaseException:
            self._tif.close()
            raise
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._cache_bytes = 0

    def _setup(self) -> None:
        tif = self._tif
        try:
            series = tif.series
        except Exception as e:
            raise InputError(self.path, f"not a readable TIFF ({_first_line(e)})") from None
        if not series:
            raise InputError(self.path, "TIFF holds no image")
        pages = [lvl.keyframe for lvl in series[0].levels]
        if not pages or pages[0] is None:
            raise InputError(self.path, "TIFF holds no image")
        first = pages[0]
        _check_shape(self.path, int(first.imagelength), int(first.imagewidth))
        self._describe_samples(first)
        self.levels = [_TiffLevel(p) for p in pages]
        self.level_shapes = [(lv.height, lv.width) for lv in self.levels]
        self._check_not_truncated()
        self.mpp = _tiff_mpp(tif, first)

    def _describe_samples(self, page: Any) -> None:
        """Decide how this page's samples become RGB; refuse what cannot be IHC RGB."""
        path = self.path
        photometric = int(page.photometric)
        dtype = np.dtype(page.dtype) if page.dtype is not None else None
        spp = int(page.samplesperpixel)
        if dtype not in (np.dtype(np.uint8), np.dtype(np.uint16)):
            raise InputError(path, f"unsupported sample type {dtype} (need 8- or 16-bit RGB)")
        if int(page.bitspersample) not in (8, 16):
            raise InputError(path, f"unsupported {page.bitspersample}-bit samples (need 8 or 16)")
        self.palette = None
        if photometric == 3:  # palette
            if page.colormap is None:
                raise InputError(path, "palette TIFF without a colour map")
            self.palette = np.asarray(page.colormap)
        elif spp < 3:
            raise InputError(path, f"not an RGB IHC image ({spp} channel{'s' if spp > 1 else ''})")
        elif photometric == 5:
            raise InputError(path, "CMYK (separated) TIFF is not supported; save it as RGB")
        elif photometric not in (1, 2, 6):  # minisblack with 3 samples, RGB, YCbCr (JPEG)
            raise InputError(path, f"unsupported TIFF colour space (photometric {photometric})")
        self.alpha = None
        extras = tuple(int(x) for x in (page.extrasamples or ()))
        if spp >= 4 and extras:
            self.alpha = {1: "premultiplied", 2: "straight"}.get(extras[0])
        max_tag = page.tags.get("MaxSampleValue")
        self.max_value = None
        if dtype == np.uint16 and max_tag is not None:
            v = max_tag.value
            v = max(v) if isinstance(v, (tuple, list)) else v
            self.max_value = float(v) if v and 255 < v <= 65535 else None

    def _check_not_truncated(self) -> None:
        size = self.path.stat().st_size
        for level in self.levels:
            page = level.page
            ends = [o + c for o, c in zip(page.dataoffsets, page.databytecounts, strict=False) if c]
            if ends and max(ends) > size:
                raise InputError(self.path, "truncated TIFF (image data runs past the end of the file)")

    # ------------------------------------------------------------------------ reading
    def _segment(self, level_index: int, index: int) -> np.ndarray:
        """Decoded samples of segment ``index`` of a level: (seg_h, seg_w, S), cached."""
        key = (level_index, index)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            page = self.levels[level_index].page
            offset, count = page.dataoffsets[index], page.databytecounts[index]
            fh = self._tif.filehandle
            if count:
                fh.seek(offset)
                data = fh.read(count)
            else:
                data = None
            try:
                seg, _, _ = page.decode(data, index, jpegtables=page.jpegtables,
                                        jpegheader=page.jpegheader)
            except Exception as e:  # codec errors come in many types
                raise InputError(self.path, f"damaged image data ({_first_line(e)})") from None
            if seg is None:  # sparse (empty) segment
                level = self.levels[level_index]
                s = 1 if level.separate else int(page.samplesperpixel)
                seg = np.zeros((level.seg_h, level.seg_w, s), dtype=page.dtype)
            else:
                seg = np.asarray(seg).reshape(seg.shape[-3], seg.shape[-2], seg.shape[-1])
            self._cache[key] = seg
            self._cache_bytes += seg.nbytes
            while self._cache_bytes > _CACHE_BYTES and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._cache_bytes -= old.nbytes
            return seg

    def _samples(self, level_index: int, top: int, left: int, height: int, width: int) -> np.ndarray:
        """Raw samples (height, width, S) of an in-bounds region, from the segments it touches."""
        level = self.levels[level_index]
        page = level.page
        n_samples = int(page.samplesperpixel) if self.palette is None else 1
        planes = range(n_samples) if level.separate else [None]
        out = np.empty((height, width, n_samples), dtype=page.dtype)
        per_plane = level.across * level.down
        for ty in range(top // level.seg_h, (top + height - 1) // level.seg_h + 1):
            for tx in range(left // level.seg_w, (left + width - 1) // level.seg_w + 1):
                y0, x0 = ty * level.seg_h, tx * level.seg_w
                ya, yb = max(top, y0), min(top + height, y0 + level.seg_h, level.height)
                xa, xb = max(left, x0), min(left + width, x0 + level.seg_w, level.width)
                for plane in planes:
                    index = ty * level.across + tx + (plane or 0) * per_plane
                    seg = self._segment(level_index, index)
                    part = seg[ya - y0 : yb - y0, xa - x0 : xb - x0]
                    dest = out[ya - top : yb - top, xa - left : xb - left]
                    if plane is None:
                        dest[...] = part[..., :n_samples]
                    else:
                        dest[..., plane] = part[..., 0]
        return out

    def read_region(self, level: int, top: int, left: int, height: int, width: int) -> np.ndarray:
        samples = self._samples(level, top, left, height, width)
        if self.palette is not None:
            return _palette_to_rgb8(samples[..., 0], self.palette)
        return to_rgb8(samples, self.max_value, self.alpha)

    def close(self) -> None:
        self._cache.clear()
        self._tif.close()


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _tiff_mpp(tif: Any, page: Any) -> float | None:
    """Level-0 microns per pixel from OME-XML, Aperio MPP, ImageJ unit or resolution tags."""
    if tif.is_ome:
        mpp = _ome_mpp(tif.ome_metadata)
        if mpp is not None:
            return mpp
    if tif.is_svs:
        try:
            import tifffile

            meta = tifffile.svs_description_metadata(page.description)
            if "MPP" in meta and float(meta["MPP"]) > 0:
                return float(meta["MPP"])
        except (ValueError, TypeError, KeyError):
            pass
    return _resolution_mpp(tif, page)


def _ome_mpp(xml_text: str | None) -> float | None:
    if not xml_text:
        return None
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError:
        return None
    for el in root.iter():
        if el.tag.rsplit("}", 1)[-1] != "Pixels":
            continue
        sizes = []
        for axis in ("X", "Y"):
            value = el.get(f"PhysicalSize{axis}")
            unit = (el.get(f"PhysicalSize{axis}Unit") or "µm").strip()
            factor = _UM_PER.get(unit) or _UM_PER.get(unit.lower())
            try:
                v = float(value) if value is not None else None
            except ValueError:
                v = None
            if v is not None and factor is not None and math.isfinite(v) and v > 0:
                sizes.append(v * factor)
        return float(np.mean(sizes)) if sizes else None
    return None


def _resolution_mpp(tif: Any, page: Any) -> float | None:
    tags = page.tags
    xres, unit_tag = tags.get("XResolution"), tags.get("ResolutionUnit")
    if xres is None:
        return None
    values = []
    for tag in (xres, tags.get("YResolution")):
        if tag is None:
            continue
        num, den = tag.value if isinstance(tag.value, tuple) else (tag.value, 1)
        if num and den and num / den > 0:
            values.append(num / den)
    if not values:
        return None
    per_unit = float(np.mean(values))
    unit = int(unit_tag.value) if unit_tag is not None else 2
    if unit == 2:
        um = 25400.0
    elif unit == 3:
        um = 1e4
    else:  # no unit: ImageJ says which in its description
        ij = tif.imagej_metadata or {}
        um = _UM_PER.get(str(ij.get("unit", "")).replace("\\u00B5", "µ").strip().lower())
        if um is None:
            return None
    return _plausible(um / per_unit)


class _OpenSlideBackend(_Backend):
    """Whole-slide formats through OpenSlide (``openslide-python``)."""

    def __init__(self, path: Path, openslide: Any) -> None:
        self.path = path
        try:
            self._slide = openslide.OpenSlide(str(path))
        except Exception as e:  # OpenSlideError, OpenSlideUnsupportedFormatError
            raise InputError(path, f"OpenSlide cannot read this slide ({_first_line(e)})") from None
        dims = self._slide.level_dimensions
        _check_shape(path, int(dims[0][1]), int(dims[0][0]))
        self.level_shapes = [(int(h), int(w)) for w, h in dims]
        self._downsamples = [float(d) for d in self._slide.level_downsamples]
        props = self._slide.properties
        sizes = []
        for key in ("openslide.mpp-x", "openslide.mpp-y"):
            try:
                sizes.append(float(props[key]))
            except (KeyError, ValueError):
                pass
        sizes = [s for s in sizes if math.isfinite(s) and s > 0]
        self.mpp = float(np.mean(sizes)) if sizes else None

    def read_region(self, level: int, top: int, left: int, height: int, width: int) -> np.ndarray:
        ds = self._downsamples[level]
        location = (int(round(left * ds)), int(round(top * ds)))
        try:
            region = self._slide.read_region(location, level, (width, height))
        except Exception as e:
            raise InputError(self.path, f"OpenSlide read failed ({_first_line(e)})") from None
        return to_rgb8(np.asarray(region), alpha="straight")

    def close(self) -> None:
        self._slide.close()


def _import_openslide() -> Any | None:
    try:
        import openslide
    except (ImportError, OSError):  # OSError: the C library is missing
        return None
    return openslide


# ============================================================================ public reader
class ImageReader:
    """An open image: level shapes, pixel size, and window reads as RGB uint8.

    Use :func:`open_image` to create one; it is a context manager (``with open_image(p) as r``).
    """

    def __init__(self, path: Path, backend: _Backend, mpp: float | None = None) -> None:
        self.path = path
        self._backend = backend
        self.level_shapes: list[tuple[int, int]] = list(backend.level_shapes)
        h0, w0 = self.level_shapes[0]
        self.level_downsamples: list[float] = [
            0.5 * (h0 / h + w0 / w) for h, w in self.level_shapes
        ]
        self.mpp: float | None = mpp if mpp is not None else backend.mpp

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of level 0."""
        return self.level_shapes[0]

    def best_level(self, downsample: float) -> int:
        """The coarsest level whose downsample is <= ``downsample`` (0 when none is)."""
        best = 0
        for k, d in enumerate(self.level_downsamples):
            if d <= downsample * (1 + 1e-6) and d >= self.level_downsamples[best]:
                best = k
        return best

    def read_window(self, top: int, left: int, height: int, width: int, level: int = 0) -> np.ndarray:
        """(height, width, 3) uint8 window at ``level`` (its pixels); outside the image is white."""
        if not 0 <= level < len(self.level_shapes):
            raise ValueError(f"level {level} does not exist ({len(self.level_shapes)} levels)")
        top, left, height, width = int(top), int(left), int(height), int(width)
        if height < 0 or width < 0:
            raise ValueError(f"window size must not be negative, got {height} x {width}")
        check_read(self.path, height, width, f"reading level {level}" if level else "reading the image")
        out = np.full((height, width, 3), 255, dtype=np.uint8)
        lh, lw = self.level_shapes[level]
        ya, yb = max(top, 0), min(top + height, lh)
        xa, xb = max(left, 0), min(left + width, lw)
        if ya < yb and xa < xb:
            part = self._backend.read_region(level, ya, xa, yb - ya, xb - xa)
            out[ya - top : yb - top, xa - left : xb - left] = part
        return out

    def read(self, level: int = 0) -> np.ndarray:
        """The whole level as (H, W, 3) uint8."""
        if not 0 <= level < len(self.level_shapes):
            raise ValueError(f"level {level} does not exist ({len(self.level_shapes)} levels)")
        h, w = self.level_shapes[level]
        return self.read_window(0, 0, h, w, level)

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> ImageReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ImageReader({str(self.path)!r}, shape={self.shape}, levels={len(self.level_shapes)}, " \
               f"mpp={self.mpp})"


def _sniff(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(16)


MPP_RANGE = (0.01, 100.0)
"""Pixel sizes (microns) the tool accepts: from a 100x objective to a thumbnail."""


def open_image(path: str | os.PathLike[str], mpp: float | None = None) -> ImageReader:
    """Open an image for reading by window; ``mpp`` overrides the file's pixel size.

    Raises ``InputError`` (one line naming the file) for missing, unreadable, truncated or
    non-RGB images.
    """
    path = Path(path)
    if mpp is not None and not (math.isfinite(mpp) and MPP_RANGE[0] <= mpp <= MPP_RANGE[1]):
        raise InputError(path, f"pixel size {mpp!r} is outside {MPP_RANGE[0]}-{MPP_RANGE[1]} microns per "
                               "pixel")
    if not path.exists():
        raise InputError(path, "image not found")
    if path.is_dir() and path.suffix.lower() != ".mrxs":
        raise InputError(path, "is a folder, not an image")
    try:
        head = b"" if path.is_dir() else _sniff(path)
    except OSError as e:
        raise InputError(path, f"cannot read ({e.strerror or e})") from None
    if not path.is_dir() and not head:
        raise InputError(path, "empty file")
    backend = _choose_backend(path, head)
    return ImageReader(path, backend, mpp)


def _choose_backend(path: Path, head: bytes) -> _Backend:
    is_tiff = head[:4] in _TIFF_MAGIC
    if path.suffix.lower() in OPENSLIDE_SUFFIXES:
        openslide = _import_openslide()
        if openslide is not None and openslide.OpenSlide.detect_format(str(path)) is not None:
            return _OpenSlideBackend(path, openslide)
        if is_tiff:
            return _TiffBackend(path)
        if openslide is None:
            raise InputError(
                path, "whole-slide format needs OpenSlide: pip install 'maskllp[openslide]'"
            )
        raise InputError(path, "OpenSlide does not recognise this slide (convert it to OME-TIFF)")
    if is_tiff:
        return _TiffBackend(path)
    if head.startswith(_PNG_MAGIC):
        return _PillowBackend(path, "png")
    if head.startswith(_JPEG_MAGIC):
        return _PillowBackend(path, "jpeg")
    if _is_tiff_name(path):
        raise InputError(path, "not a TIFF file (no TIFF header)")
    return _PillowBackend(path, "other")


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """The whole level 0 of an image as (H, W, 3) uint8."""
    with open_image(path) as reader:
        return reader.read()


# ============================================================================ writing
def _check_rgb(rgb: np.ndarray) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {getattr(rgb, 'shape', None)} "
                         f"{getattr(rgb, 'dtype', type(rgb).__name__)}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError("cannot write an image of zero size")


def _check_mpp(mpp: float | None) -> None:
    if mpp is not None and not (math.isfinite(mpp) and mpp > 0):
        raise ValueError(f"mpp must be a positive number of microns, got {mpp!r}")


def write_image(
    path: str | os.PathLike[str], rgb: np.ndarray, mpp: float | None = None,
    jpeg_quality: int | None = None,
) -> None:
    """Write (H, W, 3) uint8 as PNG, JPEG, TIFF or OME-TIFF (by suffix), atomically.

    The pixel size goes into PNG pHYs, JPEG EXIF resolution, TIFF resolution tags (cm) and OME
    PhysicalSizeX/Y. TIFFs are tiled (512 px) and deflate-compressed, or JPEG-compressed when
    ``jpeg_quality`` is given; JPEG files use ``jpeg_quality`` (default 95).
    """
    path = Path(path)
    _check_rgb(rgb)
    _check_mpp(mpp)
    name = path.name.lower()
    if _is_tiff_name(path):
        write_tiled_tiff(path, rgb.shape[:2], array_tiles(rgb, 512), mpp, tile=512, pyramid=False,
                         jpeg_quality=jpeg_quality)
        return
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")
    if name.endswith(".png"):
        kwargs: dict[str, Any] = {"format": "PNG"}
        if mpp is not None:
            kwargs["dpi"] = (25400.0 / mpp, 25400.0 / mpp)
    elif name.endswith((".jpg", ".jpeg")):
        kwargs = {"format": "JPEG", "quality": int(jpeg_quality or 95)}
        if mpp is not None:
            exif = Image.Exif()
            exif[296] = 3  # ResolutionUnit: centimetre
            exif[282] = exif[283] = 1e4 / mpp
            kwargs["exif"] = exif.tobytes()
    else:
        raise ValueError(f"{path}: write .png, .jpg, .jpeg, .tif, .tiff, .ome.tif or .ome.tiff")
    with atomic_file(path) as tmp:
        image.save(tmp, **kwargs)


def array_tiles(rgb: np.ndarray, tile: int) -> Iterator[tuple[tuple[int, int], np.ndarray]]:
    """Cut (H, W, 3) into ``((top, left), tile)`` pieces in row-major order (edge pieces smaller)."""
    h, w = rgb.shape[:2]
    for top in range(0, h, tile):
        for left in range(0, w, tile):
            yield (top, left), rgb[top : top + tile, left : left + tile]


def _halve(rgb: np.ndarray) -> np.ndarray:
    """2 x 2 mean of (h, w, 3) uint8 -> (ceil(h/2), ceil(w/2), 3); an odd edge repeats itself."""
    h, w = rgb.shape[:2]
    if h % 2 or w % 2:
        rgb = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    acc = rgb.reshape(rgb.shape[0] // 2, 2, rgb.shape[1] // 2, 2, 3).astype(np.uint16).sum(axis=(1, 3))
    return ((acc + 2) // 4).astype(np.uint8)


def pyramid_shapes(shape: tuple[int, int], tile: int) -> list[tuple[int, int]]:
    """Level shapes: halve (rounding up) until both sides fit in one tile."""
    shapes = [(int(shape[0]), int(shape[1]))]
    while max(shapes[-1]) > tile:
        h, w = shapes[-1]
        shapes.append((-(-h // 2), -(-w // 2)))
    return shapes


def _padded(piece: np.ndarray, tile: int) -> np.ndarray:
    if piece.shape[0] == tile and piece.shape[1] == tile:
        return np.ascontiguousarray(piece)
    out = np.full((tile, tile, 3), 255, dtype=np.uint8)
    out[: piece.shape[0], : piece.shape[1]] = piece
    return out


def _checked_tiles(
    tiles: Iterable[tuple[tuple[int, int], np.ndarray]], shape: tuple[int, int], tile: int,
    half: np.ndarray | None,
) -> Iterator[np.ndarray]:
    """Check each ``((top, left), piece)`` against the expected grid; fill ``half`` (level 1)."""
    h, w = shape
    grid = [(top, left) for top in range(0, h, tile) for left in range(0, w, tile)]
    count = 0
    for pos, piece in tiles:
        want = grid[count]  # the writer pulls exactly len(grid) tiles; extra ones are checked after
        top, left = int(pos[0]), int(pos[1])
        if (top, left) != want:
            raise ValueError(f"tiles must come in row-major order: expected {want}, got {(top, left)}")
        size = (min(tile, h - top), min(tile, w - left), 3)
        if not isinstance(piece, np.ndarray) or piece.dtype != np.uint8 or piece.shape != size:
            raise ValueError(f"tile at {want} must be {size} uint8, got "
                             f"{getattr(piece, 'shape', None)} {getattr(piece, 'dtype', None)}")
        if half is not None:
            small = _halve(piece)
            half[top // 2 : top // 2 + small.shape[0], left // 2 : left // 2 + small.shape[1]] = small
        count += 1
        yield _padded(piece, tile)
    if count != len(grid):
        raise ValueError(f"tiles ended early: {count} of {len(grid)} for a {w} x {h} image")


def _tiles_of(array: np.ndarray, tile: int) -> Iterator[np.ndarray]:
    for _, piece in array_tiles(array, tile):
        yield _padded(np.asarray(piece), tile)


def write_tiled_tiff(
    path: str | os.PathLike[str], shape: tuple[int, ...],
    tiles: Iterable[tuple[tuple[int, int], np.ndarray]], mpp: float | None, tile: int = 512,
    pyramid: bool = True, jpeg_quality: int | None = None,
) -> None:
    """Write a tiled (OME-)TIFF from tiles, without holding the whole image in memory; atomic.

    ``shape``: (H, W) or (H, W, 3). ``tiles`` yields ``((top, left), (h, w, 3) uint8)`` in row-major
    order on a ``tile`` grid (edge tiles cropped to the image). ``pyramid`` adds 2x-downsampled
    levels as SubIFDs until the image fits one tile; they are built from a disk-backed half-size
    copy. ``.ome.tif(f)`` names get OME-XML with PhysicalSizeX/Y; others plain TIFF tags.
    Compression: deflate, or JPEG when ``jpeg_quality`` is given.
    """
    import tifffile

    path = Path(path)
    _check_mpp(mpp)
    if tile <= 0 or tile % 16:
        raise ValueError(f"tile size must be a positive multiple of 16, got {tile}")
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] != 3):
        raise ValueError(f"shape must be (H, W) or (H, W, 3), got {shape}")
    height, width = int(shape[0]), int(shape[1])
    if height <= 0 or width <= 0:
        raise ValueError("cannot write an image of zero size")
    shapes = pyramid_shapes((height, width), tile) if pyramid else [(height, width)]
    ome = path.name.lower().endswith((".ome.tif", ".ome.tiff"))
    options: dict[str, Any] = {"photometric": "rgb", "tile": (tile, tile), "software": "maskllp",
                               "maxworkers": 1, "buffersize": 4 * tile * tile * 3}
    if jpeg_quality is not None:
        options["compression"] = "jpeg"
        options["compressionargs"] = {"level": int(jpeg_quality)}
    else:
        options["compression"] = "zlib"
    if mpp is not None:
        options["resolution"] = (1e4 / mpp, 1e4 / mpp)
        options["resolutionunit"] = "CENTIMETER"
    metadata: dict[str, Any] | None = None
    if ome:
        # A UUID derived from what is written (not tifffile's time-based default): same input,
        # same bytes.
        key = f"{path.name}:{height}x{width}:{mpp}:{tile}:{pyramid}:{jpeg_quality}"
        metadata = {"axes": "YXS", "UUID": str(uuid.uuid5(uuid.NAMESPACE_URL, "maskllp:" + key))}
        if mpp is not None:
            metadata.update(PhysicalSizeX=mpp, PhysicalSizeXUnit="µm", PhysicalSizeY=mpp,
                            PhysicalSizeYUnit="µm")
    bigtiff = height * width * 3 * 4 // 3 > 2**31
    with atomic_file(path) as tmp, tempfile.TemporaryDirectory(dir=path.parent,
                                                               prefix=".maskllp-pyramid-") as scratch:
        half = None
        if len(shapes) > 1:
            half = np.lib.format.open_memmap(Path(scratch) / "level1.npy", mode="w+", dtype=np.uint8,
                                             shape=(*shapes[1], 3))
        pieces = iter(tiles)
        with tifffile.TiffWriter(tmp, bigtiff=bigtiff, ome=ome) as writer:
            writer.write(_checked_tiles(pieces, (height, width), tile, half), shape=(height, width, 3),
                         dtype=np.uint8, subifds=len(shapes) - 1, metadata=metadata, **options)
            if next(pieces, None) is not None:
                raise ValueError(f"more tiles than a {width} x {height} image holds")
            level = half
            for k in range(1, len(shapes)):
                assert level is not None
                sub = {key: v for key, v in options.items() if key != "software"}
                writer.write(_tiles_of(level, tile), shape=(*shapes[k], 3), dtype=np.uint8,
                             subfiletype=1, **sub)
                if k + 1 < len(shapes):
                    level = _halve_on_disk(level, Path(scratch) / f"level{k + 1}.npy")
        del half, level


def _halve_on_disk(level: np.ndarray, target: Path) -> np.ndarray:
    """The next pyramid level of a (possibly memory-mapped) level, computed band by band."""
    h, w = level.shape[:2]
    out = np.lib.format.open_memmap(target, mode="w+", dtype=np.uint8, shape=(-(-h // 2), -(-w // 2), 3))
    band = 64  # rows per step (even): memory stays a few rows of the level wide
    for top in range(0, h, band):
        small = _halve(np.asarray(level[top : top + band]))
        out[top // 2 : top // 2 + small.shape[0]] = small
    return out


def image_stems(paths: Sequence[Path]) -> list[str]:
    """Output names for images: the file stem (``.ome`` dropped), ``-2``, ``-3``... for repeats."""
    seen: dict[str, int] = {}
    out = []
    for p in paths:
        stem = p.name.split(".")[0] if p.name.lower().endswith((".ome.tif", ".ome.tiff")) else p.stem
        seen[stem] = seen.get(stem, 0) + 1
        out.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return out


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", *TIFF_SUFFIXES, *OPENSLIDE_SUFFIXES)
"""File endings a folder given as input is searched for (lower-case)."""


def expand_image_inputs(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """``paths`` with each folder replaced by the image files directly in it (by the endings of
    :data:`IMAGE_SUFFIXES`, sorted by name; hidden files skipped). InputError for a folder holding
    no image."""
    out: list[Path] = []
    for p in (Path(p) for p in paths):
        if not p.is_dir():
            out.append(p)
            continue
        found = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")
                       and f.name.lower().endswith(IMAGE_SUFFIXES))
        if not found:
            raise InputError(p, "a folder without image files (PNG, JPEG, TIFF / OME-TIFF, slides)")
        out.extend(found)
    return out
