"""Progress of a long step over many items, as lines a terminal and a log file both show.

``maskllp cv`` builds its cache core by core, ``detect`` and ``predict`` go image by image: a run
of hundreds of cores must not be silent for minutes. :class:`ProgressLines` prints a line when a
tenth of the items is done (every item when there are at most 20), with the time so far and an
estimate of what remains, so a log written to a file shows the run moving as well as a terminal.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class ProgressLines:
    """Callable ``(done, total)``: prints ``"<what>: 37/200 (18 %), 1.2 min so far, ~5 min left"``
    after the first item, at each tenth of ``total`` (each item for ``total`` <= 20) and at the end."""

    def __init__(self, what: str, echo: Callable[[str], None] = print,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.what, self.echo, self.clock = what, echo, clock
        self.start = clock()
        self._last_tenth = -1

    def __call__(self, done: int, total: int) -> None:
        if total <= 0:
            return
        tenth = done * 10 // total
        if total > 20 and tenth == self._last_tenth and done != total:
            return
        self._last_tenth = tenth
        spent = self.clock() - self.start
        left = "" if done == total or done == 0 else f", ~{_duration(spent * (total - done) / done)} left"
        self.echo(f"{self.what}: {done}/{total} ({100 * done // total} %), {_duration(spent)} so far{left}")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"
