# ruff: noqa: E501  (a table of cases: one case per line reads better than wrapped ones)
"""The catalogue of bad inputs: every command, every kind of input a user gets wrong.

Each case asserts what a lab can rely on: exit 2, one ``error:`` line that names the file or the
setting, no traceback, and not one file created, changed or deleted anywhere under the folder the
command was given (inputs, models, outputs; the tree is snapshot before and after, hidden files
included, so a left-over lock or staging folder fails too).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@dataclass
class World:
    root: Path

    @property
    def csv(self) -> Path:
        return self.root / "cohort" / "cohort.csv"

    @property
    def image(self) -> Path:
        return self.root / "cohort" / "cores" / "core00.png"

    @property
    def stage1(self) -> Path:
        return self.root / "stage1"

    @property
    def model(self) -> Path:
        return self.root / "model-ours"

    def out(self, name: str) -> Path:
        return self.root / "out" / name

    def bad(self, name: str, content: bytes | str | None = None) -> Path:
        """A file (or, with no content, a folder) under ``bad/`` made for one case."""
        path = self.root / "bad" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            path.mkdir(exist_ok=True)
        elif isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
        return path

    def manifest(self, name: str, rows: list[str], header: str = "image,patient,label,mpp") -> Path:
        """A manifest under ``bad/`` whose image paths are the tiny cohort's (absolute)."""
        return self.bad(name, "\n".join([header, *rows]) + "\n")

    def core(self, k: int = 0) -> Path:
        return self.root / "cohort" / "cores" / f"core{k:02d}.png"

    def model_copy(self, name: str, source: Path | None = None, edit: Callable[[Path], None] | None = None
                   ) -> Path:
        """A copy of a model folder under ``bad/`` changed by ``edit``."""
        import shutil

        dst = self.root / "bad" / name
        if not dst.exists():
            shutil.copytree(source or self.model, dst)
            if edit is not None:
                edit(dst)
        return dst


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def _huge_tiff(w: World) -> Path:
    """The world's ~1 KB tiled TIFF whose header declares 100 000 x 100 000 px."""
    return w.root / "huge.tif"


def _grey_png(w: World) -> Path:
    buf = io.BytesIO()
    Image.fromarray(np.full((40, 40), 120, np.uint8)).save(buf, "PNG")
    return w.bad("grey.png", buf.getvalue())


def _points(w: World, name: str, text: str) -> Path:
    """A manifest of one core whose points file holds ``text``."""
    pts = w.bad(name, text)
    return w.manifest(f"{name}.csv", [f"{w.core()},P0,1-25 %,{pts},0.5"], "image,patient,label,points,mpp")


def _gz_bomb(w: World) -> Path:
    point = '{"type":"Feature","geometry":{"type":"Point","coordinates":[1,2]},"properties":{}}'
    text = '{"type":"FeatureCollection","features":[' + ",".join([point] * 50_000) + "]}"
    pts = w.bad("bomb.geojson.gz", gzip.compress(text.encode(), 9))
    return w.manifest("bomb.csv", [f"{w.core()},P0,1-25 %,{pts},0.5"], "image,patient,label,points,mpp")


def _zip_two(w: World) -> Path:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.geojson", "{}")
        z.writestr("b.geojson", "{}")
    pts = w.bad("two.zip", buf.getvalue())
    return w.manifest("two-zip.csv", [f"{w.core()},P0,1-25 %,{pts},0.5"], "image,patient,label,points,mpp")


def _edit_json(name: str, change: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        path = folder / name
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))
    return edit


def _set_path(keys: tuple[str, ...], value: object) -> Callable[[dict], None]:
    def change(d: dict) -> None:
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return change


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def _write(path: Path, content: bytes | str) -> None:
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)


def _replace_file(name: str, content: bytes | str) -> Callable[[Path], None]:
    return lambda folder: _write(folder / name, content)


def _remove_file(name: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).unlink()


def _cfg(w: World, name: str, text: str) -> Path:
    return w.bad(name, text)


# (id, case): case(world) -> (argv, words the error line must hold)
Case = Callable[[World], tuple[list[object], list[str]]]
CASES: list[tuple[str, Case]] = []


def case(name: str):
    def register(fn: Case) -> Case:
        CASES.append((name, fn))
        return fn
    return register


