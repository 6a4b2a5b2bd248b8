"""Progress of a long step over many items, as lines a terminal and a log file both show.

``maskllp cv`` builds its cache core by core, ``detect`` and ``predict`` go image by image: a run
of hundreds of cores must not be silent for minutes. :class:`ProgressLines` prints a line when a
tenth of the items is done (every item when there are at most 20), with the time so far and an
estimate of what remains, so a log written to a file shows the run moving as well as a terminal.
On a terminal (:func:`terminal_progress`) it draws a bar redrawn in place instead.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

BAR_WIDTH = 30
"""Characters of the progress bar."""


class ProgressLines:
    """Callable ``(done, total)``: prints ``"<what>: 37/200 (18 %), 1.2 min so far, ~5 min left"``
    after the first item, at each tenth of ``total`` (each item for ``total`` <= 20) and at the end.

    With ``bar_stream`` (a terminal), every call redraws one line on it instead,
    ``"<what>: [#####-----] 37/200, 1.2 min so far, ~5 min left"``, ended by a newline at the end."""

    def __init__(self, what: str, echo: Callable[[str], None] = print,
                 clock: Callable[[], float] = time.monotonic, bar_stream: TextIO | None = None) -> None:
        self.what, self.echo, self.clock, self.bar_stream = what, echo, clock, bar_stream
        self.start = clock()
        self._last_tenth = -1
        self._drawn = 0

    def __call__(self, done: int, total: int) -> None:
        if total <= 0:
            return
        if self.bar_stream is not None:
            self._draw(done, total)
            return
        tenth = done * 10 // total
        if total > 20 and tenth == self._last_tenth and done != total:
            return
        self._last_tenth = tenth
        spent = self.clock() - self.start
        left = "" if done == total or done == 0 else f", ~{_duration(spent * (total - done) / done)} left"
        self.echo(f"{self.what}: {done}/{total} ({100 * done // total} %), {_duration(spent)} so far{left}")

    def _draw(self, done: int, total: int) -> None:
        spent = self.clock() - self.start
        left = "" if done >= total or done == 0 else f", ~{_duration(spent * (total - done) / done)} left"
        filled = min(BAR_WIDTH, done * BAR_WIDTH // total)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        text = f"{self.what}: [{bar}] {done}/{total}, {_duration(spent)} so far{left}"
        stream = self.bar_stream
        assert stream is not None
        stream.write("\r" + text.ljust(self._drawn))  # pad over a longer previous line
        self._drawn = len(text)
        if done >= total:
            stream.write("\n")
        stream.flush()


def terminal_progress(what: str, echo: Callable[[str], None], stream: TextIO | None = None) -> ProgressLines:
    """The progress of a command's step: a bar redrawn in place when ``stream`` (standard output by
    default) is a terminal, lines through ``echo`` otherwise (output to a file or a pipe: a log)."""
    stream = sys.stdout if stream is None else stream
    return ProgressLines(what, echo, bar_stream=stream if stream.isatty() else None)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"
