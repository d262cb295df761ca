"""User errors: one clear message, exit code 2, no traceback.

Anything a user can cause (a missing dataset, a bad space file, a malformed feature file, an
unreachable cluster or tracking server) raises :class:`UserError` with a message that names the
file or key and says how to fix it. Command-line entry points wrap their ``main`` with
:func:`cli_main`, which prints that message and exits with status 2. Every other exception is a
bug in tune_m3 and keeps its traceback.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable

EXIT_USER_ERROR = 2


class UserError(Exception):
    """An error the user can fix. The message must name the input and the fix."""


def cli_main(main: Callable[..., int | None]) -> Callable[..., int]:
    """Wrap a CLI ``main`` so that :class:`UserError` becomes ``error: ...`` and exit code 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return int(main(*args, **kwargs) or 0)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            return EXIT_USER_ERROR
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # `... --dry-run | head`: the reader left; no traceback
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 128 + 13  # as a shell reports a process ended by SIGPIPE

    return wrapper
