"""The layout of one synthetic core: outline, tumour architecture, every cell and its stain.

A layout is drawn once, as compact arrays (:class:`CoreLayout`), before any pixel exists; rendering
(:mod:`maskllp.synth.render`) turns any window of it into pixels. The steps:

1. a roughly round core with a wobbly outline on glass;
2. a tumour compartment: nests or sheets (a thresholded smooth random field, threshold set so the
   tumour takes the drawn share of the tissue) or glands (rings of columnar cells round a lumen);
3. tumour cells on a jittered hexagonal lattice filling the compartment (cohesive, touching), denser
   in crowded patches where nuclei lie closer than their diameter and partly overlap (crowded
   glands: narrow cells with nuclei at staggered heights); some sites taken by infiltrating
   lymphocytes and macrophages;
4. stroma cells on a finer jittered lattice outside it: scattered lymphocytes, fibroblasts aligned
   with the stroma (wrapping round nests), a few macrophages; lymphoid aggregates on a lattice
   tighter than a lymphocyte's diameter (touching, overlapping nuclei);
5. nuclei fitted (crowded tumour nuclei squeezed to overlap at most ``CROWDED_OVERLAP``, the others
   to keep a gap) and clashing ones removed (tumour cells win), so every cell in the truth is
   visible with its centre inside its own nucleus;
6. stains: exactly ``round(tps * n_tumour)`` positive tumour cells, chosen with spatial clustering,
   some weak, rings complete or partial; PD-L1-positive macrophages and lymphocytes as confounders;
   brown negative tumour cells (diffuse cytoplasmic DAB, no membrane) in some cores; brown
   non-specific background in some cores; pale nuclei, and less hematoxylin under strong DAB;
7. out-of-focus regions: a smooth random field whose threshold gives the drawn share of the core.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from scipy.spatial import cKDTree

from maskllp.classes import CellClass
from maskllp.config.synth import ARCHITECTURES, SynthConfig
from maskllp.synth import cells as C
from maskllp.synth.noise import fractal_noise_points, sub_seed
from maskllp.synth.stains import Optics, jitter_vector

Rng = np.random.Generator

# Tags of the random fields of a core (sub-seeds of its noise seed).
(FIELD_TUMOUR, FIELD_POSITIVE, FIELD_AGGREGATE, FIELD_LOOSE, FIELD_CROWD, FIELD_BROWN,
 FIELD_DEFOCUS) = range(1, 8)

CROWDED_OVERLAP = 0.35
"""Largest overlap of two crowded tumour nuclei, as a share of their summed radii along the line
between them; larger nuclei are squeezed to fit."""
AGGREGATE_OVERLAP = 0.25
"""Largest overlap of two lymphocyte nuclei in an aggregate (squeezed by at most 20 % to fit; a pair
overlapping more still loses one)."""
CENTRE_CLEARANCE = 0.8
"""A packed nucleus reaches at most this share of the way to a neighbour's centre, so every nucleus
centre lies in its own nucleus alone and the truth position stays visible."""
PALE_HEMATOXYLIN = (0.35, 0.65)
"""Hematoxylin of a pale nucleus, as a share of what it would have."""
MASKING_FULL_DAB = 0.8
"""DAB OD at which the counterstain loss under DAB (``stain.dab_hematoxylin_masking``) is full."""
DEFOCUS_RAMP = 0.2
"""Width, in units of the [0, 1) defocus field, of the passage from in focus to fully out of focus."""


@dataclass(frozen=True)
class CoreGeometry:
    """A roughly round core: centre (y, x) px, mean radius px, outline harmonics (K, 2)."""

    centre: np.ndarray
    radius: float
    harmonics: np.ndarray
    """(K, 2) float64 a_k, b_k for k = 2..K+1: R(phi) = radius * (1 + sum a_k cos k phi + b_k sin k phi)."""

    def depth_at(self, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
        """How far inside the outline points at offset (dy, dx) from the centre lie, px (< 0: outside).

        Exact within 4 px of the outline; elsewhere only the sign and a lower bound on the size.
        """
        r = np.hypot(dy, dx)
        wobble = self.radius * float(np.abs(self.harmonics).sum())
        depth = np.where(r < self.radius, self.radius - wobble - r, self.radius + wobble - r)
        near = np.abs(depth) < wobble + 4.0
        if near.any():
            rn = r[near]
            c1 = np.broadcast_to(dy, r.shape)[near] / np.maximum(rn, 1e-12)
            s1 = np.broadcast_to(dx, r.shape)[near] / np.maximum(rn, 1e-12)
            ck, sk = c1, s1
            outline = np.ones_like(rn)
            for a, b in self.harmonics:  # k = 2, 3, ...: angle-addition recurrence
                ck, sk = ck * c1 - sk * s1, sk * c1 + ck * s1
                outline = outline + a * ck + b * sk
            depth[near] = self.radius * outline - rn
        return depth

    def depth(self, yx: np.ndarray) -> np.ndarray:
        """(N,) float64: how far inside the outline each point (N, 2) lies, in px (< 0: outside)."""
        return self.depth_at(yx[:, 0] - self.centre[0], yx[:, 1] - self.centre[1])

    @property
    def min_radius(self) -> float:
        return self.radius * (1.0 - float(np.abs(self.harmonics).sum()))


@dataclass(frozen=True)
class Glands:
    """Gland outlines (G of them): ellipses with a lumen."""

    centre: np.ndarray
    """(G, 2) float64."""
    axes: np.ndarray
    """(G, 2) float64 outer semi-axes (px)."""
    angle: np.ndarray
    """(G,) float64 orientation of the first axis."""
    lumen: np.ndarray
    """(G,) float64 lumen size as a share of the outer axes."""

    @staticmethod
    def none() -> Glands:
        return Glands(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0), np.zeros(0))

    def __len__(self) -> int:
        return len(self.centre)

    def scaled_distance(self, yx: np.ndarray, index: np.ndarray) -> np.ndarray:
        """Elliptic distance (1 = outer outline) of points yx (N, 2) from glands ``index`` (N,)."""
        d = yx - self.centre[index]
        c, s = np.cos(self.angle[index]), np.sin(self.angle[index])
        u = d[:, 0] * c + d[:, 1] * s
        v = -d[:, 0] * s + d[:, 1] * c
        return np.hypot(u / self.axes[index, 0], v / self.axes[index, 1])


@dataclass(frozen=True)
class StromaLook:
    """How the stroma and background look (per core)."""

    ecm: float
    """H OD of the extracellular matrix at full density."""
    fibre_angle: float
    fibre_scale: float
    """Fibre length scale in px."""
    loose_scale: float
    """Scale (px) of the loose / dense stroma field."""
    nonspecific: float
    """DAB OD of non-specific background (0 in most cores)."""
    lumen_secretion: float
    """H OD of pale material in gland lumens."""


@dataclass
class CoreLayout:
    """Everything about one core except its pixels."""

    size: int
    mpp: float
    marker: str
    seed: int
    """Seed of the pixel-level random fields (uint32 range)."""
    geometry: CoreGeometry
    architecture: str
    """``nests``, ``sheets``, ``glands`` or ``none`` (tumour-free)."""
    glands: Glands
    cells: C.CellTable
    optics: Optics
    stroma: StromaLook
    tps_target: float | None

    @property
    def shape(self) -> tuple[int, int]:
        return (self.size, self.size)



@dataclass(frozen=True)
class PatientStain:
    """A patient's tendency: stain vectors and concentration multipliers shared by their cores."""

    hematoxylin: np.ndarray
    dab: np.ndarray
    h_scale: float
    dab_scale: float


