"""Typed configuration: dataclasses, loaded from TOML / YAML / JSON, written next to every run.

The root :class:`Config` has one section per concern; each section is a dataclass in a module of
this package named after its stage (``maskllp.config.detection``, ``maskllp.config.proportion``,
``maskllp.config.synth``...). These modules import nothing but the standard library and the floor
below (``maskllp.classes``, ``maskllp.intervals``), so every stage can import its settings. A config
file holds any subset of the sections and keys::

    # maskllp.toml
    [intervals]
    scheme = "clinical3"

    [classes]
    non_tumour = ["Stroma", "Immune cells", "Histiocyte"]

Unknown sections or keys, and values of the wrong type, are refused with the file and the key.
Every command that writes outputs also writes ``config.yaml``: the complete resolved config, which
loads back with ``--config``.
"""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from maskllp.classes import ClassMapping
from maskllp.config.cross_validation import CrossValidationConfig
from maskllp.config.detection import ClassifierConfig, DetectorConfig, MaskConfig, TilingConfig
from maskllp.config.inference import InferenceConfig
from maskllp.config.proportion import ProportionConfig
from maskllp.config.review import ReviewConfig
from maskllp.config.synth import SynthConfig
from maskllp.config.training import TrainerConfig
from maskllp.errors import InputError
from maskllp.intervals import IntervalScheme, get_scheme
from maskllp.io.atomic import write_text_atomic
from maskllp.io.files import read_text_file
from maskllp.io.limits import Limits

T = TypeVar("T")


@dataclass
class IntervalsConfig:
    """Which interval scheme labels use: ``paper5`` (default), ``clinical3``, or custom cut points.

    ``boundaries = [0, 0.01, 0.1, 0.5, 1]`` (fractions) defines a custom scheme; ``names`` names its
    intervals (default: ``'0-1 %'`` style names).
    """

    scheme: str = "paper5"
    boundaries: list[float] | None = None
    names: list[str] | None = None

    def build(self) -> IntervalScheme:
        return get_scheme(self.scheme, self.boundaries, self.names)


