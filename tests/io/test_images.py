"""Image reader and writers: formats, windows, pyramids, pixel sizes, conversions, refusals."""

from __future__ import annotations

import os
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from maskllp.errors import InputError
from maskllp.io import images
from maskllp.io.images import (
    MAX_SIDE,
    array_tiles,
    open_image,
    read_image,
    write_image,
    write_tiled_tiff,
)

SHARED_CROPS = Path(__file__).resolve().parents[3] / "shared" / "data" / "qupath-ki67-crops"


# ------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("name", ["a.png", "a.tif", "a.tiff", "a.ome.tif", "a.ome.tiff"])
def test_lossless_round_trip_keeps_pixels_and_pixel_size(tmp_path, random_rgb, name):
    path = tmp_path / name
    write_image(path, random_rgb, mpp=0.2271)
    with open_image(path) as reader:
        assert reader.shape == random_rgb.shape[:2]
        assert reader.mpp == pytest.approx(0.2271, rel=1e-6)
        np.testing.assert_array_equal(reader.read(), random_rgb)


def test_jpeg_round_trip_is_close_and_keeps_pixel_size(tmp_path, ihc_rgb):
    path = tmp_path / "a.jpg"
    write_image(path, ihc_rgb, mpp=0.25, jpeg_quality=95)
    with open_image(path) as reader:
        assert reader.mpp == pytest.approx(0.25, rel=1e-6)
        got = reader.read()
    assert got.shape == ihc_rgb.shape
    assert np.abs(got.astype(int) - ihc_rgb).mean() < 2.0


def test_jpeg_compressed_tiff(tmp_path, ihc_rgb):
    path = tmp_path / "a.ome.tif"
    write_image(path, ihc_rgb, mpp=0.5, jpeg_quality=90)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].compression == 7
    got = read_image(path)
    assert np.abs(got.astype(int) - ihc_rgb).mean() < 3.0


def test_no_pixel_size_is_none_and_argument_overrides(tmp_path, random_rgb):
    path = tmp_path / "a.png"
    write_image(path, random_rgb)
    assert open_image(path).mpp is None
    assert open_image(path, mpp=0.5).mpp == 0.5
    write_image(tmp_path / "b.tif", random_rgb, mpp=0.3)
    assert open_image(tmp_path / "b.tif", mpp=0.7).mpp == 0.7


def test_default_72_dpi_is_not_a_pixel_size(tmp_path, random_rgb):
    Image.fromarray(random_rgb).save(tmp_path / "a.png", dpi=(72, 72))
    tifffile.imwrite(tmp_path / "a.tif", random_rgb, photometric="rgb", resolution=(72, 72),
                     resolutionunit="INCH")
    assert open_image(tmp_path / "a.png").mpp is None
    assert open_image(tmp_path / "a.tif").mpp is None


def test_ome_pixel_size_unit_is_respected(tmp_path, random_rgb):
    path = tmp_path / "nm.ome.tif"
    tifffile.imwrite(path, random_rgb, photometric="rgb",
                     metadata={"axes": "YXS", "PhysicalSizeX": 250.0, "PhysicalSizeXUnit": "nm",
                               "PhysicalSizeY": 250.0, "PhysicalSizeYUnit": "nm"})
    assert open_image(path).mpp == pytest.approx(0.25)


def test_imagej_micron_unit(tmp_path, random_rgb):
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, random_rgb, imagej=True, resolution=(4.0, 4.0), metadata={"unit": "micron"})
    assert open_image(path).mpp == pytest.approx(0.25)


def test_real_ihc_sample_from_scikit_image(ihc_rgb):
    import skimage.data

    path = Path(skimage.data.data_dir) / "ihc.png"
    with open_image(path) as reader:
        assert reader.shape == (512, 512)
        assert reader.level_shapes == [(512, 512)]
        window = reader.read_window(100, 200, 64, 32)
        np.testing.assert_array_equal(reader.read(), ihc_rgb)
    np.testing.assert_array_equal(window, ihc_rgb[100:164, 200:232])


# ------------------------------------------------------------------------------ windows
def test_window_outside_is_white(tmp_path, random_rgb):
    path = tmp_path / "a.tif"
    write_image(path, random_rgb)
    with open_image(path) as reader:
        w = reader.read_window(-5, 80, 10, 20)
        assert w.shape == (10, 20, 3) and w.dtype == np.uint8
        assert (w[:5] == 255).all() and (w[:, 10:] == 255).all()
        np.testing.assert_array_equal(w[5:, :10], random_rgb[:5, 80:90])
        assert (reader.read_window(500, 500, 4, 4) == 255).all()
        assert reader.read_window(3, 3, 0, 5).shape == (0, 5, 3)
        with pytest.raises(ValueError):
            reader.read_window(0, 0, -1, 5)
        with pytest.raises(ValueError):
            reader.read_window(0, 0, 1, 1, level=3)


