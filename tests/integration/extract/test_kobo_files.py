"""Survey export files dropped in a folder: loaded once, bad ones set aside with their reason, never lost."""

from __future__ import annotations

import json
import tracemalloc

import psycopg
import pytest

from spm_warehouse.sources import kobo


@pytest.fixture
def wh(fresh_database):
    with psycopg.connect(fresh_database("kobo_files")) as conn:
        kobo.ensure_raw_kobo_schema(conn)
        yield conn


@pytest.fixture
def drop(tmp_path):
    path = tmp_path / "survey_drop"
    path.mkdir()
    return path


def api_submission(n: int) -> dict:
    return {"_id": n, "meta/instanceID": f"uuid:{n:08d}-aaaa-4bbb-8ccc-000000000000",
            "_submission_time": "2024-04-02T10:00:00", "_xform_id_string": "aForm",
            "client/account_no": f"{n:09d}", "ppi/q01": "c", "hh/members": "5"}


CSV_TEXT = (
    "\ufeffstart;today;survey/type;client/account_no;ppi/q01;hh/members;income/monthly_hh_income;"
    "meta/instanceID;_id;_uuid;_submission_time;__version__\n"
    "2024-03-02T01:30:00.000+03:00;;baseline;000000042;b;4;2500.5;uuid:c1;17;c1;2024-03-01T22:40:00;vA\n"
    "2024-03-05T09:00:00.000+03:00;2024-03-05;followup;000000043;;3;;;18;c2;2024-03-05T07:00:00;vA\n"
)


def rows(conn, where: str = "true") -> list[tuple]:
    return conn.execute(f"SELECT source, asset_uid, kobo_id, instance_id, submission_time, payload "
                        f"FROM raw_kobo.submissions WHERE {where} ORDER BY kobo_id").fetchall()


def test_json_list_and_api_page_files_load_verbatim_and_move_to_loaded(wh, drop):
    (drop / "export_list.json").write_text(json.dumps([api_submission(1), api_submission(2)]))
    (drop / "api_page.json").write_text(json.dumps({"count": 1, "next": None, "results": [api_submission(3)]}))
    counts = kobo.load_drop_dir(wh, drop, "run-1")

    assert counts["files_loaded"] == 2 and counts["file_rows_new"] == 3
    got = rows(wh)
    assert [r[2] for r in got] == [1, 2, 3]
    assert got[0][0] == "file:export_list.json" and got[2][0] == "file:api_page.json"
    assert got[0][1] == "aForm"  # from _xform_id_string
    assert got[0][5] == api_submission(1)
    assert sorted(p.name for p in (drop / "loaded").iterdir()) == ["api_page.json", "export_list.json"]
    assert not any(p.is_file() for p in drop.iterdir())
    files = wh.execute("SELECT filename, rows, rows_new, status FROM raw_kobo.loaded_files ORDER BY filename").fetchall()
    assert files == [("api_page.json", 1, 1, "loaded"), ("export_list.json", 2, 2, "loaded")]


def test_semicolon_csv_with_group_headers_keeps_text_values(wh, drop):
    (drop / "aCsvForm__kobo_export.csv").write_text(CSV_TEXT, encoding="utf-8")
    counts = kobo.load_drop_dir(wh, drop, "run-1")

    assert counts["files_loaded"] == 1 and counts["file_rows"] == 2
    first, second = rows(wh)
    assert first[1] == "aCsvForm"  # asset uid from the <uid>__ file name prefix
    assert first[2] == 17 and first[3] == "uuid:c1"
    assert str(first[4]) == "2024-03-01 22:40:00+00:00"
    assert first[5]["client/account_no"] == "000000042"  # leading zeros kept: values stay text
    assert first[5]["income/monthly_hh_income"] == "2500.5"
    assert first[5]["today"] == ""  # verbatim, empty stays empty
    assert second[3] == "uuid:c2"  # no meta/instanceID: derived from _uuid
    assert (drop / "loaded" / "aCsvForm__kobo_export.csv").exists()


