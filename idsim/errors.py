"""User-facing errors.

Every mistake a user can make (unknown model, bad ratio, missing folder...) raises
:class:`IdsimError` with a one-line message that says what was wrong and what is valid.
The command-line entry point prints that line and exits with status 2 instead of a traceback.
"""


class IdsimError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    def __init__(self, message: str):
        message = " ".join(str(message).split())  # one line, whatever the caller wrote
        super().__init__(message)
