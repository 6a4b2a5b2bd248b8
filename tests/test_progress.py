"""Progress lines: when they are printed, and what they say (a fake clock)."""

from __future__ import annotations

from maskllp.progress import ProgressLines


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
