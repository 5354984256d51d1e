"""How every command of the project ends: its exit code, or one line naming the error.

Why: the README's commands promise a clear one-line error and never a stack
trace for a user's mistake or a missing service. An error nobody foresaw (a bug,
a server's unexpected answer) is one line too, and its traceback goes to a file
the line names, for the bug report. The runtime CLI, the demo and
the dashboards' command line all end through `run_command`; it imports nothing
heavy, so the dashboards can use it inside Superset's own virtual environment.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
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
    except Exception as exc:  # noqa: BLE001 - unexpected: one line for the user, the traceback in a file
        first = (str(exc).strip().splitlines() or [""])[0][:500]
        print(f"error: {type(exc).__name__}: {first}\n(the traceback is in {_save_traceback()}; "
              "please attach it when you report this)", file=sys.stderr)
        return 1


def _save_traceback() -> Path:
    """The current exception's traceback in <SPM_LOCAL_DIR>/logs, else in the temp folder."""
    name = f"error-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
    text = traceback.format_exc()
    from spm_warehouse import settings  # standard library only: fine in Superset's venv too

    for folder in (settings.local_dir() / "logs", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            path.write_text(text)
            return path.resolve()
        except OSError:
            continue
    return Path("(not written)")
