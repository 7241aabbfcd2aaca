"""The errors a user can cause, and how the command lines report them.

Every error that bad input, a bad option or a damaged file can cause is a :class:`ProbesError`;
its message is one line that names the file and line, the record, the field or the option.
The command lines print that line and exit 1. Anything else is a programming error and keeps
its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class ProbesError(Exception):
    """Base of every user-facing error: the message says what to change."""


class ConfigError(ProbesError, ValueError):
    """A configuration option is unknown or has a bad value; the message names it."""


class RecordError(ProbesError, ValueError):
    """A record is malformed; the message names the file, line and field."""


class DataError(ProbesError, ValueError):
    """The records cannot serve the requested work (empty, one class, too few groups...)."""


class StoreError(ProbesError, ValueError):
    """A feature store is damaged, foreign or in use; the message names the file."""


class BundleError(ProbesError, ValueError):
    """A scorer bundle is malformed, damaged or does not fit; the message says what."""


#: Exit code of a run stopped by a user error (argparse keeps 2 for usage errors).
EXIT_USER_ERROR = 1


def report_errors(prog: str, fn: Callable[[], int]) -> int:
    """Run ``fn``; a :class:`ProbesError` or an OS error (missing file, no permission) is
    printed as ``<prog>: error: <message>`` and gives exit code 1."""
    try:
        return fn()
    except (ProbesError, OSError) as err:
        message = str(err) or type(err).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
