"""One exception type for bad input: the command layer prints its message, never a traceback."""


class MangoError(Exception):
    """A user-facing error: the message names the file, row, key or value and what was expected."""
