"""Every setting is checked where it is loaded: one `error:` line naming the file and the setting,
exit 2, nothing written (a catalogue of the values that used to crash or were silently accepted)."""

from __future__ import annotations

import pytest

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
]


IDS = [b.replace("\n", " ").strip() for b, _ in BAD_SETTINGS]


@pytest.mark.parametrize("text, names", BAD_SETTINGS, ids=IDS)
def test_a_bad_setting_is_one_line_naming_it(tmp_path, run_cli, text, names) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    code, out, err = run_cli("plot-loss", "--out", tmp_path / "fig.png", "-c", cfg)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    assert str(cfg) in err and names in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]  # nothing written


@pytest.mark.parametrize("device, words", [("bogus", "unknown device"), ("cuda:7", "CUDA"), ("mps", "MPS"),
                                           ("tpu", "unknown device")])
def test_a_device_this_machine_lacks_is_one_line(tmp_path, run_cli, stage1_dir, cohort_csv, device,
                                                 words) -> None:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    image = sorted((cohort_csv.parent / "cores").glob("*.png"))[0]
    code, _, err = run_cli("detect", stage1_dir, image, "--out", tmp_path / "o", "--mpp", 0.5,
                           "--device", device)
    assert code == 2 and err.count("\n") == 1 and words in err and not (tmp_path / "o").exists()


def test_an_absurd_pixel_size_is_refused_before_any_work(tmp_path, run_cli, stage1_dir, cohort_csv) -> None:
    image = sorted((cohort_csv.parent / "cores").glob("*.png"))[0]
    code, _, err = run_cli("detect", stage1_dir, image, "--out", tmp_path / "o", "--mpp", 100000)
    assert code == 2 and "outside 0.01-100" in err and not (tmp_path / "o").exists()


def test_config_files_given_twice_are_merged_in_order_and_each_is_checked(run_cli, tmp_path):
    import yaml

    base, top, bad = tmp_path / "base.toml", tmp_path / "top.toml", tmp_path / "bad.toml"
    base.write_text("[synth]\nsize = 256\nseed = 3\n")
    top.write_text("[synth]\nseed = 9\n")
    bad.write_text("[synth]\nsizee = 1\n")
    code, out, err = run_cli("synth", "--n", "1", "--out", tmp_path / "c", "-c", base, "-c", top)
    assert code in (0, None), err
    written = yaml.safe_load((tmp_path / "c" / "config.yaml").read_text())["synth"]
    assert written["size"] == 256 and written["seed"] == 9  # both files, the later one winning
    code, out, err = run_cli("synth", "--n", "1", "--out", tmp_path / "d", "-c", base, "-c", bad)
    assert code == 2 and str(bad) in err and "sizee" in err and not (tmp_path / "d").exists()