def _many(prefix: str, items: list[tuple[str, Case]]) -> None:
    for name, fn in items:
        CASES.append((f"{prefix}-{name}", fn))


# ------------------------------------------------------------------ manifests
_many("manifest", [
    ("missing", lambda w: (["validate", w.root / "bad" / "nope.csv"], ["nope.csv"])),
    ("empty", lambda w: (["validate", w.bad("empty.csv", "")], ["empty.csv"])),
    ("no-image-column", lambda w: (["validate", w.bad("nocol.csv", "file,label\na.png,0-1 %\n")],
                                   ["nocol.csv", "image"])),
    ("binary", lambda w: (["validate", w.bad("binary.csv", w.image.read_bytes())], ["binary.csv"])),
    ("is-folder", lambda w: (["validate", w.bad("folder.csv")], ["folder.csv"])),
    ("missing-image", lambda w: (["cv", w.manifest("mi.csv", ["nothere.png,P0,0-1 %,0.5"]), "--out",
                                  w.out("mi")], ["nothere.png"])),
    ("unknown-label", lambda w: (["cv", w.manifest("ul.csv", [f"{w.core()},P0,lots,0.5"]), "--out",
                                  w.out("ul")], ["ul.csv", "lots"])),
    ("negative-mpp", lambda w: (["cv", w.manifest("nm.csv", [f"{w.core()},P0,0-1 %,-0.5"]), "--out",
                                 w.out("nm")], ["nm.csv"])),
    ("text-mpp", lambda w: (["cv", w.manifest("tm.csv", [f"{w.core()},P0,0-1 %,abc"]), "--out",
                             w.out("tm")], ["tm.csv"])),
    ("duplicate-image", lambda w: (["cv", w.manifest("dup.csv", [f"{w.core()},P0,0-1 %,0.5"] * 2), "--out",
                                    w.out("dup")], ["dup.csv"])),
    ("missing-points-file", lambda w: (["train", "detector", w.manifest(
        "mp.csv", [f"{w.core()},P0,0-1 %,{w.root / 'bad' / 'gone.geojson'},0.5"],
        "image,patient,label,points,mpp"), "--out", w.out("mp")], ["gone.geojson"])),
    ("no-labels-for-proportion", lambda w: (["train", "proportion", w.manifest(
        "nolab.csv", [f"{w.core()},P0,,0.5"]), "--out", w.out("nolab"), "--method", "prop-nomask"],
        ["nolab.csv"])),
    ("no-points-for-detector", lambda w: (["train", "detector", w.csv, "--out", w.out("nopts")],
                                          ["cohort.csv"])),
    ("one-core-for-cv", lambda w: (["cv", w.manifest("one.csv", [f"{w.core()},P0,0-1 %,0.5"]), "--out",
                                    w.out("one"), "--methods", "class"], ["one.csv"])),
])

