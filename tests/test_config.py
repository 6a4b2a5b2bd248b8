"""Typed config: TOML / YAML / JSON loading, refusals naming file and key, round trip."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from maskllp.config import (
    Config,
    load_config,
    merge_mappings,
    save_config,
    section_from_mapping,
    to_mapping,
)
from maskllp.errors import InputError
from maskllp.intervals import CLINICAL_TIERS


def test_defaults():
    cfg = load_config(None)
    assert cfg == Config()
    assert cfg.intervals.build().name == "paper5"


def test_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[intervals]\nscheme = "clinical3"\n\n[classes]\nnon_tumour = ["Stroma", "Histiocyte"]\n'
                    "[trainer]\nnum_workers = 2\nprogress_bar = false\n")
    cfg = load_config(path)
    assert cfg.intervals.build() == CLINICAL_TIERS
    assert cfg.classes.non_tumour == ["Stroma", "Histiocyte"]
    assert cfg.classes.positive == Config().classes.positive  # untouched keys keep defaults
    assert cfg.trainer.num_workers == 2 and cfg.trainer.progress_bar is False


def test_yaml_with_bom_and_custom_boundaries(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes("\ufeffintervals:\n  scheme: mine\n  boundaries: [0, 0.01, 0.5, 1]\n".encode())
    scheme = load_config(path).intervals.build()
    assert scheme.names == ["0-1 %", "1-50 %", "50-100 %"]
    (tmp_path / "empty.yml").write_text("")
    assert load_config(tmp_path / "empty.yml") == Config()


@pytest.mark.parametrize("name, text, words", [
    ("c.toml", "[intervals]\nschema = 'x'\n", "key intervals.schema: unknown setting"),
    ("c.toml", "[nonsense]\na = 1\n", "key nonsense: unknown setting"),
    ("c.yaml", "trainer:\n  num_workers: two\n", "key trainer.num_workers: expected an integer, got 'two'"),
    ("c.yaml", "trainer:\n  progress_bar: 1\n", "key trainer.progress_bar: expected true or false"),
    ("c.yaml", "classes:\n  positive: Positive\n", "key classes.positive: expected a list"),
    ("c.yaml", "intervals:\n  scheme: paper6\n", "section intervals: unknown interval scheme 'paper6'"),
    ("c.yaml", "intervals:\n  boundaries: [0, 0.5, 0.4, 1]\n", "section intervals: interval boundaries"),
    ("c.yaml", "- a\n- b\n", "top level"),
    ("c.toml", "[intervals\n", "not valid TOML"),
    ("c.yaml", "a: [1,\n", "not valid YAML"),
    ("c.json", "{", "not valid JSON"),
    ("c.ini", "[a]\n", "config files must end in"),
])
def test_bad_config_names_file_and_key(tmp_path, name, text, words):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(str(path)) and words in message and "\n" not in message, message


def test_missing_config_file(tmp_path):
    with pytest.raises(InputError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip_through_save_config(tmp_path, suffix):
    cfg = load_config(None, {"intervals": {"scheme": "mine", "boundaries": [0, 0.2, 1], "names": ["a", "b"]},
                             "classes": {"ignore": ["Skip*"]}, "trainer": {"seed": 7}})
    path = tmp_path / f"config{suffix}"
    save_config(cfg, path)
    assert load_config(path) == cfg
    assert to_mapping(load_config(path)) == to_mapping(cfg)


def test_overrides_merge_on_top(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("trainer:\n  seed: 3\n  num_workers: 1\n")
    cfg = load_config(path, {"trainer": {"seed": 9}})
    assert cfg.trainer.seed == 9 and cfg.trainer.num_workers == 1
    assert merge_mappings({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}, "d": 4}) == {"a": {"b": 1, "c": 3}, "d": 4}


@dataclass
class _Inner:
    size: tuple[int, int] = (1, 2)


@dataclass
class _Section:
    mode: Literal["fast", "slow"] = "fast"
    rate: float = 0.1
    limit: float | None = None
    values: list[float] = field(default_factory=list)
    out: Path = Path("x")
    inner: _Inner = field(default_factory=_Inner)


def test_section_types_are_converted_and_checked():
    s = section_from_mapping(_Section, {"mode": "slow", "rate": 1, "limit": 2, "values": [1, 2.5],
                                        "out": "a/b", "inner": {"size": [3, 4]}}, "f.toml")
    assert s == _Section("slow", 1.0, 2.0, [1.0, 2.5], Path("a/b"), _Inner((3, 4)))
    assert isinstance(s.rate, float)
    for data, words in [({"mode": "medium"}, "key mode: expected one of 'fast', 'slow'"),
                        ({"rate": "high"}, "key rate: expected a number"),
                        ({"rate": True}, "key rate: expected a number"),
                        ({"limit": "x"}, "key limit: expected float or NoneType"),
                        ({"values": [1, "a"]}, "key values[1]: expected a number"),
                        ({"inner": {"size": [1]}}, "key inner.size: expected a list of 2 values"),
                        ({"inner": {"width": 1}}, "key inner.width: unknown setting")]:
        with pytest.raises(InputError, match=words.replace("[", r"\[").replace("]", r"\]")):
            section_from_mapping(_Section, data, "f.toml")
