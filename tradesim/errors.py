"""The one exception type the CLI turns into a single clear line instead of a traceback."""


class TradesimError(Exception):
    """A problem with the user's input: files, fields, flags or configuration.

    The message must stand alone on one line and name what was wrong and what was expected.
    `exit_code` is the CLI's exit status for it (paper accounts use 75: try later, 2: refused).
    """

    exit_code = 1
