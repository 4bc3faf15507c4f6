"""The one exception type for mistakes in what the user asked for.

Library code raises ``UserError("...")`` for bad input a user can fix (a missing file, a bad
option, a corrupt checkpoint); the CLI prints it as one line ``error: ...`` and exits 2.
"""


class UserError(Exception):
    """A mistake in the user's input: shown as one line, never as a traceback."""
