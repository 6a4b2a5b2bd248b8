"""Settings of the synthetic cohort generator (section ``[synth]`` and its sub-sections).

Ranges written ``(low, high)`` are drawn uniformly per core (or per patient where said), so a cohort
varies the way slides from one lab do. Everything is in microns where a length is meant; the pixel
size ``mpp`` converts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

ARCHITECTURES = ("nests", "sheets", "glands")

# The paper's 606 cores per interval (0-1, 1-25, 25-50, 50-75, 75-100 %), read off Table 1: every
# per-interval recall there is a multiple of 1/386, 1/104, 1/16, 1/56 and 1/44, which sum to 606.
PAPER_INTERVAL_COUNTS = (386.0, 104.0, 16.0, 56.0, 44.0)


def _check_range(name: str, rng: tuple[float, float], low: float, high: float) -> None:
    a, b = rng
    if not (low <= a <= b <= high):
        raise ValueError(f"{name} must be a range [low, high] with {low} <= low <= high <= {high}, "
                         f"got [{a}, {b}]")


def _check_value(name: str, v: float, low: float, high: float) -> None:
    if not (low <= v <= high):
        raise ValueError(f"{name} must lie in [{low}, {high}], got {v}")


@dataclass
class CohortDrawConfig:
    """How exact TPS values, patients and labels are drawn (section ``[synth.cohort]``)."""

    tps_bins: list[float] = field(default_factory=lambda: [0.0, 0.01, 0.25, 0.5, 0.75, 1.0])
    """Cut points of the TPS distribution: a core's TPS is drawn uniformly inside one bin."""
    tps_bin_weights: list[float] = field(default_factory=lambda: list(PAPER_INTERVAL_COUNTS))
    """Relative weight of each bin; the default is the paper's cohort (386/104/16/56/44 cores)."""
    tps_zero_fraction: float = 0.4
    """Share of the cores drawn in the first bin whose TPS is exactly 0 (no positive tumour cell)."""
    cores_per_patient: tuple[int, int] = (1, 4)
    """Cores per patient, drawn uniformly in this range (inclusive)."""
    patient_tps_concordance: float = 0.7
    """Probability that a core takes its patient's TPS bin instead of a fresh draw (the marginal
    distribution stays ``tps_bin_weights`` either way)."""
    tumour_free_fraction: float = 0.0
    """Share of cores with no tumour cell at all (their TPS is undefined and their label empty)."""
    label_noise: float = 0.0
    """0: the manifest label is the interval of the exact TPS. > 0: the label is a pathologist-like
    estimate, the exact TPS moved by a normal error of this SD on the log-odds scale, then binned."""
    patient_prefix: str = "P"
    """Patient ids are this prefix and a number (``P001``); core names follow (``P001-c1``). A
    second cohort with another prefix can share a manifest with the first (e.g. a second "site")."""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_]{1,16}", self.patient_prefix):
            raise ValueError(f"patient_prefix must be 1-16 letters, digits or _, got {self.patient_prefix!r}")
        b, w = self.tps_bins, self.tps_bin_weights
        if len(b) < 2 or abs(b[0]) > 1e-12 or abs(b[-1] - 1) > 1e-12:
            raise ValueError("tps_bins must run from 0 to 1")
        if any(y <= x for x, y in zip(b[:-1], b[1:], strict=False)):
            raise ValueError(f"tps_bins must increase, got {b}")
        if len(w) != len(b) - 1 or any(x < 0 for x in w) or sum(w) <= 0:
            raise ValueError(f"tps_bin_weights needs {len(b) - 1} non-negative weights, not all 0")
        _check_value("tps_zero_fraction", self.tps_zero_fraction, 0, 1)
        lo, hi = self.cores_per_patient
        if not 1 <= lo <= hi:
            raise ValueError(f"cores_per_patient must be [low, high] with 1 <= low <= high, got {lo}, {hi}")
        _check_value("patient_tps_concordance", self.patient_tps_concordance, 0, 1)
        _check_value("tumour_free_fraction", self.tumour_free_fraction, 0, 1)
        _check_value("label_noise", self.label_noise, 0, 10)


