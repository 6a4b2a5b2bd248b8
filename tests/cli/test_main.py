"""The entry point's contract: one ``error:`` line on a mistake, library noise held back."""

from __future__ import annotations

import logging
import warnings

import pytest

import maskllp
from maskllp.errors import InputError


def _run(monkeypatch, capsys, body):
    import maskllp.cli as cli

    def fake_app(standalone_mode: bool = True):
        return body()

    monkeypatch.setattr(cli, "app", fake_app)
    with pytest.raises(SystemExit) as info:
        cli.main()
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def _noisy():
    warnings.warn("the least populated class has only 1 member", UserWarning, stacklevel=1)
    logging.getLogger("tifffile").warning("shaped series shape does not match page shape")
    logging.getLogger("maskllp").warning("1 unlabelled core left out")


def test_library_warnings_follow_a_run_that_succeeds_once_each(monkeypatch, capsys):
    def body():
        _noisy()
        _noisy()

    code, _, err = _run(monkeypatch, capsys, body)
    assert code == 0
    assert err.splitlines() == ["warning: UserWarning: the least populated class has only 1 member",
                                "warning: tifffile: shaped series shape does not match page shape",
                                "warning: 1 unlabelled core left out"]


def test_after_an_error_only_the_error_line_is_printed(monkeypatch, capsys):
    def body():
        _noisy()
        raise InputError("core.tif", "damaged")

    code, _, err = _run(monkeypatch, capsys, body)
    assert code == 2 and err == "error: core.tif: damaged\n"


def test_version_and_usage_errors(run_cli):
    code, out, err = run_cli("--version")
    assert code == 0 and out.strip() == maskllp.__version__
    code, out, err = run_cli("synth", "--n", "x", "--out", "o")
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: Invalid value for '--n'")


@pytest.mark.parametrize("device, expected", [
    ("cpu", ("cpu", None)), ("CUDA", ("gpu", None)), ("cuda:1", ("gpu", "1,")), ("cuda:0, 2", ("gpu", "0,2")),
    ("auto", ("auto", None)),
])
def test_one_device_option_for_training_as_for_inference(device, expected) -> None:
    from maskllp.cli.common import trainer_overrides, training_device
    from maskllp.config.training import TrainerConfig

    assert training_device(device) == expected
    accelerator, devices = expected
    overrides = trainer_overrides(device, strategy="ddp")
    assert overrides == {"accelerator": accelerator, "devices": devices, "strategy": "ddp"}
    TrainerConfig(accelerator=accelerator, devices=devices or "auto")  # the config accepts what it gives
    old = trainer_overrides(None, "4", None, "gpu")  # --accelerator gpu --devices 4, the old spelling
    assert old == {"accelerator": "gpu", "devices": "4", "strategy": None}
