"""A model is a folder: ``config.json``, ``weights.safetensors``, ``thresholds.json``.

``config.json`` says what the model is (``kind``: ``detector``, ``tumour-classifier``,
``proportion``...), the maskllp version that wrote it, and every setting needed to rebuild the
network; ``thresholds.json`` holds values chosen on validation data (peak threshold, interval
scheme...). Weights are safetensors, so loading a model never unpickles anything. A folder may hold
several networks (``weights.safetensors`` keys are prefixed ``<name>.``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from maskllp import __version__
from maskllp.errors import InputError
from maskllp.io.atomic import staged_directory

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
THRESHOLDS_FILE = "thresholds.json"


@dataclass
class ModelFolder:
    """The content of a model folder, in memory."""

    kind: str
    config: dict[str, Any]
    weights: dict[str, dict[str, torch.Tensor]]
    """Network name -> state dict."""
    thresholds: dict[str, Any] = field(default_factory=dict)


def save_model_folder(path: str | Path, model: ModelFolder, overwrite: bool = True) -> Path:
    """Write ``model`` to the folder ``path`` (atomically: a half-written folder never appears)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(path, "model folder exists")
    with staged_directory(path, overwrite=True) as stage:
        flat: dict[str, torch.Tensor] = {}
        for net, state in model.weights.items():
            for k, t in state.items():
                flat[f"{net}.{k}"] = t.detach().to("cpu").contiguous()
        save_file(flat, str(stage / WEIGHTS_FILE), metadata={"format": "pt"})
        cfg = {"kind": model.kind, "maskllp_version": __version__, **model.config}
        (stage / CONFIG_FILE).write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
        (stage / THRESHOLDS_FILE).write_text(
            json.dumps(model.thresholds, indent=2) + "\n", encoding="utf-8"
        )
    return path


def read_model_config(path: str | Path, kind: str | tuple[str, ...] | None = None
                      ) -> tuple[str, dict[str, Any]]:
    """The ``kind`` and the rest of ``config.json`` of a model folder, without reading its weights;
    ``kind`` (one or several) checks what it is. InputError when broken."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(path, "model folder not found")
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (path / name).is_file():
            raise InputError(path, f"not a maskllp model folder (no {name})")
    try:
        cfg = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        raise InputError(path / CONFIG_FILE, f"cannot read ({e})") from None
    if not isinstance(cfg, dict) or "kind" not in cfg:
        raise InputError(path / CONFIG_FILE, "no 'kind' in model config")
    found = cfg.pop("kind")
    cfg.pop("maskllp_version", None)
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds is not None and found not in kinds:
        raise InputError(path, f"model is a {found!r}, expected {' or '.join(kinds)}")
    return found, cfg


def load_model_folder(path: str | Path, kind: str | tuple[str, ...] | None = None) -> ModelFolder:
    """Read a model folder; ``kind`` (one or several) checks what it is. InputError when broken."""
    path = Path(path)
    found, cfg = read_model_config(path, kind)
    try:
        flat = load_file(str(path / WEIGHTS_FILE))
    except Exception as e:  # safetensors raises its own error types for a damaged file
        raise InputError(path / WEIGHTS_FILE, f"cannot read weights ({e})") from None
    weights: dict[str, dict[str, torch.Tensor]] = {}
    for k, t in flat.items():
        net, _, rest = k.partition(".")
        weights.setdefault(net, {})[rest] = t
    thresholds: dict[str, Any] = {}
    if (path / THRESHOLDS_FILE).is_file():
        try:
            thresholds = json.loads((path / THRESHOLDS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as e:
            raise InputError(path / THRESHOLDS_FILE, f"cannot read ({e})") from None
    return ModelFolder(found, cfg, weights, thresholds)


def load_network_weights(net: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """``net.load_state_dict(state, strict=True)``; InputError naming the folder when they do not fit."""
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise InputError(path, f"weights do not fit the network ({str(e).splitlines()[0]})") from None