@dataclass
class TissueConfig:
    """Tissue architecture and cells (section ``[synth.tissue]``)."""

    architecture_weights: list[float] = field(default_factory=lambda: [0.4, 0.35, 0.25])
    """Relative weights of tumour growth patterns: nests, sheets, glands."""
    tumour_area: tuple[float, float] = (0.25, 0.7)
    """Share of the tissue that is tumour compartment (nests, sheets; glands take what they fill)."""
    tumour_nucleus_um: tuple[float, float] = (9.0, 12.5)
    """Per-core mean tumour nuclear diameter; cells vary around it (pleomorphism)."""
    lymphocyte_nucleus_um: tuple[float, float] = (5.0, 6.5)
    """Per-core mean lymphocyte nuclear diameter."""
    pleomorphism: tuple[float, float] = (0.08, 0.22)
    """Per-core spread of tumour nuclear size (SD of log size) and outline irregularity."""
    immune_infiltration: tuple[float, float] = (0.0, 0.08)
    """Share of tumour-cell sites taken by lymphocytes and macrophages (intratumoral immune cells)."""
    stroma_cellularity: tuple[float, float] = (0.4, 1.0)
    """Relative density of cells in the stroma."""
    lymphoid_aggregates: tuple[float, float] = (0.0, 0.25)
    """Share of the stroma covered by dense lymphocyte aggregates."""
    crowding: tuple[float, float] = (0.1, 0.4)
    """Per-core share of tumour cells in crowded patches, where nuclei lie closer than their
    diameter, touch and partly overlap (darker where they overlap). (0, 0): none."""
    crowded_spacing: tuple[float, float] = (0.75, 0.95)
    """Per-core distance between neighbouring nucleus centres in crowded patches, in mean tumour
    nuclear diameters (elsewhere 1.3-1.65)."""
    aggregate_spacing: tuple[float, float] = (0.9, 1.1)
    """Per-core distance between neighbouring lymphocyte nucleus centres in aggregates, in lymphocyte
    nuclear diameters: below 1, nuclei touch and overlap (scattered lymphocytes keep ~1.4)."""

    def __post_init__(self) -> None:
        w = self.architecture_weights
        if len(w) != len(ARCHITECTURES) or any(x < 0 for x in w) or sum(w) <= 0:
            raise ValueError("architecture_weights needs 3 non-negative weights (nests, sheets, glands)")
        _check_range("tumour_area", self.tumour_area, 0.05, 0.95)
        _check_range("tumour_nucleus_um", self.tumour_nucleus_um, 4, 30)
        _check_range("lymphocyte_nucleus_um", self.lymphocyte_nucleus_um, 3, 10)
        _check_range("pleomorphism", self.pleomorphism, 0, 0.5)
        _check_range("immune_infiltration", self.immune_infiltration, 0, 0.5)
        _check_range("stroma_cellularity", self.stroma_cellularity, 0, 2)
        _check_range("lymphoid_aggregates", self.lymphoid_aggregates, 0, 0.9)
        _check_range("crowding", self.crowding, 0, 1)
        _check_range("crowded_spacing", self.crowded_spacing, 0.6, 1.3)
        _check_range("aggregate_spacing", self.aggregate_spacing, 0.75, 2)