@dataclass
class Config:
    """Everything a maskllp run can be told. Every field has a default."""

    intervals: IntervalsConfig = field(default_factory=IntervalsConfig)
    classes: ClassMapping = field(default_factory=ClassMapping)
    synth: SynthConfig = field(default_factory=SynthConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    tiling: TilingConfig = field(default_factory=TilingConfig)
    proportion: ProportionConfig = field(default_factory=ProportionConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    cv: CrossValidationConfig = field(default_factory=CrossValidationConfig)
    review: ReviewConfig = field(default_factory=ReviewConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    limits: Limits = field(default_factory=Limits)


# --------------------------------------------------------------------------------- conversion
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, source: str | None, key: str) -> Any:
    """Check and convert ``value`` to the annotated type ``tp``; InputError naming ``key``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    def fail(expected: str) -> InputError:
        return InputError(source, f"expected {expected}, got {value!r}", f"key {key}")

    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, source, key)
            except InputError:
                continue
        raise fail(" or ".join(_type_name(a) for a in args))
    if origin is typing.Literal:
        if value in args:
            return value
        raise fail("one of " + ", ".join(repr(a) for a in args))
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise fail("a list")
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise fail(f"a list of {len(args)} values")
            return tuple(_convert(v, a, source, f"{key}[{i}]") for i, (v, a) in
                         enumerate(zip(value, args, strict=True)))
        inner = args[0] if args else Any
        out = [_convert(v, inner, source, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise fail("a table / mapping")
        kt, vt = args if args else (Any, Any)
        return {_convert(k, kt, source, key): _convert(v, vt, source, f"{key}.{k}")
                for k, v in value.items()}
    if is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise fail("a table / mapping")
        return _from_mapping(tp, value, source, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise fail("true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise fail("an integer")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(float(value)):
                raise fail("a finite number")
            return float(value)
        raise fail("a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise fail("a string")
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise fail("a path")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise fail(_type_name(tp))


def _from_mapping(cls: type[T], data: dict[str, Any], source: str | None, prefix: str) -> T:
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls) if f.init}
    kwargs = {}
    for k, v in data.items():
        name = str(k).replace("-", "_")
        key = f"{prefix}.{name}" if prefix else name
        if name not in known:
            raise InputError(
                source, f"unknown setting (known: {', '.join(sorted(known))})", f"key {key}"
            )
        kwargs[name] = _convert(v, hints[name], source, key)
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise InputError(source, str(e), f"section {prefix or '(top level)'}") from None
    return obj


def config_from_mapping(data: dict[str, Any], source: str | None = None) -> Config:
    """Build a :class:`Config` from a nested mapping (unknown keys and bad types are errors)."""
    if not isinstance(data, dict):
        raise InputError(source, "a config file must hold a table / mapping at the top level")
    cfg = _from_mapping(Config, data, source, "")
    _check(cfg, source)
    return cfg


def _check(cfg: Config, source: str | None) -> None:
    try:
        cfg.intervals.build()
    except ValueError as e:
        raise InputError(source, str(e), "section intervals") from None


def read_config_mapping(path: Path) -> dict[str, Any]:
    """The raw mapping of a config file (TOML/YAML/JSON), before defaults; InputError when unreadable."""
    text = read_text_file(path, "config file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib  # type: ignore[no-redef]
            return tomllib.loads(text)
        if suffix == ".json":
            return json.loads(text)
        if suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
            return {} if data is None else data
    except Exception as e:  # parser errors of three libraries: all mean "not valid syntax"
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(path, f"not valid {suffix[1:].upper()} ({msg})") from None
    raise InputError(path, "config files must end in .toml, .yaml, .yml or .json")


def load_config(path: str | Path | list[str | Path] | tuple[str | Path, ...] | None = None,
                overrides: dict[str, Any] | None = None) -> Config:
    """Load a config file (TOML/YAML/JSON), several merged in order (a later file's values win), or
    the defaults when ``path`` is None or empty.

    Each file is checked on its own first, so an error names the file that holds it. ``overrides``
    (a nested mapping, e.g. from command-line options) is merged on top.
    """
    if path is None:
        paths = []
    else:
        paths = [Path(p) for p in path] if isinstance(path, list | tuple) else [Path(path)]
    data = read_config_files(paths)
    if overrides:
        data = merge_mappings(data, overrides)
    return config_from_mapping(data, ", ".join(str(p) for p in paths) or None)


def read_config_files(paths: list[Path]) -> dict[str, Any]:
    """The mappings of config files merged in order (a later file's values win); each file is
    checked on its own first, so an error names the file that holds it."""
    data: dict[str, Any] = {}
    for p in paths:
        one = read_config_mapping(p)
        config_from_mapping(one, str(p))
        data = merge_mappings(data, one)
    return data


def merge_mappings(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Recursive merge: values of ``top`` win; nested mappings are merged key by key."""
    out = dict(base)
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_mappings(out[k], v)
        else:
            out[k] = v
    return out


def to_mapping(obj: Any) -> Any:
    """A dataclass (or nested values) as plain JSON/YAML-ready data."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_mapping(getattr(obj, f.name)) for f in fields(obj) if f.init}
    if isinstance(obj, (list, tuple)):
        return [to_mapping(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_mapping(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def section_from_mapping(cls: type[T], data: dict[str, Any], source: str | None = None) -> T:
    """Build one config section (any config dataclass) from a mapping, with the same checks."""
    return _from_mapping(cls, data, source, "")


def save_config(cfg: Any, path: str | Path) -> None:
    """Write a config (or section) as YAML (``.yaml``) or JSON (``.json``), atomically."""
    path = Path(path)
    data = to_mapping(cfg)
    if path.suffix.lower() == ".json":
        text = json.dumps(data, indent=2) + "\n"
    else:
        import yaml

        text = yaml.safe_dump(data, sort_keys=False)
    write_text_atomic(path, text)

