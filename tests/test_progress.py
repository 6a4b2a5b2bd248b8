"""Progress lines: when they are printed, and what they say (a fake clock)."""

from __future__ import annotations

import io

from maskllp.progress import ProgressLines, terminal_progress


def test_a_line_per_tenth_of_many_items_and_per_item_of_few() -> None:
    lines: list[str] = []
    now = [0.0]
    progress = ProgressLines("preparing cores", lines.append, clock=lambda: now[0])
    for done in range(1, 201):
        now[0] = done * 0.5  # half a second per core
        progress(done, 200)
    assert len(lines) == 11  # the first core (the run has started, and a first estimate), 20, 40 ... 200
    assert lines[0] == "preparing cores: 1/200 (0 %), 0 s so far, ~1.7 min left"
    assert lines[1] == "preparing cores: 20/200 (10 %), 10 s so far, ~1.5 min left"
    assert lines[-1] == "preparing cores: 200/200 (100 %), 1.7 min so far"
    few: list[str] = []
    small = ProgressLines("detect", few.append, clock=lambda: 0.0)
    for done in range(1, 6):
        small(done, 5)
    assert len(few) == 5 and few[2].startswith("detect: 3/5 (60 %)")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_one_bar_is_redrawn_in_place_and_ended_by_a_newline() -> None:
    screen, lines = _Terminal(), []
    progress = terminal_progress("detect", lines.append, stream=screen)
    for done in range(1, 5):
        progress(done, 4)
    out = screen.getvalue()
    assert not lines  # nothing through echo: the bar is the output
    assert out.count("\r") == 4 and out.endswith("\n") and out.count("\n") == 1
    assert "detect: [" + "#" * 15 + "-" * 15 + "] 2/4" in out and "] 4/4" in out


def test_off_a_terminal_the_lines_stay() -> None:
    lines: list[str] = []
    progress = terminal_progress("detect", lines.append, stream=io.StringIO())  # a file or a pipe
    progress(1, 2)
    progress(2, 2)
    assert len(lines) == 2 and lines[-1].startswith("detect: 2/2 (100 %)")


def test_predict_draws_a_bar_on_a_terminal_and_a_line_per_core_otherwise() -> None:
    from maskllp.inference.pipeline import predict_progress
    from maskllp.predictions import PredictionRow

    rows = [PredictionRow(f"c{i}", f"c{i}.png", "ours-cells", 0.2 * i, "1-25 %", "cell mean") for i in (1, 2)]
    screen, lines = _Terminal(), []
    progress = predict_progress(lines.append, screen)
    for i, row in enumerate(rows, 1):
        progress(i, 2, row)
    assert not lines and "predict: [" in screen.getvalue() and screen.getvalue().endswith("\n")
    logged: list[str] = []
    progress = predict_progress(logged.append, io.StringIO())
    for i, row in enumerate(rows, 1):
        progress(i, 2, row)
    assert logged == ["[1/2] c1: TPS 20.0 % (1-25 %)", "[2/2] c2: TPS 40.0 % (1-25 %)"]
