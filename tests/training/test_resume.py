"""``maskllp train ... --resume`` after a real kill (SIGKILL) gives the model an uninterrupted run gives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

SMALL = """[synth]
size = 128
[synth.annotations]
point_cores = 2
region_cores = 0
[detector]
max_epochs = 8
patience = 0
steps_per_epoch = 3
batch_size = 2
crop = 64
base_channels = 4
depth = 2
[proportion]
mpp = 2.0
max_epochs = 8
patience = 0
batch_size = 2
[trainer]
accelerator = "cpu"
devices = "1"
progress_bar = false
"""


def _run(args, env, **kw):
    return subprocess.run([sys.executable, "-m", "maskllp", *map(str, args)], env=env, capture_output=True,
                          text=True, **kw)


@pytest.mark.parametrize("command, weights", [
    (["detector"], ["weights.safetensors", "thresholds.json"]),
    (["proportion", "--method", "prop-nomask"], ["weights.safetensors"]),
])
def test_a_training_killed_with_sigkill_resumes_to_the_uninterrupted_model(tmp_path, command,
                                                                          weights) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cfg = tmp_path / "small.toml"
    cfg.write_text(SMALL)
    made = _run(["synth", "--n", 6, "--out", tmp_path / "cohort", "-c", cfg], env)
    assert made.returncode == 0, made.stderr
    train = ["train", command[0], tmp_path / "cohort" / "cohort.csv", *command[1:], "-c", cfg]
    whole = _run([*train, "--out", tmp_path / "whole"], env)
    assert whole.returncode == 0, whole.stderr

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "maskllp", *map(str, train), "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    ckpt = []
    while not ckpt and proc.poll() is None and time.time() < deadline:
        ckpt = list(tmp_path.glob(".killed.*.training/resume/last.ckpt"))
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt and not out.exists()  # killed after an epoch, before the end

    resumed = _run([*train, "--out", out, "--resume"], env)
    assert resumed.returncode == 0, resumed.stderr
    assert "warning: continued a killed run from its checkpoint" in resumed.stderr  # not a rerun
    for name in weights:
        assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    # every epoch after the kill drew the same crops and reached the same losses as the whole run
    whole_rows = (tmp_path / "whole" / "logs" / "metrics.csv").read_text().splitlines()
    resumed_rows = (out / "logs" / "metrics.csv").read_text().splitlines()
    assert resumed_rows[0] == whole_rows[0] and 1 < len(resumed_rows) < len(whole_rows)
    assert resumed_rows[1:] == whole_rows[len(whole_rows) - len(resumed_rows) + 1:]
    assert not list(tmp_path.glob(".killed.*"))  # the scratch folder went with the run
