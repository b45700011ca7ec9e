"""
Progress reporting: a live bar on a terminal, a line every few percent in a log file.

``tqdm`` redraws its bar with carriage returns: in a log file (stdout or stderr redirected)
a training run leaves ~1000 carriage-return updates on one line. :func:`progress` returns a
tqdm bar when the stream is a terminal and a :class:`LineProgress` otherwise, which prints one
plain line each time another ``every_percent`` of the total is done (and at the end). Both have
the same small interface: ``update``, ``set_postfix``, ``close`` and use as a context manager.
"""

from __future__ import annotations

from collections.abc import Mapping
import math
import sys
import time
from types import TracebackType
from typing import Protocol, TextIO

from tqdm import tqdm

__all__ = ['LineProgress', 'Progress', 'progress']


class Progress(Protocol):
    """What the training loop and the converter use of a progress bar."""

    def update(self, n: int = 1) -> object: ...

    def set_postfix(
        self, ordered_dict: Mapping[str, object] | None = None, **kwargs: object
    ) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Progress: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class LineProgress:
    """A progress report for log files: ``desc: 45% 450/1000 [12.3 s, 36.6 it/s] loss=0.01``."""

    def __init__(
        self,
        total: int,
        desc: str,
        *,
        initial: int = 0,
        unit: str = 'it',
        every_percent: float = 5.0,
        file: TextIO | None = None,
        disable: bool = False,
    ) -> None:
        if total < 0:
            raise ValueError(f'LineProgress: total must be >= 0, got {total}')
        if not 0 < every_percent <= 100:
            raise ValueError(
                f'LineProgress: every_percent must be in (0, 100], got {every_percent}'
            )
        self.total, self.desc, self.unit = int(total), desc, unit
        self.n = self._start = int(initial)
        self.disable = disable
        self._file = file
        self._every = float(every_percent)
        self._bucket = self._bucket_of(self.n)
        self._postfix = ''
        self._t0 = time.monotonic()
        self._closed = False
        self._printed_n = self.n
        self.lines = 0

    def update(self, n: int = 1) -> None:
        """Advance by ``n``; print a line when the next step of the total is reached."""
        self.n += n
        bucket = self._bucket_of(self.n)
        if bucket > self._bucket:
            self._bucket = bucket
            self._print()

    def _bucket_of(self, n: int) -> int:
        """
        How many whole ``every_percent`` steps of the total ``n`` is (0 for an unknown total).

        A line is printed when this grows: at most ``100 / every_percent`` lines, and with the
        final one from :meth:`close` at most 21 lines at 5 %, whatever the total.
        """
        if self.total <= 0:
            return 0
        return math.floor(n * 100 / (self._every * self.total))

    def set_postfix(
        self, ordered_dict: Mapping[str, object] | None = None, **kwargs: object
    ) -> None:
        """Show ``key=value`` pairs at the end of the next lines (as tqdm does)."""
        items = {**(ordered_dict or {}), **kwargs}
        self._postfix = ' '.join(f'{k}={v}' for k, v in items.items())

    def close(self) -> None:
        """Print the final line unless the last update already did."""
        if not self._closed:
            self._closed = True
            if self.n != self._printed_n:
                self._print()

    def _print(self) -> None:
        if self.disable:
            return
        self._printed_n = self.n
        elapsed = time.monotonic() - self._t0
        rate = (self.n - self._start) / elapsed if elapsed > 0 else 0.0
        pct = 100.0 * self.n / self.total if self.total else 100.0
        line = (
            f'{self.desc}: {pct:3.0f}% {self.n}/{self.total} '
            f'[{elapsed:.1f} s, {rate:.1f} {self.unit}/s]'
        )
        if self._postfix:
            line += ' ' + self._postfix
        print(line, file=self._file or sys.stderr, flush=True)
        self.lines += 1

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def progress(
    total: int,
    desc: str,
    *,
    initial: int = 0,
    unit: str = 'it',
    disable: bool = False,
    file: TextIO | None = None,
    every_percent: float = 5.0,
    **tqdm_kwargs: object,
) -> Progress:
    """Return a live tqdm bar on a terminal, else a :class:`LineProgress` on ``file``."""
    stream = file or sys.stderr
    if stream.isatty():
        bar: Progress = tqdm(
            total=total, initial=initial, desc=desc, unit=unit, disable=disable, file=stream,
            **tqdm_kwargs,
        )
        return bar
    return LineProgress(
        total, desc, initial=initial, unit=unit, every_percent=every_percent, file=stream,
        disable=disable,
    )
