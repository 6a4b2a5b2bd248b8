"""Training of stage 1: the detector h and the tumour classifier g (Lightning modules, data, drivers).

Detector: random crops of the point-annotated cores (read by window, resampled to the model pixel
size), flips / 90-degree rotations / stain jitter, Gaussian heatmap targets, MSE, Adam. The bottom
band of each core (``detector.val_fraction`` of its rows) is held out: its loss drives early
stopping, and after training the peak threshold and minimum distance that give the best F1 there
are saved with the model.

Classifier: the trained detector runs over every annotated core; a detected cell gets a label when
it matches an annotated point (one-to-one within ``detector.match_radius_um``) or lies in an
annotated region, and is ignored otherwise (as in the paper, where 5.7 % of the area is
annotated). Crops centred on labelled cells, flips / rotations, BCE (or cross-entropy for three
classes), Adam. The bottom band of each core is held out for early stopping.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import shapely
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812
from torch.utils.data import DataLoader, Dataset

from maskllp.backbones import rgb_to_tensor
from maskllp.classes import CellClass, RegionClass
from maskllp.config import Config, save_config
from maskllp.config.detection import ClassifierConfig, DetectorConfig
from maskllp.detection.augment import Dihedral, stain_jitter
from maskllp.detection.cell_classifier import (
    MeasurementClassifier,
    MeasurementClassifierSpec,
    classifier_features,
)
from maskllp.detection.classifier import CellClassLoss, class_probabilities
from maskllp.detection.heatmap import centre_heatmap
from maskllp.detection.measurements import nucleus_measurements, stain_measurements
from maskllp.detection.model import DetectorModel, Stage1Model, build_classifier, build_unet, image_mpp
from maskllp.detection.patches import cell_patches
from maskllp.detection.tiling import round_up, tile_grid
from maskllp.errors import InputError
from maskllp.evaluation.detection_metrics import (
    ClassificationScores,
    DetectionScores,
    classification_scores,
    detection_scores,
    match_points,
)
from maskllp.io.annotations import Region, read_annotations, region_class_at
from maskllp.io.atomic import remove_leftovers, scratch_dir, take_over_leftover
from maskllp.io.grid import ImageSource, ModelGrid, read_model_window
from maskllp.io.images import open_image
from maskllp.io.limits import check_working_area
from maskllp.io.manifest import Cohort
from maskllp.stains import stain_densities
from maskllp.training.cells import turned_patches
from maskllp.training.trainer import RESUME_FOLDER, build_trainer, fit, is_global_zero

log = logging.getLogger("maskllp")


# =============================================================================== annotated images
@dataclass
class TrainingImage:
    """One annotated core: where its pixels are, its pixel size, its annotations (level-0 coords).

    ``source`` is a path (opened lazily, once per process, with ``maskllp.io.images.open_image``) or
    an open image (anything with the reader interface, e.g. ``ArrayImage``).
    """

    source: Path | ImageSource
    mpp: float
    points_yx: np.ndarray
    """(N, 2) float64 level-0 index coordinates of annotated cells (every cell of the core clicked:
    the detector learns from these)."""
    point_classes: np.ndarray
    """(N,) int8 CellClass values."""
    regions: list[Region] = field(default_factory=list)
    """Region polygons (QuPath coordinates)."""
    name: str = ""
    partial_yx: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    """(M, 2) level-0 coordinates of cells labelled by partial points (some cells only: the
    classifier learns from them, the detector never does)."""
    partial_classes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))

    @property
    def has_points(self) -> bool:
        """Whether the core's cells were all clicked (what the detector needs)."""
        return len(self.points_yx) > 0

    @property
    def labelled_points_yx(self) -> np.ndarray:
        """(N + M, 2): the clicked cells and the partial points, for the classifier."""
        return np.concatenate([self.points_yx.reshape(-1, 2), self.partial_yx.reshape(-1, 2)])

    @property
    def labelled_point_classes(self) -> np.ndarray:
        return np.concatenate([self.point_classes, self.partial_classes]).astype(np.int8)


class _Readers:
    """Open readers by path, one per process (readers are not shared across worker processes)."""

    def __init__(self) -> None:
        self._open: dict[str, ImageSource] = {}
        self._pid = os.getpid()

    def get(self, image: TrainingImage) -> ImageSource:
        if not isinstance(image.source, (str, Path)):
            return image.source
        if os.getpid() != self._pid:
            self._open, self._pid = {}, os.getpid()
        key = str(image.source)
        if key not in self._open:
            self._open[key] = open_image(image.source, image.mpp)
        return self._open[key]

    def __getstate__(self) -> dict[str, Any]:
        return {"_open": {}, "_pid": -1}