def test_the_same_file_dropped_again_is_not_loaded_twice(wh, drop):
    (drop / "a.json").write_text(json.dumps([api_submission(1)]))
    kobo.load_drop_dir(wh, drop, "run-1")
    (drop / "a_copy_renamed.json").write_text(json.dumps([api_submission(1)]))
    counts = kobo.load_drop_dir(wh, drop, "run-2")

    assert counts["files_already_loaded"] == 1 and counts["files_loaded"] == 0
    assert len(rows(wh)) == 1
    assert (drop / "loaded" / "a_copy_renamed.json").exists()  # moved aside, not deleted


def test_overlapping_files_store_each_submission_content_once(wh, drop):
    (drop / "week1.json").write_text(json.dumps([api_submission(1), api_submission(2)]))
    (drop / "week2.json").write_text(json.dumps([api_submission(2), api_submission(3)]))
    counts = kobo.load_drop_dir(wh, drop, "run-1")
    assert counts["file_rows"] == 4 and counts["file_rows_new"] == 3
    assert [r[2] for r in rows(wh)] == [1, 2, 3]


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("broken.json", '[{"_id": 1,', "not valid JSON"),
        ("object.json", '{"hello": 1}', "neither a list of submissions"),
        ("not_kobo.json", '[{"a": 1}]', "no submission has meta/instanceID or _uuid"),
        ("labels.csv", "Client account;Income\n42;100\n", "no meta/instanceID or _uuid column"),
        ("ragged.csv", "meta/instanceID;a\nuuid:1;x;extra\n", "CSV line 2 has 3 fields, the header has 2"),
        ("empty.csv", "", "empty file"),
        ("export.xlsx", "PK", "unsupported file type .xlsx"),
        ("latin1.csv", "meta/instanceID;name\nuuid:1;Jos\xe9\n", "not UTF-8"),
    ],
)
def test_bad_files_are_moved_aside_with_their_reason(wh, drop, name, content, reason):
    path = drop / name
    if name == "latin1.csv":
        path.write_bytes(content.encode("latin-1"))
    else:
        path.write_text(content, encoding="utf-8")
    (drop / "good.json").write_text(json.dumps([api_submission(9)]))
    counts = kobo.load_drop_dir(wh, drop, "run-1")

    assert counts["files_rejected"] == 1 and counts["files_loaded"] == 1
    assert reason in counts["rejected"][0]["reason"]
    kept = drop / "rejected" / name
    assert kept.exists()  # never lost
    assert reason in (drop / "rejected" / f"{name}.reason.txt").read_text()
    status, why = wh.execute("SELECT status, reason FROM raw_kobo.loaded_files WHERE filename = %s", (name,)).fetchone()
    assert status == "rejected" and reason in why
    quarantined = wh.execute("SELECT reason FROM meta.quarantine WHERE source = %s", (f"file:{name}",)).fetchone()
    assert quarantined and quarantined[0].startswith("bad_export_file: ")
    assert [r[2] for r in rows(wh)] == [9]  # nothing of the bad file, all of the good one


def test_a_bad_row_rejects_the_whole_file_atomically(wh, drop):
    lines = "meta/instanceID;x\nuuid:1;a\nuuid:2;b\nuuid:3;c;oops\n"
    (drop / "partial.csv").write_text(lines)
    kobo.load_drop_dir(wh, drop, "run-1")
    assert rows(wh) == []


def test_partial_downloads_and_hidden_files_are_left_alone(wh, drop):
    (drop / "big.json.part").write_text("[")
    (drop / ".hidden.json").write_text("[")
    counts = kobo.load_drop_dir(wh, drop, "run-1")
    assert counts["files_loaded"] == counts["files_rejected"] == 0
    assert (drop / "big.json.part").exists() and (drop / ".hidden.json").exists()


def test_missing_drop_folder_is_not_an_error(wh, tmp_path):
    counts = kobo.load_drop_dir(wh, tmp_path / "does_not_exist", "run-1")
    assert counts["files_loaded"] == 0


