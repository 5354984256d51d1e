"""Peak disk of a benchmark run, and the bytes per client of each layer of the warehouse.

Why sample the databases rather than the file system: the machine (and the
embedded cluster) is shared, so the free space of the disk moves with other
people's work. The size of this scale's own databases (source MIS, warehouse,
Airflow metadata) plus PostgreSQL's temporary files (sort and hash spill,
which are what make a night's peak higher than its end state) is ours alone,
apart from the temporary files of other sessions of the same cluster, which
the report names as an upper bound.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import psycopg

# Schemas of the warehouse, grouped into the layers the report gives bytes per client of.
LAYERS = {
    "raw": ("raw_mis", "raw_kobo", "landing", "quarantine"),
    "intermediate": ("intermediate", "staging"),
}


def layer_of(schema: str, analytics_prefix: str) -> str:
    """raw, intermediate, analytics (every copy of the marts: published, previous, build; and history) or other."""
    for layer, schemas in LAYERS.items():
        if schema in schemas or schema.startswith(schemas):
            return layer
    # history: the versioned facts, kept once for every copy of the marts (dbt_project/macros/history.sql)
    if schema.startswith(analytics_prefix) or schema == "history":
        return "analytics"
    return "other"


def database_bytes(conn: psycopg.Connection, names: list[str]) -> int:
    return int(conn.execute("SELECT coalesce(sum(pg_database_size(datname)), 0) FROM pg_database "
                            "WHERE datname = ANY(%s)", (names,)).fetchone()[0])


def temp_bytes(conn: psycopg.Connection) -> int | None:
    """Bytes of PostgreSQL's temporary files now (None when this role may not list them)."""
    try:
        return int(conn.execute("SELECT coalesce(sum(size), 0) FROM pg_ls_tmpdir()").fetchone()[0])
    except psycopg.Error:
        return None


def schema_bytes(wh_url: str) -> dict[str, int]:
    """Bytes (tables, indexes, TOAST) of every schema of the warehouse."""
    with psycopg.connect(wh_url, autocommit=True) as conn:
        return {schema: int(size) for schema, size in conn.execute(
            """SELECT n.nspname, sum(pg_total_relation_size(c.oid))
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE c.relkind IN ('r', 'm', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                 AND n.nspname NOT LIKE 'pg_toast%%'
               GROUP BY 1 ORDER BY 2 DESC""")}


def layer_bytes(server_url: str, mis_db: str, wh_url: str, analytics_prefix: str) -> dict:
    """Bytes of the source MIS, and of the warehouse's raw, intermediate and analytics layers."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        source = database_bytes(conn, [mis_db])
    schemas = schema_bytes(wh_url)
    layers = {"source": source, "raw": 0, "intermediate": 0, "analytics": 0, "other": 0}
    for schema, size in schemas.items():
        layers[layer_of(schema, analytics_prefix)] += size
    return {"layers": layers, "schemas": schemas}


@dataclass
class DiskSampler:
    """Polls the size of some databases and the cluster's temporary files until stopped."""

    server_url: str
    databases: list[str]
    interval_s: float = 2.0
    samples: list[tuple[float, int, int | None]] = field(default_factory=list)  # (unix time, db bytes, temp bytes)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def poll_once(self, conn: psycopg.Connection) -> None:
        self.samples.append((time.time(), database_bytes(conn, self.databases), temp_bytes(conn)))

    def _loop(self) -> None:
        try:
            with psycopg.connect(self.server_url, autocommit=True) as conn:
                while not self._stop.is_set():
                    self.poll_once(conn)
                    self._stop.wait(self.interval_s)
                self.poll_once(conn)
        except psycopg.Error:  # the sampler must never break the run it measures
            pass

    def start(self) -> "DiskSampler":
        self._thread = threading.Thread(target=self._loop, name="bench-disk", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)

    def summary(self) -> dict:
        """Peak of (databases + temporary files), and what each was then, in GB."""
        if not self.samples:
            return {}
        peak = max(self.samples, key=lambda s: s[1] + (s[2] or 0))
        start, end = self.samples[0], self.samples[-1]
        return {"peak_gb": round((peak[1] + (peak[2] or 0)) / 1e9, 3),
                "databases_at_peak_gb": round(peak[1] / 1e9, 3),
                "temp_at_peak_gb": round(peak[2] / 1e9, 3) if peak[2] is not None else None,
                "max_temp_gb": round(max(s[2] or 0 for s in self.samples) / 1e9, 3),
                "start_gb": round(start[1] / 1e9, 3), "end_gb": round(end[1] / 1e9, 3),
                "samples": len(self.samples), "databases": list(self.databases)}
