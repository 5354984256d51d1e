"""The demo survey generator: consistent with the MIS, deterministic, every fault kind planted,
and - through the real loader and dbt build - each submission ends as the manifest says."""

from __future__ import annotations

import csv
import filecmp
import json
from datetime import date, datetime

import psycopg
import pytest
from databases import TempDatabase
from surveys_support import build_surveys, project_copy

from spm_warehouse.settings import ConnInfo, parse_conn_uri
from spm_warehouse.sources import fineract, kobo
from tools.demo import fineract as demo_mis
from tools.demo.kobo_replay import KoboReplayServer
from tools.demo.surveys import generate_surveys

AS_OF = date(2024, 6, 30)
ASSET = "aDemoClientMonitoring"


@pytest.fixture
def tiny_mis(fresh_database):
    """A bare m_client (and gender codes), as the brief's minimum: id, account_no, activation_date, status_enum, office_id."""
    url = fresh_database("demo_surveys_mis")
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE m_code_value (id bigint PRIMARY KEY, code_value text)")
        conn.execute("INSERT INTO m_code_value VALUES (21, 'Female'), (22, 'Male')")
        conn.execute("""CREATE TABLE m_client (id bigint PRIMARY KEY, account_no varchar(20), status_enum int,
                        office_id bigint, activation_date date, closedon_date date, gender_cv_id int)""")
        conn.execute("""
            INSERT INTO m_client
            SELECT g, lpad(g::text, 9, '0'),
                   CASE WHEN g % 10 = 0 THEN 600 WHEN g % 13 = 0 THEN 100 ELSE 300 END,
                   1 + g % 3,
                   CASE WHEN g % 13 = 0 THEN NULL ELSE date '2021-01-01' + (g * 9 % 1100) END,
                   CASE WHEN g % 10 = 0 THEN date '2021-01-01' + (g * 9 % 1100) + 300 END,
                   21 + g % 2
            FROM generate_series(1, 90) g""")
        conn.execute("UPDATE m_client SET closedon_date = NULL, status_enum = 300 WHERE closedon_date > %s", (AS_OF,))
        conn.commit()
        yield conn


def test_same_seed_same_files_and_another_seed_differs(tiny_mis, tmp_path):
    a = generate_surveys(tiny_mis, tmp_path / "a", seed=3, as_of=AS_OF)
    b = generate_surveys(tiny_mis, tmp_path / "b", seed=3, as_of=AS_OF)
    c = generate_surveys(tiny_mis, tmp_path / "c", seed=4, as_of=AS_OF)
    for name in a["drop_files"]:
        assert filecmp.cmp(tmp_path / "a" / name, tmp_path / "b" / name, shallow=False), name
    assert (tmp_path / "a" / a["drop_files"][1]).read_text() != (tmp_path / "c" / c["drop_files"][1]).read_text()
    assert a["expected"] == b["expected"]


def test_surveys_name_real_clients_and_plant_every_fault_kind(tiny_mis, tmp_path):
    result = generate_surveys(tiny_mis, tmp_path, seed=3, as_of=AS_OF)
    manifest = json.loads((tmp_path / "kobo_replay" / "manifest.json").read_text())["submissions"]
    clients = {r[1]: r for r in tiny_mis.execute("SELECT id, account_no, activation_date, status_enum FROM m_client")}

    assert set(result["faults"]) == {"unknown_client", "answer_not_in_scorecard", "missing_ppi_answer",
                                     "unknown_scorecard", "duplicate", "edit", "edit_quarantined"}
    reasons = {e["reason"] for e in manifest.values() if e["expect"] == "quarantined"}
    assert reasons == {"unknown_client", "answer_not_in_scorecard", "missing_ppi_answer", "unknown_scorecard"}
    assert sum(e["expect"] == "replaced" for e in manifest.values()) == 4
    for entry in manifest.values():
        if entry["reason"] == "unknown_client":
            assert entry["account_no"] not in clients
        else:
            client = clients[entry["account_no"]]
            assert client[3] in (300, 600) and client[2] is not None  # only activated clients are surveyed
        assert date.fromisoformat(entry["interview_date"]) <= AS_OF

    served = [s for page in sorted((tmp_path / "kobo_replay" / "api" / ASSET).glob("page_*.json"))
              for s in json.loads(page.read_text())["results"]]
    assert len(served) == result["assets"][ASSET]
    ids = [s["meta/instanceID"] for s in served]
    assert len(ids) - len(set(ids)) == result["faults"]["duplicate"]  # re-submissions: same instanceID, new _id
    assert len({s["_id"] for s in served}) == len(served)
    edits = [s for s in served if s.get("meta/deprecatedID")]
    assert len(edits) == 4
    versions = {s["__version__"] for s in served}
    assert {"vDemo2022", "vDemo2024a", "vDemo2024b"} <= versions
    assert all("today" not in s and "satisfaction/nps" not in s for s in served if s["__version__"] == "vDemo2022")
    assert all("hh/has_electricity" in s for s in served if s["__version__"] == "vDemo2024b")
    assert all(datetime.fromisoformat(s["_submission_time"]).date() <= AS_OF for s in served)

    by_client: dict[str, list[dict]] = {}
    for s in served:
        by_client.setdefault(s["client/account_no"], []).append(s)
    for subs in by_client.values():
        baselines = [s for s in subs if s["survey/type"] == "baseline"]
        followups = [s for s in subs if s["survey/type"] == "followup"]
        if baselines and followups:
            assert min(s["start"] for s in followups) > min(s["start"] for s in baselines)


