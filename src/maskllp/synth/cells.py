"""The cells of a synthetic core as compact arrays, and how each cell type looks.

A :class:`CellTable` holds one row per cell: where its nucleus is (the truth position), its class,
and every number the renderer needs to draw it. Drawing functions return tables for one cell type
with appearance drawn around per-core means (:class:`CoreTraits`): tumour cells have large,
pleomorphic, vesicular nuclei with nucleoli; lymphocytes small dense round nuclei; fibroblasts
spindle nuclei; macrophages mid-sized oval or bean-shaped nuclei in abundant cytoplasm. The stain a
cell carries is set afterwards (:func:`set_membrane_stain` and friends).

Lengths are in pixels, densities in optical-density units (log10).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields

import numpy as np

from maskllp.classes import CellClass


class Subtype(enum.IntEnum):
    """What a cell is biologically (the truth file keeps it; TPS needs only tumour / not)."""

    TUMOUR = 0
    LYMPHOCYTE = 1
    FIBROBLAST = 2
    MACROPHAGE = 3


SUBTYPE_NAMES = {Subtype.TUMOUR: "tumour", Subtype.LYMPHOCYTE: "lymphocyte",
                 Subtype.FIBROBLAST: "fibroblast", Subtype.MACROPHAGE: "macrophage"}

COMPLETE_RING = np.float32(-2.0)
"""``ring[:, 2]`` value (cosine of the arc half-width) of a membrane stained all round."""


@dataclass
class CellTable:
    """One row per cell (struct of arrays). N cells."""

    yx: np.ndarray
    """(N, 2) float64 nucleus centre, level-0 array-index coordinates (the truth position)."""
    cls: np.ndarray
    """(N,) int8 :class:`CellClass` (POSITIVE_TUMOUR, NEGATIVE_TUMOUR or NON_TUMOUR)."""
    subtype: np.ndarray
    """(N,) int8 :class:`Subtype`."""
    stained: np.ndarray
    """(N,) bool: carries DAB (positive tumour cells, and immune cells that confound)."""
    body_offset: np.ndarray
    """(N, 2) float32 cell-body centre minus nucleus centre (eccentric or basal nuclei)."""
    theta: np.ndarray
    """(N,) float32 orientation (radians, from the y axis towards x) of the cell and nucleus."""
    cell_axes: np.ndarray
    """(N, 2) float32 semi-axes of the cell body along / across ``theta``."""
    nucleus_axes: np.ndarray
    """(N, 2) float32 semi-axes of the nucleus along / across ``theta``."""
    harmonics: np.ndarray
    """(N, 6) float32 outline terms a2, b2, a3, b3, a4, b4: r(phi) = 1 + sum a_k cos k phi + b_k sin k phi."""
    chromatin: np.ndarray
    """(N, 3) float32 rim H density, interior/rim ratio (low = vesicular), granularity."""
    nucleoli: np.ndarray
    """(N, 6) float32 two nucleoli: (u, v) in nucleus units and radius in px each (radius 0: none)."""
    cytoplasm: np.ndarray
    """(N, 2) float32 cytoplasm H density and its texture amplitude."""
    dab: np.ndarray
    """(N, 3) float32 DAB density of membrane, cytoplasm, nucleus."""
    ring: np.ndarray
    """(N, 3) float32 stained membrane arc: cos and sin of its centre angle, cos of its half-width."""
    packing: np.ndarray
    """(N,) float32 largest overlap of this nucleus with a neighbour's that packs too, as a share of
    their summed radii along the line between them (crowded tumour cells, lymphocytes in aggregates);
    0: the nucleus keeps a gap to every other."""

    def __len__(self) -> int:
        return len(self.yx)

    def take(self, index: np.ndarray) -> CellTable:
        """Rows ``index`` (int indices or bool mask) as a new table."""
        return CellTable(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @staticmethod
    def concat(tables: list[CellTable]) -> CellTable:
        return CellTable(**{f.name: np.concatenate([getattr(t, f.name) for t in tables])
                            for f in fields(CellTable)})

    @property
    def body_yx(self) -> np.ndarray:
        """(N, 2) float64 cell-body centres."""
        return self.yx + self.body_offset

    @property
    def reach(self) -> float:
        """Largest distance (px) from a body centre at which the cell still draws anything."""
        if len(self) == 0:
            return 0.0
        off = np.hypot(self.body_offset[:, 0], self.body_offset[:, 1])
        nuc = self.nucleus_axes.max(axis=1) * (1.0 + np.abs(self.harmonics).sum(axis=1))
        return float(max(self.cell_axes.max(), (off + nuc).max())) + 3.0


def empty_table(n: int, yx: np.ndarray, subtype: Subtype) -> CellTable:
    """``n`` unstained cells of one subtype at ``yx`` (other fields zero, to be filled)."""
    z = np.zeros
    cls = CellClass.NEGATIVE_TUMOUR if subtype is Subtype.TUMOUR else CellClass.NON_TUMOUR
    ring = z((n, 3), np.float32)
    ring[:, 2] = COMPLETE_RING
    return CellTable(
        yx=np.asarray(yx, np.float64).reshape(n, 2), cls=np.full(n, cls, np.int8),
        subtype=np.full(n, subtype, np.int8), stained=z(n, bool), body_offset=z((n, 2), np.float32),
        theta=z(n, np.float32), cell_axes=z((n, 2), np.float32), nucleus_axes=z((n, 2), np.float32),
        harmonics=z((n, 6), np.float32), chromatin=z((n, 3), np.float32),
        nucleoli=z((n, 6), np.float32), cytoplasm=z((n, 2), np.float32), dab=z((n, 3), np.float32),
        ring=ring, packing=z(n, np.float32),
    )


@dataclass(frozen=True)
class CoreTraits:
    """Per-core means of cell appearance (lengths in px, densities in OD)."""

    um: float
    """Pixels per micron (1 / mpp)."""
    tumour_nucleus: float
    """Mean tumour nuclear diameter (px)."""
    pleomorphism: float
    lymphocyte_nucleus: float
    hematoxylin: float
    """Hematoxylin multiplier of the core (patient tendency times core jitter)."""
    vesicularity: float
    """Mean interior/rim chromatin ratio of tumour nuclei (lower: more vesicular)."""
    nucleolus_rate: float
    """Probability of a prominent nucleolus in a tumour nucleus."""
    tumour_cytoplasm: float
    """H OD of tumour cytoplasm."""


def _harmonics(rng: np.random.Generator, n: int, sd: np.ndarray | float) -> np.ndarray:
    """(n, 6) outline terms with SD ``sd`` per term (k = 2, 3, 4; weaker for higher k)."""
    scale = np.array([1.0, 1.0, 0.7, 0.7, 0.5, 0.5], np.float32)
    sd = np.asarray(sd, np.float32).reshape(-1, 1)
    return (rng.normal(0.0, 1.0, (n, 6)).astype(np.float32) * scale * sd).clip(-0.3, 0.3)


def _axes(diameter: np.ndarray, aspect: np.ndarray) -> np.ndarray:
    """Nucleus semi-axes (n, 2) from diameter (area-equivalent) and aspect ratio >= 1."""
    r = diameter / 2.0
    return np.stack([r * np.sqrt(aspect), r / np.sqrt(aspect)], axis=1).astype(np.float32)


def _chromatin(rng: np.random.Generator, n: int, hematoxylin: float, rim: tuple[float, float],
               interior: tuple[float, float], granularity: tuple[float, float]) -> np.ndarray:
    """(n, 3) chromatin of non-tumour nuclei: rim H density (times ``hematoxylin``), interior/rim
    ratio and granularity, each uniform in its range."""
    return np.stack([hematoxylin * rng.uniform(*rim, n), rng.uniform(*interior, n),
                     rng.uniform(*granularity, n)], axis=1).astype(np.float32)


def tumour_cells(rng: np.random.Generator, yx: np.ndarray, traits: CoreTraits,
                 cell_radius: float | np.ndarray, theta: np.ndarray | None = None,
                 columnar: float = 1.0) -> CellTable:
    """Tumour cells with nuclei at ``yx`` (N, 2).

    ``cell_radius``: mean body semi-axis (px, half the lattice spacing or a bit more so bodies meet),
    one for all or one per cell (crowded cells have less cytoplasm).
    ``theta``: cell orientations (random when None); ``columnar`` >= 1 stretches cells and nuclei
    along ``theta`` (gland epithelium), with the nucleus moved to the basal end (towards -theta).
    """
    n = len(yx)
    t = empty_table(n, yx, Subtype.TUMOUR)
    if n == 0:
        return t
    p = traits.pleomorphism
    diameter = traits.tumour_nucleus * np.exp(rng.normal(0.0, p, n)).clip(0.65, 1.7)
    aspect = 1.0 + np.abs(rng.normal(0.0, 0.12 + p, n)).clip(0, 0.8)
    aspect = aspect * columnar**0.35
    t.nucleus_axes[:] = _axes(diameter, aspect)
    t.theta[:] = rng.uniform(-np.pi, np.pi, n) if theta is None else theta
    t.harmonics[:] = _harmonics(rng, n, 0.25 * p + 0.01)
    c = np.float32(columnar)
    r = cell_radius * rng.uniform(0.95, 1.12, n)
    t.cell_axes[:] = np.stack([r * np.sqrt(c), r / np.sqrt(c)], axis=1)
    if columnar > 1.0:  # basal nucleus: body centre lies towards the lumen (direction +theta)
        shift = 0.3 * (t.cell_axes[:, 0] - t.nucleus_axes[:, 0]).clip(0)
        t.body_offset[:] = np.stack([np.cos(t.theta) * shift, np.sin(t.theta) * shift], axis=1)
    h = traits.hematoxylin
    t.chromatin[:, 0] = h * rng.uniform(0.32, 0.48, n)
    t.chromatin[:, 1] = (traits.vesicularity + rng.normal(0, 0.06, n)).clip(0.2, 0.9)
    t.chromatin[:, 2] = rng.uniform(0.35, 0.6, n)
    for m in range(2):
        has = rng.random(n) < traits.nucleolus_rate * (1.0 if m == 0 else 0.35)
        ang = rng.uniform(-np.pi, np.pi, n)
        dist = rng.uniform(0.0, 0.45, n)
        t.nucleoli[:, 3 * m] = dist * np.cos(ang)
        t.nucleoli[:, 3 * m + 1] = dist * np.sin(ang)
        t.nucleoli[:, 3 * m + 2] = np.where(has, rng.uniform(0.45, 0.9, n) * traits.um, 0.0)
    t.cytoplasm[:, 0] = traits.tumour_cytoplasm * rng.uniform(0.8, 1.2, n) * h
    t.cytoplasm[:, 1] = 0.5
    return t


def lymphocytes(rng: np.random.Generator, yx: np.ndarray, traits: CoreTraits) -> CellTable:
    """Small lymphocytes: round, dense, homogeneous nuclei with a thin rim of cytoplasm."""
    n = len(yx)
    t = empty_table(n, yx, Subtype.LYMPHOCYTE)
    if n == 0:
        return t
    diameter = traits.lymphocyte_nucleus * np.exp(rng.normal(0.0, 0.08, n))
    t.nucleus_axes[:] = _axes(diameter, 1.0 + np.abs(rng.normal(0, 0.07, n)))
    t.theta[:] = rng.uniform(-np.pi, np.pi, n)
    t.harmonics[:] = _harmonics(rng, n, 0.02)
    r = diameter / 2 + traits.um * rng.uniform(0.6, 1.2, n)
    t.cell_axes[:] = np.stack([r, r], axis=1)
    t.chromatin[:] = _chromatin(rng, n, traits.hematoxylin, (0.55, 0.75), (0.8, 0.95), (0.15, 0.3))
    t.cytoplasm[:, 0] = 0.04 * traits.hematoxylin
    return t


def fibroblasts(rng: np.random.Generator, yx: np.ndarray, theta: np.ndarray,
                traits: CoreTraits) -> CellTable:
    """Spindle fibroblasts oriented along ``theta`` (N,): long thin nuclei, little cytoplasm."""
    n = len(yx)
    t = empty_table(n, yx, Subtype.FIBROBLAST)
    if n == 0:
        return t
    um = traits.um
    length = um * rng.uniform(11.0, 19.0, n)
    width = um * rng.uniform(2.4, 3.8, n)
    t.nucleus_axes[:] = np.stack([length / 2, width / 2], axis=1)
    t.theta[:] = theta
    t.harmonics[:] = _harmonics(rng, n, 0.03)
    t.cell_axes[:] = np.stack([length / 2 + um * rng.uniform(2, 5, n), width / 2 + um * 0.8], axis=1)
    t.chromatin[:] = _chromatin(rng, n, traits.hematoxylin, (0.4, 0.58), (0.65, 0.85), (0.15, 0.3))
    t.cytoplasm[:, 0] = 0.03 * traits.hematoxylin
    return t


def macrophages(rng: np.random.Generator, yx: np.ndarray, traits: CoreTraits) -> CellTable:
    """Macrophages: oval or bean-shaped eccentric nuclei in large, granular, pale cytoplasm."""
    n = len(yx)
    t = empty_table(n, yx, Subtype.MACROPHAGE)
    if n == 0:
        return t
    um = traits.um
    diameter = um * rng.uniform(6.5, 9.5, n)
    t.nucleus_axes[:] = _axes(diameter, rng.uniform(1.1, 1.6, n))
    t.theta[:] = rng.uniform(-np.pi, np.pi, n)
    t.harmonics[:] = _harmonics(rng, n, 0.07)
    r = um * rng.uniform(8.5, 13.0, n)
    t.cell_axes[:] = np.stack([r * rng.uniform(1.0, 1.25, n), r], axis=1)
    ang = rng.uniform(-np.pi, np.pi, n)
    shift = r * rng.uniform(0.15, 0.35, n)
    t.body_offset[:] = np.stack([np.cos(ang) * shift, np.sin(ang) * shift], axis=1)
    t.chromatin[:] = _chromatin(rng, n, traits.hematoxylin, (0.32, 0.46), (0.55, 0.75), (0.2, 0.35))
    small = rng.random(n) < 0.3
    t.nucleoli[:, 2] = np.where(small, um * 0.4, 0.0)
    t.cytoplasm[:, 0] = traits.hematoxylin * rng.uniform(0.05, 0.09, n)
    t.cytoplasm[:, 1] = rng.uniform(0.5, 0.9, n)
    return t


# ------------------------------------------------------------------------------------ staining
def set_membrane_stain(rng: np.random.Generator, t: CellTable, index: np.ndarray, level: np.ndarray,
                       complete_fraction: float, cytoplasm_share: float) -> None:
    """Give cells ``index`` a DAB membrane of OD ``level`` (one per cell), complete or partial.

    Partial rings cover 30-85 % of the outline at a random angle. ``cytoplasm_share`` of the
    membrane OD also tints the cytoplasm (the faint blush that membranous stains show).
    """
    n = len(index)
    if n == 0:
        return
    t.stained[index] = True
    t.dab[index, 0] = level
    t.dab[index, 1] = level * cytoplasm_share * rng.uniform(0.5, 1.0, n)
    complete = rng.random(n) < complete_fraction
    centre = rng.uniform(-np.pi, np.pi, n)
    half = np.pi * rng.uniform(0.3, 0.85, n)
    t.ring[index, 0] = np.cos(centre)
    t.ring[index, 1] = np.sin(centre)
    t.ring[index, 2] = np.where(complete, COMPLETE_RING, np.cos(half))


def set_cytoplasm_stain(t: CellTable, index: np.ndarray, level: np.ndarray) -> None:
    """Give cells ``index`` granular cytoplasmic DAB of OD ``level`` (positive macrophages)."""
    t.stained[index] = True
    t.dab[index, 1] = level
    t.dab[index, 0] = np.maximum(t.dab[index, 0], 0.6 * level)


def set_diffuse_cytoplasm_stain(t: CellTable, index: np.ndarray, level: np.ndarray) -> None:
    """Give cells ``index`` diffuse cytoplasmic DAB of OD ``level`` and no membrane: brown negative
    tumour cells, which carry DAB but not the membranous pattern that makes a cell positive."""
    t.stained[index] = True
    t.dab[index, 1] = level


def set_nucleus_stain(t: CellTable, index: np.ndarray, level: np.ndarray) -> None:
    """Give cells ``index`` nuclear DAB of OD ``level`` (Ki-67-like markers)."""
    t.stained[index] = True
    t.dab[index, 2] = level
