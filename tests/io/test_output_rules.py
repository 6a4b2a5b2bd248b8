"""--out never loses a file: inputs, model folders, folders maskllp did not write, concurrent runs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from maskllp.errors import InputError
from maskllp.io.atomic import OUTPUT_MARKER, check_output_dir, output_lock, staged_directory


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_overwrite_replaces_only_maskllps_own_folders(tmp_path) -> None:
    mine = tmp_path / "mine"
    with staged_directory(mine) as stage:
        (stage / "a.txt").write_text("1")
    assert (mine / OUTPUT_MARKER).is_file()
    with staged_directory(mine, overwrite=True) as stage:
        (stage / "b.txt").write_text("2")
    assert (mine / "b.txt").is_file() and not (mine / "a.txt").exists()
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "thesis.docx").write_text("years of work")
    with pytest.raises(InputError, match="did not write"):
        check_output_dir(theirs, overwrite=True)
    assert (theirs / "thesis.docx").read_text() == "years of work"


def test_an_out_holding_an_input_or_the_current_folder_is_refused(tmp_path, monkeypatch) -> None:
    image = tmp_path / "cores" / "a.png"
    image.parent.mkdir()
    image.write_bytes(b"x")
    for out in (tmp_path / "cores", tmp_path):
        with pytest.raises(InputError, match="an input of this run"):
            check_output_dir(out, overwrite=True, inputs=[image])
    monkeypatch.chdir(tmp_path / "cores")
    with pytest.raises(InputError, match="current folder"):
        check_output_dir(tmp_path, overwrite=True)
    assert image.is_file()


def test_a_second_run_into_the_same_folder_is_refused_and_a_dead_ones_lock_taken_over(tmp_path) -> None:
    out = tmp_path / "out"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / ".out.lock").write_text(str(other.pid))
        with pytest.raises(InputError, match="another maskllp run"):
            with staged_directory(out):
                pass
    finally:
        other.kill()
        other.wait()
    with staged_directory(out) as stage:  # the process is gone: its lock is stale
        (stage / "x").write_text("1")
    assert (out / "x").is_file() and not (tmp_path / ".out.lock").exists()


def test_a_folder_that_appears_meanwhile_is_not_replaced(tmp_path) -> None:
    out = tmp_path / "out"
    with pytest.raises(InputError, match="appeared while this run"):
        with staged_directory(out) as stage:
            (stage / "mine").write_text("1")
            out.mkdir()
            (out / "theirs").write_text("2")  # another program wrote it meanwhile
    assert _tree(out) == ["theirs"] and not list(tmp_path.glob(".out.*"))


def test_the_lock_is_reentrant_in_one_process(tmp_path) -> None:
    out = tmp_path / "out"
    with output_lock(out):
        with staged_directory(out) as stage:
            (stage / "x").write_text("1")
        assert (tmp_path / ".out.lock").read_text() == str(os.getpid())
    assert not (tmp_path / ".out.lock").exists()


def test_predict_into_the_folder_of_its_images_or_its_model_deletes_nothing(tmp_path, cohort_csv, stage1_dir,
                                                                             run_cli) -> None:
    cores = cohort_csv.parent / "cores"
    before_cores, before_model = _tree(cores), _tree(stage1_dir)
    image = sorted(cores.glob("*.png"))[0]
    for out in (cores, stage1_dir):
        code, _, err = run_cli("predict", stage1_dir, image, "--out", out, "--mpp", 0.5, "--overwrite")
        assert code == 2 and err.count("\n") == 1 and "an input of this run" in err
    assert _tree(cores) == before_cores and _tree(stage1_dir) == before_model


def test_scratch_folders_of_a_killed_run_are_removed_and_a_live_ones_kept(tmp_path) -> None:
    import subprocess

    from maskllp.io.atomic import remove_leftovers, scratch_dir, staged_directory

    out = tmp_path / "run"
    dead = subprocess.Popen(["true"])
    dead.wait()
    killed = scratch_dir(out, ".training")
    (killed / ".owner").write_text(str(dead.pid))  # its process is gone: a killed run's
    (killed / "last.ckpt").write_bytes(b"x" * 100)
    live = scratch_dir(out, ".partial")
    (live / ".owner").write_text("1")  # process 1 lives: another rank's, kept
    other = tmp_path / ".run-b.x.training"  # another --out's folder is not ours to touch
    other.mkdir()
    assert remove_leftovers(out) == [killed]
    assert live.is_dir() and other.is_dir()
    (live / ".owner").write_text(str(dead.pid))
    with staged_directory(out) as stage:
        (stage / "a.txt").write_text("a")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run-b.x.training", "run"]
    assert sorted(p.name for p in out.iterdir()) == [".maskllp-output", "a.txt"]
