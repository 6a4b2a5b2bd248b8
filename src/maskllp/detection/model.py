"""The stage-1 model: detect every cell of an image of any size, classify it, build the mask M.

A stage-1 model folder (kind ``stage1``) holds both networks::

    config.json          kind, mpp (training pixel size), detector / classifier / mask / tiling
    weights.safetensors  detector.* (U-Net), classifier.* (ResNet trunk + linear head)
    thresholds.json      peak_threshold, min_distance_um (chosen on validation), tumour_threshold

A detector-only folder (kind ``detector``) has the same layout without the classifier; it detects
cells but gives no tumour scores. Images are resampled to the training pixel size before the
networks (see :mod:`maskllp.io.grid`, :mod:`maskllp.detection.tiling`); cells come back in level-0
coordinates of the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from maskllp.backbones import batch_norms_folded, inference_device, rgb_to_tensor
from maskllp.config import section_from_mapping, to_mapping
from maskllp.config.detection import ClassifierConfig, DetectorConfig, MaskConfig, TilingConfig
from maskllp.detection.cell_classifier import MeasurementClassifier, MeasurementClassifierSpec
from maskllp.detection.cells import DetectedCells
from maskllp.detection.classifier import (
    THREE_CLASSES,
    CellClassifier,
    class_probabilities,
    sample_features,
    tumour_probability,
)
from maskllp.detection.mask import disk_outline, tumour_mask
from maskllp.detection.measurements import (
    CONTEXT_UM,
    MEASUREMENT_NAMES,
    NUCLEUS_NAMES,
    NUCLEUS_REACH_UM,
    nucleus_measurements,
    stain_measurements,
)
from maskllp.detection.patches import PATCH_CHANNELS, cell_patches, patch_reach_px, patch_side_px
from maskllp.detection.peaks import peak_pixels, subpixel_offset
from maskllp.detection.tiling import Tile, iter_windows, round_up, tile_grid
from maskllp.detection.unet import UNet, receptive_radius
from maskllp.errors import InputError, NonFiniteOutputError
from maskllp.io.grid import ImageSource, ModelGrid, resize_mask
from maskllp.io.images import MPP_RANGE
from maskllp.io.limits import check_working_area
from maskllp.io.model_folder import ModelFolder, load_model_folder, save_model_folder
from maskllp.stains import stain_densities

DETECTOR_KIND = "detector"
STAGE1_KIND = "stage1"


def image_mpp(image: ImageSource, default_mpp: float | None, source: Any = None) -> float:
    """The image's pixel size (reader's, i.e. manifest or metadata), else ``default_mpp``.

    InputError naming the image when neither is known.
    """
    mpp = image.mpp if image.mpp is not None else default_mpp
    if mpp is None:
        raise InputError(source or getattr(image, "path", None),
                         "pixel size unknown: give it in the manifest's mpp column, with --mpp, or as "
                         "detector.default_mpp in the config")
    if not (math.isfinite(mpp) and mpp > 0):
        raise InputError(source or getattr(image, "path", None), f"pixel size {mpp!r} is not positive")
    return float(mpp)


def build_unet(cfg: DetectorConfig) -> UNet:
    return UNet(3, 1, cfg.base_channels, cfg.depth)


Classifier = CellClassifier | MeasurementClassifier
"""A stage-1 tumour classifier: the paper's CNN, or the measurement classifier."""


CNN_CONTEXT_PX = 128
"""Tile context for the paper's CNN classifier (its ResNet's receptive field is larger; 128 px keeps
its scores within 1e-4 of one pass on the tests' images)."""


def build_classifier(cfg: ClassifierConfig, weights_path: str | Path | None = None) -> Classifier:
    """The classifier ``cfg`` asks for (``weights_path``: ImageNet weights of the CNN's trunk)."""
    if cfg.kind == "measurements":
        return MeasurementClassifier(MeasurementClassifierSpec(cfg.classes, cfg.hidden, cfg.dropout,
                                                               cfg.nucleus_features, cfg.reads_patches))
    n_outputs = 1 if cfg.classes == "tumour" else len(THREE_CLASSES)
    return CellClassifier(cfg.backbone, cfg.feature_layer, n_outputs, weights_path)


