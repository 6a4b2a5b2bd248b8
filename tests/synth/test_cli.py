"""``maskllp synth``: writes a valid cohort, refuses a non-empty folder with a one-line error."""

from __future__ import annotations

import sys

import pytest

from maskllp.cli import main


def _run(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["maskllp", *map(str, args)])
    with pytest.raises(SystemExit) as info:
        main()
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def test_synth_writes_a_cohort_that_validates(monkeypatch, capsys, tmp_path):
    out = tmp_path / "demo"
    config = tmp_path / "synth.toml"
    config.write_text("[synth]\nmpp = 0.6\n[synth.annotations]\npoint_cores = 1\nregion_cores = 1\n")
    code, stdout, _ = _run(monkeypatch, capsys, "synth", "--n", 2, "--size", 256, "--out", out,
                           "--seed", 3, "--config", config)
    assert code in (0, None)
    assert f"Wrote 2 synthetic cores: {out / 'cohort.csv'}" in stdout
    assert "mpp: 0.6" in (out / "config.yaml").read_text()
    assert "seed: 3" in (out / "config.yaml").read_text()
    code, stdout, _ = _run(monkeypatch, capsys, "validate", out / "cohort.csv")
    assert code in (0, None) and "2 cores" in stdout and "Pixel size: 0.6" in stdout


def test_synth_refuses_non_empty_out_dir(monkeypatch, capsys, tmp_path):
    (tmp_path / "x.txt").write_text("keep")
    code, _, err = _run(monkeypatch, capsys, "synth", "--n", 1, "--size", 256, "--out", tmp_path)
    assert code == 2
    assert err.strip() == f"error: {tmp_path}: output folder exists and is not empty (use --overwrite)"
    assert (tmp_path / "x.txt").read_text() == "keep"


def test_synth_bad_setting_is_one_line(monkeypatch, capsys, tmp_path):
    code, _, err = _run(monkeypatch, capsys, "synth", "--n", 1, "--size", 20, "--out", tmp_path / "o")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "size must lie in [128, 20000]" in err
    assert not (tmp_path / "o").exists()