def _random_tiles(shape, tile, seed):
    """Row-major tiles of a reproducible image, made one at a time (never the whole image)."""
    for top in range(0, shape[0], tile):
        for left in range(0, shape[1], tile):
            h, w = min(tile, shape[0] - top), min(tile, shape[1] - left)
            rng = np.random.default_rng((seed, top, left))
            yield (top, left), rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _assemble(shape, tile, seed):
    out = np.zeros((*shape, 3), np.uint8)
    for (top, left), piece in _random_tiles(shape, tile, seed):
        out[top : top + piece.shape[0], left : left + piece.shape[1]] = piece
    return out


@pytest.mark.parametrize("name", ["p.ome.tif", "p.tif"])
def test_pyramid_levels_and_windows(tmp_path, name):
    shape = (300, 420)
    path = tmp_path / name
    write_tiled_tiff(path, shape, _random_tiles(shape, 64, 7), mpp=0.5, tile=64)
    full = _assemble(shape, 64, 7)
    with open_image(path) as reader:
        assert reader.level_shapes == [(300, 420), (150, 210), (75, 105), (38, 53)]
        assert reader.level_downsamples[:3] == [1.0, 2.0, 4.0]
        assert reader.mpp == pytest.approx(0.5)
        np.testing.assert_array_equal(reader.read(), full)
        np.testing.assert_array_equal(reader.read_window(50, 60, 100, 130), full[50:150, 60:190])
        expected = full.reshape(150, 2, 210, 2, 3).astype(np.uint16).sum(axis=(1, 3))
        np.testing.assert_array_equal(reader.read(1), ((expected + 2) // 4).astype(np.uint8))
        assert reader.best_level(1.0) == 0
        assert reader.best_level(3.9) == 1
        assert reader.best_level(4.0) == 2
        assert reader.best_level(100) == 3
        assert reader.best_level(0.5) == 0


def test_window_decodes_only_the_tiles_it_touches(tmp_path):
    shape = (512, 512)
    path = tmp_path / "t.ome.tif"
    write_tiled_tiff(path, shape, _random_tiles(shape, 128, 1), mpp=None, tile=128, pyramid=False)
    with open_image(path) as reader:
        reader.read_window(130, 10, 20, 20)  # tile row 1, column 0 (of a 4 x 4 grid)
        assert list(reader._backend._cache) == [(0, 4)]
        reader.read_window(120, 120, 20, 20)  # the four tiles around (128, 128)
        assert sorted(reader._backend._cache) == [(0, 0), (0, 1), (0, 4), (0, 5)]


def test_writer_streams_without_holding_the_image(tmp_path):
    shape = (2048, 2048)
    tracemalloc.start()
    try:
        write_tiled_tiff(tmp_path / "big.ome.tif", shape, _random_tiles(shape, 256, 3), mpp=0.25,
                         tile=256)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < shape[0] * shape[1] * 3 / 4, f"peak {peak / 2**20:.1f} MiB"
    with open_image(tmp_path / "big.ome.tif") as reader:
        assert len(reader.level_shapes) == 4
        got = reader.read_window(1000, 1500, 300, 300)
    np.testing.assert_array_equal(got, _assemble(shape, 256, 3)[1000:1300, 1500:1800])


def test_tiles_out_of_order_leave_no_file(tmp_path):
    tiles = list(_random_tiles((100, 100), 64, 0))
    with pytest.raises(ValueError, match="row-major"):
        write_tiled_tiff(tmp_path / "x.tif", (100, 100), tiles[::-1], mpp=None, tile=64)
    with pytest.raises(ValueError, match="ended early"):
        write_tiled_tiff(tmp_path / "x.tif", (100, 100), tiles[:2], mpp=None, tile=64)
    with pytest.raises(ValueError, match="more tiles"):
        write_tiled_tiff(tmp_path / "x.tif", (100, 100), tiles + tiles[:1], mpp=None, tile=64)
    assert os.listdir(tmp_path) == []


def test_strip_and_planar_tiffs(tmp_path, random_rgb):
    tifffile.imwrite(tmp_path / "strips.tif", random_rgb, photometric="rgb", rowsperstrip=7,
                     compression="zlib")
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(random_rgb, -1, 0), photometric="rgb",
                     planarconfig="separate", tile=(32, 32))
    tifffile.imwrite(tmp_path / "raw.tif", random_rgb, photometric="rgb")
    for name in ("strips.tif", "planar.tif", "raw.tif"):
        with open_image(tmp_path / name) as reader:
            np.testing.assert_array_equal(reader.read(), random_rgb)
            np.testing.assert_array_equal(reader.read_window(9, 17, 30, 40), random_rgb[9:39, 17:57])


def test_float_tiff_is_refused():
    import skimage.data

    _assert_refused(Path(skimage.data.data_dir) / "multipage_rgb.tif", "unsupported sample type float64")


# ------------------------------------------------------------------------------ conversions
def test_16_bit_is_scaled(tmp_path, random_rgb):
    sixteen = random_rgb.astype(np.uint16) * 257
    tifffile.imwrite(tmp_path / "a.tif", sixteen, photometric="rgb")
    np.testing.assert_array_equal(read_image(tmp_path / "a.tif"), random_rgb)
    twelve = ((random_rgb.astype(np.uint32) * 4095 + 127) // 255).astype(np.uint16)
    tifffile.imwrite(tmp_path / "b.tif", twelve, photometric="rgb", extratags=[(281, 3, 1, 4095, True)])
    assert np.abs(read_image(tmp_path / "b.tif").astype(int) - random_rgb).max() <= 1


def test_16_bit_png_is_scaled(tmp_path, random_rgb):
    import imagecodecs

    sixteen = np.minimum(random_rgb.astype(np.uint32) * 257 + 100, 65535).astype(np.uint16)
    (tmp_path / "a.png").write_bytes(imagecodecs.png_encode(sixteen))
    assert np.abs(read_image(tmp_path / "a.png").astype(int) - random_rgb).max() <= 1


def test_alpha_is_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 3] = [[0], [255], [128], [64]]
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    got = read_image(tmp_path / "a.png")[:, 0, 0]
    assert got.tolist() == [255, 0, 127, 191]
    tifffile.imwrite(tmp_path / "a.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    assert read_image(tmp_path / "a.tif")[:, 0, 0].tolist() == [255, 0, 127, 191]


def test_palette_images_become_rgb(tmp_path, ihc_rgb):
    palette = Image.fromarray(ihc_rgb[:64, :64]).quantize(16)
    palette.save(tmp_path / "p.png")
    expected = np.asarray(palette.convert("RGB"))
    np.testing.assert_array_equal(read_image(tmp_path / "p.png"), expected)
    index = np.asarray(palette)
    cmap = np.zeros((3, 256), np.uint16)
    cmap[:, :16] = np.asarray(palette.getpalette()[:48], np.uint16).reshape(16, 3).T * 257
    tifffile.imwrite(tmp_path / "p.tif", index, photometric="palette", colormap=cmap)
    np.testing.assert_array_equal(read_image(tmp_path / "p.tif"), expected)


# ------------------------------------------------------------------------------ refusals
def _assert_refused(path, words):
    with pytest.raises(InputError) as info:
        open_image(path).read()
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert words in message, message


def test_grey_images_are_refused(tmp_path, random_rgb):
    import skimage.data

    _assert_refused(Path(skimage.data.data_dir) / "camera.png", "not an RGB IHC image")
    Image.fromarray(random_rgb[..., 0]).save(tmp_path / "g.png")
    _assert_refused(tmp_path / "g.png", "not an RGB IHC image")
    Image.fromarray(random_rgb[..., 0].astype(np.uint16) * 200).save(tmp_path / "g16.png")
    _assert_refused(tmp_path / "g16.png", "not an RGB IHC image")
    tifffile.imwrite(tmp_path / "g.tif", random_rgb[..., 0])
    _assert_refused(tmp_path / "g.tif", "not an RGB IHC image")


def test_truncated_files_are_refused(tmp_path, fixtures_dir, ihc_rgb):
    _assert_refused(fixtures_dir / "truncated.png", "truncated")
    write_image(tmp_path / "a.jpg", ihc_rgb)
    data = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "a.jpg").write_bytes(data[: len(data) // 2])
    _assert_refused(tmp_path / "a.jpg", "truncated")
    write_image(tmp_path / "a.ome.tif", ihc_rgb)
    data = (tmp_path / "a.ome.tif").read_bytes()
    (tmp_path / "a.ome.tif").write_bytes(data[: len(data) - 1000])
    _assert_refused(tmp_path / "a.ome.tif", "truncated")


def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header_only(width, height):
    """A PNG that declares a size but holds (almost) no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0"))
            + _png_chunk(b"IEND", b""))


def test_absurd_and_zero_sizes_are_refused_before_decoding(tmp_path):
    (tmp_path / "wide.png").write_bytes(_png_header_only(MAX_SIDE + 1, 2))
    _assert_refused(tmp_path / "wide.png", "beyond")
    (tmp_path / "bomb.png").write_bytes(_png_header_only(90_000, 90_000))
    _assert_refused(tmp_path / "bomb.png", "pixels")
    (tmp_path / "zero.png").write_bytes(_png_header_only(0, 10))
    with pytest.raises(InputError, match="zero.png"):
        open_image(tmp_path / "zero.png")
    tifffile.imwrite(tmp_path / "wide.tif", shape=(16, MAX_SIDE + 16, 3), dtype=np.uint8,
                     photometric="rgb", tile=(16, 16))
    _assert_refused(tmp_path / "wide.tif", "beyond")


def test_missing_empty_folder_and_non_images(tmp_path):
    _assert_refused(tmp_path / "nope.png", "not found")
    (tmp_path / "empty.png").write_bytes(b"")
    _assert_refused(tmp_path / "empty.png", "empty file")
    (tmp_path / "folder.tif").mkdir()
    _assert_refused(tmp_path / "folder.tif", "folder")
    (tmp_path / "text.png").write_text("hello")
    _assert_refused(tmp_path / "text.png", "not a readable image")
    (tmp_path / "text.tif").write_text("hello")
    _assert_refused(tmp_path / "text.tif", "not a TIFF")
    (tmp_path / "bad.tif").write_bytes(b"II*\x00" + b"\xff" * 20)
    _assert_refused(tmp_path / "bad.tif", "TIFF")


def test_bad_mpp_argument_is_refused(tmp_path, random_rgb):
    write_image(tmp_path / "a.png", random_rgb)
    with pytest.raises(InputError, match="pixel size"):
        open_image(tmp_path / "a.png", mpp=-1.0)


# ------------------------------------------------------------------------------ whole-slide formats
def test_tiff_based_slide_suffix_reads(tmp_path):
    shape = (200, 300)
    write_tiled_tiff(tmp_path / "s.svs", shape, _random_tiles(shape, 64, 5), mpp=0.5, tile=64)
    with open_image(tmp_path / "s.svs") as reader:
        assert reader.shape == shape
        np.testing.assert_array_equal(reader.read_window(10, 20, 100, 150),
                                      _assemble(shape, 64, 5)[10:110, 20:170])


def test_slide_without_openslide_asks_for_the_extra(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "_import_openslide", lambda: None)
    (tmp_path / "s.mrxs").write_bytes(b"not a tiff")
    _assert_refused(tmp_path / "s.mrxs", "maskllp[openslide]")


def test_openslide_backend_reads_a_tiled_tiff(tmp_path):
    openslide = pytest.importorskip("openslide")
    shape = (200, 300)
    write_tiled_tiff(tmp_path / "s.tif", shape, _random_tiles(shape, 64, 9), mpp=0.5, tile=64)
    reader = images.ImageReader(tmp_path / "s.tif", images._OpenSlideBackend(tmp_path / "s.tif", openslide))
    full = _assemble(shape, 64, 9)
    np.testing.assert_array_equal(reader.read_window(-10, 30, 100, 100)[10:], full[:90, 30:130])
    assert (reader.read_window(-10, 30, 100, 100)[:10] == 255).all()
    reader.close()


# ------------------------------------------------------------------------------ real Ki-67 OME-TIFF
def test_ome_tiff_fixture_with_jpeg_tiles(fixtures_dir):
    with open_image(fixtures_dir / "ki67-vsi-crop.ome.tif") as reader:
        assert reader.shape == (160, 160)
        assert reader.mpp == pytest.approx(0.34605325860336383, rel=1e-9)
        got = reader.read()
    truth = read_image(fixtures_dir / "ki67-vsi-crop.png")
    assert np.abs(got.astype(int) - truth).mean() < 3.0  # JPEG, quality 90


@pytest.mark.skipif(not SHARED_CROPS.is_dir(), reason="shared/data not present (clean clone)")
@pytest.mark.parametrize("name, size, mpp, origin", [
    ("OS-2-ndpi", 2202, 0.2270998717, 845),
    ("OS-2-vsi", 1445, 0.3460546211, 466),
])
def test_real_qupath_ome_tiffs(name, size, mpp, origin):
    with open_image(SHARED_CROPS / f"{name}.ome.tif") as reader:
        assert reader.shape == (size, size)
        assert reader.mpp == pytest.approx(mpp, rel=1e-6)
        window = reader.read_window(origin, origin, 512, 512)
    np.testing.assert_array_equal(window, read_image(SHARED_CROPS / f"{name}-center512.png"))


def test_array_tiles_cover_the_image(random_rgb):
    seen = np.zeros(random_rgb.shape[:2], int)
    for (top, left), piece in array_tiles(random_rgb, 32):
        seen[top : top + piece.shape[0], left : left + piece.shape[1]] += 1
    assert (seen == 1).all()
