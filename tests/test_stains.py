"""Stain vectors of one image (Macenko) and the stain range of a model's training cores."""

from __future__ import annotations

import numpy as np
import pytest

from maskllp.stains import (
    RGB_FROM_HED,
    StainRange,
    StainVectors,
    angle_deg,
    estimate_stain_vectors,
)

H_REF = RGB_FROM_HED[0] / np.linalg.norm(RGB_FROM_HED[0])
DAB_REF = RGB_FROM_HED[2] / np.linalg.norm(RGB_FROM_HED[2])


def test_angle_between_vectors_by_hand():
    assert angle_deg((1, 0, 0), (0, 1, 0)) == pytest.approx(90)
    assert angle_deg((1, 1, 0), (2, 2, 0)) == pytest.approx(0, abs=1e-5)
    assert angle_deg((1, 0, 0), (1, 1, 0)) == pytest.approx(45)


@pytest.mark.parametrize("h_vec, dab_vec", [
    (H_REF, DAB_REF),
    ((0.55, 0.78, 0.31), (0.31, 0.59, 0.75)),  # a greener counterstain (a second scanner's)
])
def test_two_known_stains_are_recovered(h_vec, dab_vec, stained_pixels):
    found = estimate_stain_vectors(stained_pixels(h_vec, dab_vec))
    assert found is not None and found.dab is not None
    assert angle_deg(found.hematoxylin, h_vec) < 2.5
    assert angle_deg(found.dab, dab_vec) < 2.5
    assert np.linalg.norm(found.hematoxylin) == pytest.approx(1)
    assert 1.0 < found.hematoxylin_od < 1.3  # the 99th percentile of 0.4-1.2 OD (8-bit rounding)


def test_without_dab_only_the_counterstain_is_estimated(stained_pixels):
    found = estimate_stain_vectors(stained_pixels(H_REF, DAB_REF, dab_share=0.0))
    assert found is not None and found.dab is None
    assert angle_deg(found.hematoxylin, H_REF) < 1.0


def test_a_blank_image_has_no_stain_vectors():
    assert estimate_stain_vectors(np.full((64, 64, 3), 245, np.uint8)) is None


def _vectors(h, dab=None, od=1.0) -> StainVectors:
    def unit(v):
        return tuple(float(x) for x in np.asarray(v) / np.linalg.norm(v))

    return StainVectors(unit(h), None if dab is None else unit(dab), od)


def test_range_of_training_cores_by_hand():
    cores = [_vectors((1, 0.1, 0), (0, 0, 1), 0.8), _vectors((1, 0, 0.1), None, 1.2)]
    r = StainRange.of(cores)
    assert r.cores == 2 and r.hematoxylin_od == (0.8, 1.2)
    a, b = np.array([1, 0.1, 0]), np.array([1, 0, 0.1])
    mean = a / np.linalg.norm(a) + b / np.linalg.norm(b)
    assert angle_deg(r.hematoxylin, mean) < 1e-4
    assert r.hematoxylin_max_deg == pytest.approx(angle_deg((1, 0.1, 0), mean))  # both equally far
    assert r.dab == (0.0, 0.0, 1.0) and r.dab_max_deg == pytest.approx(0)  # one core had DAB


def test_departures_name_what_lies_outside():
    r = StainRange((1.0, 0.0, 0.0), 2.0, (0.0, 0.0, 1.0), 1.0, (0.8, 1.2), 10)
    inside = _vectors((1, np.tan(np.radians(4.5)), 0), (0, np.tan(np.radians(3.5)), 1), 1.4)
    assert r.departures(inside, margin_deg=3.0, od_margin=0.25) == []  # 4.5 <= 2+3, 3.5 <= 1+3, 1.4 <= 1.5
    outside = _vectors((1, np.tan(np.radians(6)), 0), (0, np.tan(np.radians(5)), 1), 0.6)
    found = r.departures(outside, margin_deg=3.0, od_margin=0.25)
    assert [f.split(" ")[:2] for f in found] == [["hematoxylin", "colour"], ["DAB", "colour"],
                                                 ["hematoxylin", "strength"]]
    assert found[0].startswith("hematoxylin colour 6.0 deg")
    assert "0.60 OD (training cores 0.80-1.20)" in found[2]
    no_dab = _vectors((1, 0, 0), None, 1.0)
    assert r.departures(no_dab, 3.0, 0.25) == []  # nothing to compare for DAB


def test_range_round_trips_and_refuses_damage():
    r = StainRange.of([_vectors((0.7, 0.6, 0.3), (0.3, 0.6, 0.75), 0.9),
                       _vectors((0.72, 0.6, 0.3), None, 1.1)])
    assert StainRange.from_json(r.to_json()) == r
    for key, bad in [("hematoxylin", [1, 2, 3]), ("hematoxylin", "red"), ("hematoxylin_max_deg", -1),
                     ("hematoxylin_od", [1.2, 0.8]), ("cores", 0), ("cores", True), ("dab_max_deg", None)]:
        data = {**r.to_json(), key: bad}
        with pytest.raises(ValueError):
            StainRange.from_json(data)
    with pytest.raises(ValueError):
        StainRange.from_json([1, 2])
