"""Cross-validation: folds, refusals, and a 2-fold run on a tiny cohort that writes the table."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from maskllp.errors import InputError
from maskllp.methods import parse_methods
from maskllp.workflows.cross_validation import CrossValidationRequest, make_folds, run_cross_validation


def test_folds_are_grouped_by_patient_stratified_and_seeded() -> None:
    rng = np.random.default_rng(0)
    intervals = rng.integers(0, 5, 120)
    patients = [f"p{i // 3}" for i in range(120)]
    folds = make_folds(intervals, patients, 4, seed=0)
    assert set(folds.tolist()) == {0, 1, 2, 3}
    for p in set(patients):
        assert len({folds[i] for i in range(120) if patients[i] == p}) == 1
    for k in range(4):  # every interval in every fold, in roughly its share
        counts = np.bincount(intervals[folds == k], minlength=5)
        assert (counts > 0).all()
    assert np.array_equal(folds, make_folds(intervals, patients, 4, seed=0))
    assert not np.array_equal(folds, make_folds(intervals, patients, 4, seed=1))


def test_too_few_patients_for_the_folds() -> None:
    with pytest.raises(ValueError, match="2 patients cannot make 4 folds"):
        make_folds([0, 1, 2, 3], ["a", "a", "b", "b"], 4, 0)


def test_masked_methods_without_a_mask_source_are_refused(cohort_csv, cv_config, tmp_path) -> None:
    req = CrossValidationRequest(cohort_csv, parse_methods("class,ours"), tmp_path / "run")
    with pytest.raises(InputError, match="ours need a tumour mask: give --stage1"):
        run_cross_validation(req, cv_config, echo=lambda s: None)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("devices", ["2", "0,1", "-1"])
def test_cv_refuses_several_devices_before_writing(cohort_csv, cv_config, tmp_path, devices) -> None:
    cv_config.trainer.devices = devices
    req = CrossValidationRequest(cohort_csv, parse_methods("class"), tmp_path / "run")
    with pytest.raises(InputError, match="one fold at a time on one device"):
        run_cross_validation(req, cv_config, echo=lambda s: None)
    assert not (tmp_path / "run").exists()


def test_single_device_turns_auto_into_one_device_and_keeps_the_rest() -> None:
    from maskllp.config.training import TrainerConfig
    from maskllp.training.trainer import single_device

    assert single_device(TrainerConfig(devices="auto", strategy="auto")).devices == "1"
    kept = TrainerConfig(accelerator="gpu", devices="1", precision="16-mixed")
    assert single_device(kept) == kept


def test_unlabelled_cores_are_left_out_and_named(cohort_csv, cv_config, tmp_path) -> None:
    lines = cohort_csv.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 2)[0] + ",,0.5"
    cohort_csv.write_text("\n".join(lines) + "\n")
    printed: list[str] = []
    req = CrossValidationRequest(cohort_csv, parse_methods("class"), tmp_path / "run")
    result = run_cross_validation(req, cv_config, echo=printed.append)
    assert any("1 core(s) without a label left out" in p and "lines 4" in p for p in printed)
    expected = {f"core{i:02d}.png" for i in range(12)} - {"core02.png"}
    assert {p.item.name for p in result.predictions} == expected


def test_a_cohort_without_labels_is_refused(cohort_csv, cv_config, tmp_path) -> None:
    lines = cohort_csv.read_text().splitlines()
    lines = [lines[0]] + [ln.rsplit(",", 2)[0] + ",,0.5" for ln in lines[1:]]
    cohort_csv.write_text("\n".join(lines) + "\n")
    req = CrossValidationRequest(cohort_csv, parse_methods("class"), tmp_path / "run")
    with pytest.raises(InputError, match="no labelled core"):
        run_cross_validation(req, cv_config, echo=lambda s: None)
    assert not (tmp_path / "run").exists()


def test_two_fold_cv_writes_predictions_and_the_table(cohort_csv, stage1_dir, cv_config, tmp_path) -> None:
    out = tmp_path / "run"
    printed: list[str] = []
    req = CrossValidationRequest(cohort_csv, parse_methods("det,class,ours"), out,
                                 stage1=stage1_dir, det_model=stage1_dir)
    result = run_cross_validation(req, cv_config, echo=printed.append)

    for name in ("predictions.csv", "table.txt", "table.csv", "table.md", "metrics.json", "folds.csv",
                 "config.yaml", "confusion/ours.csv", "confusion/det.csv"):
        assert (out / name).is_file(), name
    assert not list(out.rglob("*.partial"))

    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == 3 * 12
    folds = {r["image"]: r["fold"] for r in rows if r["method"] == "ours"}
    for method in ("det", "class"):  # every method sees the same folds
        assert {r["image"]: r["fold"] for r in rows if r["method"] == method} == folds
    assert set(folds.values()) == {"0", "1"}
    ours = [r for r in rows if r["method"] == "ours"]
    assert all(r["proportion"] == "" or 0 <= float(r["proportion"]) <= 1 for r in ours)
    assert all(r["s_p"] != "" for r in ours)
    assert {r["truth"] for r in rows if r["name"] == "core03"} == {"0.12"}  # exact label kept
    assert {r["proportion_kind"] for r in rows} == {"cell count", "interval midpoint", "masked ratio"}

    table = (out / "table.txt").read_text()
    assert table == result.table and printed[-1] == table
    header = table.splitlines()[0].split()
    assert header[:2] == ["Method", "mask"] and "mF1" in header and "MAE" in header
    assert "0-1 %" in table and "75-100 %" in table and "Ours" in table and "Det" in table
    assert "2-fold cross-validation" in table and "tumour masks from stage1" in table

    metrics = {m["method"]: m for m in json.loads((out / "metrics.json").read_text())}
    assert set(metrics) == {"det", "class", "ours"}
    for m in metrics.values():
        assert m["n"] == 12 and len(m["fold_mf1"]) == 2
        assert 0 <= m["mf1"] <= 1
        assert m["mrecall"] == pytest.approx(np.mean(list(m["recall"].values())), abs=1e-5)
        assert m["exact"]["n"] == 6  # the six cores with an exact label
    confusion = list(csv.reader((out / "confusion" / "ours.csv").open()))
    assert confusion[0][-1] == "undefined" and sum(int(v) for r in confusion[1:] for v in r[1:]) == 12

    # stage-2 inputs were cached with the cohort: 12 images at 0.5 um/px, 12 stage-1 masks and cells
    cache = cohort_csv.parent / ".maskllp-cache"
    assert len(list(cache.glob("images-mpp0.5-max3072/*.npy"))) == 12
    assert len(list(cache.glob("masks-stage1-*-mpp0.5-max3072/*.npy"))) == 12
    assert len(list(cache.glob("cells-stage1-*/*.npz"))) == 12
    assert np.load(next(cache.glob("images-mpp0.5-max3072/*.npy"))).shape == (64, 64, 3)  # 48 x 64 cores


def test_existing_run_folder_needs_overwrite(cohort_csv, cv_config, tmp_path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "something").write_text("x")
    req = CrossValidationRequest(cohort_csv, parse_methods("class"), out)
    with pytest.raises(InputError, match="--overwrite"):
        run_cross_validation(req, cv_config, echo=lambda s: None)


def test_overwrite_never_clears_a_folder_holding_the_inputs(cohort_csv, cv_config, tmp_path) -> None:
    req = CrossValidationRequest(cohort_csv, parse_methods("class"), cohort_csv.parent, overwrite=True)
    with pytest.raises(InputError, match="an input of this run"):
        run_cross_validation(req, cv_config, echo=lambda s: None)
    assert cohort_csv.is_file() and (cohort_csv.parent / "cores" / "core00.png").is_file()


def test_overwrite_starts_from_a_clean_run_folder(cohort_csv, cv_config, tmp_path) -> None:
    from maskllp.io.atomic import OUTPUT_MARKER

    out = tmp_path / "run"
    out.mkdir()
    (out / "stale.txt").write_text("old run")
    req = CrossValidationRequest(cohort_csv, parse_methods("class"), out, overwrite=True)
    with pytest.raises(InputError, match="did not write"):  # not a maskllp run folder: kept
        run_cross_validation(req, cv_config, echo=lambda s: None)
    assert (out / "stale.txt").read_text() == "old run"
    (out / OUTPUT_MARKER).write_text("")  # an earlier maskllp run's folder is replaced
    run_cross_validation(req, cv_config, echo=lambda s: None)
    assert not (out / "stale.txt").exists() and (out / "table.txt").is_file()


def test_det_trains_a_three_class_classifier_per_fold(annotated_cohort_csv, stage1_dir, cv_config,
                                                      tmp_path) -> None:
    cv_config.classifier.backbone = "resnet18"
    cv_config.classifier.feature_layer = "layer1"
    cv_config.classifier.crop = 32
    cv_config.classifier.batch_size = 2
    cv_config.classifier.max_epochs = 1
    cv_config.classifier.steps_per_epoch = 1
    cv_config.tiling.tile = 64
    cv_config.tiling.overlap = 16
    out = tmp_path / "run"
    req = CrossValidationRequest(annotated_cohort_csv, parse_methods("det"), out, stage1=stage1_dir)
    run_cross_validation(req, cv_config, echo=lambda s: None)
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == 12 and all(r["method"] == "det" for r in rows)
    for r in rows:  # counts of positive and negative tumour cells, and their ratio when defined
        n_pos, n_neg = float(r["s_p"]), float(r["s_n"])
        if n_pos + n_neg:
            assert float(r["proportion"]) == pytest.approx(n_pos / (n_pos + n_neg), rel=1e-5)
        else:
            assert r["proportion"] == "" and r["interval"] == ""
    for k in (0, 1):  # a classifier was trained in each fold
        assert (out / "training" / "det" / f"fold{k}" / "logs" / "metrics.csv").is_file()


def test_det_without_a_detector_is_refused(cohort_csv, cv_config, tmp_path) -> None:
    req = CrossValidationRequest(cohort_csv, parse_methods("det"), tmp_path / "run")
    with pytest.raises(InputError, match="Det needs --stage1"):
        run_cross_validation(req, cv_config, echo=lambda s: None)


def test_a_training_subset_is_seeded_capped_and_nested() -> None:
    from maskllp.workflows.cross_validation import training_subset

    train = np.array([0, 2, 3, 5, 8, 9, 11, 12])
    assert training_subset(train, None, 0, 1) is train and training_subset(train, 8, 0, 1) is train
    small, large = training_subset(train, 3, 0, 1), training_subset(train, 6, 0, 1)
    assert len(small) == 3 and len(large) == 6 and set(small) <= set(large) <= set(train)
    assert list(small) == sorted(small) and list(training_subset(train, 3, 0, 1)) == list(small)
    assert {tuple(training_subset(train, 3, 0, k)) for k in range(4)} != {tuple(small)}  # fold-dependent


def test_folds_from_a_file_and_a_capped_training_set(cohort_csv, cv_config, tmp_path) -> None:
    names = [f"core{i:02d}" for i in range(12)]
    folds = tmp_path / "folds.csv"  # by "site": the first eight cores against the last four
    folds.write_text("image,fold\n" + "".join(f"{n},{int(i >= 8)}\n" for i, n in enumerate(names)))
    cv_config.cv.train_cores = 3
    printed: list[str] = []
    req = CrossValidationRequest(cohort_csv, parse_methods("class"), tmp_path / "run", folds_file=folds)
    run_cross_validation(req, cv_config, echo=printed.append)
    rows = list(csv.DictReader((tmp_path / "run" / "predictions.csv").open()))
    assert {r["name"]: int(r["fold"]) for r in rows} == {n: int(i >= 8) for i, n in enumerate(names)}
    fold_lines = [line for line in printed if "fold 0:" in line or "fold 1:" in line]
    assert "cores of 4," in fold_lines[0] and "cores of 8," in fold_lines[1]  # 3 of the 4 / 8 others
    table = (tmp_path / "run" / "table.txt").read_text()
    assert f"folds from {folds}" in table and "at most 3 of its training cores" in table


@pytest.mark.parametrize(("text", "message"), [
    ("image,fold\ncore00,0\n", "no fold for core core01"),
    ("image,fold\n" + "".join(f"core{i:02d},{2 * (i % 2)}\n" for i in range(12)), "none empty"),
    ("image,fold\n" + "".join(f"core{i:02d},x\n" for i in range(12)), "not a whole number"),
    ("name,fold\ncore00,0\n", "missing column(s) image"),
])
def test_a_bad_folds_file_is_refused_in_one_line(cohort_csv, cv_config, tmp_path, text, message) -> None:
    folds = tmp_path / "folds.csv"
    folds.write_text(text)
    req = CrossValidationRequest(cohort_csv, parse_methods("class"), tmp_path / "run", folds_file=folds)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        run_cross_validation(req, cv_config, echo=lambda _: None)
    assert str(folds) in str(e.value) and not (tmp_path / "run").exists()


def test_an_interrupted_run_keeps_the_tables_of_the_methods_it_finished(cohort_csv, cv_config, tmp_path,
                                                                          monkeypatch) -> None:
    import maskllp.workflows.cross_validation as cv

    real = cv._train_and_predict

    def stop_at_the_second(method, *args, **kwargs):
        if method.name == "o-reg":
            raise KeyboardInterrupt
        return real(method, *args, **kwargs)

    monkeypatch.setattr(cv, "_train_and_predict", stop_at_the_second)
    printed: list[str] = []
    req = CrossValidationRequest(cohort_csv, parse_methods("class,o-reg"), tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        run_cross_validation(req, cv_config, echo=printed.append)
    table = (tmp_path / "run" / "table.txt").read_text()
    assert "Class" in table and "O-Reg" not in table
    assert [m["method"] for m in json.loads((tmp_path / "run" / "metrics.json").read_text())] == ["class"]
    assert any(line.startswith("  Class: mF1 ") for line in printed)


def _table_rows(path):
    return sorted(path.read_text().splitlines())


def test_a_cv_killed_with_sigkill_resumes_to_the_results_of_an_uninterrupted_run(cohort_csv, cv_config,
                                                                                 tmp_path) -> None:
    """A real kill: ``maskllp cv`` in a subprocess, SIGKILL once its first fold is written; ``--resume``
    keeps that fold, fits the rest, and every output equals the uninterrupted run's."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from maskllp.config import save_config

    save_config(cv_config, tmp_path / "cv.yaml")
    methods = "class,o-reg,prop-nomask"
    args = [sys.executable, "-m", "maskllp", "cv", str(cohort_csv), "--methods", methods, "-c",
            str(tmp_path / "cv.yaml")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole = subprocess.run([*args, "--out", str(tmp_path / "whole")], env=env, capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr

    killed = tmp_path / "killed"
    proc = subprocess.Popen([*args, "--out", str(killed)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    first = killed / "progress" / "class" / "fold0.json"
    deadline = time.time() + 300
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.exists()
    assert not (killed / "progress" / "prop-nomask" / "fold1.json").exists()  # killed midway
    lock = tmp_path / ".killed.lock"
    assert lock.exists()  # a kill leaves its lock; the next run takes it over (its process is gone)

    refused = subprocess.run([*args, "--out", str(killed)], env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "--overwrite" in refused.stderr  # no silent restart

    resumed = subprocess.run([*args, "--out", str(killed), "--resume"], env=env, capture_output=True,
                             text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "class fold 0" in resumed.stdout and "kept from the interrupted run" in resumed.stdout
    for name in ("predictions.csv", "table.txt", "metrics.json", "folds.csv"):
        assert (killed / name).read_text() == (tmp_path / "whole" / name).read_text(), name
    import csv

    with open(killed / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert all(r["proportion_low"] and r["proportion_high"] for r in rows)  # kept folds keep their ranges
    assert not lock.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith((".partial", ".training", ".old"))]


def test_resume_refuses_a_run_made_with_other_settings(cohort_csv, cv_config, tmp_path) -> None:
    from dataclasses import replace

    req = CrossValidationRequest(cohort_csv, parse_methods("class"), tmp_path / "run")
    run_cross_validation(req, cv_config, echo=lambda s: None)
    other = replace(cv_config, cv=replace(cv_config.cv, seed=cv_config.cv.seed + 1))
    with pytest.raises(InputError, match="--resume: the run here was made with other inputs or settings"):
        run_cross_validation(replace(req, resume=True), other, echo=lambda s: None)


def test_a_mask_setting_that_stage1_overrides_is_said_not_ignored(cohort_csv, stage1_dir, cv_config,
                                                                  caplog) -> None:
    import logging

    from maskllp.io.manifest import read_cohort
    from maskllp.training.inputs import build_mask_source

    entries = read_cohort(cohort_csv, cv_config.intervals.build()).entries
    with caplog.at_level(logging.WARNING, logger="maskllp"):
        build_mask_source(["ours"], "stage1", stage1_dir, None, entries, cv_config)  # stage 1 saved 0.0
    assert any("tumour_threshold 0" in r.getMessage() and "not this run's [mask]" in r.getMessage()
               for r in caplog.records)
