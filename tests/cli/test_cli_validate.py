"""``maskllp validate``: summary on success, every problem in one line each (exit 2) otherwise."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.fixture
def good_cohort(fixtures_dir, tmp_path):
    source = fixtures_dir / "cohort_bad"
    path = tmp_path / "cohort.csv"
    points, regions = source / "core1_points.geojson", source / "core1_regions.geojson"
    path.write_text(
        "image,patient,label,points,regions\n"
        f"{source / 'core1.png'},P1,1-25 %,{points},{regions}\n"
        f"{source / 'core2.png'},P1,0.7,,\n"
        f"{source / 'core3.png'},P2,<1 %,,\n"
    )
    return path


def test_validate_prints_summary_and_exits_0(run_cli, good_cohort, tmp_path):
    code, out, err = run_cli("validate", good_cohort)
    assert code in (0, None)
    assert f"Cohort {good_cohort}: 3 cores" in out
    assert "Labels (paper5): 0-1 %: 1, 1-25 %: 1, 25-50 %: 0, 50-75 %: 1, 75-100 %: 0" in out
    assert "Patients: 2" in out and "Cell points: 1 core, 4 cells" in out
    assert "unclassified points skipped" in out
    assert os.listdir(tmp_path) == ["cohort.csv"]  # validate writes nothing


def test_validate_with_config(run_cli, good_cohort, tmp_path):
    config = tmp_path / "clinical.toml"
    config.write_text('[intervals]\nscheme = "clinical3"\n')
    code, out, err = run_cli("validate", good_cohort, "--config", config)
    assert code == 2 and "line 2, column label: label '1-25 %' is not an interval of the 'clinical3'" in err
    good_cohort.write_text(good_cohort.read_text().replace("1-25 %", "1-49 %"))
    code, out, _ = run_cli("validate", good_cohort, "--config", config)
    assert code in (0, None)
    assert "Labels (clinical3): <1 %: 1, 1-49 %: 1, >=50 %: 1" in out


def test_validate_lists_every_problem_and_exits_2(run_cli, fixtures_dir):
    path = fixtures_dir / "cohort_bad" / "cohort.csv"
    code, out, err = run_cli("validate", path)
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 9 and all(line.startswith(f"error: {path}") for line in lines)
    assert "Traceback" not in err


@pytest.mark.parametrize("make, words", [
    (lambda d: d / "nope.csv", "cohort manifest not found"),
    (lambda d: d, "is a folder"),
])
def test_unreadable_manifest_is_one_line(run_cli, tmp_path, make, words):
    code, out, err = run_cli("validate", make(tmp_path))
    assert code == 2 and len(err.splitlines()) == 1 and words in err


def test_bad_config_is_one_line(run_cli, good_cohort, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("intervals:\n  schema: clinical3\n")
    code, _, err = run_cli("validate", good_cohort, "--config", config)
    assert code == 2 and err.splitlines() == [
        f"error: {config}: key intervals.schema: unknown setting (known: boundaries, names, scheme)"]


def test_console_script_exit_code(good_cohort, fixtures_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ok = subprocess.run([sys.executable, "-m", "maskllp", "validate", str(good_cohort)],
                        capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    broken = fixtures_dir / "cohort_bad" / "cohort.csv"
    bad = subprocess.run([sys.executable, "-m", "maskllp", "validate", str(broken)],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_validate_warns_of_an_image_beyond_the_working_pixel_budget(run_cli, tmp_path, huge_header_tiff):
    manifest = tmp_path / "huge.csv"
    manifest.write_text(f"image,patient,label,mpp\n{huge_header_tiff},P1,1-25 %,0.5\n")
    code, out, err = run_cli("validate", manifest)
    assert code in (0, None) and "beyond limits.max_working_pixels" in out and "huge.tif" in out
