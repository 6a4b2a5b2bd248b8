"""Pixels of a synthetic core: any window of a :class:`~maskllp.synth.layout.CoreLayout`.

Per pixel, the few cells whose bodies are nearest decide what is there: a cell *owns* a pixel
inside its nucleus, else the cell whose body outline (an ellipse, scaled) is nearest in relative
terms, so neighbouring tumour cells meet along shared membranes like a real epithelium and a
macrophage's body is larger than a lymphocyte's. From the owner follow hematoxylin (chromatin with
a rim, vesicular interior, nucleoli; pale cytoplasm; stroma fibres where no cell is) and DAB
(membrane rings, complete or partial arcs; granular cytoplasm; nuclei for Ki-67; non-specific
background). Where two nuclei overlap (crowded cells), the pixel belongs to the nearer one but both
deposit their stain, so the overlap is darker (optical densities add). Beer-Lambert mixing, uneven
illumination, optical blur (stronger in out-of-focus regions) and sensor noise follow.

Every random texture is a function of absolute pixel position (:mod:`maskllp.synth.noise`) and a
window is rendered with a margin wider than the blur, so a core rendered in one piece and tile by
tile gives identical pixels.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.spatial import cKDTree

from maskllp.synth.cells import CellTable
from maskllp.synth.layout import DEFOCUS_RAMP, FIELD_DEFOCUS, CoreLayout
from maskllp.synth.noise import (
    fractal_noise_grid,
    sub_seed,
    value_noise_grid,
    value_noise_points,
    white_noise_grid,
)
from maskllp.synth.stains import mix_stains, od_to_rgb

K_NEAREST = 6
"""Cells considered per pixel."""
DEFOCUS_LEVELS = 2
"""Blur levels above the in-focus one; spatially varying blur interpolates between them."""
CHUNK = 16384
"""Pixels processed at once (bounds the memory of the per-pixel, per-candidate arrays)."""
TRUNCATE = 4.0

# Tags of the pixel-level random fields (sub-seeds of the core's seed).
(TEX_CHROMATIN, TEX_GRANULE, TEX_MEMBRANE, TEX_LOOSE, TEX_FIBRE, TEX_WARP_Y, TEX_WARP_X,
 TEX_NONSPECIFIC, TEX_ILLUMINATION, TEX_THICKNESS, TEX_NOISE) = range(10, 21)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def blur_levels(layout: CoreLayout) -> list[float]:
    """Gaussian sigmas (px) rendered: the in-focus blur, then up to fully out of focus."""
    o = layout.optics
    extra = o.defocus_px if o.defocus_px > 0 else 0.0
    n = DEFOCUS_LEVELS if extra > 0 else 0
    return [float(np.hypot(o.blur_px, extra * k / max(n, 1))) for k in range(n + 1)]


def blur_margin(layout: CoreLayout) -> int:
    """Pixels a window is extended by on each side so the blur inside it is exact."""
    return int(TRUNCATE * max(blur_levels(layout)) + 0.5) + 1


def defocus_map(layout: CoreLayout, top: int, left: int, height: int, width: int) -> np.ndarray:
    """(h, w) float32 in [0, 1]: how far out of focus each pixel is (0: in focus, 1: the core's full
    ``defocus_px``). A smooth function of absolute position, so tiles agree."""
    o = layout.optics
    if o.defocus_px <= 0:
        return np.zeros((height, width), np.float32)
    field = fractal_noise_grid(sub_seed(layout.seed, FIELD_DEFOCUS), top, left, height, width,
                               o.defocus_scale)
    return _smoothstep((field - o.defocus_threshold) / DEFOCUS_RAMP).astype(np.float32)


class _Window:
    """Pixel grid of a window: absolute rows ``top..top+height-1``, cols ``left..left+width-1``."""

    def __init__(self, top: int, left: int, height: int, width: int) -> None:
        self.top, self.left, self.height, self.width = top, left, height, width

    def grid(self, fn, seed: int, scale: float) -> np.ndarray:
        """A noise field ``fn(seed, top, left, height, width, scale)`` on this window."""
        return fn(seed, self.top, self.left, self.height, self.width, scale)


def _cells_near(cells: CellTable, win: _Window, reach: float) -> np.ndarray:
    """Indices of cells whose body centre lies within ``reach`` px of the window."""
    body = cells.body_yx
    return np.flatnonzero(
        (body[:, 0] > win.top - reach) & (body[:, 0] < win.top + win.height - 1 + reach)
        & (body[:, 1] > win.left - reach) & (body[:, 1] < win.left + win.width - 1 + reach)
    )


FAR = 1e7
"""Body position of the padding row that stands for "no cell" among a pixel's candidates."""