@dataclass
class StainConfig:
    """Staining and imaging (section ``[synth.stain]``); optical densities are log10 units."""

    hematoxylin_vector: list[float] = field(default_factory=lambda: [0.75, 0.57, 0.35])
    """Mean hematoxylin OD direction (RGB). Ruifrok's H&E value is [0.65, 0.70, 0.29]; IHC
    counterstain is bluer: this default is the mean measured on the three real IHC samples of the
    docs (scikit-image's and two Ki-67 crops)."""
    dab_vector: list[float] = field(default_factory=lambda: [0.27, 0.57, 0.78])
    """Mean DAB OD direction (RGB), Ruifrok & Johnston's."""
    vector_jitter: float = 0.04
    """SD of the per-core change of each stain vector component (vectors are re-normalised)."""
    hematoxylin_scale: tuple[float, float] = (0.7, 1.3)
    """Per-patient multiplier of all hematoxylin concentrations."""
    dab_scale: tuple[float, float] = (0.7, 1.3)
    """Per-patient multiplier of all DAB concentrations."""
    membrane_dab: tuple[float, float] = (0.35, 0.9)
    """Per-core mean DAB OD of a positive membrane (moderate to strong)."""
    weak_positive_fraction: tuple[float, float] = (0.05, 0.35)
    """Share of positive tumour cells that stain only weakly (DAB OD about 0.05 to 0.15)."""
    complete_ring_fraction: tuple[float, float] = (0.4, 0.9)
    """Share of positive membranes stained all round; the others show partial rings."""
    positive_macrophage_fraction: tuple[float, float] = (0.0, 0.7)
    """Share of macrophages with DAB (not counted in TPS); grows with the core's TPS."""
    positive_lymphocyte_fraction: tuple[float, float] = (0.0, 0.3)
    """Share of lymphocytes with DAB (membrane for PD-L1, nucleus for Ki-67); not counted."""
    nonspecific_core_fraction: float = 0.2
    """Share of cores with brown non-specific background."""
    nonspecific_dab: tuple[float, float] = (0.03, 0.1)
    """DAB OD of that background."""
    blur_px: tuple[float, float] = (0.7, 1.3)
    """Gaussian blur sigma of the optics, in pixels (everywhere in the core)."""
    defocus_area: tuple[float, float] = (0.0, 0.4)
    """Per-core share of the core out of focus: smooth random regions (tens to hundreds of microns)
    whose blur grows towards their middle, as where a section is not flat. (0, 0): none."""
    defocus_px: tuple[float, float] = (1.0, 3.0)
    """Per-core extra blur sigma (px) in the middle of an out-of-focus region, added in quadrature to
    ``blur_px``."""
    pale_nucleus_fraction: tuple[float, float] = (0.05, 0.25)
    """Per-core share of nuclei (any cell type) with faint hematoxylin (35-65 % of their density)."""
    dab_hematoxylin_masking: tuple[float, float] = (0.2, 0.6)
    """Per-core share of a nucleus's hematoxylin lost under strong DAB (in proportion to the cell's
    DAB up to OD 0.8): the counterstain is paler in heavily stained cells."""
    brown_negative_core_fraction: float = 0.3
    """Share of cores (membrane marker) in which some negative tumour cells carry diffuse
    cytoplasmic DAB and no membrane: brown, but negative (the pattern, not the colour, decides)."""
    brown_negative_fraction: tuple[float, float] = (0.05, 0.4)
    """Share of the negative tumour cells of such a core that are brown (spatially clustered)."""
    brown_negative_dab: tuple[float, float] = (0.08, 0.3)
    """Per-core mean cytoplasmic DAB OD of brown negative tumour cells."""
    noise: tuple[float, float] = (0.5, 2.0)
    """SD of sensor noise in 8-bit levels."""
    illumination: float = 0.05
    """Largest uneven-background amplitude (share of the white level)."""

    def __post_init__(self) -> None:
        for name in ("hematoxylin_vector", "dab_vector"):
            v = getattr(self, name)
            if len(v) != 3 or any(x < 0 for x in v) or sum(v) <= 0:
                raise ValueError(f"{name} needs 3 non-negative RGB optical densities, not all 0")
        _check_value("vector_jitter", self.vector_jitter, 0, 0.3)
        _check_range("hematoxylin_scale", self.hematoxylin_scale, 0.05, 5)
        _check_range("dab_scale", self.dab_scale, 0.05, 5)
        _check_range("membrane_dab", self.membrane_dab, 0.01, 3)
        _check_range("weak_positive_fraction", self.weak_positive_fraction, 0, 1)
        _check_range("complete_ring_fraction", self.complete_ring_fraction, 0, 1)
        _check_range("positive_macrophage_fraction", self.positive_macrophage_fraction, 0, 1)
        _check_range("positive_lymphocyte_fraction", self.positive_lymphocyte_fraction, 0, 1)
        _check_value("nonspecific_core_fraction", self.nonspecific_core_fraction, 0, 1)
        _check_range("nonspecific_dab", self.nonspecific_dab, 0, 1)
        _check_range("blur_px", self.blur_px, 0, 5)
        _check_range("defocus_area", self.defocus_area, 0, 1)
        _check_range("defocus_px", self.defocus_px, 0, 8)
        _check_range("pale_nucleus_fraction", self.pale_nucleus_fraction, 0, 1)
        _check_range("dab_hematoxylin_masking", self.dab_hematoxylin_masking, 0, 0.9)
        _check_value("brown_negative_core_fraction", self.brown_negative_core_fraction, 0, 1)
        _check_range("brown_negative_fraction", self.brown_negative_fraction, 0, 1)
        _check_range("brown_negative_dab", self.brown_negative_dab, 0, 2)
        _check_range("noise", self.noise, 0, 20)
        _check_value("illumination", self.illumination, 0, 0.5)


