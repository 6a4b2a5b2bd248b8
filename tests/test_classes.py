"""Class names -> tool classes: QuPath's standard names, derived classes, typos, overrides."""

from __future__ import annotations

import pytest

from maskllp.classes import QUPATH_COLOURS, QUPATH_REGION_COLOURS, CellClass, ClassMapping, RegionClass
from maskllp.config import load_config

P, N, T, S = CellClass.POSITIVE_TUMOUR, CellClass.NEGATIVE_TUMOUR, CellClass.TUMOUR, CellClass.NON_TUMOUR


@pytest.mark.parametrize("name, cls", [
    ("Positive", P), ("Negative", N), ("1+", P), ("2+", P), ("3+", P),
    ("Tumor: Positive", P), ("Tumor: Negative", N), ("tumour:negative", N), (" Tumor : 3+ ", P),
    ("Tumor", T), ("Tumour", T), ("Cancer", T),
    ("Stroma", S), ("Immune cells", S), ("Stroma: Positive", S), ("Immune cells: Negative", S),
    ("Necrosis", S), ("Other", S), ("Non-tumor", S), ("NORMAL", S),
])
def test_qupath_standard_cell_names(name, cls):
    assert ClassMapping().cell_class(name) is cls


@pytest.mark.parametrize("name", [None, "", "  ", "Ignore*", "Ignore", "Region 1", "Region*",
                                  "Tumor: Ignore*"])
def test_skipped_names(name):
    assert ClassMapping().cell_class(name) is None
    assert ClassMapping().region_class(name) is None


@pytest.mark.parametrize("name", ["Tumour cel", "Strom: Positive", "Tumour cel: Positive", "Positve",
                                  "Tumor: 4+"])
def test_typos_are_errors_not_guesses(name):
    with pytest.raises(ValueError, match="not a known"):
        ClassMapping().cell_class(name)
    with pytest.raises(ValueError, match="not a known"):
        ClassMapping().region_class(name)


@pytest.mark.parametrize("name, cls", [
    ("Tumor", RegionClass.TUMOUR), ("Tumor: Positive", RegionClass.TUMOUR), ("Positive", RegionClass.TUMOUR),
    ("Stroma", RegionClass.NON_TUMOUR), ("Necrosis", RegionClass.NON_TUMOUR),
])
def test_region_names(name, cls):
    assert ClassMapping().region_class(name) is cls


def test_written_names_read_back_as_themselves():
    mapping = ClassMapping()
    assert mapping.written_names(CellClass.POSITIVE_TUMOUR) == ["Tumor", "Positive"]
    assert mapping.written_names(CellClass.NON_TUMOUR) == ["Stroma"]
    for cls, colour in QUPATH_COLOURS.items():
        assert mapping.cell_class(": ".join(mapping.written_names(cls))) is cls
        assert len(colour) == 3 and all(0 <= c <= 255 for c in colour)
    for cls in QUPATH_REGION_COLOURS:
        assert mapping.region_class(": ".join(mapping.written_region_names(cls))) is cls


def test_written_names_are_configurable_and_must_read_back(tmp_path):
    """A lab's own names for the files maskllp writes; a name its lists would read as another class
    (or not at all) is refused when the config loads, naming the key."""
    path = tmp_path / "c.toml"
    path.write_text('[classes]\ntumour = ["Tumor", "Carcinoma"]\nwrite_positive = "Carcinoma: Positive"\n'
                    'write_non_tumour = "Immune cells"\n')
    mapping = load_config(path).classes
    assert mapping.written_names(CellClass.POSITIVE_TUMOUR) == ["Carcinoma", "Positive"]
    assert mapping.written_names(CellClass.NON_TUMOUR) == ["Immune cells"]
    assert mapping.written_names(CellClass.NEGATIVE_TUMOUR) == ["Tumor", "Negative"]
    for bad in ('write_positive = "Stroma: Positive"', 'write_negative = "Tumor: Positive"',
                'write_tumour = "Carcinoma"'):
        path.write_text(f"[classes]\n{bad}\n")
        with pytest.raises(Exception, match=bad.split(" = ")[0]):
            load_config(path)


def test_override_from_config(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[classes]\nnon_tumour = ["Stroma", "Histiocyte*"]\npositive = ["PD-L1+"]\n'
                    'write_positive = "Tumor: PD-L1+"\n')
    mapping = load_config(path).classes
    assert mapping.cell_class("Histiocyte (CD68)") is S
    assert mapping.cell_class("Tumor: PD-L1+") is P
    with pytest.raises(ValueError):
        mapping.cell_class("Positive")  # no longer a positive name
    with pytest.raises(ValueError):
        mapping.cell_class("Immune cells")  # replaced list


def test_cell_class_values_are_fixed():
    assert [int(c) for c in CellClass] == [0, 1, 2, 3]
    assert [int(c) for c in RegionClass] == [1, 2]
    assert [c.is_tumour for c in CellClass] == [True, True, True, False]
