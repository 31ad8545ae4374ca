"""User-facing errors: one line that says what is wrong and how to fix it, exit code 2."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

EXIT_USER_ERROR = 2

F = TypeVar("F", bound=Callable[..., int])


class UserError(ValueError):
    """An error the user caused (paths, config, data rows, checkpoint layout).

    The message is shown as it is, on one line, so it must name the culprit and the fix.
    """


def first_line(err: BaseException, limit: int = 300) -> str:
    """The first line of ``err``'s message (at most ``limit`` characters), or its type's name
    when it has none: what a one-line error quotes of a library's exception."""
    text = str(err).strip()
    return text.splitlines()[0][:limit] if text else type(err).__name__


def cli_entry(main: F) -> F:
    """Wrap a CLI ``main`` so a :class:`UserError` prints one line and exits with code 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except UserError as err:
            prog = Path(sys.argv[0]).stem or "mindspeed-rl"
            print(f"{prog}: error: {err}", file=sys.stderr)
            return EXIT_USER_ERROR

    return wrapper  # type: ignore[return-value]


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The CLIs' --help: the docstring as written, and each option's default (unless its help
    already says it, or there is none to say)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, [], False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)
