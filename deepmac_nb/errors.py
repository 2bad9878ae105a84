"""The package's user-facing error.

Library code raises ``UserError`` for anything a user can fix (a missing file, a bad
argument, a model dir of the wrong kind). Every ``deepmac-nb`` command prints it as one
line and exits 2; notebooks show the message. It lives at the bottom of the package so
that no library module has to import the command line to raise it.
"""

from __future__ import annotations


class UserError(Exception):
    """A user-facing error: printed as one line, exit code 2, no traceback."""
