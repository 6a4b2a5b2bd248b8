"""The truth files: round trip, exact TPS, undefined TPS, malformed files as one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from maskllp.classes import CellClass
from maskllp.errors import InputError
from maskllp.synth.truth import (
    core_counts,
    exact_tps,
    read_truth,
    read_truth_cells,
    write_cells,
    write_truth,
)

from .conftest import make_layout


def test_cells_file_round_trip(tmp_path):
    cells = make_layout(seed=21, tps=0.5).cells
    write_cells(tmp_path / "core.csv", cells)
    back = read_truth_cells(tmp_path / "core.csv")
    assert np.abs(back.yx - cells.yx).max() <= 5e-4
    assert np.array_equal(back.classes, cells.cls)
    assert np.array_equal(back.subtypes, cells.subtype)
    assert np.array_equal(back.stained, cells.stained)


def test_exact_tps_counts_tumour_cells_only():
    assert exact_tps(3, 1) == 0.75
    assert exact_tps(0, 5) == 0.0
    assert exact_tps(0, 0) is None


def test_truth_round_trip_and_undefined_tps(tmp_path):
    rows = [
        {"image": "images/a.png", "patient": "P1", "n_positive_tumour": "3", "n_negative_tumour": "1",
         "n_non_tumour": "9", "n_stained_non_tumour": "4", "tps": repr(0.75), "interval": "75-100 %",
         "label": "75-100 %", "architecture": "nests", "cells": "truth/a.csv"},
        {"image": "images/b.png", "patient": "P1", "n_positive_tumour": "0", "n_negative_tumour": "0",
         "n_non_tumour": "5", "n_stained_non_tumour": "0", "tps": "", "interval": "", "label": "",
         "architecture": "none", "cells": "truth/b.csv"},
    ]
    write_truth(tmp_path / "truth.csv", rows)
    truth = read_truth(tmp_path / "truth.csv")
    assert truth["a.png"].tps == 0.75 and truth["a.png"].n_non_tumour == 9
    assert truth["a.png"].cells_path == tmp_path / "truth" / "a.csv"
    assert truth["b.png"].tps is None and truth["b.png"].interval is None and truth["b.png"].label is None


@pytest.mark.parametrize("change, message", [
    ({"tps": "0.5"}, "line 2: tps '0.5' does not match the counts"),
    ({"tps": ""}, "line 2: tps '' does not match the counts"),
    ({"n_negative_tumour": "x"}, "line 2: n_negative_tumour 'x' is not a count"),
    ({"n_non_tumour": "-1"}, "line 2: n_non_tumour -1 is negative"),
])
def test_malformed_truth_rows_name_file_and_line(tmp_path, change, message):
    row = {"image": "a.png", "patient": "P1", "n_positive_tumour": "3", "n_negative_tumour": "1",
           "n_non_tumour": "0", "n_stained_non_tumour": "0", "tps": "0.75", "interval": "75-100 %",
           "label": "75-100 %", "architecture": "nests", "cells": "truth/a.csv"}
    row.update(change)
    write_truth(tmp_path / "truth.csv", [row])
    with pytest.raises(InputError, match=message):
        read_truth(tmp_path / "truth.csv")


def test_not_a_truth_file(tmp_path):
    (tmp_path / "t.csv").write_text("image,label\na.png,1-25 %\n")
    with pytest.raises(InputError, match="t.csv: line 1: not a maskllp truth file"):
        read_truth(tmp_path / "t.csv")
    (tmp_path / "c.csv").write_text("y,x,class,subtype,stained\n1,2,tumor,tumour,0\n")
    with pytest.raises(InputError, match="c.csv: line 2: bad cell row"):
        read_truth_cells(tmp_path / "c.csv")
    with pytest.raises(InputError, match="truth file not found"):
        read_truth(tmp_path / "missing.csv")


def test_counts_follow_the_cell_table():
    cells = make_layout(seed=22, tps=0.25).cells
    counts = core_counts(cells)
    assert counts["n_positive_tumour"] == np.count_nonzero(cells.cls == CellClass.POSITIVE_TUMOUR)
    assert sum(counts[k] for k in ("n_positive_tumour", "n_negative_tumour", "n_non_tumour")) == len(cells)
