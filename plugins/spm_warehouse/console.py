"""How every command of the project ends: its exit code, or one line naming the error.

Why: the README's commands promise a clear one-line error and never a stack
trace for a user's mistake or a missing service. The runtime CLI, the demo and
the dashboards' command line all end through `run_command`; it imports nothing
heavy, so the dashboards can use it inside Superset's own virtual environment.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable


def run_command(args: argparse.Namespace, user_errors: tuple[type[BaseException], ...]) -> int:
    """args.func(args) -> its exit code; an error of `user_errors` is `error: <message>` on stderr and exit 2."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    func: Callable[[argparse.Namespace], int | None] = args.func
    try:
        return int(func(args) or 0)
    except user_errors as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