# ------------------------------------------------------------------ images
_many("image", [
    ("missing", lambda w: (["detect", w.stage1, w.root / "bad" / "nothere.png", "--out", w.out("i1")],
                           ["nothere.png"])),
    ("empty", lambda w: (["detect", w.stage1, w.bad("empty.png", b""), "--out", w.out("i2")], ["empty.png"])),
    ("text-as-png", lambda w: (["detect", w.stage1, w.bad("text.png", "hello"), "--out", w.out("i3")],
                               ["text.png"])),
    ("truncated-png", lambda w: (["detect", w.stage1, w.bad("trunc.png", w.image.read_bytes()[:200]), "--out",
                                  w.out("i4")], ["trunc.png"])),
    ("grey", lambda w: (["detect", w.stage1, _grey_png(w), "--out", w.out("i5")], ["grey.png", "RGB"])),
    ("empty-folder", lambda w: (["detect", w.stage1, w.bad("nothing-here"), "--out", w.out("i6")],
                                ["nothing-here"])),
    ("tif-not-tiff", lambda w: (["detect", w.stage1, w.bad("fake.tif", "not a tiff"), "--out", w.out("i7")],
                                ["fake.tif", "TIFF"])),
    ("truncated-jpeg", lambda w: (["detect", w.stage1, w.bad("cut.jpg", b"\xff\xd8\xff\xe0" + b"\0" * 30),
                                   "--out", w.out("i8")], ["cut.jpg"])),
    ("slide-without-openslide", lambda w: (["detect", w.stage1, w.bad("slide.svs", b"\0" * 64), "--out",
                                            w.out("i9")], ["slide.svs"])),
    ("png-beyond-max-side", lambda w: (["detect", w.stage1, w.bad("wide.png", _png_header_only(250_000, 2)),
                                        "--out", w.out("i10")], ["wide.png", "beyond"])),
    ("png-bomb", lambda w: (["detect", w.stage1, w.bad("bomb.png", _png_header_only(90_000, 90_000)), "--out",
                             w.out("i11")], ["bomb.png", "pixels"])),
    ("tiff-header-100000px-detect", lambda w: (["detect", w.stage1, _huge_tiff(w), "--out", w.out("i12")],
                                               ["huge.tif", "limits.max_working_pixels"])),
    ("tiff-header-100000px-predict", lambda w: (["predict", w.model, _huge_tiff(w), "--out", w.out("i13")],
                                                ["huge.tif", "limits."])),
    ("tiff-header-100000px-budget-from-config", lambda w: (
        ["detect", w.stage1, w.image, "--out", w.out("i14"), "-c",
         _cfg(w, "tiny-budget.toml", "[limits]\nmax_read_pixels = 100\n")], ["core00.png", "max_read_pixels"])),
    ("mpp-zero", lambda w: (["detect", w.stage1, w.image, "--out", w.out("i15"), "--mpp", 0], ["0.01-100"])),
    ("mpp-nan", lambda w: (["detect", w.stage1, w.image, "--out", w.out("i16"), "--mpp", "nan"], ["0.01-100"])),
    ("mpp-huge", lambda w: (["detect", w.stage1, w.image, "--out", w.out("i17"), "--mpp", 100000],
                            ["0.01-100"])),
    ("mpp-text", lambda w: (["detect", w.stage1, w.image, "--out", w.out("i18"), "--mpp", "abc"], ["--mpp"])),
    ("unknown-pixel-size", lambda w: (["detect", w.stage1, w.bad("nompp.png", w.image.read_bytes()), "--out",
                                       w.out("i19")], ["nompp.png", "pixel size"])),
    ("manifest-with-a-bad-image", lambda w: (["predict", w.model, w.manifest(
        "badimg.csv", [f"{w.core()},P0,0-1 %,0.5", f"{w.root / 'bad' / 'text.png'},P1,0-1 %,0.5"]), "--out",
        w.out("i20")], ["text.png"])),
])

# ------------------------------------------------------------------ annotations (read by validate)
_many("annotation", [
    ("not-json", lambda w: (["validate", _points(w, "nj.geojson", "{not json")], ["nj.geojson", "JSON"])),
    ("empty", lambda w: (["validate", _points(w, "em.geojson", "")], ["em.geojson"])),
    ("deep", lambda w: (["validate", _points(w, "deep.geojson", "[" * 50_000)], ["deep.geojson", "nested"])),
    ("gzip-bomb", lambda w: (["validate", _gz_bomb(w), "-c", _cfg(w, "small-ann.toml",
                              "[limits]\nmax_annotation_bytes = 10000\n")], ["bomb.geojson.gz", "decompression"])),
    ("damaged-gzip", lambda w: (["validate", _points(w, "dg.geojson.gz", "\x1f\x8bgarbage")], ["dg.geojson.gz"])),
    ("zip-two-members", lambda w: (["validate", _zip_two(w)], ["two.zip", "exactly one"])),
    ("json-a-number", lambda w: (["validate", _points(w, "nums.geojson", "42")], ["nums.geojson"])),
    ("nan-coordinates", lambda w: (["validate", _points(w, "nan.geojson", json.dumps(
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [float("nan"), 3]},
         "properties": {"classification": {"name": "Positive"}}}))], ["nan.geojson"])),
    ("points-outside-image", lambda w: (["validate", _points(w, "out.csv", "x,y,class\n500,500,Positive\n")],
                                        ["out.csv"])),
    ("csv-text-coordinate", lambda w: (["validate", _points(w, "txt.csv", "x,y,class\nabc,3,Positive\n")],
                                       ["txt.csv"])),
    ("unknown-class", lambda w: (["validate", _points(w, "uc.geojson", json.dumps(
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [3, 3]},
         "properties": {"classification": {"name": "Martian"}}}))], ["uc.geojson", "Martian"])),
    ("binary", lambda w: (["validate", _points(w, "bin.geojson", "\x00\x01\x02" * 10)], ["bin.geojson"])),
])