def images_from_cohort(cohort: Cohort, config: Config) -> list[TrainingImage]:
    """The annotated cores of a cohort, pixel sizes resolved.

    Pixel size: the manifest's, else the image file's, else ``detector.default_mpp``; an InputError
    naming the image and its manifest line when none is known.
    """
    out = []
    for entry in cohort.entries:
        if not entry.annotated:
            continue
        mpp = entry.mpp
        if mpp is None:
            with open_image(entry.image) as reader:
                mpp = image_mpp(reader, config.detector.default_mpp, f"{entry.image} (line {entry.line})")
        points = {"complete": (np.zeros((0, 2)), np.zeros(0, np.int8)),
                  "partial": (np.zeros((0, 2)), np.zeros(0, np.int8))}
        regions = []
        files: dict[Path, str] = {}
        for path, kind in ((entry.points, "complete"), (entry.regions, "complete"),
                           (entry.partial_points, "partial")):
            if path is not None:
                files.setdefault(path, kind)  # a file named in two columns is read once, as the first
        for path, kind in files.items():
            ann = read_annotations(path, config.classes)
            if len(ann.points):
                yx, classes = points[kind]
                points[kind] = (np.concatenate([yx, ann.points.yx]),
                                np.concatenate([classes, ann.points.classes]))
            regions += list(ann.regions)
        out.append(TrainingImage(entry.image, float(mpp), *points["complete"], regions, entry.image.name,
                                 *points["partial"]))
    return out


@dataclass(frozen=True)
class BandSplit:
    """Model-grid rows [0, val_top) train, [val_top, height) validate."""

    height: int
    width: int
    val_top: int

    @staticmethod
    def of(grid: ModelGrid, val_fraction: float) -> BandSplit:
        h, w = grid.shape
        val_top = h - int(round(h * val_fraction)) if val_fraction > 0 else h
        return BandSplit(h, w, max(val_top, 0))

    @property
    def train_region(self) -> tuple[int, int, int, int]:
        return 0, 0, self.val_top, self.width

    @property
    def val_region(self) -> tuple[int, int, int, int]:
        return self.val_top, 0, self.height - self.val_top, self.width

    def in_train(self, yx: np.ndarray) -> np.ndarray:
        return np.rint(yx[:, 0]) < self.val_top


def _crop_origin(rng: np.random.Generator, centre: float, size: int, low: int, high: int) -> int:
    """Top (or left) of a crop of ``size`` near ``centre`` kept inside [low, high) when it fits."""
    start = int(round(centre)) - size // 2 + int(rng.integers(-(size // 4), size // 4 + 1))
    if high - low >= size:
        return int(np.clip(start, low, high - size))
    return low - (size - (high - low)) // 2


def _augment(rgb: np.ndarray, rng: np.random.Generator, jitter: float) -> tuple[np.ndarray, Dihedral]:
    d = Dihedral.random(rng)
    return stain_jitter(d.apply(rgb), rng, jitter), d


def _chw(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1]."""
    return rgb_to_tensor(rgb)[0]


class _Seeded:
    """A fresh random stream per drawn item (seed, item index, draw count, worker)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.draws = 0

    def rng(self, index: int) -> np.random.Generator:
        self.draws += 1
        info = torch.utils.data.get_worker_info()
        # a worker's copy restarts its count each epoch; its seed (drawn from the training process's
        # generator for every epoch) keeps epochs apart
        return np.random.default_rng([self.seed, index, self.draws, 0 if info is None else info.seed % 2**32])


# =============================================================================== detector data
@dataclass
class _DetectorImage:
    image: TrainingImage
    grid: ModelGrid
    split: BandSplit
    points: np.ndarray
    """(N, 2) model-grid coordinates of every annotated cell."""


def _heatmap_crop(readers: _Readers, item: _DetectorImage, top: int, left: int, size: int,
                  sigma_px: float) -> tuple[np.ndarray, np.ndarray]:
    rgb = read_model_window(readers.get(item.image), item.grid, top, left, size, size)
    target = centre_heatmap(item.points - np.array([top, left]), (size, size), sigma_px)
    return rgb, target


