"""The build schema between nights: pruned of relations no model builds."""

from __future__ import annotations

import json

import psycopg
import pytest

from spm_warehouse import publication as publish


@pytest.fixture
def wh(fresh_database):
    with psycopg.connect(fresh_database("build_schema")) as conn:
        yield conn


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