def draw_patient_stain(rng: np.random.Generator, cfg: SynthConfig) -> PatientStain:
    s = cfg.stain
    return PatientStain(
        hematoxylin=jitter_vector(rng, np.asarray(s.hematoxylin_vector, float), s.vector_jitter),
        dab=jitter_vector(rng, np.asarray(s.dab_vector, float), s.vector_jitter),
        h_scale=float(rng.uniform(*s.hematoxylin_scale)),
        dab_scale=float(rng.uniform(*s.dab_scale)),
    )


# ----------------------------------------------------------------------------------- drawing
def _uniform(rng: np.random.Generator, lohi: tuple[float, float]) -> float:
    return float(rng.uniform(lohi[0], lohi[1]))


def _draw_geometry(rng: np.random.Generator, size: int) -> CoreGeometry:
    k = np.arange(2, 7)
    amp = rng.normal(0.0, 0.035, (len(k), 2)) / k[:, None]
    radius = size / 2 * rng.uniform(0.8, 0.9)
    room = size / 2 - radius * (1 + np.abs(amp).sum())
    centre = size / 2 - 0.5 + rng.uniform(-0.5, 0.5, 2) * max(room, 0.0)
    return CoreGeometry(centre=centre, radius=float(radius), harmonics=amp)


def _draw_traits(rng: np.random.Generator, cfg: SynthConfig, patient: PatientStain) -> C.CoreTraits:
    t = cfg.tissue
    um = 1.0 / cfg.mpp
    return C.CoreTraits(
        um=um,
        tumour_nucleus=_uniform(rng, t.tumour_nucleus_um) * um,
        pleomorphism=_uniform(rng, t.pleomorphism),
        lymphocyte_nucleus=_uniform(rng, t.lymphocyte_nucleus_um) * um,
        hematoxylin=patient.h_scale * float(rng.uniform(0.9, 1.1)),
        vesicularity=float(rng.uniform(0.3, 0.6)),
        nucleolus_rate=float(rng.uniform(0.2, 0.9)),
        tumour_cytoplasm=float(rng.uniform(0.02, 0.06)),
    )


def _draw_optics(rng: np.random.Generator, cfg: SynthConfig, patient: PatientStain) -> Optics:
    s = cfg.stain
    white = np.clip(rng.uniform(0.9, 0.98) * (1 + rng.normal(0, 0.006, 3)), 0.8, 1.0)
    return Optics(
        hematoxylin=jitter_vector(rng, patient.hematoxylin, s.vector_jitter / 2),
        dab=jitter_vector(rng, patient.dab, s.vector_jitter / 2),
        glass_od=np.clip(rng.uniform(0.005, 0.03) + rng.normal(0, 0.002, 3), 0.0, None),
        white=white,
        illumination=float(rng.uniform(0.0, s.illumination)),
        blur_px=_uniform(rng, s.blur_px),
        noise=_uniform(rng, s.noise),
    )