# ------------------------------------------------------------------ config files and settings
BAD_SETTINGS = [
    ("[trainer]\ndevices = \"abc\"\n", "trainer.devices"),
    ("[trainer]\ndevices = \"0\"\n", "trainer.devices"),
    ("[trainer]\naccelerator = \"tpu\"\n", "trainer.accelerator"),
    ("[trainer]\nstrategy = \"magic\"\n", "trainer.strategy"),
    ("[trainer]\nprecision = \"8-bit\"\n", "trainer.precision"),
    ("[trainer]\nnum_workers = -1\n", "trainer.num_workers"),
    ("[detector]\nsteps_per_epoch = 0\n", "detector.steps_per_epoch"),
    ("[detector]\nbatch_size = 0\n", "detector.batch_size"),
    ("[detector]\nmax_epochs = -1\n", "detector.max_epochs"),
    ("[detector]\nmax_epochs = 0\n", "detector.max_epochs"),
    ("[detector]\nsigma_um = 0\n", "detector.sigma_um"),
    ("[detector]\nthresholds = []\n", "detector.thresholds"),
    ("[detector]\nmpp = -0.5\n", "detector.mpp"),
    ("[detector]\nlr = nan\n", "finite"),
    ("[classifier]\nbatch_size = 0\n", "classifier.batch_size"),
    ("[classifier]\ndropout = 1.5\n", "classifier.dropout"),
    ("[mask]\nalpha_um = -1\n", "mask.alpha_um"),
    ("[mask]\ntumour_threshold = 2\n", "mask.tumour_threshold"),
    ("[mask]\ndownsample = inf\n", "finite"),
    ("[tiling]\ntile = 0\n", "tiling.tile"),
    ("[tiling]\noverlap = -8\n", "tiling.overlap"),
    ("[proportion]\nbatch_size = 0\n", "batch_size"),
    ("[proportion]\nmpp = 0\n", "mpp"),
    ("[proportion]\nmax_steps = 0\n", "max_steps"),
    ("[proportion.cells]\nhidden = 0\n", "cells"),
    ("[cv]\nfolds = 1\n", "cv.folds"),
    ("[inference]\nprecision = \"fp16\"\n", "inference.precision"),
    ("[review]\nmin_stained_fraction = 2\n", "review"),
    ("[limits]\nmax_read_pixels = 0\n", "limits.max_read_pixels"),
    ("[limits]\nmax_json_depth = \"deep\"\n", "limits.max_json_depth"),
    ("[nonsense]\nx = 1\n", "nonsense"),
    ("[detector]\nsigmaa_um = 2\n", "sigmaa_um"),
    ("[detector]\nbatch_size = \"eight\"\n", "detector.batch_size"),
    ("[detector\nbatch_size = 8\n", "TOML"),
]


def _setting_case(text: str, words: str) -> Case:
    def make(w: World) -> tuple[list[object], list[str]]:
        name = "cfg-" + hashlib.sha1(text.encode()).hexdigest()[:8] + ".toml"
        return ["plot-loss", "--out", w.out("fig.png"), "-c", _cfg(w, name, text)], [name, words]
    return make


_many("setting", [(text.replace("\n", " ").strip(), _setting_case(text, words)) for text, words in BAD_SETTINGS])
_many("config-file", [
    ("missing", lambda w: (["plot-loss", "--out", w.out("f1.png"), "-c", w.root / "bad" / "none.toml"],
                           ["none.toml"])),
    ("ini-suffix", lambda w: (["plot-loss", "--out", w.out("f2.png"), "-c", _cfg(w, "c.ini", "[a]\n")],
                              ["c.ini"])),
    ("deep-json", lambda w: (["plot-loss", "--out", w.out("f3.png"), "-c", _cfg(w, "deep.json", "[" * 50_000)],
                             ["deep.json"])),
    ("yaml-list", lambda w: (["plot-loss", "--out", w.out("f4.png"), "-c", _cfg(w, "list.yaml", "- 1\n- 2\n")],
                             ["list.yaml"])),
    ("bad-yaml", lambda w: (["plot-loss", "--out", w.out("f5.png"), "-c", _cfg(w, "bad.yaml", "a: [1, 2\n")],
                            ["bad.yaml"])),
    ("second-of-two-bad", lambda w: (["plot-loss", "--out", w.out("f6.png"), "-c", _cfg(w, "ok.toml", ""),
                                      "-c", _cfg(w, "typo.toml", "[synth]\nsizee = 1\n")], ["typo.toml", "sizee"])),
    ("is-a-folder", lambda w: (["plot-loss", "--out", w.out("f7.png"), "-c", w.bad("conf-folder.toml")],
                               ["conf-folder.toml"])),
])