@dataclass
class AnnotationDrawConfig:
    """Which cores get annotations and how much (section ``[synth.annotations]``)."""

    point_cores: int = 2
    """Cores with cell point annotations (QuPath GeoJSON); the paper had 2."""
    point_scope: Literal["core", "regions"] = "core"
    """Points for every cell of the core, or only for cells inside its region polygons."""
    region_cores: int = 8
    """Cores with tumour / non-tumour region polygons (point cores are among them)."""
    region_area_fraction: float = 0.057
    """Share of the core's area the region polygons cover (the paper's 5.71 %)."""

    def __post_init__(self) -> None:
        if self.point_cores < 0 or self.region_cores < 0:
            raise ValueError("point_cores and region_cores must be >= 0")
        _check_value("region_area_fraction", self.region_area_fraction, 0.001, 0.9)


@dataclass
class SynthConfig:
    """How synthetic cores look and how a cohort is drawn (section ``[synth]``)."""

    size: int = 512
    """Core image side in pixels (256 to 10 000 supported)."""
    mpp: float = 0.5
    """Pixel size in microns per pixel."""
    marker: Literal["membrane", "nucleus"] = "membrane"
    """Where positive tumour cells show DAB: membrane (PD-L1) or nucleus (Ki-67)."""
    seed: int = 0
    image_format: Literal["auto", "png", "ome.tif"] = "auto"
    """``auto``: PNG up to ``tiled_from`` px, tiled pyramidal OME-TIFF above."""
    tiled_from: int = 4096
    tile: int = 512
    """Tile side for rendering and for tiled TIFFs."""
    jpeg_quality: int | None = None
    """Set (1-100) to pass the pixels through JPEG compression at this quality, as scanners do."""
    cohort: CohortDrawConfig = field(default_factory=CohortDrawConfig)
    tissue: TissueConfig = field(default_factory=TissueConfig)
    stain: StainConfig = field(default_factory=StainConfig)
    annotations: AnnotationDrawConfig = field(default_factory=AnnotationDrawConfig)

    def __post_init__(self) -> None:
        _check_value("size", self.size, 128, 20000)
        _check_value("mpp", self.mpp, 0.1, 2.0)
        if self.marker not in ("membrane", "nucleus"):
            raise ValueError(f"marker must be 'membrane' or 'nucleus', got {self.marker!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        _check_value("tile", self.tile, 64, 4096)
        if self.tile % 16:
            raise ValueError(f"tile must be a multiple of 16, got {self.tile}")
        if self.jpeg_quality is not None:
            _check_value("jpeg_quality", self.jpeg_quality, 1, 100)