def _hex_lattice(rng: np.random.Generator, size: int, spacing: float, jitter: float) -> np.ndarray:
    """Jittered hexagonal lattice covering the image, random rotation and offset: (M, 2) float64."""
    half = size * 0.75 + spacing
    rows = np.arange(-half, half, spacing * np.sqrt(3) / 2)
    cols = np.arange(-half, half, spacing)
    gy, gx = np.meshgrid(rows, cols, indexing="ij")
    gx = gx + (np.arange(len(rows)) % 2)[:, None] * spacing / 2
    pts = np.stack([gy.ravel(), gx.ravel()], axis=1)
    a = rng.uniform(0, np.pi)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    pts = pts @ rot.T + size / 2 + rng.uniform(0, spacing, 2)
    pts = pts + rng.normal(0.0, jitter, pts.shape)
    keep = (pts >= 0).all(axis=1) & (pts <= size - 1).all(axis=1)
    return pts[keep]


def _quantile_threshold(values: np.ndarray, share: float) -> float:
    """The value that ``share`` of ``values`` exceed."""
    return float(np.quantile(values, 1.0 - share)) if len(values) else 1.0


@dataclass(frozen=True)
class _TumourSites:
    yx: np.ndarray
    theta: np.ndarray | None
    columnar: float
    cell_radius: float
    """Body semi-axis (px) of the cells of the regular lattice (the largest)."""
    in_compartment: Callable[[np.ndarray], np.ndarray]
    """(N, 2) points -> (N,) bool: inside the tumour compartment (for keeping stroma out)."""
    crowded: np.ndarray
    """(N,) bool: the site lies in a crowded patch (its nucleus may overlap crowded neighbours)."""
    radius: np.ndarray
    """(N,) float64 body semi-axis (px) of each site's cell (smaller where crowded)."""

    @staticmethod
    def none() -> _TumourSites:
        return _TumourSites(np.zeros((0, 2)), None, 1.0, 0.0, lambda yx: np.zeros(len(yx), bool),
                            np.zeros(0, bool), np.zeros(0))


def _crowded_area(cell_share: float, density_ratio: float) -> float:
    """Share of a compartment to crowd so that ``cell_share`` of its cells are crowded, when crowded
    parts hold ``density_ratio`` times as many cells per area (or per gland)."""
    return cell_share / (cell_share + (1.0 - cell_share) * density_ratio) if cell_share > 0 else 0.0


