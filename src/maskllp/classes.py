"""The tool's cell and region classes, and how annotation class names map onto them.

Cells (points) have one of four classes; regions (polygons) one of two. Annotation files name their
classes the way QuPath does (``Positive``, ``Tumor: Negative``, ``Stroma``, ``Immune cells``...).
:class:`ClassMapping` turns such a name into a tool class. Its default fits QuPath's standard names:

* a name is split on ``:`` into parts (``"Tumor: Positive"`` -> ``["Tumor", "Positive"]``), compared
  case-insensitively after trimming;
* if any part is a **non-tumour** name (``Stroma``, ``Immune cells``, ``Non-tumor``, ``Other``,
  ``Necrosis``, ``Lymphocyte``, ...), the object is non-tumour, whatever its stain
  (``Stroma: Positive`` is a non-tumour cell, as TPS requires);
* else if the last part is a **positive** name (``Positive``, ``1+``, ``2+``, ``3+``), the cell is a
  positive tumour cell; a **negative** name (``Negative``) gives a negative tumour cell; these are
  tumour cells because TPS point annotations click tumour cells;
* else if a part is a **tumour** name (``Tumor``, ``Tumour``), the cell is a tumour cell of unknown
  stain and a polygon is a tumour region;
* an **ignored** name (``Ignore*``, ``Region*``, an unclassified object) gives ``None``: the object is
  skipped; a name with any part that no list holds is an error (so a typo is not silently read as
  something: ``"Strom: Positive"`` is refused, not counted as a positive tumour cell).

Every list is overridable in the ``[classes]`` section of a config file.

**Written names.** The cells and mask GeoJSON that maskllp writes use QuPath's built-in names
(``Tumor: Positive``, ``Tumor: Negative``, ``Tumor``, ``Stroma``) and colours by default; the keys
``write_positive``, ``write_negative``, ``write_tumour`` and ``write_non_tumour`` of ``[classes]``
change them (a lab whose QuPath project names its classes otherwise). A written name must read back
as its own class under the same lists (``"PD-L1: Positive"`` needs ``"PD-L1"`` in ``tumour``), so
maskllp reads every file it writes; a name that would not is refused when the config is loaded.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class CellClass(enum.IntEnum):
    """Class of one annotated or detected cell."""

    POSITIVE_TUMOUR = 0
    NEGATIVE_TUMOUR = 1
    TUMOUR = 2  # tumour cell whose stain is not given
    NON_TUMOUR = 3

    @property
    def is_tumour(self) -> bool:
        return self is not CellClass.NON_TUMOUR


class RegionClass(enum.IntEnum):
    """Class of an annotated region (polygon). Values are the raster codes of region masks."""

    TUMOUR = 1
    NON_TUMOUR = 2


# Colours that maskllp writes and draws for each class (QuPath's own colours for its built-in
# classes); the names written are ClassMapping's write_* keys.
QUPATH_COLOURS: dict[CellClass, tuple[int, int, int]] = {
    CellClass.POSITIVE_TUMOUR: (200, 50, 50),
    CellClass.NEGATIVE_TUMOUR: (90, 90, 180),
    CellClass.TUMOUR: (200, 0, 0),
    CellClass.NON_TUMOUR: (150, 200, 150),
}
QUPATH_REGION_COLOURS: dict[RegionClass, tuple[int, int, int]] = {
    RegionClass.TUMOUR: (200, 0, 0),
    RegionClass.NON_TUMOUR: (150, 200, 150),
}


@dataclass
class ClassMapping:
    """Annotation class names -> tool classes (see the module doc for the rules)."""

    positive: list[str] = field(default_factory=lambda: ["Positive", "1+", "2+", "3+"])
    negative: list[str] = field(default_factory=lambda: ["Negative"])
    tumour: list[str] = field(
        default_factory=lambda: ["Tumor", "Tumour", "Tumor cell", "Tumour cell", "Cancer"]
    )
    non_tumour: list[str] = field(
        default_factory=lambda: [
            "Stroma",
            "Immune cells",
            "Immune cell",
            "Non-tumor",
            "Non-tumour",
            "Nontumor",
            "Non tumor",
            "Non tumour",
            "Normal",
            "Other",
            "Necrosis",
            "Lymphocyte",
            "Lymphocytes",
            "Macrophage",
            "Macrophages",
            "Fibroblast",
            "Fibroblasts",
        ]
    )
    ignore: list[str] = field(default_factory=lambda: ["Ignore*", "Region*", "Ignore"])
    write_positive: str = "Tumor: Positive"
    """Class written for a positive tumour cell (the cells GeoJSON)."""
    write_negative: str = "Tumor: Negative"
    """Class written for a negative tumour cell."""
    write_tumour: str = "Tumor"
    """Class written for a tumour cell without a call, and for the tumour mask's polygons."""
    write_non_tumour: str = "Stroma"
    """Class written for a non-tumour cell."""

    def __post_init__(self) -> None:
        for key, cls in (("write_positive", CellClass.POSITIVE_TUMOUR),
                         ("write_negative", CellClass.NEGATIVE_TUMOUR),
                         ("write_tumour", CellClass.TUMOUR), ("write_non_tumour", CellClass.NON_TUMOUR)):
            name = getattr(self, key)
            try:
                back = self.cell_class(name) if isinstance(name, str) else None
            except ValueError:
                back = None
            if back is not cls:
                raise ValueError(f"classes.{key} {name!r} would not read back as a "
                                 f"{cls.name.lower().replace('_', ' ')} cell under the [classes] lists: set "
                                 f"classes.{key} to a name they read so, or add its parts to them")

    def written_names(self, cls: CellClass) -> list[str]:
        """The class ``cls`` is written as, split into QuPath's ``names`` (``["Tumor", "Positive"]``)."""
        name = {CellClass.POSITIVE_TUMOUR: self.write_positive,
                CellClass.NEGATIVE_TUMOUR: self.write_negative,
                CellClass.TUMOUR: self.write_tumour, CellClass.NON_TUMOUR: self.write_non_tumour}[cls]
        return [p.strip() for p in name.split(":") if p.strip()]

    def written_region_names(self, cls: RegionClass) -> list[str]:
        """The names a region of class ``cls`` is written as (the tumour / non-tumour cell names)."""
        return self.written_names(CellClass.TUMOUR if cls is RegionClass.TUMOUR else CellClass.NON_TUMOUR)

    def _parts(self, name: str) -> list[str]:
        return [p.strip().casefold() for p in name.split(":") if p.strip()]

    @staticmethod
    def _in(part: str, names: list[str]) -> bool:
        for n in names:
            n = n.strip().casefold()
            if n.endswith("*") and part.startswith(n[:-1]) or part == n:
                return True
        return False

    def _check_known(self, name: str | None, parts: list[str]) -> None:
        """Every part of a name must be in some list: a typo in any part is an error."""
        known = self.positive + self.negative + self.tumour + self.non_tumour
        for p in parts:
            if not self._in(p, known):
                raise ValueError(f"class {name!r}: {p!r} is not a known class name")

    def cell_class(self, name: str | None) -> CellClass | None:
        """Tool class of a cell annotation named ``name``; ``None`` means "skip this object".

        Raises ``ValueError`` for a name that no list holds.
        """
        parts = self._parts(name or "")
        if not parts or any(self._in(p, self.ignore) for p in parts):
            return None
        self._check_known(name, parts)
        if any(self._in(p, self.non_tumour) for p in parts):
            return CellClass.NON_TUMOUR
        if self._in(parts[-1], self.positive):
            return CellClass.POSITIVE_TUMOUR
        if self._in(parts[-1], self.negative):
            return CellClass.NEGATIVE_TUMOUR
        if any(self._in(p, self.tumour) for p in parts):
            return CellClass.TUMOUR
        raise ValueError(f"class {name!r} is not a known cell class")

    def region_class(self, name: str | None) -> RegionClass | None:
        """Tool class of a region (polygon) named ``name``; ``None`` means "skip"."""
        parts = self._parts(name or "")
        if not parts or any(self._in(p, self.ignore) for p in parts):
            return None
        self._check_known(name, parts)
        if any(self._in(p, self.non_tumour) for p in parts):
            return RegionClass.NON_TUMOUR
        if any(self._in(p, self.tumour) for p in parts) or self._in(
            parts[-1], self.positive + self.negative
        ):
            return RegionClass.TUMOUR
        raise ValueError(f"class {name!r} is not a known region class")
