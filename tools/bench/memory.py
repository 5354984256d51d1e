"""Peak resident memory of a process tree, read from /proc (no psutil).

Why both numbers:
- VmHWM ("high water mark") in /proc/<pid>/status is the kernel's exact peak
  RSS of one process over its whole life; we only have to read it once while
  the process is alive, so a short poll interval catches every process that
  lives longer than the interval (Airflow's `dags test`, the dbt child).
- The *concurrent* footprint (the `dags test` process plus its dbt child at
  the same moment) is not in any counter: it is sampled (sum of VmRSS of the
  Python processes of the tree at each poll), which also lets us attribute a
  peak to the stage that was running at that time.

Only Python processes count (the executable's name starts with "python"):
PostgreSQL backends are not part of "our" memory and are not descendants anyway.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")


def _status(pid: int) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            key, _, value = line.partition(":")
            out[key] = value.strip()
    except OSError:
        pass
    return out


def _kb(value: str | None) -> int:
    if not value:
        return 0
    return int(value.split()[0])


def _children_map() -> dict[int, list[int]]:
    """ppid -> child pids, for every process we can see."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name (2nd field) is in parentheses and may contain spaces
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def descendants(root: int) -> list[int]:
    """root and every process below it."""
    tree = _children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(tree.get(pid, []))
    return out


def _is_python(pid: int) -> bool:
    try:
        exe = os.readlink(PROC / str(pid) / "exe")
    except OSError:
        return False
    return Path(exe).name.startswith("python")


def _label(pid: int) -> str:
    """A short name: 'airflow dags test', 'dbt build', ... from the command line."""
    try:
        argv = (PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [a.decode(errors="replace") for a in argv if a]
    if "-c" in words:  # python -c '<code>': name it by the start of the code
        code = words[words.index("-c") + 1] if len(words) > words.index("-c") + 1 else ""
        return "python -c " + code[:40]
    # skip the interpreter and its options: the script is the first word that is not python or a flag
    rest = [w for w in words if not Path(w).name.startswith("python") and not w.startswith("-")]
    if not rest:
        return " ".join(words[:3])
    script = Path(rest[0]).name
    return " ".join([script, *rest[1:3]])


@dataclass
class ProcessPeak:
    pid: int
    label: str
    hwm_kb: int = 0


@dataclass
class TreeMemory:
    """Polls a process tree until stopped; see the module docstring."""

    root: int
    interval_s: float = 0.2
    peaks: dict[int, ProcessPeak] = field(default_factory=dict)
    samples: list[tuple[float, int]] = field(default_factory=list)  # (unix time, sum of Python VmRSS kB)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def poll_once(self) -> None:
        total = 0
        for pid in descendants(self.root):
            if not _is_python(pid):
                continue
            status = _status(pid)
            if not status:
                continue
            total += _kb(status.get("VmRSS"))
            peak = self.peaks.get(pid)
            if peak is None:
                peak = self.peaks[pid] = ProcessPeak(pid, _label(pid))
            peak.hwm_kb = max(peak.hwm_kb, _kb(status.get("VmHWM")))
        self.samples.append((time.time(), total))

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - a vanished process must not kill the sampler
                pass
            self._stop.wait(self.interval_s)

    def start(self) -> "TreeMemory":
        self._thread = threading.Thread(target=self._loop, name="bench-memory", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    # ---------------------------------------------------------------- results

    def max_process_mb(self) -> float:
        """Largest VmHWM of any single Python process of the tree."""
        return max((p.hwm_kb for p in self.peaks.values()), default=0) / 1024

    def max_concurrent_mb(self, start: float | None = None, end: float | None = None) -> float:
        """Largest sampled sum of VmRSS over the tree, optionally within [start, end] (unix time)."""
        values = [kb for t, kb in self.samples
                  if (start is None or t >= start) and (end is None or t <= end)]
        return max(values, default=0) / 1024

    def by_label(self) -> dict[str, float]:
        """Peak MB per kind of process (max over processes with the same label)."""
        out: dict[str, float] = {}
        for p in self.peaks.values():
            out[p.label] = max(out.get(p.label, 0.0), p.hwm_kb / 1024)
        return out
