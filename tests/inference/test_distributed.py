"""maskllp predict on several devices: Lightning's predict loop, one process per device, on the CPU."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from maskllp.backbones import inference_devices
from maskllp.config import Config
from maskllp.errors import InputError, ProblemList
from maskllp.inference import distributed
from maskllp.inference.distributed import ROWS_DIR, lightning_devices
from maskllp.inference.pipeline import PredictRun, predict_cores


def _config() -> Config:
    cfg = Config()
    cfg.trainer.progress_bar = False
    return cfg


def _outputs(folder) -> dict[str, bytes]:
    """Every file a run wrote, by name."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_two_processes_predict_each_core_once_in_manifest_order_as_one_does(
        tmp_path, cohort_csv, stage1_dir, random_model, monkeypatch):
    model = random_model(tmp_path, stage1_dir)
    one = predict_cores(PredictRun(model, [cohort_csv], tmp_path / "one", figures=False), _config())
    real_rmtree, kept = shutil.rmtree, tmp_path / "rows-kept"

    def keep_rows(path, *args, **kwargs):  # the processes' rows, read before the run removes them
        if Path(path).name == ROWS_DIR:
            shutil.copytree(path, kept)
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(distributed.shutil, "rmtree", keep_rows)
    two = predict_cores(PredictRun(model, [cohort_csv], tmp_path / "two", figures=False, devices=2),
                        _config())
    monkeypatch.undo()
    written = sorted(p.name for p in kept.iterdir())  # "<core index>.<process rank>.json"
    assert sorted(int(n.split(".")[0]) for n in written) == list(range(12))  # each core once
    assert {n.split(".")[1] for n in written} == {"0", "1"}  # both processes worked
    assert [r.name for r in two] == [r.name for r in one] == [f"core{i:02d}" for i in range(12)]
    assert [r.to_json() for r in two] == [r.to_json() for r in one]
    a, b = _outputs(tmp_path / "one"), _outputs(tmp_path / "two")
    assert sorted(a) == sorted(b)  # the same files, no leftover of the processes
    for name in a:
        if name not in ("config.yaml", "report.html"):  # these name the run's own folder
            assert a[name] == b[name], name
    assert not (tmp_path / "two" / ".rows").exists()


def test_an_unreadable_core_on_another_process_fails_the_run_in_one_line(
        tmp_path, cohort_csv, stage1_dir, random_model, monkeypatch):
    model = random_model(tmp_path, stage1_dir)
    images = sorted((cohort_csv.parent / "cores").glob("*.png"))[:3]
    bad = images[2]
    import maskllp.inference.pipeline as pipeline

    real = pipeline._cores_of

    def spoil_after_checks(run, config):  # the file goes bad after the up-front check
        cores = real(run, config)
        bad.write_bytes(bad.read_bytes()[:200])
        return cores

    monkeypatch.setattr(pipeline, "_cores_of", spoil_after_checks)
    with pytest.raises(ProblemList) as info:
        predict_cores(PredictRun(model, images, tmp_path / "out", mpp=0.5, figures=False, devices=2),
                      _config())
    assert bad.name in str(info.value) and "Traceback" not in str(info.value)
    assert not (tmp_path / "out").exists()  # no half-written output


@pytest.mark.parametrize("device, count, expected", [
    ("cpu", None, ["cpu"]),
    ("cpu", 1, ["cpu"]),
    ("cpu", 3, ["cpu", "cpu", "cpu"]),
    ("CPU", 2, ["cpu", "cpu"]),
])
def test_inference_devices_lists_one_device_per_process(device, count, expected):
    assert inference_devices(device, count) == expected


@pytest.mark.parametrize("device, count, problem", [
    ("cpu", 0, "1 or more"),
    ("cuda:0,1", 2, "drop --devices"),
    ("tpu", 2, "names one device"),
    ("cuda:0,1", None, "CUDA is not available"),  # this machine has no GPU
])
def test_bad_device_requests_are_one_line_errors(device, count, problem):
    import torch

    if torch.cuda.is_available() and "CUDA" in problem:
        pytest.skip("this machine has a GPU")
    with pytest.raises(InputError, match=problem):
        inference_devices(device, count)


def test_lightning_gets_gpu_indices_or_a_cpu_count():
    assert lightning_devices(["cpu", "cpu"]) == ("cpu", 2)
    assert lightning_devices(["cuda:0", "cuda:2"]) == ("gpu", [0, 2])
    with pytest.raises(InputError, match="mix"):
        lightning_devices(["cpu", "cuda:0"])


def test_one_device_predict_does_not_import_lightning(tmp_path, cohort_csv, stage1_dir):
    image = sorted((cohort_csv.parent / "cores").glob("*.png"))[0]
    code = ("import sys; from maskllp.cli import main; sys.argv = ['maskllp', 'predict', "
            f"{str(stage1_dir)!r}, {str(image)!r}, '--mpp', '0.5', '--out', {str(tmp_path / 'o')!r}, "
            "'--no-figures']\ntry:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('lightning', 'pytorch_lightning'))))")
    out = subprocess.run([sys.executable, "-c", "import json\n" + code], capture_output=True, text=True,
                         check=True).stdout.splitlines()[-1]
    assert json.loads(out) == []
