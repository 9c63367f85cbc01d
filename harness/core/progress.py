"""Progress of long work: a tqdm bar when the job has the console to itself, else a status line every so often
(several workers' bars on one terminal would overwrite each other)."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm


class Progress:
    def __init__(self, total: float, desc: str, unit: str = "img", *, enabled: bool = True, lines: bool = False,
                 every: float = 20.0):
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.enabled, self.lines = enabled, lines
        self.n = 0.0
        self.start = self.last = time.monotonic()
        self.bar = tqdm(total=total, desc=desc, unit=unit, mininterval=1.0, leave=False,
                        disable=not enabled or lines)

    def update(self, amount: float) -> None:
        """Add ``amount`` (fractions allowed: a step of a batch); the bar shows whole units."""
        self.n += amount
        self.bar.update(int(self.n) - self.bar.n)
        now = time.monotonic()
        if self.enabled and self.lines and now - self.last >= self.every:
            self.last = now
            print(f"  {self.desc}: {100 * self.n / max(self.total, 1):.0f}% ({self.n:.0f}/{self.total:.0f} {self.unit}, "
                  f"{now - self.start:.0f} s)", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()
