"""Ctrl-C (SIGINT) and SIGTERM for the long runs (`make bench`, `make soak`): stop, clean up, exit 130.

Whenever the signal arrives — while the stack starts, while k6 runs, during the clean-up or while the
report is written — the run ends with exit code 130 and leaves no process behind:

- while the work runs (inside `interruptible()`), the first signal raises KeyboardInterrupt there;
- at any other moment (before the work, during the clean-up, after it) a signal is only recorded, so
  it can neither cut the clean-up short nor be lost: `happened` then tells main() to return 130.

Python's default handler raises KeyboardInterrupt only for SIGINT and at any moment, including inside a
`finally` that is stopping processes; ignoring signals during the clean-up (as the bench once did) lost
an interruption that arrived just after the last scenario, and the run went on to exit 0.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

EXIT_CODE = 130


class Interruption:
    def __init__(self) -> None:
        self.happened = False
        self._armed = False

    def install(self) -> "Interruption":
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, self._on_signal)
        return self

    def _on_signal(self, number: int, _frame: object) -> None:
        first = not self.happened
        self.happened = True
        if self._armed and first:
            raise KeyboardInterrupt(signal.Signals(number).name)

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """The work: the first signal raises KeyboardInterrupt inside, also one that came before it."""
        if self.happened:
            raise KeyboardInterrupt("interrupted before the work started")
        self._armed = True
        try:
            yield
        finally:
            self._armed = False