class RandomHeatmapCrops(Dataset):
    """Random training crops of the train bands: (3, S, S) float image, (1, S, S) heatmap target."""

    def __init__(self, items: list[_DetectorImage], cfg: DetectorConfig, sigma_px: float, seed: int) -> None:
        self.items = [it for it in items if it.split.val_top > 0]
        self.cfg = cfg
        self.sigma_px = sigma_px
        self.readers = _Readers()
        self.seeded = _Seeded(seed)
        area = np.array([it.split.val_top * it.split.width for it in self.items], np.float64)
        self.weights = area / area.sum()

    def __len__(self) -> int:
        return self.cfg.steps_per_epoch * self.cfg.batch_size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = self.seeded.rng(index)
        item = self.items[int(rng.choice(len(self.items), p=self.weights))]
        s, split = self.cfg.crop, item.split
        top = _crop_origin(rng, rng.uniform(0, split.val_top), s, 0, split.val_top)
        left = _crop_origin(rng, rng.uniform(0, split.width), s, 0, split.width)
        rgb, target = _heatmap_crop(self.readers, item, top, left, s, self.sigma_px)
        rgb, d = _augment(rgb, rng, self.cfg.stain_jitter)
        return _chw(rgb), torch.from_numpy(d.apply(target))[None]


class FixedHeatmapCrops(Dataset):
    """Crops tiling the validation bands (no augmentation)."""

    def __init__(self, items: list[_DetectorImage], crop: int, sigma_px: float) -> None:
        self.crops = [(it, t.top, t.left) for it in items
                      for t in tile_grid(it.split.val_region, crop, 0, 1)]
        self.crop = crop
        self.sigma_px = sigma_px
        self.readers = _Readers()

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        item, top, left = self.crops[index]
        rgb, target = _heatmap_crop(self.readers, item, top, left, self.crop, self.sigma_px)
        return _chw(rgb), torch.from_numpy(target)[None]