@dataclass
class DetectorModel:
    """The detector h with its chosen peak threshold and minimum distance."""

    net: UNet
    config: DetectorConfig
    mpp: float
    """Training pixel size: images are resampled to it."""
    peak_threshold: float
    min_distance_um: float
    validation: dict[str, Any] = field(default_factory=dict)

    @property
    def min_distance_px(self) -> float:
        return self.min_distance_um / self.mpp

    @property
    def margin_needed(self) -> int:
        """Context (model pixels) a tile needs so its peaks equal those of one pass."""
        return receptive_radius(self.config.depth) + math.ceil(self.min_distance_px) + 2

    @torch.no_grad()
    def heatmap(self, rgb: torch.Tensor) -> np.ndarray:
        """(1, 3, S, S) float32 in [0, 1] -> (S, S) float32 heatmap."""
        self.net.eval()
        heat = self.net(rgb)[0, 0].float().cpu().numpy()
        if not np.isfinite(heat).all():
            raise NonFiniteOutputError("the detector's heatmap is NaN or infinite (damaged weights?)")
        return heat


def tile_peaks(heatmap: np.ndarray, tile: Tile, grid_shape: tuple[int, int], threshold: float,
               min_distance_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Peaks of one window's heatmap that this tile keeps.

    heatmap: (S, S) float32 of the tile's window. Returns yx (N, 2) float64 in window coordinates
    (sub-pixel refined) and scores (N,) float32, for the peaks whose pixel lies in the tile's
    interior and inside the model grid.
    """
    rows, cols = peak_pixels(heatmap, threshold, min_distance_px)
    top, left = tile.window_origin
    r, c = rows + top, cols + left
    keep = tile.holds(r, c) & (r >= 0) & (c >= 0) & (r < grid_shape[0]) & (c < grid_shape[1])
    rows, cols = rows[keep], cols[keep]
    yx = np.stack([rows, cols], axis=1).astype(np.float64)
    if len(rows):
        yx += subpixel_offset(heatmap, rows, cols)
    return yx, heatmap[rows, cols].astype(np.float32)


@dataclass
class Stage1Model:
    """Detector h, optional classifier g, and the mask / tiling settings."""

    detector: DetectorModel
    classifier: Classifier | None = None
    classifier_config: ClassifierConfig | None = None
    mask: MaskConfig = field(default_factory=MaskConfig)
    tiling: TilingConfig = field(default_factory=TilingConfig)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    classifier_validation: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------------------ folders
    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu",
             tiling: TilingConfig | None = None, mask: MaskConfig | None = None) -> Stage1Model:
        """Load a ``stage1`` or ``detector`` folder. ``tiling`` / ``mask`` override the saved ones."""
        folder = load_model_folder(path, (STAGE1_KIND, DETECTOR_KIND))
        src = str(Path(path) / "config.json")
        cfg = folder.config
        try:
            det_cfg = section_from_mapping(DetectorConfig, cfg["detector"], src)
            model_mpp = float(cfg["mpp"])
            if not (math.isfinite(model_mpp) and MPP_RANGE[0] <= model_mpp <= MPP_RANGE[1]):
                raise ValueError(f"mpp {model_mpp!r} is outside {MPP_RANGE[0]}-{MPP_RANGE[1]} um/px")
            net = build_unet(det_cfg)
            net.load_state_dict(folder.weights["detector"])
            detector = DetectorModel(net, det_cfg, model_mpp, float(folder.thresholds["peak_threshold"]),
                                     float(folder.thresholds["min_distance_um"]),
                                     dict(folder.thresholds.get("validation", {})))
            classifier = cls_cfg = None
            if folder.kind == STAGE1_KIND:
                # folders of maskllp 0.1 hold the paper's CNN and name no kind; folders from before
                # the patch classifier name no patch_features and read no patches
                cls_cfg = section_from_mapping(ClassifierConfig, {"kind": "cnn", "patch_features": False,
                                                                  **cfg["classifier"]}, src)
                classifier = build_classifier(cls_cfg)
                classifier.load_state_dict(folder.weights["classifier"])
            saved_mask = section_from_mapping(MaskConfig, cfg.get("mask", {}), src)
            saved_tiling = section_from_mapping(TilingConfig, cfg.get("tiling", {}), src)
        except KeyError as e:
            raise InputError(path, f"damaged stage-1 model folder (no {e} in it)") from None
        except (RuntimeError, TypeError, ValueError) as e:
            raise InputError(path, f"damaged stage-1 model folder ({str(e).splitlines()[0][:200]})") from None
        dev = inference_device(device)
        net.to(dev).eval()
        if classifier is not None:
            classifier.to(dev).eval()
        return cls(detector, classifier, cls_cfg, mask or saved_mask, tiling or saved_tiling, dev,
                   dict(folder.thresholds.get("classifier_validation", {})))

    def to_folder(self) -> ModelFolder:
        det = self.detector
        config: dict[str, Any] = {"mpp": det.mpp, "detector": to_mapping(det.config),
                                  "mask": to_mapping(self.mask), "tiling": to_mapping(self.tiling)}
        weights = {"detector": det.net.state_dict()}
        thresholds: dict[str, Any] = {"peak_threshold": det.peak_threshold,
                                      "min_distance_um": det.min_distance_um,
                                      "tumour_threshold": self.mask.tumour_threshold,
                                      "validation": det.validation}
        kind = DETECTOR_KIND
        if self.classifier is not None:
            kind = STAGE1_KIND
            cls_cfg = to_mapping(self.classifier_config or ClassifierConfig())
            cls_cfg["pretrained_weights"] = None  # the folder's own weights replace it: self-contained
            config["classifier"] = cls_cfg
            weights["classifier"] = self.classifier.state_dict()
            thresholds["classifier_validation"] = self.classifier_validation
        return ModelFolder(kind, config, weights, thresholds)

    def save(self, path: str | Path) -> Path:
        return save_model_folder(path, self.to_folder())

    # ------------------------------------------------------------------------------ inference
    @property
    def stride(self) -> int:
        cnn = self.classifier if isinstance(self.classifier, CellClassifier) else None
        return max(self.detector.net.stride, cnn.stride if cnn is not None else 1)

    @property
    def trunk_width(self) -> int:
        """Width of the CNN trunk's feature vector at a cell (0 without a CNN classifier)."""
        return self.classifier.head.in_features if isinstance(self.classifier, CellClassifier) else 0

    @property
    def margin(self) -> int:
        """Context on each side of a tile, in model pixels (:class:`TilingConfig`), a multiple of the
        networks' stride."""
        needed = self.detector.margin_needed
        if isinstance(self.classifier, MeasurementClassifier) or self.classifier is None:
            reach_um = max(CONTEXT_UM, NUCLEUS_REACH_UM)  # measured cells read this far around them
            needed = max(needed, math.ceil(reach_um / self.detector.mpp) + 2)
        else:
            needed = max(needed, CNN_CONTEXT_PX)
        needed = max(needed, patch_reach_px(1.0 / self.detector.mpp) + 1)  # a cell's patch, when asked for
        margin = needed if self.tiling.overlap is None else max(self.tiling.overlap, needed)
        return round_up(margin, self.stride)

    def pixel_size(self, image: ImageSource, mpp: float | None = None) -> float:
        """``mpp`` when given, else the image's pixel size, else the config's ``default_mpp``."""
        return float(mpp) if mpp is not None else image_mpp(image, self.detector.config.default_mpp)

    def grid_for(self, image: ImageSource, mpp: float | None = None) -> ModelGrid:
        """The model grid of ``image`` (``mpp`` overrides the reader's pixel size); InputError when its
        area is beyond the working-pixel budget (:mod:`maskllp.io.limits`)."""
        grid = ModelGrid.for_image(image.shape, self.pixel_size(image, mpp), self.detector.mpp)
        check_working_area(getattr(image, "path", "image"), grid.shape, self.detector.mpp, "stage 1")
        return grid

    def tiles(self, grid: ModelGrid, region: tuple[int, int, int, int] | None = None,
              tile: int | None = None) -> list[Tile]:
        """Tiles over ``region`` (model-grid top, left, height, width; default: the whole grid)."""
        region = region or (0, 0, *grid.shape)
        return tile_grid(region, tile or self.tiling.tile, self.margin, self.stride)

    @torch.no_grad()
    def detect(self, image: ImageSource, mpp: float | None = None,
               region: tuple[int, int, int, int] | None = None, tile: int | None = None,
               measure: bool = False, nucleus: bool = False, patches: bool = False) -> DetectedCells:
        """All cells of ``image`` (tiled; bounded memory), with tumour scores when a classifier is loaded.

        ``region`` limits detection to part of the model grid; ``tile`` overrides the tile side.
        ``measure``: also each cell's stain measurements (:mod:`maskllp.detection.measurements`, on
        the model grid) and the CNN classifier trunk's feature vector at it (the measurement
        classifier always measures). ``nucleus``: also their nucleus measurements (always with a
        classifier that uses them). ``patches``: also each cell's hematoxylin / DAB patch
        (:mod:`maskllp.detection.patches`, on the model grid; a classifier that reads them cuts them
        anyway, and keeps them only when asked).
        """
        self._channels_last()
        self.detector.net.eval()
        if isinstance(self.classifier, torch.nn.Module):
            self.classifier.eval()
        with batch_norms_folded(self.detector.net, self.classifier):
            return self._detect(image, mpp, region, tile, measure, nucleus, patches)

    def _detect(self, image: ImageSource, mpp: float | None, region: tuple[int, int, int, int] | None,
                tile: int | None, measure: bool, nucleus: bool, patches: bool) -> DetectedCells:
        size = self.pixel_size(image, mpp)
        grid = self.grid_for(image, size)
        det = self.detector
        cnn = self.classifier if isinstance(self.classifier, CellClassifier) else None
        measure = measure or isinstance(self.classifier, MeasurementClassifier)
        nucleus = nucleus or (isinstance(self.classifier, MeasurementClassifier)
                              and self.classifier.spec.nucleus)
        reads_patches = isinstance(self.classifier, MeasurementClassifier) and self.classifier.spec.patches
        cut_patches = patches or reads_patches
        yx_parts, peak_parts, prob_parts = [], [], []
        measured: list[np.ndarray] = []
        nuclei: list[np.ndarray] = []
        trunk: list[np.ndarray] = []
        cut: list[np.ndarray] = []
        encoded: list[np.ndarray] = []  # the classifier's codes of the patches, tile by tile
        cut_none = np.zeros((0, len(PATCH_CHANNELS), 8, 8), np.uint8)
        tiles = self.tiles(grid, region, tile)
        for tile_, window in iter_windows(image, grid, tiles, self.tiling.read_ahead):
            x = rgb_to_tensor(window, self.device).contiguous(memory_format=torch.channels_last)
            heat = det.heatmap(x)
            yx, scores = tile_peaks(heat, tile_, grid.shape, det.peak_threshold, det.min_distance_px)
            if not len(yx):
                continue
            yx_parts.append(yx + np.asarray(tile_.window_origin, np.float64))
            peak_parts.append(scores)
            if cnn is not None:
                probs, features = self._classify(x, yx, with_features=measure)
                prob_parts.append(probs)
                if features is not None:
                    trunk.append(features)
            if measure or nucleus or cut_patches:
                stains = stain_densities(window, np.float32)
                if measure:
                    measured.append(stain_measurements(stains, yx, 1.0 / self.detector.mpp))
                if nucleus:
                    nuclei.append(nucleus_measurements(stains[..., 0], yx, 1.0 / self.detector.mpp))
                if cut_patches:
                    tile_patches = cell_patches(stains, yx, 1.0 / self.detector.mpp)
                    if reads_patches:
                        assert isinstance(self.classifier, MeasurementClassifier)
                        encoded.append(self.classifier.encode_patches(tile_patches))
                    if patches:
                        cut.append(tile_patches)
        measurements = (np.concatenate(measured) if measured
                        else np.zeros((0, len(MEASUREMENT_NAMES)), np.float32)) if measure else None
        nucleus_values = (np.concatenate(nuclei) if nuclei
                          else np.zeros((0, len(NUCLEUS_NAMES)), np.float32)) if nucleus else None
        if isinstance(self.classifier, MeasurementClassifier):
            assert measurements is not None
            yx0 = grid.to_level0(np.concatenate(yx_parts)) if yx_parts else np.zeros((0, 2))
            codes = None
            if reads_patches:  # no tile held a cell: the encoder's empty output
                codes = np.concatenate(encoded) if encoded else self.classifier.encode_patches(cut_none)
            logits = self.classifier.logits(measurements, yx0, size, nucleus_values, encoded=codes)
            prob_parts = [class_probabilities(logits).float().cpu().numpy()]
        cells = self._cells(grid, size, yx_parts, peak_parts, prob_parts)
        cells.measurements = measurements
        cells.nucleus = nucleus_values
        if patches:
            side = patch_side_px(1.0 / self.detector.mpp)
            cells.patches = (np.concatenate(cut) if cut
                             else np.zeros((0, len(PATCH_CHANNELS), side, side), np.uint8))
        if measure and cnn is not None:
            cells.trunk_features = (np.concatenate(trunk) if trunk
                                    else np.zeros((0, self.trunk_width), np.float16))
        return cells

    def _channels_last(self) -> None:
        """Keep the networks' weights in channels-last order, as their inputs are: convolutions run
        1.3-2x faster so on CPU, fp32 and bf16 alike (``benchmarks/bench_stage1.py``). Saved weights
        are unaffected (model folders store contiguous tensors)."""
        self.detector.net.to(memory_format=torch.channels_last)
        if isinstance(self.classifier, CellClassifier):
            self.classifier.to(memory_format=torch.channels_last)

    def _classify(self, x: torch.Tensor, yx: np.ndarray, with_features: bool = False
                  ) -> tuple[np.ndarray, np.ndarray | None]:
        """Class probabilities (N, 1) or (N, 3) float32 of cells at window coordinates ``yx``, and
        with ``with_features`` the trunk's (N, C) float16 feature vectors there."""
        net = self.classifier
        assert isinstance(net, CellClassifier)
        net.eval()
        points = torch.zeros((len(yx), 3), dtype=torch.float32, device=self.device)
        points[:, 1:] = torch.as_tensor(yx, dtype=torch.float32, device=self.device)
        features = sample_features(net.feature_map(x), points, (x.shape[-2], x.shape[-1]))
        probs = class_probabilities(net.head(features)).float().cpu().numpy()
        return probs, (features.to(torch.float16).cpu().numpy() if with_features else None)

    def _cells(self, grid: ModelGrid, mpp: float, yx_parts: list, peak_parts: list,
               prob_parts: list) -> DetectedCells:
        n_out = self.classifier.n_outputs if self.classifier is not None else 0
        yx = np.concatenate(yx_parts) if yx_parts else np.zeros((0, 2))
        peaks = np.concatenate(peak_parts) if peak_parts else np.zeros(0, np.float32)
        if self.classifier is None:
            tumour = np.full(len(yx), np.nan, np.float32)
            probs = None
        else:
            p = np.concatenate(prob_parts) if prob_parts else np.zeros((0, n_out), np.float32)
            tumour = tumour_probability(torch.from_numpy(p)).numpy().astype(np.float32)
            probs = p.astype(np.float32) if n_out == 3 else None
        # sub-pixel refinement and the model grid may place a cell a fraction past the last pixel
        h, w = grid.image_shape
        yx0 = np.clip(grid.to_level0(yx), -0.5, [h - 0.51, w - 0.51])
        return DetectedCells(yx0, peaks, tumour, probs, grid.image_shape, mpp)

    def tumour_mask(self, cells: DetectedCells, shape: tuple[int, int] | None = None,
                    downsample: float | None = None) -> np.ndarray:
        """M for ``cells``: (ceil(H / d), ceil(W / d)) bool, d = ``downsample`` (default: the mask
        config's). Pixels closer than alpha (microns, with the cells' pixel size) to a tumour cell."""
        if self.classifier is None:
            raise ValueError("a tumour mask needs a classifier: this is a detector-only model")
        d = self.mask.downsample if downsample is None else downsample
        alpha_px = self.mask.alpha_um / cells.mpp
        return tumour_mask(cells.yx, cells.is_tumour(self.mask.tumour_threshold), shape or cells.shape,
                           alpha_px, d)

    def mask_outline(self, cells: DetectedCells) -> Any:
        """M of ``cells`` as shapely polygons in QuPath coordinates (:func:`disk_outline`)."""
        tumour = cells.is_tumour(self.mask.tumour_threshold)
        return disk_outline(cells.yx[tumour], cells.shape, self.mask.alpha_um / cells.mpp)

    def mask_at(self, cells: DetectedCells, shape: tuple[int, int]) -> np.ndarray:
        """M of a whole core from its cells, at ``shape`` (h, w) over the same extent; bool.

        Stage 2 takes its masks from here, at training time (:mod:`maskllp.training.inputs`) and at
        prediction time (:mod:`maskllp.methods`), so both see the same M.
        """
        h0, w0 = cells.shape
        downsample = max(h0 / shape[0], w0 / shape[1])
        return resize_mask(self.tumour_mask(cells, downsample=downsample), shape)
