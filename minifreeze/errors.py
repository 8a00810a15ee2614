"""The one exception type users see.

Every check that can fail on user input raises `MinifreezeError` with a single line that names the
problem and the fix; the command-line entry points print that line instead of a traceback.
"""


class MinifreezeError(Exception):
    """A problem with the user's input (path, model, data, option), explained in one line."""
