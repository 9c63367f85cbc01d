"""Entry-point helper: a HarnessError becomes one clear message and exit status 2, never a traceback."""

from __future__ import annotations

import functools
import sys

from harness.core.errors import HarnessError


def reports_errors(task):
    """Wrap a Hydra task function so bad input ends with ``error: <message>`` (Hydra would print a traceback)."""

    @functools.wraps(task)
    def wrapper(*args, **kwargs):
        try:
            return task(*args, **kwargs)
        except HarnessError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    return wrapper
