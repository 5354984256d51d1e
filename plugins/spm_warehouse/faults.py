"""Fault points: where `make faults` breaks a stage on purpose, to prove that a night survives it.

Why in the runtime: a kill -9 "during the merge" or "during the publication swap" must
land at exactly that moment, every time, for the suite to assert what it promises. A
fault point is one call at that place; it does nothing unless SPM_FAULT_POINT names it
(never set in production):

- SPM_FAULT_POINT=<name>: the process kills itself with SIGKILL there (no cleanup, no
  finally blocks, exactly like the OOM killer or a lost worker);
- SPM_FAULT_ACTION=pause: it sleeps SPM_FAULT_PAUSE_S seconds there instead, so the suite
  can break something else meanwhile (terminate the source's backend, restart the warehouse).

Points: prepare, extract.copy (first rows of a table's COPY), extract.merge (merged, not
committed), build.dbt (dbt running), gate.checks (some checks judged), publish.swap
(renamed, not committed).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time

from spm_warehouse import settings

log = logging.getLogger(__name__)


def point(name: str) -> None:
    """Kill this process (or pause) when the fault suite asks for this point."""
    if settings.get("SPM_FAULT_POINT") != name:
        return
    if settings.get("SPM_FAULT_ACTION") == "pause":
        seconds = float(settings.get("SPM_FAULT_PAUSE_S"))
        print(f"fault point {name}: pausing {seconds:.0f}s", file=sys.stderr, flush=True)
        time.sleep(seconds)
        return
    print(f"fault point {name}: SIGKILL", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
