"""The build schema between nights: seeded from the publication, pruned of relations no model builds."""

from __future__ import annotations

import json

import psycopg
import pytest

from spm_warehouse import publication as publish


@pytest.fixture
def wh(fresh_database):
    with psycopg.connect(fresh_database("build_schema")) as conn:
        yield conn


def test_seed_copies_the_published_incremental_marts_with_their_indexes(wh):
    wh.execute("CREATE SCHEMA analytics")
    wh.execute("""CREATE TABLE analytics.fct_x AS
                  SELECT g AS id, date '2024-06-30' AS _as_of_date, now() AS _cutoff_ts, now() AS _watermark,
                         false AS _backfill FROM generate_series(1, 50) g""")
    wh.execute("CREATE UNIQUE INDEX ON analytics.fct_x (id)")
    # an incremental mart whose state is its consumed input stamps (fct_client_indicator), not a raw watermark
    wh.execute("""CREATE TABLE analytics.fct_z AS SELECT 1 AS id, date '2024-06-30' AS _as_of_date,
                  now() AS _cutoff_ts, now() AS _inputs_changed_at""")
    wh.execute("CREATE TABLE analytics.kpi_y AS SELECT 1 AS branch_id")  # a table model: rebuilt, not copied
    wh.execute("COMMENT ON SCHEMA analytics IS %s" % psycopg.sql.quote(json.dumps({"build_id": "b1"})))

    assert publish.seed_build_schema(wh) == ["fct_x", "fct_z"]
    assert wh.execute("SELECT count(*) FROM analytics_build.fct_x").fetchone()[0] == 50
    assert wh.execute("SELECT to_regclass('analytics_build.kpi_y')").fetchone()[0] is None
    indexes = [r[0] for r in wh.execute(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'analytics_build' AND tablename = 'fct_x'")]
    assert len(indexes) == 1 and indexes[0].startswith("CREATE UNIQUE INDEX") and indexes[0].endswith("(id)")
    stamp = json.loads(wh.execute(
        "SELECT obj_description(to_regnamespace('analytics_build')::oid, 'pg_namespace')").fetchone()[0])
    assert stamp == {publish.RECYCLED_KEY: "b1"}
    # an existing build schema (a blocked night's, or a recycled one) is never overwritten
    wh.execute("DELETE FROM analytics_build.fct_x WHERE id > 10")
    assert publish.seed_build_schema(wh) == []
    assert wh.execute("SELECT count(*) FROM analytics_build.fct_x").fetchone()[0] == 10


def test_seed_does_nothing_when_recycling_is_off(wh, monkeypatch):
    monkeypatch.setenv("SPM_RECYCLE_BUILD", "0")
    wh.execute("CREATE SCHEMA analytics")
    wh.execute("CREATE TABLE analytics.fct_x (id int, _as_of_date date, _cutoff_ts timestamptz, "
               "_watermark timestamptz, _backfill boolean)")
    assert publish.seed_build_schema(wh) == []
    assert wh.execute("SELECT to_regnamespace('analytics_build')").fetchone()[0] is None


def test_prune_drops_what_no_model_builds_and_keeps_the_health_views(wh, tmp_path):
    wh.execute("CREATE SCHEMA analytics_build")
    wh.execute("CREATE TABLE analytics_build.fct_kept (id int)")
    wh.execute("CREATE TABLE analytics_build.fct_renamed_since (id int)")
    wh.execute("CREATE VIEW analytics_build.publication_info AS SELECT 1 AS x")
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"nodes": {
        "model.p.fct_kept": {"resource_type": "model", "name": "fct_kept", "alias": "fct_kept",
                             "schema": "analytics_build"},
        "model.p.stg": {"resource_type": "model", "name": "stg_x", "alias": "stg_x", "schema": "staging"},
    }}))
    assert publish.prune_build_schema(wh, manifest) == ["fct_renamed_since"]
    left = {r[0] for r in wh.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'analytics_build'")}
    assert left == {"fct_kept", "publication_info"}
    # without a readable manifest nothing is dropped
    assert publish.prune_build_schema(wh, tmp_path / "missing.json") == []
