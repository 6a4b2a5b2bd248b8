"""``maskllp cv``, ``maskllp train proportion``, ``maskllp plot-loss`` from the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from maskllp.config.proportion import LossConfig
from maskllp.intervals import PAPER_FIVE
from maskllp.proportion.losses import focal_proportion_loss, weighted_focal_proportion_loss
from maskllp.report.loss_curves import loss_curves

TINY = ["--input-size", "64", "--max-epochs", "1"]


@pytest.fixture
def tiny_toml(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text('[proportion]\nbatch_size = 4\nmax_steps = 2\n\n[trainer]\naccelerator = "cpu"\n'
                    'devices = "1"\nprogress_bar = false\n')
    return path


def test_cv_refuses_masked_methods_without_stage1(run_cli, cohort_csv, tmp_path) -> None:
    code, out, err = run_cli("cv", cohort_csv, "--methods", "prop,ours", "--folds", "2",
                          "--out", tmp_path / "run")
    assert code == 2
    assert err.strip().splitlines() == [
        "error: --methods: methods prop, ours need a tumour mask: give --stage1 MODEL_DIR (or, for an "
        "oracle experiment on synthetic data, --mask-source truth with --truth TRUTH.csv)"]
    assert not (tmp_path / "run").exists()


def test_cv_unknown_method_is_one_line(run_cli, cohort_csv, tmp_path) -> None:
    code, _, err = run_cli("cv", cohort_csv, "--methods", "ours,magic", "--out", tmp_path)
    assert code == 2 and "unknown method 'magic'" in err and "Traceback" not in err


def test_cv_from_the_command_line(run_cli, cohort_csv, tiny_toml, tmp_path) -> None:
    code, out, err = run_cli("cv", cohort_csv, "--methods", "prop-nomask", "--folds", "2",
                          "--out", tmp_path / "run", "--config", tiny_toml, *TINY)
    assert code in (0, None), err
    assert "Prop w/o mask" in out and "mF1" in out
    assert (tmp_path / "run" / "table.md").is_file()
    from maskllp.config import load_config

    resolved = load_config(tmp_path / "run" / "config.yaml")  # loads back with --config
    assert resolved.proportion.input_size == 64 and resolved.cv.folds == 2
    assert resolved.proportion.max_steps == 2 and resolved.proportion.loss.gammas is None


def test_train_proportion_writes_a_model_folder(run_cli, cohort_csv, stage1_dir, tiny_toml,
                                                tmp_path) -> None:
    out_dir = tmp_path / "model"
    code, out, err = run_cli("train", "proportion", cohort_csv, "--method", "wprop",
                          "--stage1", stage1_dir, "--out", out_dir, "--config", tiny_toml, *TINY)
    assert code in (0, None), err
    assert "WProp:" in out and "model written to" in out
    config = json.loads((out_dir / "config.json").read_text())
    assert config["method"] == "wprop" and config["mask_source"] == "stage1"
    assert (out_dir / "config.yaml").is_file() and (out_dir / "logs" / "metrics.csv").is_file()
    assert not list(tmp_path.glob(".model.*"))

    code, _, err = run_cli("train", "proportion", cohort_csv, "--method", "wprop",
                        "--out", out_dir, "--config", tiny_toml, *TINY)
    assert code == 2 and "output folder exists" in err


def test_plot_loss_draws_fig3(run_cli, tmp_path) -> None:
    code, out, err = run_cli("plot-loss", "--out", tmp_path / "fig3.png")
    assert code in (0, None), err
    assert (tmp_path / "fig3.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "fig3.config.yaml").is_file()


def test_fig3_curves_show_the_paper_point() -> None:
    """Focal loss (gamma 2): the '0-1 %' curve is nearly flat around 3 %, lower there than the
    '1-25 %' curve; the weighted focal loss (gamma 0 for '0-1 %') penalises 3 % clearly more."""
    cfg = LossConfig()
    x, focal = loss_curves(focal_proportion_loss(PAPER_FIVE, cfg), 5)
    _, weighted = loss_curves(weighted_focal_proportion_loss(PAPER_FIVE, cfg), 5)
    i3 = int(np.argmin(np.abs(x - 0.03)))
    assert focal[0, i3] < focal[1, i3]
    assert weighted[0, i3] > 10 * focal[0, i3]
    assert x[np.argmin(weighted[0])] == pytest.approx(0.005, abs=1e-3)
    assert np.array_equal(weighted[1:], focal[1:])  # gamma 2 elsewhere: the same curves


def test_train_proportion_records_the_stain_range_of_its_cores(run_cli, tiny_toml, stained_pixels, tmp_path):
    from PIL import Image

    lines = ["image,patient,label,mpp"]
    for i, label in enumerate(["0-1 %", "1-25 %", "25-50 %", "75-100 %"]):
        rgb = stained_pixels((0.65, 0.70, 0.29), (0.27, 0.57, 0.78), 64 * 64, seed=i).reshape(64, 64, 3)
        Image.fromarray(rgb).save(tmp_path / f"c{i}.png")
        lines.append(f"c{i}.png,P{i},{label},1.0")
    (tmp_path / "cohort.csv").write_text("\n".join(lines) + "\n")
    code, _, err = run_cli("train", "proportion", tmp_path / "cohort.csv", "--method", "prop-nomask",
                           "--out", tmp_path / "model", "--config", tiny_toml, *TINY)
    assert code in (0, None), err
    recorded = json.loads((tmp_path / "model" / "stain-range.json").read_text())
    assert recorded["cores"] == 4 and recorded["hematoxylin_max_deg"] < 2.0