# ------------------------------------------------------------------ model folders
_many("model", [
    ("missing", lambda w: (["predict", w.root / "bad" / "no-model", w.image, "--out", w.out("m1")],
                           ["no-model"])),
    ("a-file", lambda w: (["predict", w.image, w.image, "--out", w.out("m2")], ["core00.png"])),
    ("no-weights", lambda w: (["predict", w.model_copy("m-noweights", edit=_remove_file("weights.safetensors")),
                               w.image, "--out", w.out("m3")], ["m-noweights"])),
    ("config-not-json", lambda w: (["predict", w.model_copy("m-badjson", edit=_replace_file("config.json", "{x")),
                                    w.image, "--out", w.out("m4")], ["m-badjson"])),
    ("config-deep-json", lambda w: (["predict", w.model_copy(
        "m-deepjson", edit=_replace_file("config.json", "[" * 50_000)), w.image, "--out", w.out("m5")],
        ["m-deepjson"])),
    ("weights-garbage", lambda w: (["predict", w.model_copy(
        "m-garbage", edit=_replace_file("weights.safetensors", b"\x00" * 100)), w.image, "--out", w.out("m6")],
        ["m-garbage", "weights"])),
    ("weights-a-pickle", lambda w: (["predict", w.model_copy(
        "m-pickle", edit=_replace_file("weights.safetensors", pickle.dumps(_Evil()))), w.image, "--out",
        w.out("m7")], ["m-pickle", "weights"])),
    ("stage1-given-to-predict-as-stage2", lambda w: (["predict", w.model, w.image, "--out", w.out("m8"),
                                                      "--stage1", w.model], ["model-ours"])),
    ("stage2-given-to-detect", lambda w: (["detect", w.model, w.image, "--out", w.out("m9")], ["model-ours"])),
    ("negative-input-size", lambda w: (["predict", w.model_copy(
        "m-negsize", edit=_edit_json("config.json", _set_path(("input", "size"), -64))), w.image, "--out",
        w.out("m10")], ["m-negsize"])),
    ("stage1-mpp-zero", lambda w: (["detect", w.model_copy(
        "s-mpp0", w.stage1, _edit_json("config.json", _set_path(("mpp",), 0))), w.image, "--out", w.out("m11")],
        ["s-mpp0"])),
    ("stage1-width-text", lambda w: (["detect", w.model_copy(
        "s-width", w.stage1, _edit_json("config.json", _set_path(("detector", "base_channels"), "wide"))),
        w.image, "--out", w.out("m12")], ["s-width"])),
    ("weights-of-another-network", lambda w: (["detect", w.model_copy(
        "s-swapped", w.stage1, lambda f: _write(f / "weights.safetensors", (w.model / "weights.safetensors").read_bytes())),
        w.image, "--out", w.out("m13")], ["s-swapped"])),
    ("kind-unknown", lambda w: (["predict", w.model_copy(
        "m-kind", edit=_edit_json("config.json", _set_path(("kind",), "toaster"))), w.image, "--out",
        w.out("m14")], ["m-kind", "toaster"])),
])