def test_drop_files_are_kobo_exports_at_the_top_of_the_folder(tiny_mis, tmp_path):
    result = generate_surveys(tiny_mis, tmp_path, seed=3, as_of=AS_OF)
    top = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    assert top == sorted(result["drop_files"])
    csv_file = next(tmp_path.glob("*.csv"))
    with open(csv_file, encoding="utf-8") as fh:
        header = next(csv.reader(fh, delimiter=";"))
    assert {"client/account_no", "ppi/q01", "hh/members", "meta/instanceID", "_id", "_submission_time"} <= set(header)
    legacy = json.loads((tmp_path / "aDemoLegacyForm__export.json").read_text())
    assert legacy and all("poverty/Q1" in s and "ppi/q01" not in s for s in legacy)


def test_generator_refuses_an_mis_without_clients(fresh_database, tmp_path):
    with psycopg.connect(fresh_database("demo_surveys_empty")) as conn:
        with pytest.raises(ValueError, match="m_client"):
            generate_surveys(conn, tmp_path, seed=1, as_of=AS_OF)


def test_demo_end_to_end_matches_the_manifest(pg_server_url, tmp_path):
    """demo MIS -> MIS extraction -> demo surveys via the replay API and drop files -> dbt build."""

    mis = TempDatabase(pg_server_url, "demo_e2e_mis")
    wh = TempDatabase(pg_server_url, "demo_e2e_wh")
    try:
        with psycopg.connect(mis.url) as conn:
            demo_mis.build_demo_mis(conn, clients=120, seed=11, as_of=AS_OF)
            conn.commit()
            drop = tmp_path / "drop"
            drop.mkdir()
            result = generate_surveys(conn, drop, seed=11, as_of=AS_OF)
        mis_info = parse_conn_uri("mis_fineract", "postgres://" + mis.url.split("://", 1)[1])
        with psycopg.connect(wh.url) as conn:
            fineract.extract_mis(mis_info, conn, run_id="e2e", as_of=AS_OF)
            conn.commit()
            with KoboReplayServer(drop / "kobo_replay" / "api", token="t", page_size=50) as server:
                info = ConnInfo("kobotoolbox", "http", server.url, None, "", "t", "", {"asset_uids": [ASSET]})
                counts = kobo.extract_surveys(info, conn, "e2e", drop)
            assert counts["assets"][ASSET]["pages"] > 1
            assert counts["files_loaded"] == len(result["drop_files"]) and counts["files_rejected"] == 0
        run = build_surveys(project_copy(tmp_path), wh.url)
        bad = {n: r["status"] for n, r in run.results.items() if r["status"] not in ("success", "pass")}
        assert bad == {"surveys__unknown_fields": "warn"}, run.output[-3000:]

        manifest = json.loads((drop / "kobo_replay" / "manifest.json").read_text())["submissions"]
        with psycopg.connect(wh.url) as conn:
            accepted = {r[0]: r[1:] for r in conn.execute(
                "SELECT instance_id, client_id, interview_date FROM intermediate.int_surveys__accepted")}
            quarantined = dict(conn.execute("SELECT source_key, reason_code FROM intermediate.int_surveys__quarantine"))
        for iid, entry in manifest.items():
            if entry["expect"] == "accepted":
                assert accepted.get(iid) == (entry["client_id"], date.fromisoformat(entry["interview_date"])), iid
            elif entry["expect"] == "replaced":
                assert iid not in accepted and iid not in quarantined, iid
            else:
                assert quarantined.get(iid) == entry["reason"], iid
        assert set(accepted) | set(quarantined) <= set(manifest)
    finally:
        mis.close()
        wh.close()