def test_nul_characters_do_not_fail_the_load(wh, drop):
    sub = api_submission(1)
    sub["note"] = "bad\u0000byte"
    (drop / "nul.json").write_text(json.dumps([sub]))
    counts = kobo.load_drop_dir(wh, drop, "run-1")
    assert counts["files_loaded"] == 1
    assert rows(wh)[0][5]["note"] == "bad\ufffdbyte"


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_json_exports_stream_across_chunk_boundaries(wh, drop, monkeypatch, chunk):
    # strings full of JSON punctuation so that a split chunk cannot be mistaken for a separator
    subs = [dict(api_submission(n), note='"],[{' * n) for n in range(1, 40)]
    monkeypatch.setattr(kobo, "_JSON_CHUNK", chunk)
    (drop / "export.json").write_text(json.dumps(subs, indent=1))
    counts = kobo.load_drop_dir(wh, drop, "run-1")
    assert counts["files_loaded"] == 1 and counts["file_rows_new"] == 39
    assert [r[5] for r in rows(wh)] == subs


def test_a_broken_element_late_in_a_json_export_rejects_the_whole_file(wh, drop, monkeypatch):
    monkeypatch.setattr(kobo, "_JSON_CHUNK", 64)  # the first elements are loaded before the error is seen
    good = ",\n".join(json.dumps(api_submission(n)) for n in range(1, 30))
    (drop / "late.json").write_text("[" + good + ',\n{"_id": 99, "x": tru}]')
    counts = kobo.load_drop_dir(wh, drop, "run-1")
    assert counts["files_rejected"] == 1 and "not valid JSON" in counts["rejected"][0]["reason"]
    assert "line 30" in counts["rejected"][0]["reason"]
    assert rows(wh) == []
    assert (drop / "rejected" / "late.json").exists()


def test_json_lines_exports_load(wh, drop):
    (drop / "export.jsonl").write_text("\n".join(json.dumps(api_submission(n)) for n in (1, 2)) + "\n\n")
    counts = kobo.load_drop_dir(wh, drop, "run-1")
    assert counts["files_loaded"] == 1 and [r[2] for r in rows(wh)] == [1, 2]