def _pack(cells: CellTable) -> np.ndarray:
    """(10, N + 1) float32 per-cell constants of the pixel loop, gathered in one indexing operation:
    body centre (y, x), cos and sin of the orientation, inverse body semi-axes, nucleus offset from
    the body centre in the cell's frame, inverse nucleus semi-axes. Column N is a padding cell far
    away (what the KD-tree returns for missing neighbours)."""
    body = cells.body_yx
    c, s = np.cos(cells.theta), np.sin(cells.theta)
    off = cells.body_offset
    packed = np.stack([body[:, 0], body[:, 1], c, s, 1 / cells.cell_axes[:, 0], 1 / cells.cell_axes[:, 1],
                       off[:, 0] * c + off[:, 1] * s, off[:, 1] * c - off[:, 0] * s,
                       1 / cells.nucleus_axes[:, 0], 1 / cells.nucleus_axes[:, 1]]).astype(np.float32)
    pad = np.array([FAR, FAR, 1, 0, 1, 1, 0, 0, 1, 1], np.float32)[:, None]
    return np.concatenate([packed, pad], axis=1)


def nucleus_limit(cells: CellTable) -> float:
    """Elliptic distance beyond which no pixel can belong to any nucleus of ``cells``.

    The outline reaches 1 + sum |harmonics| at most; one more pixel at the thinnest nucleus covers
    the anti-aliased edge.
    """
    if len(cells) == 0:
        return 0.0
    return float(1.0 + np.abs(cells.harmonics).sum(axis=1).max() + 1.0 / cells.nucleus_axes.min())