# ------------------------------------------------------------------ options and --out
_many("option", [
    ("device-bogus", lambda w: (["detect", w.stage1, w.image, "--out", w.out("o1"), "--device", "bogus"],
                                ["unknown device"])),
    ("device-cuda-7", lambda w: (["detect", w.stage1, w.image, "--out", w.out("o2"), "--device", "cuda:7"],
                                 ["CUDA"])),
    ("device-mps", lambda w: (["detect", w.stage1, w.image, "--out", w.out("o3"), "--device", "mps"], ["MPS"])),
    ("unknown-option", lambda w: (["detect", w.stage1, w.image, "--out", w.out("o4"), "--bogus"], ["--bogus"])),
    ("missing-argument", lambda w: (["predict", w.model, "--out", w.out("o5")], ["Missing"])),
    ("synth-n-zero", lambda w: (["synth", "--n", 0, "--out", w.out("o6")], ["--n"])),
    ("synth-size-text", lambda w: (["synth", "--n", 1, "--size", "big", "--out", w.out("o7")], ["--size"])),
    ("synth-marker-unknown", lambda w: (["synth", "--n", 1, "--marker", "cytoplasm", "--out", w.out("o8")],
                                        ["cytoplasm"])),
    ("cv-unknown-method", lambda w: (["cv", w.csv, "--out", w.out("o9"), "--methods", "magic"], ["magic"])),
    ("cv-folds-one", lambda w: (["cv", w.csv, "--out", w.out("o10"), "--folds", 1], ["fold"])),
    ("cv-train-cores-zero", lambda w: (["cv", w.csv, "--out", w.out("o11"), "--train-cores", 0],
                                       ["train_cores"])),
    ("cv-folds-from-missing", lambda w: (["cv", w.csv, "--out", w.out("o12"), "--folds-from",
                                          w.root / "bad" / "nofolds.csv"], ["nofolds.csv"])),
    ("cv-folds-from-unknown-images", lambda w: (["cv", w.csv, "--out", w.out("o13"), "--folds-from",
                                                 w.bad("folds.csv", "image,fold\nelse.png,0\n")], ["folds.csv"])),
    ("cv-oracle-without-truth", lambda w: (["cv", w.csv, "--out", w.out("o14"), "--mask-source", "truth",
                                            "--folds", 2, "--methods", "ours"],
                                           ["--truth"])),
    ("train-unknown-method", lambda w: (["train", "proportion", w.csv, "--out", w.out("o15"), "--method",
                                         "magic"], ["magic"])),
    ("train-input-size-not-32", lambda w: (["train", "proportion", w.csv, "--out", w.out("o16"), "--input-size",
                                            100, "--method", "prop-nomask", "-c",
                                            _cfg(w, "square.toml", "[proportion]\nresize = \"square\"\n")],
                                           ["32"])),
    ("train-detector-max-epochs-zero", lambda w: (["train", "detector", w.csv, "--out", w.out("o17"),
                                                   "--max-epochs", 0], ["max_epochs"])),
    ("plot-loss-txt", lambda w: (["plot-loss", "--out", w.out("fig.txt")], ["fig.txt"])),
    ("evaluate-detection-out-a-folder", lambda w: (["evaluate-detection", w.stage1, w.csv, "--out",
                                                    w.bad("report-folder")], ["report-folder"])),
    ("train-device-bogus", lambda w: (["train", "detector", w.csv, "--out", w.out("o20"), "--device", "tpu"],
                                      ["unknown device", "--device"])),
    ("train-device-and-devices", lambda w: (["train", "detector", w.csv, "--out", w.out("o21"), "--device",
                                             "cuda:0,1", "--devices", 2], ["--devices"])),
    ("cv-device-and-accelerator", lambda w: (["cv", w.csv, "--out", w.out("o22"), "--device", "cpu",
                                              "--accelerator", "cpu"], ["--accelerator"])),
    ("predict-devices-zero", lambda w: (["predict", w.model, w.image, "--out", w.out("o23"), "--devices", 0],
                                        ["--devices", "1 or more"])),
    ("predict-gpus-listed-and-counted", lambda w: (["predict", w.model, w.image, "--out", w.out("o24"),
                                                    "--device", "cuda:0,1", "--devices", 2], ["drop --devices"])),
    ("suggest-n-zero", lambda w: (["suggest", w.stage1, w.csv, "--out", w.out("o25"), "--n", 0], ["--n"])),
    ("suggest-strategy-unknown", lambda w: (["suggest", w.stage1, w.csv, "--out", w.out("o26"), "--strategy",
                                             "best"], ["best", "--strategy"])),
    ("suggest-stage1-missing", lambda w: (["suggest", w.root / "bad" / "nostage1", w.csv, "--out", w.out("o27")],
                                          ["nostage1"])),
    ("predict-mask-method-with-dead-stage1", lambda w: (["predict", w.model, w.image, "--out", w.out("o19"),
                                                         "--stage1", w.root / "bad" / "nostage1"], ["nostage1"])),
])

