"""A seed whose CSV gained a column is created anew by the next build, not left to fail `dbt seed`."""

from __future__ import annotations

import psycopg

from spm_warehouse import seed_tables


def test_only_seed_tables_whose_columns_changed_are_dropped(fresh_database, tmp_path):
    url = fresh_database("seeds")
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "indicator_catalogue.csv").write_text("indicator_code,unit,change_unit\npoverty_likelihood,fraction,pp\n")
    (seeds / "age_bands.csv").write_text("band_code,band_label\nunder_18,Under 18\n")
    (seeds / "kpi_targets.csv").write_text("indicator,threshold\npar30_ratio,0.05\n")
    with psycopg.connect(url) as conn:
        conn.execute("CREATE SCHEMA reference")
        conn.execute("CREATE TABLE reference.indicator_catalogue (indicator_code text, unit text)")  # before the upgrade
        conn.execute("CREATE TABLE reference.age_bands (band_code text, band_label text)")  # unchanged
        conn.execute("CREATE VIEW reference.catalogue_view AS SELECT * FROM reference.indicator_catalogue")
        conn.execute("INSERT INTO reference.age_bands VALUES ('under_18', 'Under 18')")
        dropped = seed_tables.drop_changed_seed_tables(conn, seeds)
        conn.commit()
        left = {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'reference'").fetchall()}
        kept_rows = conn.execute("SELECT count(*) FROM reference.age_bands").fetchone()[0]
    assert dropped == ["indicator_catalogue"]  # kpi_targets has no table yet: nothing to drop
    assert left == {"age_bands"}  # the view on the old table went with it (the build recreates views)
    assert kept_rows == 1