class DetectorModule(L.LightningModule):
    """The U-Net h trained by MSE between predicted and target heatmaps (Adam)."""

    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__()
        self.net = build_unet(cfg)
        self.lr = cfg.lr
        self.loss = nn.MSELoss()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = self.loss(self.net(x), y)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(x))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", self.loss(self.net(x), y), prog_bar=True, batch_size=len(x), sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class CropDataModule(L.LightningDataModule):
    """Train / validation datasets with their batch size, workers and collate function."""

    def __init__(self, train: Dataset, val: Dataset | None, batch_size: int, num_workers: int,
                 collate: Callable | None = None) -> None:
        super().__init__()
        self.train, self.val = train, val
        self.batch_size, self.num_workers, self.collate = batch_size, num_workers, collate

    def _loader(self, ds: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(ds, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          collate_fn=self.collate, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train, True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val, False) if self.val is not None else []


# =============================================================================== training runs
def _fit(module: L.LightningModule, data: CropDataModule, config: Config, work_dir: Path,
         max_epochs: int, patience: int) -> None:
    trainer, _ = build_trainer(config.trainer, work_dir, max_epochs=max_epochs, patience=patience,
                               has_validation=data.val is not None and len(data.val) > 0,
                               save_checkpoints=config.trainer.save_checkpoints)
    fit(trainer, module, work_dir, datamodule=data)


def _model_mpp(images: list[TrainingImage], cfg: DetectorConfig) -> float:
    return float(cfg.mpp) if cfg.mpp is not None else images[0].mpp


def _detector_items(images: list[TrainingImage], model_mpp: float, val_fraction: float
                    ) -> list[_DetectorImage]:
    items = []
    for im in images:
        grid = ModelGrid.for_image(_image_shape(im), im.mpp, model_mpp)
        check_working_area(im.source if isinstance(im.source, (str, Path)) else im.name, grid.shape,
                           model_mpp, "stage 1 training")
        split = BandSplit.of(grid, val_fraction)
        items.append(_DetectorImage(im, grid, split, grid.from_level0(im.points_yx)))
    return items


def _image_shape(image: TrainingImage) -> tuple[int, int]:
    if isinstance(image.source, (str, Path)):
        with open_image(image.source, image.mpp) as reader:
            return reader.shape
    return image.source.shape


def train_detector(images: list[TrainingImage], config: Config, work_dir: Path) -> DetectorModel:
    """Train h on the images that have point annotations; choose the peak settings on validation.

    ``work_dir`` receives Lightning's logs. Raises InputError when no image has points.
    """
    pointed = [im for im in images if im.has_points]
    if not pointed:
        raise InputError(None, "no core of the cohort has point annotations: the detector needs some")
    L.seed_everything(config.trainer.seed, workers=True, verbose=False)
    model_mpp = _model_mpp(pointed, config.detector)
    cfg = replace(config.detector, crop=round_up(config.detector.crop, 2 ** (config.detector.depth - 1)))
    sigma_px = cfg.sigma_um / model_mpp
    items = _detector_items(pointed, model_mpp, cfg.val_fraction)
    if all(it.split.val_top <= 0 for it in items):
        raise InputError(None, f"detector.val_fraction {cfg.val_fraction} leaves no rows to train on")
    train = RandomHeatmapCrops(items, cfg, sigma_px, config.trainer.seed)
    val = FixedHeatmapCrops(items, cfg.crop, sigma_px) if cfg.val_fraction > 0 else None
    module = DetectorModule(cfg)
    _fit(module, CropDataModule(train, val, cfg.batch_size, config.trainer.num_workers), config, work_dir,
         cfg.max_epochs, cfg.patience)
    net = module.net.cpu().eval()
    detector = DetectorModel(net, cfg, model_mpp, cfg.thresholds[0], cfg.min_distance_um[0])
    if is_global_zero():
        choose_peak_settings(detector, items, config)
    return detector


def _truth_in(item: _DetectorImage, region: tuple[int, int, int, int]) -> np.ndarray:
    top, left, h, w = region
    r, c = np.rint(item.points[:, 0]), np.rint(item.points[:, 1])
    keep = (r >= top) & (r < top + h) & (c >= left) & (c < left + w)
    return item.image.points_yx[keep]


def choose_peak_settings(detector: DetectorModel, items: list[_DetectorImage], config: Config) -> None:
    """Set ``detector.peak_threshold`` / ``min_distance_um`` to the pair of candidates with the best
    F1 on the validation bands (the training area when there is none); record the scores."""
    cfg = config.detector
    use_val = cfg.val_fraction > 0
    best: tuple[float, float, float, DetectionScores] | None = None
    lowest = min(cfg.thresholds)
    for distance in cfg.min_distance_um:
        detector.min_distance_um, detector.peak_threshold = distance, lowest
        model = Stage1Model(detector, tiling=config.tiling)
        totals = {t: DetectionScores.from_counts(0, 0, 0) for t in cfg.thresholds}
        readers = _Readers()
        for it in items:
            region = it.split.val_region if use_val else it.split.train_region
            if region[2] <= 0:
                continue
            cells = model.detect(readers.get(it.image), mpp=it.image.mpp, region=region)
            truth = _truth_in(it, region)
            radius = cfg.match_radius_um / it.image.mpp
            for t in cfg.thresholds:
                totals[t] = totals[t] + detection_scores(cells.yx[cells.peak_score >= t], truth, radius)
        for t, s in totals.items():
            f1 = -1.0 if s.f1 is None else s.f1
            if best is None or f1 > best[0]:
                best = (f1, t, distance, s)
    assert best is not None
    _, detector.peak_threshold, detector.min_distance_um, scores = best
    detector.validation = {"on": "validation bands" if use_val else "training area", **scores.as_dict()}
    log.info("detector: peak threshold %.2f, min distance %.1f um, F1 %s", detector.peak_threshold,
             detector.min_distance_um, scores.f1)


# =============================================================================== classifier data
def cell_labels(cells_yx: np.ndarray, image: TrainingImage, classes: str, radius_px: float) -> np.ndarray:
    """Training labels of detected cells: (N,) int64, -1 where no annotation says anything.

    cells_yx: (N, 2) level-0 coordinates. A cell matched one-to-one (within ``radius_px``) to an
    annotated point (clicked or partial) takes the point's class; otherwise a cell inside an annotated
    region takes the region's. ``classes`` ``tumour``: 1 tumour, 0 non-tumour. ``three``: 0 positive tumour,
    1 negative tumour, 2 non-tumour (tumour points of unknown stain and tumour regions say nothing).
    """
    n = len(cells_yx)
    labels = np.full(n, -1, np.int64)
    if image.regions and n:
        codes = region_class_at(image.regions, cells_yx)
        if classes == "tumour":
            labels[codes == RegionClass.TUMOUR] = 1
        labels[codes == RegionClass.NON_TUMOUR] = 0 if classes == "tumour" else 2
    points_yx = image.labelled_points_yx
    if len(points_yx) and n:
        p, t = match_points(cells_yx, points_yx, radius_px)
        point_class = image.labelled_point_classes[t]
        if classes == "tumour":
            labels[p] = (point_class != CellClass.NON_TUMOUR).astype(np.int64)
        else:
            code = {CellClass.POSITIVE_TUMOUR: 0, CellClass.NEGATIVE_TUMOUR: 1, CellClass.NON_TUMOUR: 2}
            labels[p] = [code.get(CellClass(int(c)), -1) for c in point_class]
    return labels


@dataclass
class _ClassifierImage:
    image: TrainingImage
    grid: ModelGrid
    split: BandSplit
    cells: np.ndarray
    """(N, 2) model-grid coordinates of labelled detected cells."""
    labels: np.ndarray
    """(N,) int64 labels (all >= 0)."""


def collate_cells(batch: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack crops; points become (M, 3) rows (crop index, y, x); labels (M,)."""
    images = torch.stack([b[0] for b in batch])
    points = torch.cat([torch.cat([torch.full((len(b[1]), 1), float(i)), b[1]], dim=1)
                        for i, b in enumerate(batch)])
    return images, points, torch.cat([b[2] for b in batch])


def _cells_in(item: _ClassifierImage, keep: np.ndarray, top: int, left: int, size: int
              ) -> tuple[np.ndarray, np.ndarray]:
    yx = item.cells[keep] - np.array([top, left])
    inside = (yx[:, 0] >= 0) & (yx[:, 0] <= size - 1) & (yx[:, 1] >= 0) & (yx[:, 1] <= size - 1)
    return yx[inside], item.labels[keep][inside]


class RandomCellCrops(Dataset):
    """Training crops centred on labelled cells of the train bands (class-balanced when asked):
    (3, S, S) float image, (K, 2) float32 cell positions in the crop, (K,) int64 labels."""

    def __init__(self, items: list[_ClassifierImage], cfg: ClassifierConfig, seed: int) -> None:
        self.items, self.cfg = items, cfg
        self.readers = _Readers()
        self.seeded = _Seeded(seed)
        self.train_mask = [it.split.in_train(it.cells) for it in items]
        pool = [(i, j, int(it.labels[j])) for i, it in enumerate(items)
                for j in np.flatnonzero(self.train_mask[i])]
        self.pool = np.array(pool, np.int64).reshape(-1, 3)
        classes = np.unique(self.pool[:, 2])
        per_class = {c: np.count_nonzero(self.pool[:, 2] == c) for c in classes}
        w = np.array([1.0 / per_class[c] if cfg.balance else 1.0 for c in self.pool[:, 2]])
        self.weights = w / w.sum()

    def __len__(self) -> int:
        return self.cfg.steps_per_epoch * self.cfg.batch_size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rng = self.seeded.rng(index)
        i, j, _ = self.pool[int(rng.choice(len(self.pool), p=self.weights))]
        item, s = self.items[i], self.cfg.crop
        y, x = item.cells[j]
        top = _crop_origin(rng, y, s, 0, item.split.val_top)
        left = _crop_origin(rng, x, s, 0, item.split.width)
        rgb = read_model_window(self.readers.get(item.image), item.grid, top, left, s, s)
        yx, labels = _cells_in(item, self.train_mask[i], top, left, s)
        rgb, d = _augment(rgb, rng, self.cfg.stain_jitter)
        yx = d.apply_points(yx, (s, s))
        return _chw(rgb), torch.from_numpy(yx.astype(np.float32)), torch.from_numpy(labels)


class FixedCellCrops(Dataset):
    """Windows tiling the validation bands; each holds the labelled cells of its interior."""

    def __init__(self, items: list[_ClassifierImage], crop: int, stride: int) -> None:
        margin = round_up(crop // 4, stride)
        self.crop = crop
        self.readers = _Readers()
        self.windows = []
        for it in items:
            val = ~it.split.in_train(it.cells)
            for t in tile_grid(it.split.val_region, crop - 2 * margin, margin, stride):
                r, c = np.rint(it.cells[:, 0]), np.rint(it.cells[:, 1])
                keep = val & t.holds(r, c)
                if keep.any():
                    self.windows.append((it, keep, *t.window_origin, t.window))

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        item, keep, top, left, size = self.windows[index]
        rgb = read_model_window(self.readers.get(item.image), item.grid, top, left, size, size)
        yx, labels = _cells_in(item, keep, top, left, size)
        return _chw(rgb), torch.from_numpy(yx.astype(np.float32)), torch.from_numpy(labels)


class ClassifierModule(L.LightningModule):
    """The classifier g (ResNet trunk, bilinear read at cells, linear head), BCE / CE, Adam."""

    def __init__(self, cfg: ClassifierConfig) -> None:
        super().__init__()
        self.net = build_classifier(cfg, cfg.pretrained_weights)
        self.lr = cfg.lr
        self.loss = CellClassLoss()

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        images, points, labels = batch
        loss = self.loss(self.net(images, points), labels)
        self.log("train_loss", loss, prog_bar=True, batch_size=max(len(labels), 1))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        images, points, labels = batch
        logits = self.net(images, points)
        probs = class_probabilities(logits)
        pred = (probs[:, 0] > 0.5).long() if probs.shape[1] == 1 else probs.argmax(dim=1)
        n = max(len(labels), 1)
        self.log("val_loss", self.loss(logits, labels), prog_bar=True, batch_size=n, sync_dist=True)
        self.log("val_acc", (pred == labels).float().mean(), prog_bar=True, batch_size=n, sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def _classifier_items(images: list[TrainingImage], detector: Stage1Model, config: Config
                      ) -> list[_ClassifierImage]:
    cfg = config.classifier
    readers = _Readers()
    items = []
    for im in images:
        reader = readers.get(im)
        cells = detector.detect(reader, mpp=im.mpp)
        labels = cell_labels(cells.yx, im, cfg.classes, config.detector.match_radius_um / im.mpp)
        keep = labels >= 0
        grid = ModelGrid.for_image(reader.shape, im.mpp, detector.detector.mpp)
        log.info("%s: %d cells detected, %d labelled", im.name, len(cells), int(keep.sum()))
        if keep.any():
            items.append(_ClassifierImage(im, grid, BandSplit.of(grid, cfg.val_fraction),
                                          grid.from_level0(cells.yx[keep]), labels[keep]))
    return items


def train_classifier(images: list[TrainingImage], detector: DetectorModel, config: Config,
                     work_dir: Path) -> Stage1Model:
    """Train g on the detected cells of ``images`` that annotations label; return the stage-1 model.

    ``classifier.kind`` says which: the measurement classifier (:func:`train_measurement_classifier`)
    or the paper's CNN (crops around the labelled cells).
    """
    if config.classifier.kind == "measurements":
        return train_measurement_classifier(images, detector, config, work_dir)
    L.seed_everything(config.trainer.seed, workers=True, verbose=False)
    items = _classifier_items(images, Stage1Model(detector, tiling=config.tiling), config)
    module = ClassifierModule(config.classifier)
    stride = module.net.stride
    cfg = replace(config.classifier, crop=round_up(config.classifier.crop, stride))
    train = RandomCellCrops(items, cfg, config.trainer.seed) if items else None
    if train is None or len(train.pool) == 0:
        raise InputError(None, "no detected cell of the training area matches an annotated point or lies "
                               "in an annotated region: nothing to train the classifier on")
    val = FixedCellCrops(items, cfg.crop, stride) if cfg.val_fraction > 0 else None
    data = CropDataModule(train, val if val is not None and len(val) else None, cfg.batch_size,
                          config.trainer.num_workers, collate_cells)
    _fit(module, data, config, work_dir, cfg.max_epochs, cfg.patience)
    model = Stage1Model(detector, module.net.cpu().eval(), cfg, config.mask, config.tiling)
    scores = classifier_scores(model.classifier, val) if val is not None and len(val) and is_global_zero() \
        else None
    model.classifier_validation = {"labelled_train_cells": int(len(train.pool)),
                                   **({"on": "validation bands", **scores.as_dict()} if scores else {})}
    return model


# =============================================================================== measurement classifier
class MeasuredCellsModule(L.LightningModule):
    """The measurement classifier on labelled cells: class-weighted BCE (or cross-entropy), AdamW.

    Batches are (features, labels), or (features, patches, labels) for a classifier that reads
    patches; training patches are turned by a random symmetry of the square each step."""

    def __init__(self, net: MeasurementClassifier, class_weights: torch.Tensor, lr: float,
                 weight_decay: float) -> None:
        super().__init__()
        self.net, self.lr, self.weight_decay = net, lr, weight_decay
        self.register_buffer("class_weights", class_weights)

    def _loss(self, batch: Sequence[torch.Tensor], train: bool) -> torch.Tensor:
        x, y = batch[0], batch[-1]
        patches = batch[1] if len(batch) == 3 else None
        if patches is not None and train:
            patches = turned_patches(patches)
        logits = self.net(x, patches)
        w = self.class_weights[y]
        if logits.shape[1] == 1:
            per_cell = F.binary_cross_entropy_with_logits(logits[:, 0], y.to(logits.dtype), reduction="none")
        else:
            per_cell = F.cross_entropy(logits, y, reduction="none")
        return (w * per_cell).sum() / w.sum()

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch, train=True)
        self.log("train_loss", loss, batch_size=len(batch[-1]))
        return loss

    def validation_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        self.log("val_loss", self._loss(batch, train=False), batch_size=len(batch[-1]), sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)


@dataclass
class LabelledCells:
    """The detected cells that annotations label, as the measurement classifier learns from them."""

    features: np.ndarray
    """(M, F) float32 classifier inputs (:func:`classifier_features`)."""
    labels: np.ndarray
    """(M,) int64 classes (:func:`cell_labels`)."""
    validation: np.ndarray
    """(M,) bool: the cell lies in a validation band."""
    patches: np.ndarray | None = None
    """(M, 2, S, S) uint8 hematoxylin / DAB patches, when the classifier reads them."""

    def tensors(self, rows: np.ndarray) -> torch.utils.data.TensorDataset:
        parts = [torch.from_numpy(self.features[rows])]
        if self.patches is not None:
            parts.append(torch.from_numpy(self.patches[rows]))
        return torch.utils.data.TensorDataset(*parts, torch.from_numpy(self.labels[rows]))


def measured_labelled_cells(images: list[TrainingImage], detector: DetectorModel, config: Config
                            ) -> LabelledCells:
    """The detected cells of ``images`` that annotations label (the bottom band of each core,
    ``classifier.val_fraction`` of its rows, is validation), with their patches when the classifier
    reads them (``classifier.patch_features``). With ``classifier.stain_copies``, the training cells
    of each image again, measured (and cut) on that many stain-jittered copies of it (validation cells only
    as they are)."""
    cfg = config.classifier
    finder = Stage1Model(detector, tiling=config.tiling)
    readers = _Readers()
    rng = np.random.default_rng(config.trainer.seed)
    xs, ys, vals, cuts = [], [], [], []
    for im in images:
        reader = readers.get(im)
        cells = finder.detect(reader, mpp=im.mpp, measure=True, nucleus=cfg.nucleus_features,
                              patches=cfg.reads_patches)
        labels = cell_labels(cells.yx, im, cfg.classes, config.detector.match_radius_um / im.mpp)
        keep = labels >= 0
        log.info("%s: %d cells detected, %d labelled", im.name, len(cells), int(keep.sum()))
        if not keep.any():
            continue
        assert cells.measurements is not None
        features = classifier_features(cells.measurements, cells.yx, im.mpp, cfg.classes, cells.nucleus)
        grid = ModelGrid.for_image(reader.shape, im.mpp, detector.mpp)
        split = BandSplit.of(grid, cfg.val_fraction)
        xs.append(features[keep])
        ys.append(labels[keep])
        if cells.patches is not None:
            cuts.append(cells.patches[keep])
        in_val = ~split.in_train(grid.from_level0(cells.yx[keep]))
        vals.append(in_val)
        train_yx = cells.yx[keep][~in_val]
        if cfg.stain_copies and len(train_yx):
            copies = stain_jittered_measurements(reader, grid, train_yx, detector.mpp, cfg, rng)
            for measured, nucleus, cut in copies:
                xs.append(classifier_features(measured, train_yx, im.mpp, cfg.classes, nucleus))
                ys.append(labels[keep][~in_val])
                vals.append(np.zeros(len(train_yx), bool))
                if cut is not None:
                    cuts.append(cut)
    if not xs:
        return LabelledCells(np.zeros((0, 0), np.float32), np.zeros(0, np.int64), np.zeros(0, bool))
    return LabelledCells(np.concatenate(xs), np.concatenate(ys), np.concatenate(vals),
                         np.concatenate(cuts) if cfg.reads_patches else None)


def stain_jittered_measurements(reader: ImageSource, grid: ModelGrid, yx: np.ndarray, model_mpp: float,
                                cfg: ClassifierConfig, rng: np.random.Generator
                                ) -> list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]:
    """``cfg.stain_copies`` (measurements (n, F), nucleus measurements (n, G) or None, patches (n, 2,
    S, S) or None) of the cells at level-0 ``yx``, each on a copy of the whole image on the model
    ``grid`` whose stains are jittered (:func:`maskllp.detection.augment.stain_jitter`, strength
    ``cfg.stain_jitter``)."""
    window = read_model_window(reader, grid, 0, 0, *grid.shape)
    at = grid.from_level0(yx)
    out = []
    for _ in range(cfg.stain_copies):
        stains = stain_densities(stain_jitter(window, rng, cfg.stain_jitter), np.float32)
        nucleus = (nucleus_measurements(stains[..., 0], at, 1.0 / model_mpp) if cfg.nucleus_features
                   else None)
        cut = cell_patches(stains, at, 1.0 / model_mpp) if cfg.reads_patches else None
        out.append((stain_measurements(stains, at, 1.0 / model_mpp), nucleus, cut))
    return out


PATCH_BATCH = 64
"""Cells per step of a measurement classifier that reads patches (a CNN needs more steps than the
plain network's 256-cell batches give it on a few hundred labelled cells)."""


def train_measurement_classifier(images: list[TrainingImage], detector: DetectorModel, config: Config,
                                 work_dir: Path) -> Stage1Model:
    """Train the measurement classifier (:mod:`maskllp.detection.cell_classifier`) on the detected
    cells of ``images`` that annotations label; classes weigh equally when ``classifier.balance``."""
    cfg = config.classifier
    L.seed_everything(config.trainer.seed, workers=True, verbose=False)
    cells = measured_labelled_cells(images, detector, config)
    x, y, val = cells.features, cells.labels, cells.validation
    if not (~val).any():
        raise InputError(None, "no detected cell of the training area matches an annotated point or lies "
                               "in an annotated region: nothing to train the classifier on")
    net = MeasurementClassifier(MeasurementClassifierSpec(cfg.classes, cfg.hidden, cfg.dropout,
                                                          cfg.nucleus_features, cfg.reads_patches))
    net.standardise_on(torch.from_numpy(x[~val]))
    counts = np.bincount(y[~val], minlength=net.spec.n_outputs if net.spec.n_outputs > 1 else 2)
    weights = (counts.sum() / np.maximum(counts, 1) / len(counts)) if cfg.balance else np.ones(len(counts))
    lr, patience = (cfg.patch_lr, cfg.patch_patience) if cfg.reads_patches else (cfg.measurement_lr,
                                                                                   cfg.patience)
    module = MeasuredCellsModule(net, torch.as_tensor(weights, dtype=torch.float32), lr, cfg.weight_decay)
    has_val = bool(val.any())
    trainer, _ = build_trainer(config.trainer, work_dir, max_epochs=cfg.measurement_epochs,
                               patience=patience, has_validation=has_val, progress_bar=False)
    batch = PATCH_BATCH if cfg.reads_patches else 256
    fit(trainer, module, work_dir, DataLoader(cells.tensors(~val), batch_size=batch, shuffle=True),
        DataLoader(cells.tensors(val), batch_size=1024) if has_val else None)
    net = module.net.cpu().eval()
    model = Stage1Model(detector, net, cfg, config.mask, config.tiling)
    scores = None
    if has_val and is_global_zero():
        with torch.no_grad():
            probs = class_probabilities(net(*cells.tensors(val).tensors[:-1]))
        pred = (probs[:, 0] > 0.5).long() if probs.shape[1] == 1 else probs.argmax(dim=1)
        scores = classification_scores(pred.numpy(), y[val], 1 if probs.shape[1] == 1 else None)
    model.classifier_validation = {"labelled_train_cells": int((~val).sum()),
                                   **({"on": "validation bands", **scores.as_dict()} if scores else {})}
    return model


@torch.no_grad()
def classifier_scores(net: nn.Module, crops: FixedCellCrops) -> ClassificationScores:
    """Accuracy / F1 (tumour class, or macro over three classes) of ``net`` on fixed crops."""
    net.eval()
    preds, truth = [], []
    for k in range(len(crops)):
        images, points, labels = collate_cells([crops[k]])
        probs = class_probabilities(net(images, points))
        preds.append(((probs[:, 0] > 0.5).long() if probs.shape[1] == 1 else probs.argmax(dim=1)).numpy())
        truth.append(labels.numpy())
    binary = net.n_outputs == 1
    return classification_scores(np.concatenate(preds), np.concatenate(truth), 1 if binary else None)


PARTIAL_POINTS_AREA = 0.5
"""Region annotations covering less than this share of an image, with every clicked cell inside
them, mark a core whose cells were clicked only in the regions (see :func:`partially_clicked`)."""


def partially_clicked(image: TrainingImage) -> float | None:
    """The share of ``image`` its regions cover when every point lies inside them and they cover
    less than :data:`PARTIAL_POINTS_AREA` of it: a core clicked only inside its regions, which the
    detector cannot use (it would learn the unclicked cells outside as background). None otherwise.
    """
    if not image.has_points or not image.regions:
        return None
    if (region_class_at(image.regions, image.points_yx) == 0).any():
        return None
    if isinstance(image.source, Path):
        with open_image(image.source) as reader:
            height, width = reader.shape
    else:
        height, width = image.source.shape
    covered = shapely.union_all([r.geometry for r in image.regions]).area / float(height * width)
    return covered if covered < PARTIAL_POINTS_AREA else None



# =============================================================================== folders
def finish_model_folder(model: Stage1Model, out_dir: Path, work_dir: Path, config: Config) -> Path:
    """Save ``model`` to ``out_dir`` (atomically), then add the run's logs (and Lightning checkpoints
    when kept) and ``config.yaml``."""
    path = model.save(out_dir)
    for name in ("logs", "checkpoints"):
        if (work_dir / name).is_dir():
            shutil.move(str(work_dir / name), str(path / name))
    save_config(config, path / "config.yaml")
    return path


def work_dir_for(out_dir: Path, resume: bool = False) -> Path:
    """A scratch folder next to ``out_dir`` for Lightning's logs (and resume checkpoints) during
    training. ``resume``: the folder of an earlier run into ``out_dir`` that was killed, when it left
    a resume checkpoint, is continued. Otherwise the scratch folders of killed runs are removed first."""
    if resume:
        taken = take_over_leftover(out_dir, ".training", f"{RESUME_FOLDER}/last.ckpt")
        if taken is not None:
            log.info("resuming the killed run in %s", taken)
            return taken
    remove_leftovers(out_dir)
    return scratch_dir(out_dir, ".training")