_many("out", [
    ("holds-the-images", lambda w: (["predict", w.model, w.image, "--out", w.image.parent, "--overwrite"],
                                    ["cores"])),
    ("is-the-model", lambda w: (["predict", w.model, w.image, "--out", w.model, "--overwrite"], ["model-ours"])),
    ("is-the-stage1-for-detect", lambda w: (["detect", w.stage1, w.image, "--out", w.stage1, "--overwrite"],
                                            ["stage1"])),
    ("is-the-cwd", lambda w: (["detect", w.stage1, w.image, "--out", ".", "--overwrite"], ["current"])),
    ("is-a-parent", lambda w: (["detect", w.stage1, w.image, "--out", "..", "--overwrite"], [".."])),
    ("user-folder-with-overwrite", lambda w: (["detect", w.stage1, w.image, "--out", _user_folder(w),
                                               "--overwrite"], ["mine"])),
    ("existing-without-overwrite", lambda w: (["detect", w.stage1, w.image, "--out", _user_folder(w)], ["mine"])),
    ("parent-is-a-file", lambda w: (["detect", w.stage1, w.image, "--out", w.image / "out"], ["core00.png"])),
    ("holds-the-manifest", lambda w: (["cv", w.csv, "--out", w.csv.parent, "--overwrite"], ["cohort"])),
    ("synth-into-the-cohort", lambda w: (["synth", "--n", 1, "--out", w.csv.parent, "--overwrite"], ["cohort"])),
    ("train-into-the-stage1", lambda w: (["train", "proportion", w.csv, "--out", w.stage1, "--stage1", w.stage1,
                                          "--overwrite"], ["stage1"])),
    ("suggest-into-the-cohort", lambda w: (["suggest", w.stage1, w.csv, "--out", w.csv.parent, "--overwrite"],
                                           ["cohort"])),
    ("suggest-into-a-user-folder", lambda w: (["suggest", w.stage1, w.csv, "--out", _user_folder(w),
                                              "--overwrite"], ["mine"])),
    ("locked-by-a-live-run", lambda w: (["detect", w.stage1, w.image, "--out", _locked(w)], ["locked-out"])),
])


def _user_folder(w: World) -> Path:
    folder = w.bad("mine")
    (folder / "notes.txt").write_text("a pathologist's notes")
    return folder


def _locked(w: World) -> Path:
    out = w.root / "bad" / "locked-out"
    (w.root / "bad" / ".locked-out.lock").write_text("1")  # process 1 (init) is always alive
    return out


def _snapshot(root: Path) -> dict[str, tuple[str, int, str]]:
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            state[os.path.relpath(os.path.join(dirpath, d), root)] = ("dir", 0, "")
        for f in filenames:
            p = Path(dirpath) / f
            state[os.path.relpath(p, root)] = ("file", p.stat().st_size, hashlib.sha1(p.read_bytes()).hexdigest())
    return state


def test_the_catalogue_is_large_enough():
    assert len(CASES) >= 80, len(CASES)
    assert len({name for name, _ in CASES}) == len(CASES)


@pytest.mark.parametrize("name, make", CASES, ids=[name for name, _ in CASES])
def test_a_bad_input_is_one_line_and_changes_no_file(tiny_world, run_cli, monkeypatch, name, make):
    import torch

    w = World(tiny_world)
    (w.root / "out").mkdir(exist_ok=True)
    monkeypatch.chdir(w.root / "out")
    args, words = make(w)
    if args[0] in ("detect", "predict") and "--mpp" not in args and name != "image-unknown-pixel-size":
        args += ["--mpp", 0.5]  # the tiny cores carry no pixel size of their own
    if any(str(a).startswith("cuda") for a in args) and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    before = _snapshot(w.root)
    code, out, err = run_cli(*args)
    assert "Traceback" not in err and "Traceback" not in out
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert _snapshot(w.root) == before
    assert not (w.root.parent / "PWNED").exists() and not (w.root / "cohort" / "PWNED").exists()
