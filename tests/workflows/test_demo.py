"""The main job, ``maskllp demo``, end to end at a tiny budget (the real budget: maskllp.workflows.demo)."""

from __future__ import annotations

import json

TINY = """
[synth]
size = 160
[detector]
max_epochs = 1
steps_per_epoch = 2
[classifier]
max_epochs = 1
steps_per_epoch = 2
[proportion]
max_epochs = 1
input_size = 64
[trainer]
progress_bar = false
"""


def test_demo_runs_every_step_and_prints_the_table(tmp_path, run_cli):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    out = tmp_path / "demo"
    code, stdout, stderr = run_cli("demo", "--out", out, "--cores", 12, "--methods", "ours,class", "-c", cfg)
    assert code in (0, None), stderr
    assert "mRecall" in stdout and "Ours" in stdout and "Class" in stdout
    assert "Real IHC sample" in stdout
    for rel in ("cohort/cohort.csv", "cohort/truth.csv", "models/stage1/weights.safetensors",
                "models/ours/weights.safetensors", "models/ours/stage1/weights.safetensors",
                "cv/table.md", "cv/predictions.csv", "real/prediction/report.html", "config.yaml"):
        assert (out / rel).is_file(), rel
    result = json.loads((out / "real" / "prediction" / "skimage-ihc.tps.json").read_text())
    assert result["method"] == "ours" and result["mpp"] == 0.5
    # the user's file wins over the demo budget
    assert "size: 160" in (out / "config.yaml").read_text()


def test_demo_refuses_a_non_empty_folder(tmp_path, run_cli):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    code, _, stderr = run_cli("demo", "--out", tmp_path / "x")
    assert code == 2 and "not empty" in stderr
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"