def _crowd(rng: Rng, cfg: SynthConfig, traits: C.CoreTraits, lattice: np.ndarray, spacing: float,
           usable: Callable[[np.ndarray], np.ndarray], seed: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crowded patches: where a smooth field is high, the regular lattice (spacing ``spacing``) gives
    way to a denser one (``tissue.crowded_spacing`` nuclear diameters), so the drawn share
    (``tissue.crowding``) of the tumour cells are crowded. ``usable(points)``: inside the core and the
    compartment. Returns sites (N, 2), crowded (N,) bool and body radius (N,) px."""
    t = cfg.tissue
    share = _uniform(rng, t.crowding)
    dense_spacing = traits.tumour_nucleus * _uniform(rng, t.crowded_spacing)
    scale = traits.um * rng.uniform(25, 60)
    regular_radius = np.full(len(lattice), 0.72 * spacing)
    if share <= 0 or len(lattice) == 0:
        return lattice, np.zeros(len(lattice), bool), regular_radius
    cseed = sub_seed(seed, FIELD_CROWD)
    field = fractal_noise_points(cseed, lattice, scale)
    all_dense = _hex_lattice(rng, cfg.size, dense_spacing, 0.15 * dense_spacing)
    all_dense = all_dense[usable(all_dense)]
    dense_field = fractal_noise_points(cseed, all_dense, scale)

    def split(area: float) -> tuple[np.ndarray, np.ndarray]:
        thr = _quantile_threshold(field, area)
        regular, dense = lattice[field <= thr], all_dense[dense_field > thr]
        if len(regular) and len(dense):  # where the two lattices meet, the regular one keeps its room
            dist, _ = cKDTree(regular).query(dense, k=1)
            dense = dense[dist > 0.5 * (spacing + dense_spacing)]
        return regular, dense

    # the rims of patches lose sites, so find the crowded area that gives the share by bisection
    lo, hi = 0.0, 1.0
    area = _crowded_area(share, (spacing / dense_spacing) ** 2)
    for _ in range(12):
        regular, dense = split(area)
        got = len(dense) / max(len(regular) + len(dense), 1)
        if abs(got - share) < 0.01:
            break
        lo, hi = (area, hi) if got < share else (lo, area)
        area = 0.5 * (lo + hi)
    yx = np.concatenate([regular, dense])
    crowded = np.arange(len(yx)) >= len(regular)
    # crowded cells have little cytoplasm: bodies reach just past their nuclei
    radius = np.where(crowded, 0.62 * dense_spacing, 0.72 * spacing)
    return yx, crowded, radius


def _nest_sites(rng: Rng, cfg: SynthConfig, geo: CoreGeometry, traits: C.CoreTraits, arch: str,
                seed: int) -> tuple[_TumourSites, Glands]:
    """Nests or sheets: lattice sites where a smooth random field exceeds its share quantile."""
    um = traits.um
    share = _uniform(rng, cfg.tissue.tumour_area)
    scale = um * (rng.uniform(70, 130) if arch == "nests" else rng.uniform(180, 320))
    fseed = sub_seed(seed, FIELD_TUMOUR)
    probe = _hex_lattice(rng, cfg.size, max(cfg.size / 80, 2.0), 0.0)
    probe = probe[geo.depth(probe) > 0]
    thr = _quantile_threshold(fractal_noise_points(fseed, probe, scale), share)
    spacing = traits.tumour_nucleus * rng.uniform(1.3, 1.65)
    lattice = _hex_lattice(rng, cfg.size, spacing, 0.1 * spacing)

    def usable(yx: np.ndarray) -> np.ndarray:
        ok = geo.depth(yx) > 0.7 * spacing
        ok[ok] = fractal_noise_points(fseed, yx[ok], scale) > thr
        return ok

    yx, crowded, radius = _crowd(rng, cfg, traits, lattice[usable(lattice)], spacing, usable, seed)

    def in_compartment(yx: np.ndarray) -> np.ndarray:
        return fractal_noise_points(fseed, yx, scale) > thr - 0.01

    return _TumourSites(yx, None, 1.0, 0.72 * spacing, in_compartment, crowded, radius), Glands.none()


def _gland_sites(rng: Rng, cfg: SynthConfig, geo: CoreGeometry, traits: C.CoreTraits
                 ) -> tuple[_TumourSites, Glands]:
    """Glands: oval rings of columnar cells (one or two layers) round a lumen."""
    um = traits.um
    d = traits.tumour_nucleus
    height = d * rng.uniform(2.0, 2.8)  # columnar epithelium: tall, narrow cells
    width = d * rng.uniform(0.7, 0.9)
    r_mean = min(um * rng.uniform(50, 130), 0.35 * geo.min_radius)
    r_mean = max(r_mean, 1.6 * height)
    spacing = r_mean * rng.uniform(2.3, 2.9)
    gap = 6 * um
    centres = _hex_lattice(rng, cfg.size, spacing, 0.0)
    centres = centres + rng.uniform(-0.08, 0.08, centres.shape) * spacing
    radius = np.minimum(r_mean * rng.uniform(0.7, 1.3, len(centres)), 0.387 * spacing - gap / 2)
    radius = np.maximum(radius, 1.3 * height)
    ecc = rng.uniform(0.0, 0.45, len(centres))  # tubes cut at an angle: oval profiles
    dist = np.hypot(*(centres - geo.centre).T)
    fits = dist + radius * (1 + ecc) < geo.min_radius - 2 * um
    share = _uniform(rng, cfg.tissue.tumour_area)
    density = np.pi * r_mean**2 / (np.sqrt(3) / 2 * spacing**2)
    keep = fits & (rng.random(len(centres)) < min(1.0, share / density))
    if not keep.any() and fits.any():  # a small core still gets the gland nearest its centre
        keep[np.flatnonzero(fits)[np.argmin(dist[fits])]] = True
    centres, radius, ecc = centres[keep], radius[keep], ecc[keep]
    angle = rng.uniform(0, np.pi, len(centres))
    layers = np.where(rng.random(len(centres)) < rng.uniform(0.0, 0.4), 2, 1)
    layers = np.minimum(layers, np.maximum(1, (radius / height - 0.3).astype(int)))
    lumen = np.clip((radius - layers * height) / radius, 0.08, None)
    glands = Glands(centres, np.stack([radius * (1 + ecc), radius * (1 - ecc)], 1), angle, lumen)
    # Crowded glands (pseudostratified): cells narrower than their nuclei, nuclei at staggered
    # heights, so neighbours overlap; whole glands are chosen so the drawn share of cells is crowded.
    t_cfg = cfg.tissue
    crowd_share = _uniform(rng, t_cfg.crowding)
    crowd_width = width * 0.7 * _uniform(rng, t_cfg.crowded_spacing)
    crowded_gland = rng.random(len(centres)) < _crowded_area(crowd_share, width / crowd_width)

    yx_parts, theta_parts, crowded_parts = [], [], []
    for g in range(len(centres)):
        w = crowd_width if crowded_gland[g] else width
        for layer in range(layers[g]):
            scale = 1.0 - (layer + 0.5) * height / radius[g]
            if scale <= 0.05:
                continue
            n = max(5, int(round(2 * np.pi * radius[g] * scale / w)))
            t = 2 * np.pi * (np.arange(n) + rng.uniform()) / n + rng.normal(0, 0.06 * 2 * np.pi / n, n)
            a, b = glands.axes[g] * scale
            u, v = a * np.cos(t), b * np.sin(t)
            c, s = np.cos(angle[g]), np.sin(angle[g])
            pts = centres[g] + np.stack([u * c - v * s, u * s + v * c], axis=1)
            inward = centres[g] - pts
            if crowded_gland[g]:  # staggered heights: alternate up and down, with some scatter
                stagger = (np.where(np.arange(n) % 2, 0.15, -0.15) + rng.normal(0, 0.05, n)) * height
                pts = pts + inward / np.hypot(*inward.T)[:, None] * stagger[:, None]
                inward = centres[g] - pts
            yx_parts.append(pts)
            theta_parts.append(np.arctan2(inward[:, 1], inward[:, 0]))
            crowded_parts.append(np.full(n, bool(crowded_gland[g])))
    yx = np.concatenate(yx_parts) if yx_parts else np.zeros((0, 2))
    theta = np.concatenate(theta_parts) if theta_parts else np.zeros(0)
    crowded = np.concatenate(crowded_parts) if crowded_parts else np.zeros(0, bool)
    tree = cKDTree(centres) if len(centres) else None

    def in_compartment(pts: np.ndarray) -> np.ndarray:
        if tree is None or len(pts) == 0:
            return np.zeros(len(pts), bool)
        _, idx = tree.query(pts, k=1)
        return glands.scaled_distance(pts, idx) < 1.0 + gap / (2 * radius[idx])

    cell_radius = 0.65 * np.sqrt(height * width)
    radius = np.where(crowded, 0.65 * np.sqrt(height * crowd_width), cell_radius)
    sites = _TumourSites(yx, theta.astype(np.float32), height / width, cell_radius, in_compartment,
                         crowded, radius)
    return sites, glands


def _fibre_theta(rng: Rng, yx: np.ndarray, tumour_yx: np.ndarray, base_angle: float, um: float) -> np.ndarray:
    """Fibroblast orientation: tangent to the nearest tumour cell within 40 um, else the stroma's."""
    theta = base_angle + rng.normal(0.0, 0.35, len(yx))
    if len(tumour_yx) and len(yx):
        dist, idx = cKDTree(tumour_yx).query(yx, k=1)
        near = dist < 40 * um
        to = tumour_yx[idx[near]] - yx[near]
        theta[near] = np.arctan2(to[:, 1], to[:, 0]) + np.pi / 2 + rng.normal(0, 0.2, near.sum())
    return theta.astype(np.float32)


def _stroma_cells(rng: Rng, cfg: SynthConfig, geo: CoreGeometry, traits: C.CoreTraits, sites: _TumourSites,
                  seed: int, stroma: StromaLook) -> list[C.CellTable]:
    """Lymphocytes, fibroblasts and macrophages on a fine jittered lattice outside the tumour;
    lymphoid aggregates on a lattice tighter than a lymphocyte's diameter (touching nuclei)."""
    t = cfg.tissue
    um = traits.um
    spacing = max(traits.lymphocyte_nucleus + 2.2 * um, 3.0)

    def usable(yx: np.ndarray) -> np.ndarray:
        ok = geo.depth(yx) > 0.6 * spacing
        if len(sites.yx) and ok.any():
            dist, _ = cKDTree(sites.yx).query(yx[ok], k=1)
            ok[ok] = dist > sites.cell_radius + spacing * 0.6
        ok[ok] = ~sites.in_compartment(yx[ok])
        return ok

    pts = _hex_lattice(rng, cfg.size, spacing, 0.12 * spacing)
    pts = pts[usable(pts)]
    if len(pts) == 0:
        return []
    cellularity = _uniform(rng, t.stroma_cellularity)
    loose = fractal_noise_points(sub_seed(seed, FIELD_LOOSE), pts, stroma.loose_scale)
    density = np.clip((loose - 0.25) * 2.0, 0.15, 1.0)
    agg_seed = sub_seed(seed, FIELD_AGGREGATE)
    agg_field = fractal_noise_points(agg_seed, pts, 60 * um)
    agg_share = _uniform(rng, t.lymphoid_aggregates)
    agg_thr = _quantile_threshold(agg_field, agg_share) if agg_share > 0 else np.inf
    pts = pts[agg_field <= agg_thr]  # aggregates get their own, tighter lattice below
    density = density[agg_field <= agg_thr]
    p_lymph = rng.uniform(0.03, 0.08) * cellularity * density
    p_fib = 0.16 * cellularity * density
    p_mac = np.full(len(pts), 0.008 * cellularity)
    u = rng.random(len(pts))
    is_lymph = u < p_lymph
    is_fib = (u >= p_lymph) & (u < p_lymph + p_fib)
    is_mac = (u >= p_lymph + p_fib) & (u < p_lymph + p_fib + p_mac)
    fib_yx = pts[is_fib]
    tables = [
        C.lymphocytes(rng, pts[is_lymph], traits),
        C.fibroblasts(rng, fib_yx, _fibre_theta(rng, fib_yx, sites.yx, stroma.fibre_angle, um), traits),
        C.macrophages(rng, pts[is_mac], traits),
    ]
    if agg_share > 0:
        agg_spacing = traits.lymphocyte_nucleus * _uniform(rng, t.aggregate_spacing)
        dense = _hex_lattice(rng, cfg.size, agg_spacing, 0.08 * agg_spacing)
        dense = dense[usable(dense)]
        dense = dense[fractal_noise_points(agg_seed, dense, 60 * um) > agg_thr]
        occupied = pts[is_lymph | is_fib | is_mac]
        if len(occupied) and len(dense):  # where aggregate meets stroma, stroma cells keep their room
            dist, _ = cKDTree(occupied).query(dense, k=1)
            dense = dense[dist > 0.5 * (spacing + agg_spacing)]
        u = rng.random(len(dense))
        aggregate = C.lymphocytes(rng, dense[u < 0.93], traits)
        aggregate.packing[:] = AGGREGATE_OVERLAP
        fit_nuclei(aggregate, gap=0.0, min_scale=0.8)  # lymphocytes vary little in size
        tables += [aggregate, C.macrophages(rng, dense[(u >= 0.93) & (u < 0.945)], traits)]
    return tables


def _polar_radius(cells: C.CellTable, index: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Nucleus radius (px) of cells ``index`` towards ``direction`` angles, with outline margin."""
    a, b = cells.nucleus_axes[index, 0], cells.nucleus_axes[index, 1]
    psi = direction - cells.theta[index]
    r = a * b / np.sqrt((b * np.cos(psi)) ** 2 + (a * np.sin(psi)) ** 2)
    return r * (1.0 + np.abs(cells.harmonics[index]).sum(axis=1))


_PRIORITY = {C.Subtype.TUMOUR: 3, C.Subtype.MACROPHAGE: 2, C.Subtype.FIBROBLAST: 1,
             C.Subtype.LYMPHOCYTE: 0}


def _allowed_overlap(cells: C.CellTable, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Largest overlap of the nuclei of pairs (i, j): both must pack (``CellTable.packing``)."""
    return np.minimum(cells.packing[i], cells.packing[j])


def remove_overlaps(rng: np.random.Generator, cells: C.CellTable, gap: float) -> C.CellTable:
    """Drop cells whose nucleus would touch another's (``gap`` px apart at least), or, for two cells
    that pack (crowded tumour cells, aggregated lymphocytes), overlap it by more than their
    ``packing`` or reach past ``CENTRE_CLEARANCE`` of the way to its centre.

    Of each clashing pair the lower-priority cell goes (tumour > macrophage > fibroblast >
    lymphocyte, random within a type), so no clash remains and every kept nucleus is drawn with its
    centre inside it alone.
    """
    if len(cells) < 2:
        return cells
    longest = cells.nucleus_axes.max(axis=1) * (1.0 + np.abs(cells.harmonics).sum(axis=1))
    reach = 2 * float(longest.max()) + gap
    pairs = cKDTree(cells.yx).query_pairs(reach, output_type="ndarray")
    if len(pairs) == 0:
        return cells
    i, j = pairs[:, 0], pairs[:, 1]
    d = cells.yx[j] - cells.yx[i]
    direction = np.arctan2(d[:, 1], d[:, 0])
    dist = np.hypot(d[:, 0], d[:, 1])
    ri, rj = _polar_radius(cells, i, direction), _polar_radius(cells, j, direction + np.pi)
    allowed = _allowed_overlap(cells, i, j)
    clash = np.where(allowed > 0,
                     (dist < (ri + rj) * (1 - allowed)) | (np.maximum(ri, rj) > CENTRE_CLEARANCE * dist),
                     dist < ri + rj + gap)
    prio = np.array([_PRIORITY[C.Subtype(s)] for s in range(4)])[cells.subtype] + rng.random(len(cells))
    i, j = i[clash], j[clash]
    loser = np.where(prio[i] < prio[j], i, j)
    keep = np.ones(len(cells), bool)
    keep[loser] = False
    return cells.take(keep)


def fit_nuclei(cells: C.CellTable, gap: float, min_scale: float = 0.0) -> None:
    """Shrink nuclei that would touch a neighbour's (in place), keeping ``gap`` px between; packed
    ones (``packing`` > 0: crowded tumour cells, aggregated lymphocytes) may overlap a packed
    neighbour by up to their packing, but reach at most ``CENTRE_CLEARANCE`` of the way to its centre.
    No nucleus shrinks below ``min_scale`` of its size (a clash left is resolved by
    :func:`remove_overlaps`).

    A cohesive sheet keeps all its cells; a large nucleus is squeezed rather than the cell dropped.
    Radii are measured along the line to each of the nearest neighbours (columnar nuclei in a gland
    are long across the ring, not along it).
    """
    n = len(cells)
    if n < 2:
        return
    k = min(7, n)
    dist, nb = cKDTree(cells.yx).query(cells.yx, k=k)
    me = np.repeat(np.arange(n), k - 1)
    other = nb[:, 1:].ravel()
    dist = dist[:, 1:].ravel()
    d = cells.yx[other] - cells.yx[me]
    direction = np.arctan2(d[:, 1], d[:, 0])
    mine = _polar_radius(cells, me, direction)
    need = mine + _polar_radius(cells, other, direction + np.pi)
    allowed = _allowed_overlap(cells, me, other)
    room = np.where(allowed > 0, 0.995 * dist / (1 - allowed), np.maximum(dist - gap, 0.0))
    scale = np.minimum(1.0, room / need)
    scale = np.where(allowed > 0, np.minimum(scale, CENTRE_CLEARANCE * 0.98 * dist / mine), scale)
    scale = np.maximum(scale.reshape(n, k - 1).min(axis=1), min_scale)
    cells.nucleus_axes[:] *= scale.astype(np.float32)[:, None]


def _infiltrate(rng: Rng, n_sites: int, share: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split tumour sites into (tumour, lymphocyte, macrophage) masks: (n_sites,) bool each."""
    immune = rng.random(n_sites) < share
    mac = immune & (rng.random(n_sites) < 0.2)
    return ~immune, immune & ~mac, mac


def _assign_tumour_stain(rng: Rng, cfg: SynthConfig, cells: C.CellTable, tps: float, seed: int,
                         dab_scale: float) -> None:
    """Make exactly ``round(tps * n_tumour)`` tumour cells positive, spatially clustered."""
    s = cfg.stain
    tumour = np.flatnonzero(cells.subtype == C.Subtype.TUMOUR)
    n_pos = int(round(tps * len(tumour)))
    if n_pos == 0:
        return
    pos = _clustered_pick(rng, cells, tumour, n_pos, sub_seed(seed, FIELD_POSITIVE), 120 / cfg.mpp, 0.3)
    cells.cls[pos] = CellClass.POSITIVE_TUMOUR
    weak = rng.random(n_pos) < _uniform(rng, s.weak_positive_fraction)
    if cfg.marker == "membrane":
        strong = _uniform(rng, s.membrane_dab) * np.exp(rng.normal(0, 0.3, n_pos))
        level = np.where(weak, rng.uniform(0.05, 0.15, n_pos), np.maximum(strong, 0.18)) * dab_scale
        C.set_membrane_stain(rng, cells, pos, level.astype(np.float32),
                             _uniform(rng, s.complete_ring_fraction), rng.uniform(0.1, 0.4))
    else:
        strong = rng.uniform(0.5, 1.4, n_pos)
        level = np.where(weak, rng.uniform(0.08, 0.2, n_pos), strong) * dab_scale
        C.set_nucleus_stain(cells, pos, level.astype(np.float32))


def _assign_immune_stain(rng: Rng, cfg: SynthConfig, cells: C.CellTable, tps: float,
                         dab_scale: float) -> None:
    """Confounders: DAB-positive macrophages and lymphocytes (never counted in TPS)."""
    s = cfg.stain
    lo, hi = s.positive_macrophage_fraction
    mac_share = lo + (hi - lo) * rng.random() ** (1.5 - tps)
    lymph_share = _uniform(rng, s.positive_lymphocyte_fraction)
    mac = np.flatnonzero(cells.subtype == C.Subtype.MACROPHAGE)
    lym = np.flatnonzero(cells.subtype == C.Subtype.LYMPHOCYTE)
    mac = mac[rng.random(len(mac)) < mac_share]
    lym = lym[rng.random(len(lym)) < lymph_share]
    if cfg.marker == "membrane":
        mac_level = (rng.uniform(0.12, 0.45, len(mac)) * dab_scale).astype(np.float32)
        C.set_cytoplasm_stain(cells, mac, mac_level)
        lym_level = (rng.uniform(0.15, 0.5, len(lym)) * dab_scale).astype(np.float32)
        C.set_membrane_stain(rng, cells, lym, lym_level, 0.7, 0.3)
    else:
        C.set_nucleus_stain(cells, lym, (rng.uniform(0.3, 0.9, len(lym)) * dab_scale).astype(np.float32))


def _clustered_pick(rng: Rng, cells: C.CellTable, index: np.ndarray, n: int, field_seed: int,
                    scale: float, min_weight: float) -> np.ndarray:
    """``n`` of the cells ``index``, spatially clustered: ranked by a smooth random field (scale
    ``scale`` px) mixed with independent noise, the field's weight drawn in [min_weight, 0.9]."""
    w = rng.uniform(min_weight, 0.9)
    field = fractal_noise_points(field_seed, cells.yx[index], scale, 2)
    score = w * field + (1 - w) * rng.random(len(index))
    return index[np.argsort(-score, kind="stable")[:n]]


def _assign_brown_negatives(rng: Rng, cfg: SynthConfig, cells: C.CellTable, seed: int,
                            dab_scale: float) -> None:
    """In ``stain.brown_negative_core_fraction`` of the cores (membrane marker), give a clustered
    share of the negative tumour cells diffuse cytoplasmic DAB and no membrane: they stay negative."""
    s = cfg.stain
    if cfg.marker != "membrane" or rng.random() >= s.brown_negative_core_fraction:
        return
    neg = np.flatnonzero(cells.cls == CellClass.NEGATIVE_TUMOUR)
    n = int(round(_uniform(rng, s.brown_negative_fraction) * len(neg)))
    if n == 0:
        return
    brown = _clustered_pick(rng, cells, neg, n, sub_seed(seed, FIELD_BROWN), 80 / cfg.mpp, 0.4)
    level = _uniform(rng, s.brown_negative_dab) * np.exp(rng.normal(0, 0.3, n)) * dab_scale
    C.set_diffuse_cytoplasm_stain(cells, brown, level.astype(np.float32))


def _pale_nuclei(rng: Rng, cfg: SynthConfig, cells: C.CellTable) -> None:
    """Faint nuclei: a random share of all nuclei lose hematoxylin, and every nucleus loses some in
    proportion to its cell's DAB (strong DAB masks the counterstain), whatever its class."""
    s = cfg.stain
    pale = np.flatnonzero(rng.random(len(cells)) < _uniform(rng, s.pale_nucleus_fraction))
    cells.chromatin[pale, 0] *= rng.uniform(*PALE_HEMATOXYLIN, len(pale)).astype(np.float32)
    masking = _uniform(rng, s.dab_hematoxylin_masking)
    strongest = cells.dab.max(axis=1) if len(cells) else np.zeros(0, np.float32)
    cells.chromatin[:, 0] *= (1 - masking * np.minimum(strongest / MASKING_FULL_DAB, 1)).astype(np.float32)


def _draw_defocus(rng: Rng, cfg: SynthConfig, geo: CoreGeometry, optics: Optics, seed: int) -> Optics:
    """Out-of-focus regions: where a smooth field over the core exceeds the quantile that leaves the
    drawn share (``stain.defocus_area``) of the core's area above it."""
    s = cfg.stain
    area = _uniform(rng, s.defocus_area)
    extra = _uniform(rng, s.defocus_px)
    scale = rng.uniform(60, 200) / cfg.mpp
    if area <= 0 or extra <= 0:
        return optics
    probe = _hex_lattice(rng, cfg.size, max(cfg.size / 80, 2.0), 0.0)
    probe = probe[geo.depth(probe) > 0]
    field = fractal_noise_points(sub_seed(seed, FIELD_DEFOCUS), probe, scale)
    threshold = _quantile_threshold(field, area) - DEFOCUS_RAMP / 2  # half-defocused at the quantile
    return replace(optics, defocus_px=extra, defocus_scale=float(scale), defocus_threshold=threshold)


def _draw_stroma_look(rng: Rng, cfg: SynthConfig, patient: PatientStain) -> StromaLook:
    s = cfg.stain
    um = 1.0 / cfg.mpp
    nonspecific = 0.0
    if rng.random() < s.nonspecific_core_fraction:
        nonspecific = _uniform(rng, s.nonspecific_dab) * patient.dab_scale
    return StromaLook(
        ecm=float(rng.uniform(0.03, 0.08)) * patient.h_scale,
        fibre_angle=float(rng.uniform(-np.pi, np.pi)),
        fibre_scale=float(rng.uniform(6, 12)) * um,
        loose_scale=float(rng.uniform(50, 120)) * um,
        nonspecific=nonspecific,
        lumen_secretion=float(rng.uniform(0.0, 0.04)),
    )


def build_layout(rng: np.random.Generator, seed: int, cfg: SynthConfig, patient: PatientStain,
                 tps: float | None) -> CoreLayout:
    """Draw one core. ``tps``: target proportion of positive tumour cells, or None for a core
    without tumour. ``seed``: seed (uint32 range) of the core's pixel-level random fields."""
    geo = _draw_geometry(rng, cfg.size)
    traits = _draw_traits(rng, cfg, patient)
    optics = _draw_optics(rng, cfg, patient)
    stroma = _draw_stroma_look(rng, cfg, patient)
    if tps is None:
        arch = "none"
        sites = _TumourSites.none()
        glands = Glands.none()
    else:
        w = np.asarray(cfg.tissue.architecture_weights, float)
        arch = ARCHITECTURES[int(rng.choice(len(w), p=w / w.sum()))]
        if arch == "glands":
            sites, glands = _gland_sites(rng, cfg, geo, traits)
        if arch != "glands" or len(sites.yx) < 3:  # no gland fits a very small core: a sheet then
            arch = arch if arch != "glands" else "sheets"
            sites, glands = _nest_sites(rng, cfg, geo, traits, arch, seed)
    is_tumour, is_lymph, is_mac = _infiltrate(rng, len(sites.yx),
                                              _uniform(rng, cfg.tissue.immune_infiltration))
    theta = None if sites.theta is None else sites.theta[is_tumour]
    tumour = C.tumour_cells(rng, sites.yx[is_tumour], traits, sites.radius[is_tumour], theta, sites.columnar)
    tumour.packing[sites.crowded[is_tumour]] = CROWDED_OVERLAP
    tables = [
        tumour,
        C.lymphocytes(rng, sites.yx[is_lymph], traits),
        C.macrophages(rng, sites.yx[is_mac], traits),
        *_stroma_cells(rng, cfg, geo, traits, sites, seed, stroma),
    ]
    fit_nuclei(tables[0], gap=0.8 / cfg.mpp)
    cells = remove_overlaps(rng, C.CellTable.concat(tables), gap=0.5 / cfg.mpp)
    cells = cells.take(np.lexsort((cells.yx[:, 1], cells.yx[:, 0])))
    if tps is not None:
        _assign_tumour_stain(rng, cfg, cells, tps, seed, patient.dab_scale)
    _assign_immune_stain(rng, cfg, cells, tps or 0.0, patient.dab_scale)
    if tps is not None:
        _assign_brown_negatives(rng, cfg, cells, seed, patient.dab_scale)
    _pale_nuclei(rng, cfg, cells)
    optics = _draw_defocus(rng, cfg, geo, optics, seed)
    return CoreLayout(size=cfg.size, mpp=cfg.mpp, marker=cfg.marker, seed=seed, geometry=geo,
                      architecture=arch, glands=glands, cells=cells, optics=optics, stroma=stroma,
                      tps_target=tps)

