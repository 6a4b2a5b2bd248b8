"""Input budgets (maskllp.io.limits): what a file declares is refused before it is paid for."""

from __future__ import annotations

import gzip
import io
import tracemalloc
import zipfile

import numpy as np
import pytest
from PIL import Image

from maskllp.errors import InputError
from maskllp.io.annotations import read_annotations
from maskllp.io.images import open_image
from maskllp.io.limits import Limits, json_depth, use_limits

POINT = (b'{"type":"Feature","geometry":{"type":"Point","coordinates":[1,2]},'
         b'"properties":{"classification":{"name":"Tumor"}}}')


@pytest.mark.parametrize("text, depth", [(b"1", 0), (b"[]", 1), (b'{"a": [[1], 2]}', 3),
                                         (b'["[[[", "\\"[["]', 1), (b"[[],[[]]]", 3)])
def test_json_depth_by_hand(text, depth):
    assert json_depth(text) == depth


def test_deep_json_is_refused_naming_the_file_and_setting(tmp_path):
    path = tmp_path / "deep.geojson"
    path.write_text("[" * 100_000)  # json.loads would die of RecursionError
    with pytest.raises(InputError, match=r"deep.geojson: JSON nested 100000 deep.*limits.max_json_depth"):
        read_annotations(path)


def _collection(n: int) -> bytes:
    return b'{"type":"FeatureCollection","features":[' + b",".join([POINT] * n) + b"]}"


def test_a_gzip_bomb_is_refused_without_being_expanded(tmp_path):
    use_limits(Limits(max_annotation_bytes=1_000_000))
    path = tmp_path / "bomb.geojson.gz"
    path.write_bytes(gzip.compress(_collection(200_000), 9))  # ~17 MB of JSON, ~70 KB on disk
    tracemalloc.start()
    with pytest.raises(InputError, match=r"bomb.geojson.gz: more than 1,000,000 bytes after decompression"):
        read_annotations(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8_000_000  # never expanded whole


def test_gzip_within_budget_reads_every_member(tmp_path):
    path = tmp_path / "two.geojson.gz"
    text = _collection(3)
    path.write_bytes(gzip.compress(text[:40]) + gzip.compress(text[40:]))  # two gzip members
    assert len(read_annotations(path).points.yx) == 3


def test_a_zip_member_beyond_the_budget_is_refused(tmp_path):
    use_limits(Limits(max_annotation_bytes=10_000))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("cells.geojson", _collection(1000))
    path = tmp_path / "cells.zip"
    path.write_bytes(buf.getvalue())
    with pytest.raises(InputError, match="limits.max_annotation_bytes"):
        read_annotations(path)


def test_a_tiff_header_of_100000_px_is_refused_before_any_allocation(huge_header_tiff):
    path = huge_header_tiff
    assert path.stat().st_size < 4096
    with open_image(path) as reader:
        assert reader.shape == (100_000, 100_000)
        tracemalloc.start()
        with pytest.raises(InputError, match=r"huge.tif: reading the image needs 100000 x 100000 pixels"):
            reader.read()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 1_000_000
        assert reader.read_window(0, 0, 64, 64).shape == (64, 64, 3)  # small windows still read


def test_a_png_beyond_the_read_budget_is_refused_and_the_budget_can_be_raised(tmp_path):
    path = tmp_path / "core.png"
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(path)
    use_limits(Limits(max_read_pixels=10_000))
    with pytest.raises(InputError, match=r"core.png: this PNG \(decoded whole\) needs 200 x 200 pixels.*"
                                         r"limits.max_read_pixels"):
        open_image(path)
    use_limits(Limits(max_read_pixels=40_000))
    with open_image(path) as reader:
        assert reader.read().shape == (200, 200, 3)


@pytest.mark.parametrize("key, value", [("max_read_pixels", 0), ("max_json_depth", -1),
                                        ("max_working_pixels", 1.5), ("max_annotation_bytes", True)])
def test_limits_must_be_whole_positive_numbers(key, value):
    with pytest.raises(ValueError, match=f"limits.{key}"):
        Limits(**{key: value})
