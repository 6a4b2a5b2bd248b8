"""``maskllp detect``: stage 1 on new core images, and the files it writes per image.

Per image: the cells as QuPath detections (``<stem>.cells.geojson``), the tumour mask M as PNG
(``<stem>.mask.png``) and a preview (``<stem>.preview.png``); then ``summary.json`` and
``config.yaml``. The output folder appears only when every image succeeded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from maskllp.backbones import inference_autocast
from maskllp.classes import ClassMapping, RegionClass
from maskllp.config import Config, save_config
from maskllp.detection.cells import DetectedCells, count_proportion
from maskllp.detection.model import Stage1Model, image_mpp
from maskllp.errors import InputError
from maskllp.io.annotations import Region, write_detections_geojson, write_regions_geojson
from maskllp.io.atomic import atomic_file, staged_directory, write_text_atomic
from maskllp.io.grid import ImageSource
from maskllp.io.images import image_stems, open_image, write_image
from maskllp.io.manifest import images_or_cohort
from maskllp.report.preview import draw_preview, preview_scale, read_preview

PREVIEW_MAX_SIDE = 1024


def write_mask_png(path: Path, mask: np.ndarray, mpp: float | None = None) -> None:
    """A boolean mask as an 8-bit greyscale PNG (0 / 255), pixel size in pHYs; atomic."""
    kwargs: dict[str, Any] = {"format": "PNG", "optimize": True}
    if mpp is not None:
        kwargs["dpi"] = (25400.0 / mpp, 25400.0 / mpp)
    with atomic_file(path) as tmp:
        Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(tmp, **kwargs)


def write_mask_geojson(path: Path, model: Stage1Model, cells: DetectedCells, mapping: ClassMapping) -> None:
    """The tumour mask M as one QuPath ``Tumor`` annotation (``mapping``'s written tumour name;
    polygons: the disks of radius alpha around the tumour cells, merged, clipped to the image,
    simplified to half a pixel)."""
    write_regions_geojson(path, [Region(model.mask_outline(cells), RegionClass.TUMOUR,
                                        "tumour mask M (maskllp)")], mapping)


def write_cells_outputs(model: Stage1Model, image: ImageSource, cells: DetectedCells, out_dir: Path,
                        stem: str, downsample: float, mapping: ClassMapping) -> dict[str, Any]:
    """Write ``<stem>.cells.geojson``, ``<stem>.mask.geojson`` (M as a ``Tumor`` annotation),
    ``<stem>.mask.png`` and ``<stem>.preview.png``; return a summary.

    GeoJSON: one QuPath detection per cell (tumour / non-tumour, or positive / negative tumour /
    non-tumour for a three-class model, named by ``mapping``'s written names) with its scores as
    measurements. The mask is M at one pixel
    per ``downsample`` level-0 pixels. The preview is the image (longer side <= 1024 px) with M and
    the cells drawn on it.
    """
    threshold = model.mask.tumour_threshold
    classes = cells.cell_classes(threshold)
    write_detections_geojson(out_dir / f"{stem}.cells.geojson", cells.yx, classes,
                             cells.geojson_measurements(), mapping=mapping)
    write_mask_geojson(out_dir / f"{stem}.mask.geojson", model, cells, mapping)
    mask = model.tumour_mask(cells, downsample=downsample)
    write_mask_png(out_dir / f"{stem}.mask.png", mask, cells.mpp * downsample)
    scale = preview_scale(cells.shape, PREVIEW_MAX_SIDE)
    small = read_preview(image, scale)
    small_mask = model.tumour_mask(cells, downsample=scale)
    write_image(out_dir / f"{stem}.preview.png", draw_preview(small, scale, cells.yx, classes, small_mask))
    summary: dict[str, Any] = {
        "cells": len(cells), "tumour_cells": int(cells.is_tumour(threshold).sum()),
        "mask_downsample": downsample, "mask_shape": list(mask.shape),
        "mask_fraction": float(mask.mean()) if mask.size else None, "mpp": cells.mpp,
    }
    if cells.class_probs is not None:
        n_pos, n_neg, tps = count_proportion(cells, threshold)
        summary.update(positive_tumour_cells=n_pos, negative_tumour_cells=n_neg, counted_tps=tps)
    return summary


@dataclass
class DetectRun:
    """What ``maskllp detect`` was asked to do."""

    model_dir: Path
    images: list[Path]
    out_dir: Path
    mpp: float | None = None
    """Pixel size of every image (overrides their metadata)."""
    device: str = "cpu"
    overwrite: bool = False


def detect_images(run: DetectRun, config: Config,
                  progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """``maskllp detect``: stage 1 on each image; per-image outputs, ``summary.json`` and
    ``config.yaml`` in ``run.out_dir`` (which appears only when every image succeeded).

    ``config``'s ``tiling`` and ``mask`` sections (the mask's
    ``downsample`` sets the written mask's resolution) override the model's saved ones. Pixel size
    of an image: ``run.mpp``, else its metadata, else ``config.detector.default_mpp``, else the
    model's saved ``default_mpp``. ``run.images``: image files, folders of images, or one cohort
    manifest (its ``mpp`` column used where ``run.mpp`` is not given).
    """
    if not config.mask.downsample > 0:
        raise InputError("mask.downsample", f"must be positive, got {config.mask.downsample}")
    model = Stage1Model.load(run.model_dir, run.device, tiling=config.tiling, mask=config.mask)
    if model.classifier is None:
        raise InputError(run.model_dir, "a detector-only model: detect needs a stage-1 folder with the "
                                        "tumour classifier (maskllp train tumour-classifier)")
    default = config.detector.default_mpp or model.detector.config.default_mpp
    images = images_or_cohort(run.images, config.intervals.build(), config.classes)
    paths = [path for path, _ in images]
    results = []
    with staged_directory(run.out_dir, run.overwrite, [run.model_dir, *run.images, *paths]) as stage:
        for (path, entry), stem in zip(images, image_stems(paths), strict=True):
            given_mpp = run.mpp if run.mpp is not None else (entry.mpp if entry else None)
            with open_image(path, given_mpp) as reader, inference_autocast(model.device,
                                                                           config.inference.precision):
                # measured whatever the classifier: the cells GeoJSON carries their optical densities
                cells = model.detect(reader, mpp=image_mpp(reader, default, path), measure=True)
                summary = write_cells_outputs(model, reader, cells, stage, stem, config.mask.downsample,
                                              config.classes)
            results.append({"image": str(path), "name": stem, **summary})
            if progress is not None:
                progress(len(results), len(images))
        text = json.dumps({"model": str(run.model_dir), "images": results}, indent=2) + "\n"
        write_text_atomic(stage / "summary.json", text)
        save_config(config, stage / "config.yaml")
    return results
