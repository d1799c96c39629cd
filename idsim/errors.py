"""User-facing errors: the one error type, and the one way a command line reports it.

Every mistake a user can make (unknown model, bad ratio, missing folder...) raises
:class:`IdsimError` with a one-line message that says what was wrong and what is valid.
The command-line entry point prints that line and exits with status 2 instead of a traceback.
"""


import functools
import sys


class IdsimError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    def __init__(self, message: str):
        message = " ".join(str(message).split())  # one line, whatever the caller wrote
        super().__init__(message)


class LaunchAborted(BaseException):
    """A launcher gave up before any job ran (e.g. SLURM jobs that can never start), in one line.

    A BaseException so that Hydra's error printing does not catch it: ``idsim.app.launch`` prints
    the line and exits with status 1.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def report(error: BaseException | str) -> None:
    """Print the one line a user sees for an :class:`IdsimError` (or a message)."""
    print(f"idsim: error: {error}", file=sys.stderr)


def cli(main):
    """Decorate a command-line ``main``: an :class:`IdsimError` becomes one ``idsim: error:`` line and status 2."""
    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except IdsimError as e:
            report(e)
            return 2
    return wrapper
