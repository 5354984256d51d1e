"""load.py and meta.py on their own: merge semantics, bookkeeping tables, drift baseline."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from spm_warehouse import load, meta
from spm_warehouse.sources.fineract import TABLES_BY_NAME, TableSpec

SPEC = TableSpec("m_demo", ("id",), (("id", "bigint"), ("amount", "numeric(19,6)"), ("note", "varchar"),
                                     ("last_modified_on_utc", "timestamptz")), "last_modified_on_utc")
STAMP = dt.datetime(2024, 6, 1, 10, tzinfo=dt.timezone.utc)


@pytest.fixture
def wh(fresh_database):
    url = fresh_database("load")
    with psycopg.connect(url) as conn:
        meta.ensure_meta_schema(conn)
        load.ensure_raw_table(conn, SPEC)
        conn.commit()
        yield conn


def land(conn: psycopg.Connection, rows: list[tuple], run_id: str, spec: TableSpec = SPEC) -> int:
    with conn.cursor() as cur:
        load.begin_load(cur, run_id)
        target = load.prepare_landing(cur, spec)
        with cur.copy(f"COPY {target} ({', '.join(spec.column_names)}) FROM STDIN") as cp:
            for row in rows:
                cp.write_row(row)
        merged = load.merge_landing(cur, spec, run_id)
    conn.commit()
    return merged


def raw(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute("SELECT id, amount, note, _run_id, _deleted, _extracted_at FROM raw_mis.m_demo "
                        "ORDER BY id").fetchall()


def test_meta_schema_is_idempotent_and_has_the_bookkeeping_tables(wh):
    meta.ensure_meta_schema(wh)
    meta.ensure_meta_schema(wh)
    wh.commit()
    tables = {r[0] for r in wh.execute("SELECT table_name FROM information_schema.tables "
                                       "WHERE table_schema = 'meta'")}
    assert {"watermarks", "load_manifest", "quarantine", "schema_drift", "source_columns",
            "reconciliations"} <= tables
    quarantine = [r[0] for r in wh.execute("SELECT column_name FROM information_schema.columns WHERE "
                                           "table_schema = 'meta' AND table_name = 'quarantine' "
                                           "ORDER BY ordinal_position")]
    assert quarantine == ["id", "source", "source_key", "reason", "run_id", "detected_at", "payload"]


def test_merge_inserts_updates_only_differences_and_is_idempotent(wh):
    rows = [(1, "10.5", "a", STAMP), (2, "20", None, STAMP)]
    assert land(wh, rows, "r1") == 2
    first = raw(wh)
    assert [(r[0], str(r[1]), r[2], r[3]) for r in first] == [(1, "10.500000", "a", "r1"), (2, "20.000000", None, "r1")]
    # same data again (and 10.5 written differently): nothing merged, bookkeeping unchanged
    assert land(wh, [(1, "10.500", "a", STAMP), (2, "20", None, STAMP)], "r2") == 0
    assert raw(wh) == first
    # one real change (NULL -> value counts as a change)
    assert land(wh, [(1, "10.5", "a", STAMP), (2, "20", "now set", STAMP)], "r3") == 1
    after = raw(wh)
    assert after[0] == first[0]
    assert after[1][2:4] == ("now set", "r3")
    assert after[1][5] > first[1][5]


def test_deleted_rows_are_marked_and_come_back_when_they_reappear(wh):
    land(wh, [(1, "1", "x", STAMP), (2, "2", "y", STAMP), (3, "3", "z", STAMP)], "r1")
    with wh.cursor() as cur:
        load.begin_load(cur, "r2")
        keys = load.prepare_keys_table(cur, SPEC)
        with cur.copy(f"COPY {keys} (id) FROM STDIN") as cp:
            cp.write_row((1,))
            cp.write_row((3,))
        marked, total = load.mark_deleted_by_keys(cur, SPEC, keys, "r2")
    wh.commit()
    assert (marked, total) == (1, 3)
    assert [(r[0], r[4]) for r in raw(wh)] == [(1, False), (2, True), (3, False)]
    # the row is back in the source: the merge clears _deleted even though its data is unchanged
    assert land(wh, [(2, "2", "y", STAMP)], "r3") == 1
    assert [(r[0], r[4], r[3]) for r in raw(wh)] == [(1, False, "r1"), (2, False, "r3"), (3, False, "r1")]


def test_snapshot_tables_detect_deletes_from_landing(wh):
    land(wh, [(1, "1", "x", STAMP), (2, "2", "y", STAMP)], "r1")
    with wh.cursor() as cur:
        load.begin_load(cur, "r2")
        target = load.prepare_landing(cur, SPEC)
        with cur.copy(f"COPY {target} ({', '.join(SPEC.column_names)}) FROM STDIN") as cp:
            cp.write_row((2, "2", "y", STAMP))
        assert load.merge_landing(cur, SPEC, "r2") == 0
        assert load.mark_deleted_from_landing(cur, SPEC, "r2") == 1
    wh.commit()
    assert [(r[0], r[4]) for r in raw(wh)] == [(1, True), (2, False)]


def test_key_only_table_merge(wh):
    spec = TABLES_BY_NAME["m_group_client"]
    load.ensure_raw_table(wh, spec)
    wh.commit()
    assert land(wh, [(1, 10), (1, 11)], "r1", spec) == 2
    assert land(wh, [(1, 10), (1, 11)], "r1b", spec) == 0
    wh.execute("UPDATE raw_mis.m_group_client SET _deleted = true WHERE client_id = 11")
    wh.commit()
    assert land(wh, [(1, 10), (1, 11)], "r2", spec) == 1
    assert wh.execute("SELECT count(*) FROM raw_mis.m_group_client WHERE _deleted").fetchone()[0] == 0


def test_raw_table_gains_contract_columns_it_lacks(wh):
    wider = TableSpec("m_demo", ("id",), SPEC.columns + (("closedon_date", "date"),), SPEC.cursor)
    load.ensure_raw_table(wh, wider)
    wh.commit()
    cols = [r[0] for r in wh.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = "
                                     "'raw_mis' AND table_name = 'm_demo'")]
    assert "closedon_date" in cols


def test_default_run_id_comes_from_the_load_transaction(wh):
    with wh.cursor() as cur:
        load.begin_load(cur, "copy_run")
        with cur.copy("COPY raw_mis.m_demo (id, amount, note, last_modified_on_utc) FROM STDIN") as cp:
            cp.write_row((7, "1", None, STAMP))
    wh.commit()
    assert wh.execute("SELECT _run_id, _deleted FROM raw_mis.m_demo WHERE id = 7").fetchone() == ("copy_run", False)


def test_watermarks_manifest_and_drift_baseline(wh):
    with wh.cursor() as cur:
        load.write_watermark(cur, "m_demo", "src", STAMP, "r1")
        load.write_watermark(cur, "m_demo", "src", STAMP + dt.timedelta(hours=1), "r2")
        load.write_manifest(cur, {"run_id": "r2", "source": "src", "table_name": "m_demo", "mode": "incremental",
                                  "as_of": dt.date(2024, 6, 30), "watermark_from": STAMP,
                                  "watermark_to": STAMP + dt.timedelta(hours=1), "rows_read": 5, "rows_merged": 2,
                                  "rows_deleted": 0, "seconds": 0.5, "started_at": STAMP})
    wh.commit()
    assert load.read_watermark(wh, "m_demo") == STAMP + dt.timedelta(hours=1)
    assert load.read_watermark(wh, "nope") is None
    assert wh.execute("SELECT rows_read, rows_merged, watermark_from FROM meta.load_manifest").fetchall() == \
        [(5, 2, STAMP)]
    # first sighting is the baseline; later differences are drift
    assert load.record_source_columns(wh, "src", "m_demo", {"id": "bigint", "x": "text"}, "r1") == []
    assert load.record_source_columns(wh, "src", "m_demo", {"id": "bigint", "y": "int"}, "r2") == \
        [("y", "added"), ("x", "removed")]
    assert load.record_source_columns(wh, "src", "m_demo", {"id": "bigint", "y": "int"}, "r3") == []
    wh.commit()
    assert wh.execute("SELECT column_name, change FROM meta.schema_drift ORDER BY id").fetchall() == \
        [("y", "added"), ("x", "removed")]


def test_reconcile_due(wh):
    assert load.reconcile_due(wh, 7, "src") is True
    with wh.cursor() as cur:
        load.write_reconciliation(cur, "r1", "src", "m_demo", 10, 10, 0, 0.1)
    wh.commit()
    assert load.reconcile_due(wh, 7, "src") is False
    wh.execute("UPDATE meta.reconciliations SET reconciled_at = now() - interval '8 days'")
    assert load.reconcile_due(wh, 7, "src") is True


def test_initial_load_rebuilds_the_primary_key_and_names_duplicate_keys(wh):
    with wh.cursor() as cur:
        load.begin_load(cur, "r1")
        pkey = load.begin_initial_load(cur, SPEC)
        assert pkey == "m_demo_pkey"
        with cur.copy("COPY raw_mis.m_demo (id, amount, note, last_modified_on_utc) FROM STDIN") as cp:
            cp.write_row((1, "1", None, STAMP))
            cp.write_row((2, "2", None, STAMP))
        load.end_initial_load(cur, SPEC, pkey)
    wh.commit()
    assert wh.execute("SELECT count(*) FROM pg_constraint WHERE conrelid = 'raw_mis.m_demo'::regclass "
                      "AND contype = 'p'").fetchone()[0] == 1
    wh.execute("TRUNCATE raw_mis.m_demo")
    with wh.cursor() as cur:
        pkey = load.begin_initial_load(cur, SPEC)
        with cur.copy("COPY raw_mis.m_demo (id, amount, note, last_modified_on_utc) FROM STDIN") as cp:
            cp.write_row((1, "1", None, STAMP))
            cp.write_row((1, "2", None, STAMP))
        with pytest.raises(RuntimeError, match="m_demo has duplicate keys"):
            load.end_initial_load(cur, SPEC, pkey)
    wh.rollback()
