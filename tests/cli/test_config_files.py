"""Config files given more than once (the bad settings themselves are in the catalogue,
tests/cli/test_catalogue.py)."""

from __future__ import annotations


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
