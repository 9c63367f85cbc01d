"""Entry-point helper: a HarnessError becomes one clear message and exit status 2, never a traceback."""

from __future__ import annotations

import functools
import sys
from typing import NoReturn

from harness.core.errors import HarnessError


def fail(message: object) -> NoReturn:
    """End the process with ``error: <message>`` on stderr and exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def reports_errors(task):
    """Wrap a Hydra task function so bad input ends with ``error: <message>`` (Hydra would print a traceback)."""

    @functools.wraps(task)
    def wrapper(*args, **kwargs):
        try:
            return task(*args, **kwargs)
        except HarnessError as err:
            fail(err)

    return wrapper
