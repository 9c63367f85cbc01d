"""The one exception type the harness raises for bad input; entry points print its message and exit."""


class HarnessError(Exception):
    """A problem the user can fix: the message says what is wrong and how to fix it."""