def _nucleus_shape(h: np.ndarray, c: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Outline radius 1 + sum_k a_k cos k phi + b_k sin k phi from cos/sin phi; h (P, 6)."""
    c2, s2 = 2 * c * c - 1, 2 * c * s
    c3, s3 = c * (4 * c * c - 3), s * (3 - 4 * s * s)
    c4, s4 = 2 * c2 * c2 - 1, 2 * s2 * c2
    return 1 + h[:, 0] * c2 + h[:, 1] * s2 + h[:, 2] * c3 + h[:, 3] * s3 + h[:, 4] * c4 + h[:, 5] * s4


def _outline_gradient(u: np.ndarray, v: np.ndarray, inv_a: np.ndarray, inv_b: np.ndarray,
                      rho: np.ndarray) -> np.ndarray:
    """|grad rho| (per px) of the elliptic distance rho = |(u / a, v / b)|, floored away from 0."""
    return np.maximum(np.hypot(u * inv_a**2, v * inv_b**2) / np.maximum(rho, 1e-6), 1e-3)


class _Nuclei:
    """Nucleus geometry at the pixels near a nucleus: which cell's, how deep inside, where in it."""

    def __init__(self, sub: CellTable, cand: np.ndarray, pu: np.ndarray, pv: np.ndarray,
                 inv_a: np.ndarray, inv_b: np.ndarray) -> None:
        rn = np.hypot(pu, pv)
        safe = np.maximum(rn, 1e-6)
        self.shape = _nucleus_shape(sub.harmonics[cand], pu / safe, pv / safe)
        self.depth = (self.shape - rn) / np.maximum(np.hypot(pu * inv_a, pv * inv_b) / safe, 1e-3)
        self.rn, self.pu, self.pv, self.inv_a, self.inv_b = rn, pu, pv, inv_a, inv_b

    def hematoxylin(self, sub: CellTable, owner: np.ndarray, chromatin_tex: np.ndarray,
                    keep: np.ndarray) -> np.ndarray:
        """Chromatin at pixels ``keep`` (owners ``owner``): dense rim, paler (vesicular) interior,
        granular texture, nucleoli."""
        chrom = sub.chromatin[owner]
        rn, shape, pu, pv = self.rn[keep], self.shape[keep], self.pu[keep], self.pv[keep]
        inv_a, inv_b = self.inv_a[keep], self.inv_b[keep]
        rim = np.clip((rn / shape - 0.6) / 0.32, 0, 1) ** 1.5
        density = chrom[:, 0] * (chrom[:, 1] + (1 - chrom[:, 1]) * rim)
        density = density * (1 + chrom[:, 2] * (2 * chromatin_tex - 1))
        spots = np.zeros_like(density)
        for m in range(2):
            nu, nv, nr = (sub.nucleoli[owner, 3 * m + j] for j in range(3))
            d2 = np.square((pu - nu) / inv_a) + np.square((pv - nv) / inv_b)
            spots += np.where(nr > 0, np.exp(-d2 / np.maximum(nr, 1e-3) ** 2), 0)
        return density + 1.2 * chrom[:, 0] * np.minimum(spots, 1)


def _cell_stains(layout: CoreLayout, sub: CellTable, packed: np.ndarray, tree: cKDTree, reach: float,
                 limit: float, yx: np.ndarray, tex: dict[str, np.ndarray]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """H, DAB, cell coverage (all (P,) float32) and nucleus owner (P,) int (-1: none) at ``yx``."""
    _, idx = tree.query(yx, k=K_NEAREST, distance_upper_bound=reach)  # missing: len(sub), the pad
    q = packed[:, idx]  # (10, P, K), each field contiguous
    rows = np.arange(len(yx))
    # Cell bodies: elliptic distance rho (1 on the outline) of the pixel from each candidate.
    dy = yx[:, 0].astype(np.float32)[:, None] - q[0]
    dx = yx[:, 1].astype(np.float32)[:, None] - q[1]
    u = dy * q[2] + dx * q[3]
    v = dx * q[2] - dy * q[3]
    rho2 = np.square(u * q[4]) + np.square(v * q[5])
    # Nuclei: the candidate whose nucleus ellipse is nearest decides if the pixel is nucleus.
    un, vn = u + q[6], v + q[7]
    rho_n2 = np.square(un * q[8]) + np.square(vn * q[9])
    kn = np.argmin(rho_n2, axis=1)
    near = np.flatnonzero(rho_n2[rows, kn] < limit**2)
    kn_near = kn[near]
    cand = idx[near, kn_near]
    inv_a, inv_b = q[8][near, kn_near], q[9][near, kn_near]
    nuc = _Nuclei(sub, cand, un[near, kn_near] * inv_a, vn[near, kn_near] * inv_b, inv_a, inv_b)
    inside = nuc.depth > -0.5
    # A second nucleus over the same pixel (crowded, overlapping nuclei): its stain adds.
    rest = rho_n2[near]
    rest[np.arange(len(near)), kn_near] = np.inf
    kn2 = np.argmin(rest, axis=1)
    two = np.flatnonzero(rest[np.arange(len(near)), kn2] < limit**2)
    if len(two):
        px2, k2n = near[two], kn2[two]
        cand2 = idx[px2, k2n]
        a2, b2 = q[8][px2, k2n], q[9][px2, k2n]
        nuc2 = _Nuclei(sub, cand2, un[px2, k2n] * a2, vn[px2, k2n] * b2, a2, b2)
        in2 = nuc2.depth > -0.5
        px2, cand2 = px2[in2], cand2[in2]
        cover2 = np.clip(nuc2.depth[in2] + 0.5, 0, 1)
        h2 = cover2 * nuc2.hematoxylin(sub, cand2, tex["chromatin"][px2], in2)
        d2 = cover2 * sub.dab[cand2, 2] * (0.55 + 0.9 * tex["chromatin"][px2])
    k = np.argmin(rho2, axis=1)
    k[near[inside]] = kn_near[inside]
    owner = np.minimum(idx[rows, k], len(sub) - 1)  # the padding cell never covers a pixel
    nucleus = np.zeros(len(yx), np.float32)
    nucleus[near[inside]] = np.clip(nuc.depth[inside] + 0.5, 0, 1)
    # Membrane and cytoplasm: distance (px) to the cell's outline or to the border it shares.
    rho1 = np.sqrt(rho2[rows, k])
    grad1 = _outline_gradient(u[rows, k], v[rows, k], q[4][rows, k], q[5][rows, k], rho1)
    rho2[rows, k] = np.inf
    k2 = np.argmin(rho2, axis=1)
    rho_b = np.sqrt(rho2[rows, k2])
    grad2 = _outline_gradient(u[rows, k2], v[rows, k2], q[4][rows, k2], q[5][rows, k2], rho_b)
    edge = np.minimum((1 - rho1) / grad1, (rho_b - rho1) / (grad1 + grad2)).astype(np.float32)
    cover = np.clip(edge + 0.5, 0, 1)
    membrane = np.exp(-np.square(edge / max(0.7 / layout.mpp, 0.8)))

    h = np.zeros(len(yx), np.float32)
    sel = near[inside]
    h[sel] = nucleus[sel] * nuc.hematoxylin(sub, owner[sel], tex["chromatin"][sel], inside)
    cyto = sub.cytoplasm[owner]
    body = cover * (1 - nucleus)
    h += body * cyto[:, 0] * (1 + cyto[:, 1] * (2 * tex["granule"] - 1)) + membrane * 0.3 * cyto[:, 0]

    dab = sub.dab[owner]
    d = body * (1 - 0.8 * nucleus) * dab[:, 1] * (0.5 + tex["granule"]) \
        + nucleus * dab[:, 2] * (0.55 + 0.9 * tex["chromatin"])
    ringed = np.flatnonzero(dab[:, 0] > 0)
    if len(ringed):
        ring = sub.ring[owner[ringed]]
        ody, odx = dy[ringed, k[ringed]], dx[ringed, k[ringed]]
        cos_off = (ody * ring[:, 0] + odx * ring[:, 1]) / np.maximum(np.hypot(ody, odx), 1e-3)
        arc = np.clip((cos_off - ring[:, 2]) / 0.25 + 0.5, 0, 1)
        d[ringed] += membrane[ringed] * dab[ringed, 0] * arc * (0.6 + 0.8 * tex["membrane"][ringed])
    if len(two):
        h[px2] += h2
        d[px2] += d2
    owner_nucleus = np.where(nucleus > 0.5, owner, -1)
    return h, d.astype(np.float32), cover, owner_nucleus


def _maybe_near(points: np.ndarray, yx: np.ndarray, reach: float) -> np.ndarray:
    """(P,) bool, True for every pixel ``yx`` (P, 2) within ``reach`` of one of ``points`` (M, 2).

    Conservative (some farther pixels are True too): blocks of side ``reach`` anchored at pixel
    (0, 0) are marked when they or a neighbour hold a point.
    """
    block = max(reach, 1.0)
    pb = np.floor(points / block).astype(np.int64)
    qb = np.floor(yx / block).astype(np.int64)
    lo = qb.min(axis=0) - 1
    shape = tuple(qb.max(axis=0) - lo + 2)
    occupied = np.zeros(shape, bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            b = pb + (dy, dx) - lo
            ok = (b >= 0).all(axis=1) & (b < shape).all(axis=1)
            occupied[b[ok, 0], b[ok, 1]] = True
    return occupied[qb[:, 0] - lo[0], qb[:, 1] - lo[1]]


def _stroma_h(layout: CoreLayout, win: _Window, yx: np.ndarray, active: np.ndarray) -> np.ndarray:
    """H of the extracellular matrix at active pixels (P,): wavy fibres, loose and dense areas."""
    s = layout.stroma
    seed = layout.seed
    warp = s.fibre_scale * 4
    wy = (win.grid(value_noise_grid, sub_seed(seed, TEX_WARP_Y), s.fibre_scale * 8)[active] - 0.5) * warp
    wx = (win.grid(value_noise_grid, sub_seed(seed, TEX_WARP_X), s.fibre_scale * 8)[active] - 0.5) * warp
    py, px = yx[:, 0] + wy, yx[:, 1] + wx
    c, sn = np.cos(s.fibre_angle), np.sin(s.fibre_angle)
    along = (py * c + px * sn) / (s.fibre_scale * 3)
    across = (-py * sn + px * c) / (s.fibre_scale / 4)
    fibre = value_noise_points(sub_seed(seed, TEX_FIBRE), np.stack([along, across], axis=1), 1.0)
    loose = win.grid(fractal_noise_grid, sub_seed(seed, TEX_LOOSE), s.loose_scale)[active]
    density = np.clip((loose - 0.25) * 2.0, 0.15, 1.0)
    return (s.ecm * density * (0.45 + 0.9 * _smoothstep((fibre - 0.3) / 0.6))).astype(np.float32)


def _lumen(layout: CoreLayout, yx: np.ndarray) -> np.ndarray:
    """(P,) float32 in [0, 1]: how much a pixel lies in a gland lumen."""
    glands = layout.glands
    if len(glands) == 0:
        return np.zeros(len(yx), np.float32)
    _, idx = cKDTree(glands.centre).query(yx, k=1)
    d = glands.scaled_distance(yx, idx)
    inner = glands.lumen[idx]
    px = inner * glands.axes[idx].min(axis=1)
    return np.clip((inner - d) * px + 0.5, 0, 1).astype(np.float32)


def stain_maps(layout: CoreLayout, top: int, left: int, height: int,
               width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hematoxylin and DAB concentration (OD) maps of a window, and its nucleus-owner map.

    Returns H (h, w) float32, DAB (h, w) float32 and owner (h, w) int64: the index into
    ``layout.cells`` of the cell whose nucleus covers the pixel, or -1.
    """
    win = _Window(top, left, height, width)
    h_map = np.zeros((height, width), np.float32)
    d_map = np.zeros((height, width), np.float32)
    owner_map = np.full((height, width), -1, np.int64)
    geo = layout.geometry
    ys = np.arange(top, top + height, dtype=np.float64)
    xs = np.arange(left, left + width, dtype=np.float64)
    dy, dx = ys[:, None] - geo.centre[0], xs[None, :] - geo.centre[1]
    depth = geo.depth_at(dy, dx)
    active = depth > -2.0
    if not active.any():
        return h_map, d_map, owner_map
    yy, xx = np.nonzero(active)
    yx = np.stack([yy + top, xx + left], axis=1).astype(np.float64)
    tissue = np.clip(depth[active] / 1.5 + 0.5, 0, 1).astype(np.float32)
    lumen = _lumen(layout, yx)
    h_ecm = _stroma_h(layout, win, yx, active) * (1 - lumen) + lumen * layout.stroma.lumen_secretion
    tex = {name: win.grid(value_noise_grid, sub_seed(layout.seed, tag), scale_um / layout.mpp)[active]
           for name, tag, scale_um in (("chromatin", TEX_CHROMATIN, 0.9), ("granule", TEX_GRANULE, 1.4),
                                       ("membrane", TEX_MEMBRANE, 1.2))}
    ns = layout.stroma.nonspecific
    d_ns = np.zeros(len(yx), np.float32)
    if ns > 0:
        field = win.grid(fractal_noise_grid, sub_seed(layout.seed, TEX_NONSPECIFIC), 40 / layout.mpp)[active]
        d_ns = ns * (0.3 + 1.4 * field) * (1 - lumen)
    h_cells = np.zeros(len(yx), np.float32)
    d_cells = np.zeros(len(yx), np.float32)
    cover = np.zeros(len(yx), np.float32)
    owner = np.full(len(yx), -1, np.int64)
    reach = layout.cells.reach
    near = _cells_near(layout.cells, win, reach)
    if len(near):
        sub = layout.cells.take(near)
        packed = _pack(sub)
        tree = cKDTree(sub.body_yx)
        limit = nucleus_limit(layout.cells)
        touched = np.flatnonzero(_maybe_near(sub.body_yx, yx, reach))
        for start in range(0, len(touched), CHUNK):
            sl = touched[start:start + CHUNK]
            t = {key: val[sl] for key, val in tex.items()}
            h_cells[sl], d_cells[sl], cover[sl], own = _cell_stains(layout, sub, packed, tree, reach, limit,
                                                                    yx[sl], t)
            owner[sl] = np.where(own >= 0, near[np.maximum(own, 0)], -1)
    # section thickness varies a little over tens of microns: every stain with it
    thickness = win.grid(fractal_noise_grid, sub_seed(layout.seed, TEX_THICKNESS), 30 / layout.mpp)[active]
    thickness = 0.85 + 0.3 * thickness
    h_map[active] = tissue * thickness * (h_ecm * (1 - cover) + h_cells)
    d_map[active] = tissue * thickness * (d_ns + d_cells)
    owner_map[active] = owner
    return h_map, d_map, owner_map


def _illumination(layout: CoreLayout, win: _Window) -> np.ndarray:
    """(h, w) float32 share of the white level reaching each pixel (uneven background)."""
    amp = layout.optics.illumination
    if amp == 0:
        return np.ones((win.height, win.width), np.float32)
    size = layout.size
    ys = (np.arange(win.top, win.top + win.height) / size - 0.5)[:, None]
    xs = (np.arange(win.left, win.left + win.width) / size - 0.5)[None, :]
    angle = 2 * np.pi * (sub_seed(layout.seed, TEX_ILLUMINATION) / 2**32)
    ramp = 0.5 + ys * np.cos(angle) + xs * np.sin(angle)
    vignette = 2 * (ys**2 + xs**2)
    mottle = win.grid(value_noise_grid, sub_seed(layout.seed, TEX_ILLUMINATION), size / 3)
    return (1 - amp * (0.4 * ramp + 0.3 * vignette + 0.3 * mottle)).astype(np.float32)


def render_window(layout: CoreLayout, top: int, left: int, height: int, width: int) -> np.ndarray:
    """Pixels of a window of the core: (height, width, 3) uint8 RGB.

    The window may reach past the image (rendered as glass there); rendering the whole core at once
    or window by window gives the same pixels.
    """
    m = blur_margin(layout)
    win = _Window(top - m, left - m, height + 2 * m, width + 2 * m)
    h_map, d_map, _ = stain_maps(layout, win.top, win.left, win.height, win.width)
    optics = layout.optics
    light = od_to_rgb(mix_stains(h_map, d_map, optics), optics.white) * _illumination(layout, win)[..., None]
    out = np.empty((height, width, 3), np.float32)
    inner = (slice(m, m + height), slice(m, m + width))
    sigmas = blur_levels(layout)
    # weight of each blur level per pixel: linear between neighbouring levels
    position = defocus_map(layout, top, left, height, width) * np.float32(len(sigmas) - 1)
    weights = [np.clip(1 - np.abs(position - k), 0, 1) for k in range(len(sigmas))]
    for c in range(3):
        acc = np.zeros((height, width), np.float32)
        for sigma, w in zip(sigmas, weights, strict=True):
            if not w.any():
                continue
            channel = light[..., c]
            if sigma > 0:
                channel = gaussian_filter(channel, sigma, truncate=TRUNCATE, mode="nearest")
            acc += w * channel[inner]
        noise = white_noise_grid(sub_seed(layout.seed, TEX_NOISE + 100 * c), top, left, height, width)
        out[..., c] = acc * 255.0 + noise * np.float32(optics.noise)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def render_core(layout: CoreLayout) -> np.ndarray:
    """The whole core in one piece: (size, size, 3) uint8."""
    return render_window(layout, 0, 0, layout.size, layout.size)


def tile_origins(size: int, tile: int) -> Iterator[tuple[int, int]]:
    """Row-major (top, left) of the tiles covering a ``size`` x ``size`` image."""
    for top in range(0, size, tile):
        for left in range(0, size, tile):
            yield top, left


def iter_tiles(layout: CoreLayout, tile: int) -> Iterator[tuple[tuple[int, int], np.ndarray]]:
    """The core tile by tile, row-major: ((top, left), (h, w, 3) uint8), edge tiles cut to fit.

    Only one tile's float data is held at a time.
    """
    size = layout.size
    for top, left in tile_origins(size, tile):
        yield (top, left), render_window(layout, top, left, min(tile, size - top), min(tile, size - left))


def nucleus_owners(layout: CoreLayout, top: int = 0, left: int = 0, height: int | None = None,
                   width: int | None = None) -> np.ndarray:
    """(h, w) int64 map of which cell's nucleus covers each pixel (index into ``layout.cells``; -1
    none). Computed by the same code that deposits the nuclei's hematoxylin."""
    height = layout.size if height is None else height
    width = layout.size if width is None else width
    return stain_maps(layout, top, left, height, width)[2]
