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
