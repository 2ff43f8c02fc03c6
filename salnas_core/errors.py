"""The one error type for user mistakes (a missing file, a bad flag, bad data).

`salnas` prints a UserError as one line and exits 2; anything else is a bug and keeps its
traceback. It subclasses ValueError so callers that already catch ValueError keep working.
"""
from __future__ import annotations


class UserError(ValueError):
    """A mistake the user can fix: the message names the file or flag and what to do."""