def test_reading_a_large_json_export_keeps_memory_bounded(tmp_path):
    """A 40 MB export is read with a few MB of Python memory, not the file's size (issue 7: 1M clients)."""

    path = tmp_path / "big.json"
    with open(path, "w") as fh:
        fh.write("[")
        for n in range(1, 40_001):
            fh.write(("," if n > 1 else "") + json.dumps(dict(api_submission(n), pad="x" * 900)))
        fh.write("]")
    assert path.stat().st_size > 40_000_000
    tracemalloc.start()
    try:
        count = sum(1 for _ in kobo.read_export_file(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 40_000
    assert peak < 12_000_000, f"peak {peak / 1e6:.1f} MB while reading a {path.stat().st_size / 1e6:.0f} MB file"


# ---- faults (issue 15) ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["late_bad_bytes.json", "late_bad_bytes.jsonl", "late_bad_bytes.csv"])
def test_invalid_utf8_late_in_a_file_rejects_it_whole_with_its_reason(wh, drop, monkeypatch, name):
    monkeypatch.setattr(kobo, "_JSON_CHUNK", 256)  # the bad bytes come after elements already loaded
    subs = [api_submission(n) for n in range(1, 20)]
    if name.endswith(".json"):
        text = json.dumps(subs, indent=1).encode()
        data = text[:-200] + b"\xff\xfe" + text[-200:]
    elif name.endswith(".jsonl"):
        data = ("\n".join(json.dumps(s) for s in subs) + "\n").encode() + b'{"x": "\xc3\x28"}\n'
    else:
        data = ("meta/instanceID;x\n" + "".join(f"uuid:{n};a\n" for n in range(50))).encode() + b"uuid:99;\xe9\n"
    (drop / name).write_bytes(data)
    bad_at = next(i for i, b in enumerate(data) if b >= 0x80)
    counts = kobo.load_drop_dir(wh, drop, "run-1")
    assert counts["files_rejected"] == 1 and counts["files_loaded"] == 0
    # the offset in the file, not in the chunk the streamed read was decoding
    assert f"at byte {bad_at}, line {data[:bad_at].count(10) + 1})" in counts["rejected"][0]["reason"]
    assert (drop / "rejected" / name).read_bytes() == data  # kept as it came
    assert "not UTF-8 text" in (drop / "rejected" / f"{name}.reason.txt").read_text()
    assert rows(wh) == []  # nothing half-loaded
    assert wh.execute("SELECT count(*) FROM meta.quarantine WHERE reason LIKE 'bad_export_file: not UTF-8%'"
                      ).fetchone()[0] == 1


def test_a_number_postgresql_cannot_store_rejects_the_file_not_the_night(wh, drop):
    (drop / "huge_number.json").write_text('[{"meta/instanceID": "uuid:1", "_id": 1, "hh/members": 1e400}]')
    (drop / "good.json").write_text(json.dumps([api_submission(9)]))
    counts = kobo.load_drop_dir(wh, drop, "run-1")
    assert counts["files_rejected"] == 1 and counts["files_loaded"] == 1
    assert counts["rejected"][0]["reason"].startswith("PostgreSQL refused a value: ")
    assert (drop / "rejected" / "huge_number.json.reason.txt").exists()
    assert [r[2] for r in rows(wh)] == [9]


def test_lone_surrogate_escapes_are_stored_as_replacement_characters(wh, drop):
    (drop / "surrogate.json").write_text('[{"meta/instanceID": "uuid:1", "_id": 1, "note": "a\\ud800b"}]')
    counts = kobo.load_drop_dir(wh, drop, "run-1")
    assert counts["files_loaded"] == 1
    assert rows(wh)[0][5]["note"] == "a\ufffdb"


def test_a_ten_megabyte_answer_in_a_file_is_bounded_and_quarantined(wh, drop):
    big = dict(api_submission(2), **{"notes/comment": "é" * (5 << 20) + "!"})  # 10 MB of UTF-8
    (drop / "big_answer.jsonl").write_text(json.dumps(api_submission(1)) + "\n" + json.dumps(big) + "\n")
    counts = kobo.load_drop_dir(wh, drop, "run-1")
    assert counts["files_loaded"] == 1 and counts["file_rows_new"] == 2 and counts["file_rows_oversized"] == 1
    payload = rows(wh, "kobo_id = 2")[0][5]
    assert payload["notes/comment"].startswith("[oversized answer: 10485761 bytes")
    assert payload["_spm_oversized"] == {"notes/comment": 10485761}
    source, reason, whole = wh.execute("SELECT source, reason, payload -> 'answers' ->> 'notes/comment' "
                                       "FROM meta.quarantine").fetchone()
    assert source == "kobo:aForm" and reason.startswith("oversized_answer: 'notes/comment' is 10.0 MB")
    assert whole == big["notes/comment"]


def test_a_ten_megabyte_answer_in_a_csv_export_does_not_reject_the_file(wh, drop):
    big = "y" * (10 << 20)
    (drop / "aForm__big.csv").write_text(f"meta/instanceID;notes/comment\nuuid:1;short\nuuid:2;{big}\n")
    counts = kobo.load_drop_dir(wh, drop, "run-1")
    assert counts["files_loaded"] == 1 and counts["files_rejected"] == 0, counts["rejected"]
    assert counts["file_rows_new"] == 2 and counts["file_rows_oversized"] == 1
    stored = wh.execute("SELECT payload ->> 'notes/comment' FROM raw_kobo.submissions "
                        "WHERE instance_id = 'uuid:2'").fetchone()[0]
    assert stored.startswith("[oversized answer: 10485760 bytes")
    assert wh.execute("SELECT length(payload -> 'answers' ->> 'notes/comment') FROM meta.quarantine "
                      "WHERE reason LIKE 'oversized_answer:%'").fetchone()[0] == 10 << 20
