"""Demo client surveys consistent with the demo MIS, faults included.

Why a generator and not a fixture file: the surveys must name the demo MIS's
real account numbers and interview clients around their real activation and
closure dates, for whatever client count and seed `make demo` uses. It also
plants every fault kind the pipeline must survive, and writes a manifest of
what each submission should become, so tests can check the dbt models
against intent rather than against themselves.

Output: out_dir is meant to be the survey drop folder itself, so the export
files sit at its top level (what the loader reads) and the rest in a
sub-folder it ignores:

* ``<asset_uid>__export_<as_of>.json`` - a Kobo JSON export of the main form
  as the server holds it now (edits replaced their original, same ``_id``).
* ``<asset_uid>__export_<as_of - 45 days>.csv`` - an older CSV export (``;``,
  ``group/question`` headers): it overlaps the JSON/API (duplicates) and
  still holds the originals of later edits.
* ``<legacy_uid>__export.json`` - a Kobo JSON export of an MFI's older form
  with its own field names (mapped by seeds/survey_field_map.csv).
* ``kobo_replay/api/<asset_uid>/page_NNNN.json`` - the main form as API v2
  pages for ``tools.demo.kobo_replay`` (same content as the JSON
  export, so loading both adds nothing twice).
* ``kobo_replay/manifest.json`` - per instanceID: the expected outcome
  (accepted, replaced, quarantined + reason code) and the fault planted.

Fault kinds: edits (meta/deprecatedID; one edit is itself quarantined),
duplicates (same meta/instanceID, re-submitted with a new ``_id``; and the
API/CSV overlap), unknown client account numbers, answers not in the
scorecard, missing PPI answers, an unknown scorecard code, form version
drift (``__version__`` vDemo2024b adds an unknown field; vDemo2022 lacks the
optional ``today`` and ``satisfaction/nps`` and uses the banded scorecard).
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import random
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import psycopg

from spm_warehouse import settings
from spm_warehouse.forms.build_xlsform import choice_names, field_paths, load_definition

SEEDS_DIR = settings.PROJECT_ROOT / "dbt_project" / "seeds"
LOCAL_TZ = timezone(timedelta(hours=3))  # the demo MFI's local time
CURRENT_SCORECARD = "DEMO_SYNTH_2024"
OLD_SCORECARD = "DEMO_SYNTH_2011"
OLD_FORM_UNTIL = date(2022, 7, 1)  # interviews before this used form version vDemo2022
UNKNOWN_FIELD = "hh/has_electricity"
LEGACY_ASSET = "aDemoLegacyForm"
REPLAY_SUBDIR = "kobo_replay"  # sub-folder: the drop loader reads top-level files only
CSV_META_COLUMNS = ["meta/instanceID", "meta/deprecatedID", "_id", "_uuid", "_submission_time",
                    "_validation_status", "_notes", "_status", "_submitted_by", "__version__", "_tags", "_index"]


@dataclass
class Client:
    id: int
    account_no: str
    activation_date: date
    closedon_date: date | None
    office_id: int
    gender: str | None


@dataclass
class Household:
    wealth: float
    members: int
    young_children: int
    school_age: int
    income: float
    in_school_rate: float


def read_clients(mis_conn: psycopg.Connection) -> list[Client]:
    """Activated clients of the demo MIS (m_client; gender from m_code_value when present)."""
    cols = {r[0] for r in mis_conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'm_client' "
        "AND table_schema = ANY (current_schemas(false))").fetchall()}
    missing = {"id", "account_no", "activation_date", "status_enum", "office_id"} - cols
    if missing:
        raise ValueError(f"the demo MIS has no m_client table with columns {sorted(missing)}")
    closed = "c.closedon_date" if "closedon_date" in cols else "NULL::date"
    has_codes = mis_conn.execute("SELECT to_regclass('m_code_value') IS NOT NULL").fetchone()[0]
    gender = "cv.code_value" if ("gender_cv_id" in cols and has_codes) else "NULL::text"
    join = "LEFT JOIN m_code_value cv ON cv.id = c.gender_cv_id" if gender != "NULL::text" else ""
    rows = mis_conn.execute(f"""
        SELECT c.id, c.account_no, c.activation_date, {closed}, c.office_id, {gender}
        FROM m_client c {join}
        WHERE c.activation_date IS NOT NULL AND c.status_enum IN (300, 600)
        ORDER BY c.id
    """).fetchall()
    return [Client(int(r[0]), str(r[1]), r[2], r[3], int(r[4]), r[5]) for r in rows]


def read_scorecard_points(path: Path = SEEDS_DIR / "ppi_scorecard_points.csv") -> dict[str, dict[str, list[str]]]:
    """scorecard -> question -> answer codes ordered from poorest (fewest points) to richest."""
    points: dict[str, dict[str, list[tuple[int, str]]]] = {}
    with open(path, encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            points.setdefault(row["scorecard_code"], {}).setdefault(row["question_code"], []).append(
                (int(row["points"]), row["answer_code"]))
    return {card: {q: [a for _, a in sorted(answers)] for q, answers in qs.items()} for card, qs in points.items()}


def read_legacy_map(form_id: str, path: Path = SEEDS_DIR / "survey_field_map.csv") -> dict[str, str]:
    """Our field name -> the legacy form's field name (the inverse of the mapping seed)."""
    with open(path, encoding="utf-8") as fh:
        return {r["target_field"]: r["source_field"] for r in csv.DictReader(fh) if r["form_id"] == form_id}


class _Builder:
    def __init__(self, seed: int, as_of: date, asset_uid: str) -> None:
        self.rng = random.Random(seed)
        self.as_of = as_of
        self.asset_uid = asset_uid
        self.scorecards = read_scorecard_points()
        self.purposes = choice_names("loan_purpose", load_definition())
        self.exit_reasons = choice_names("exit_reason", load_definition())
        self.manifest: dict[str, dict] = {}
        self.edits: list[tuple[dict, dict]] = []  # (original, edited version)

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    # -- households
    def household(self) -> Household:
        rng = self.rng
        wealth = rng.betavariate(2, 3)
        members = rng.randint(2, 9)
        school_age = rng.randint(0, min(4, members - 1))
        young = rng.randint(0, max(0, min(3, members - 1 - school_age)))
        income = round(1500 + 7000 * wealth + rng.gauss(0, 500), -1)
        return Household(wealth, members, young, school_age, max(300.0, income), 0.5 + 0.45 * wealth)

    def age_household(self, hh: Household, years: float) -> Household:
        rng = self.rng
        nxt = copy.copy(hh)
        nxt.wealth = min(1.0, max(0.0, hh.wealth + rng.gauss(0.05, 0.06) * years))
        nxt.income = max(300.0, round(hh.income * (1 + rng.gauss(0.10, 0.08)) ** years, -1))
        nxt.in_school_rate = min(1.0, hh.in_school_rate + rng.uniform(0.0, 0.15))
        if rng.random() < 0.2:
            nxt.members = min(12, hh.members + 1)
            nxt.young_children = hh.young_children + 1
        return nxt

    def ppi_answers(self, hh: Household, scorecard: str, in_school: int) -> dict[str, str]:
        rng = self.rng
        questions = self.scorecards[scorecard]
        answers: dict[str, str] = {}
        for q, codes in sorted(questions.items()):
            if q == "q01":  # children 17 or younger: a = four or more ... e = none
                kids = hh.young_children + hh.school_age
                answers[q] = codes[min(4, max(0, 4 - kids))] if len(codes) == 5 else codes[0]
            elif q == "q02":  # a = not all attend, b = all attend, c = no children 6-14
                answers[q] = "c" if hh.school_age == 0 else ("b" if in_school == hh.school_age else "a")
            else:
                level = hh.wealth * (len(codes) - 1) + rng.gauss(0, 0.6)
                answers[q] = codes[min(len(codes) - 1, max(0, round(level)))]
        return answers

    # -- submissions
    def submission(self, client: Client, hh: Household, survey_type: str, day: date) -> dict:
        rng = self.rng
        version = "vDemo2022" if day < OLD_FORM_UNTIL else ("vDemo2024b" if rng.random() < 0.15 else "vDemo2024a")
        if version == "vDemo2022":
            scorecard = OLD_SCORECARD
        else:
            scorecard = "" if rng.random() < 0.1 else CURRENT_SCORECARD  # empty -> dbt var default
        if rng.random() < 0.06:  # after midnight local: the UTC date is the day before
            start_local = datetime.combine(day, time(0, rng.randint(5, 59)), LOCAL_TZ)
        else:
            start_local = datetime.combine(day, time(rng.randint(7, 18), rng.randint(0, 59)), LOCAL_TZ)
        end_local = start_local + timedelta(minutes=rng.randint(12, 40))
        end_utc = end_local.astimezone(timezone.utc)
        latest = datetime.combine(self.as_of, time(20, 0), timezone.utc)  # nothing uploaded after the as-of day
        submitted = max(end_utc + timedelta(minutes=1), min(end_utc + timedelta(hours=rng.randint(1, 96)), latest))
        in_school = sum(1 for _ in range(hh.school_age) if rng.random() < hh.in_school_rate)
        answers = self.ppi_answers(hh, scorecard or CURRENT_SCORECARD, in_school)
        instance = "uuid:" + self.uuid()
        sub: dict = {
            "formhub/uuid": "3c1b0f4a6d2e4c51b1b7" + "demo0000000",
            "start": start_local.isoformat(timespec="milliseconds"),
            "end": end_local.isoformat(timespec="milliseconds"),
            "today": day.isoformat(),
            "survey/type": survey_type,
            "client/account_no": client.account_no,
            "ppi/scorecard": scorecard,
            **{f"ppi/{q}": a for q, a in answers.items()},
            "hh/members": str(hh.members),
            "hh/children_school_age": str(hh.school_age),
            "hh/children_in_school": str(in_school),
            "income/monthly_hh_income": str(int(hh.income)),
        }
        if survey_type != "baseline":
            weights = [6, 1, 1, 1, 1, 1] if hh.wealth > 0.3 else [3, 1, 1, 1, 2, 1]
            sub["loan_use/main_purpose"] = rng.choices(self.purposes, weights=weights)[0]
            sub["satisfaction/nps"] = str(min(10, max(0, round(rng.gauss(8, 2)))))
        if survey_type == "exit":
            sub["exit/reason"] = rng.choice(self.exit_reasons)
        if version == "vDemo2022":  # drift: the old version had no `today` and no NPS question
            sub.pop("today")
            sub.pop("satisfaction/nps", None)
        if version == "vDemo2024b":  # drift: a newer question the warehouse does not know yet
            sub[UNKNOWN_FIELD] = rng.choice(["yes", "no"])
        sub.update({
            "__version__": version,
            "meta/instanceID": instance,
            "_xform_id_string": self.asset_uid,
            "_uuid": instance.removeprefix("uuid:"),
            "_attachments": [],
            "_status": "submitted_via_web",
            "_geolocation": [None, None],
            "_submission_time": submitted.strftime("%Y-%m-%dT%H:%M:%S"),
            "_tags": [],
            "_notes": [],
            "_validation_status": {},
            "_submitted_by": None,
        })
        self.manifest[instance] = {"asset_uid": self.asset_uid, "client_id": client.id,
                                   "account_no": client.account_no, "survey_type": survey_type,
                                   "interview_date": day.isoformat(), "version": version,
                                   "expect": "accepted", "reason": None, "fault": None}
        return sub

    def client_waves(self, client: Client) -> list[dict]:
        rng = self.rng
        hh = self.household()
        offset = rng.randint(-12, -1) if rng.random() < 0.12 else rng.randint(0, 25)
        baseline_day = client.activation_date + timedelta(days=offset)
        if baseline_day > self.as_of:
            return []
        subs = [self.submission(client, hh, "baseline", baseline_day)]
        k = 1
        while True:
            day = baseline_day + timedelta(days=365 * k + rng.randint(-30, 30))
            if day > self.as_of or (client.closedon_date and day >= client.closedon_date):
                break
            hh = self.age_household(hh, 1.0)
            if rng.random() < 0.85:
                subs.append(self.submission(client, hh, "followup", day))
            k += 1
        closed = client.closedon_date
        if closed and closed <= self.as_of and rng.random() < 0.75:
            day = min(self.as_of, closed + timedelta(days=rng.randint(0, 14)))
            hh = self.age_household(hh, max(0.1, (day - baseline_day).days / 365))
            subs.append(self.submission(client, hh, "exit", day))
        return subs


def _fault_copy(builder: _Builder, original: dict, fault: str, reason: str | None,
                expect: str = "quarantined") -> dict:
    """A new submission (new instanceID, later upload) cloned from an accepted one, then broken."""
    sub = copy.deepcopy(original)
    instance = "uuid:" + builder.uuid()
    sub["meta/instanceID"] = instance
    sub["_uuid"] = instance.removeprefix("uuid:")
    submitted = datetime.fromisoformat(sub["_submission_time"]) + timedelta(hours=3)
    sub["_submission_time"] = submitted.strftime("%Y-%m-%dT%H:%M:%S")
    entry = dict(builder.manifest[original["meta/instanceID"]])
    entry.update({"expect": expect, "reason": reason, "fault": fault})
    builder.manifest[instance] = entry
    return sub


def _plant_faults(builder: _Builder, subs: list[dict], clients: list[Client], cutoff: datetime) -> dict[str, int]:
    """Break copies of real submissions in every way the contract names; returns counts per kind."""
    rng = builder.rng
    known = {c.account_no for c in clients}
    good = [s for s in subs if builder.manifest[s["meta/instanceID"]]["expect"] == "accepted"]
    rng.shuffle(good)
    counts: dict[str, int] = {}
    extra: list[dict] = []

    def take() -> dict:
        return good.pop()

    def unknown_account() -> str:
        while True:
            candidate = f"{rng.randint(900000000, 999999999):09d}"
            if candidate not in known:
                return candidate

    for _ in range(3):  # unknown client
        sub = _fault_copy(builder, take(), "unknown_client", "unknown_client")
        sub["client/account_no"] = unknown_account()
        builder.manifest[sub["meta/instanceID"]]["account_no"] = sub["client/account_no"]
        extra.append(sub)
    counts["unknown_client"] = 3
    for question, bad in (("ppi/q04", "d"), ("ppi/q09", "x")):  # answer not in the scorecard
        extra.append(_fault_copy(builder, take(), "answer_not_in_scorecard", "answer_not_in_scorecard"))
        extra[-1][question] = bad
    counts["answer_not_in_scorecard"] = 2
    for question, how in (("ppi/q07", "absent"), ("ppi/q03", "empty")):  # missing PPI answer
        sub = _fault_copy(builder, take(), "missing_ppi_answer", "missing_ppi_answer")
        if how == "absent":
            sub.pop(question)
        else:
            sub[question] = ""
        extra.append(sub)
    counts["missing_ppi_answer"] = 2
    for _ in range(2):  # unknown scorecard code
        sub = _fault_copy(builder, take(), "unknown_scorecard", "unknown_scorecard")
        sub["ppi/scorecard"] = "XX_PPI_2019"
        extra.append(sub)
    counts["unknown_scorecard"] = 2

    for _ in range(3):  # duplicates: the same instanceID re-submitted with a new _id
        dup = copy.deepcopy(take())
        dup["_submission_time"] = (datetime.fromisoformat(dup["_submission_time"])
                                   + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S")
        dup["_duplicate_of_demo"] = True  # marker stripped below; the server gives it a new _id
        builder.manifest[dup["meta/instanceID"]]["fault"] = "duplicate"
        extra.append(dup)
    counts["duplicate"] = 3

    # edits: the server now holds the edited version (same _id); the older CSV export the original.
    editable = [s for s in good if datetime.fromisoformat(s["_submission_time"]).replace(tzinfo=timezone.utc) <= cutoff]
    for n in range(4):
        original = editable.pop()
        good.remove(original)
        edited = copy.deepcopy(original)
        new_instance = "uuid:" + builder.uuid()
        edited["meta/instanceID"] = new_instance
        edited["meta/deprecatedID"] = original["meta/instanceID"]
        edited["_uuid"] = new_instance.removeprefix("uuid:")
        entry = dict(builder.manifest[original["meta/instanceID"]])
        if n == 3:  # an edit that is itself quarantined: the original still goes away
            edited["client/account_no"] = unknown_account()
            entry.update({"expect": "quarantined", "reason": "unknown_client", "fault": "edit",
                          "account_no": edited["client/account_no"]})
        else:
            edited["income/monthly_hh_income"] = str(int(int(original["income/monthly_hh_income"]) * 1.5))
            entry.update({"fault": "edit"})
        builder.manifest[new_instance] = entry
        builder.manifest[original["meta/instanceID"]].update({"expect": "replaced", "fault": "edited_original"})
        builder.edits.append((original, edited))
    counts["edit"] = 3
    counts["edit_quarantined"] = 1
    subs.extend(extra)
    return counts


def _legacy_submissions(builder: _Builder, clients: list[Client], legacy_uid: str) -> list[dict]:
    """Baselines of a few clients captured with an MFI's own older form (other field names)."""
    fmap = read_legacy_map(legacy_uid)
    out = []
    for client in clients:
        hh = builder.household()
        day = client.activation_date + timedelta(days=builder.rng.randint(0, 20))
        if day > builder.as_of:
            continue
        sub = builder.submission(client, hh, "baseline", day)
        builder.manifest[sub["meta/instanceID"]]["asset_uid"] = legacy_uid
        legacy = {}
        for key, value in sub.items():
            if key == UNKNOWN_FIELD:
                continue
            legacy[fmap.get(key, key)] = value
        legacy["_xform_id_string"] = legacy_uid
        legacy["__version__"] = "vLegacy1"
        out.append(legacy)
    return out


def _csv_value(value: object) -> str:
    if value is None or isinstance(value, (list, dict)):
        return ""
    return str(value)


def write_csv_export(path: Path, subs: list[dict], form_fields: list[str]) -> None:
    """A Kobo CSV export: `;` separated, `group/question` headers, all versions' columns."""
    extra_fields = sorted({k for s in subs for k in s} - set(form_fields) - set(CSV_META_COLUMNS)
                          - {"_attachments", "_geolocation", "_xform_id_string", "formhub/uuid"})
    header = form_fields + extra_fields + CSV_META_COLUMNS
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter=";", lineterminator="\n")
        writer.writerow(header)
        for index, sub in enumerate(subs, start=1):
            row = {**sub, "_index": index}
            writer.writerow([_csv_value(row.get(col)) for col in header])


def generate_surveys(mis_conn: psycopg.Connection, out_dir: Path, seed: int, as_of: date,
                     asset_uid: str = "aDemoClientMonitoring", page_size: int = 100,
                     legacy_asset_uid: str = LEGACY_ASSET) -> dict:
    """Write API pages, drop files and a manifest for the demo MIS's clients; returns counts and paths."""
    out_dir = Path(out_dir)
    clients = read_clients(mis_conn)
    if not clients:
        raise ValueError("the demo MIS has no activated clients to survey")
    builder = _Builder(seed, as_of, asset_uid)
    clients = [c for c in clients if c.activation_date <= as_of]
    surveyed, legacy_clients = [], []
    for client in clients:
        draw = builder.rng.random()
        if draw < 0.8:
            surveyed.append(client)
        elif draw < 0.85:
            legacy_clients.append(client)
    subs: list[dict] = []
    for client in surveyed:
        subs.extend(builder.client_waves(client))
    cutoff = datetime.combine(as_of - timedelta(days=45), time(0, 0), timezone.utc)
    faults = _plant_faults(builder, subs, clients, cutoff) if len(subs) >= 40 else {}

    # Kobo gives _id in arrival order; a duplicate re-submission gets its own _id.
    subs.sort(key=lambda s: (s["_submission_time"], s["meta/instanceID"]))
    next_id = 100001
    originals = {o["meta/instanceID"]: e for o, e in builder.edits}
    for sub in subs:
        sub.pop("_duplicate_of_demo", None)
        sub["_id"] = next_id
        next_id += 1
        if sub["meta/instanceID"] in originals:
            originals[sub["meta/instanceID"]]["_id"] = sub["_id"]  # an edit keeps its _id
    served = [originals.get(s["meta/instanceID"], s) for s in subs]  # the server holds the edited version
    exported = [s for s in subs if datetime.fromisoformat(s["_submission_time"]).replace(tzinfo=timezone.utc) <= cutoff]

    replay_dir = out_dir / REPLAY_SUBDIR
    api_dir = replay_dir / "api" / asset_uid
    api_dir.mkdir(parents=True, exist_ok=True)
    for old in api_dir.glob("page_*.json"):  # our own folder: stale pages of an earlier run go
        old.unlink()
    for number, start in enumerate(range(0, len(served), page_size), start=1):
        page = {"count": len(served), "next": None, "previous": None, "results": served[start:start + page_size]}
        (api_dir / f"page_{number:04d}.json").write_text(json.dumps(page, indent=1), encoding="utf-8")

    # Drop files sit at the top of out_dir (the drop folder itself in `make demo`); existing
    # files of other names are never touched.
    csv_path = out_dir / f"{asset_uid}__export_{cutoff.date().isoformat()}.csv"
    write_csv_export(csv_path, exported, field_paths())
    json_path = out_dir / f"{asset_uid}__export_{as_of.isoformat()}.json"
    json_path.write_text(json.dumps(served, indent=1), encoding="utf-8")
    files = [csv_path.name, json_path.name]
    legacy = _legacy_submissions(builder, legacy_clients, legacy_asset_uid)
    for number, sub in enumerate(legacy, start=next_id):
        sub["_id"] = number
    if legacy:
        legacy_path = out_dir / f"{legacy_asset_uid}__export.json"
        legacy_path.write_text(json.dumps(legacy, indent=1), encoding="utf-8")
        files.append(legacy_path.name)

    expected: dict[str, int] = {}
    for entry in builder.manifest.values():
        key = entry["expect"] if entry["expect"] != "quarantined" else f"quarantined:{entry['reason']}"
        expected[key] = expected.get(key, 0) + 1
    manifest = {"as_of": as_of.isoformat(), "seed": seed, "asset_uid": asset_uid,
                "legacy_asset_uid": legacy_asset_uid, "faults": faults, "expected": expected,
                "submissions": builder.manifest}
    manifest_path = replay_dir / "manifest.json"
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
    return {
        "api_dir": str(replay_dir / "api"), "drop_files": files, "manifest": str(manifest_path),
        "assets": {asset_uid: len(served), legacy_asset_uid: len(legacy)},
        "api_pages": -(-len(served) // page_size), "csv_rows": len(exported),
        "clients_surveyed": len(surveyed) + len(legacy), "instances": len(builder.manifest),
        "faults": faults, "expected": expected,
    }


def write_day_submissions(mis_conn: psycopg.Connection, out_dir: Path, seed: int, day: date, count: int,
                          asset_uid: str = "aDemoClientMonitoring") -> dict:
    """A drop file with `count` follow-up surveys interviewed on `day` (a simulated day's fieldwork).

    Why a separate export: the benchmark's nightly run must load the day's submissions, a fixed
    number whatever the number of clients, so only `count` active clients are read from the MIS.
    """
    rows = mis_conn.execute(
        """SELECT id, account_no, activation_date, office_id FROM m_client
           WHERE status_enum = 300 AND activation_date < %s
           ORDER BY md5(id::text || %s) LIMIT %s""", (day, f"survey:{seed}:{day}", count)).fetchall()
    builder = _Builder(seed + day.toordinal(), day, asset_uid)
    subs = []
    first_id = 10_000_000 + (day.toordinal() % 100_000) * 1_000  # apart from the generated exports' _id
    for n, (cid, account_no, activated, office) in enumerate(rows):
        client = Client(int(cid), str(account_no), activated, None, int(office), None)
        sub = builder.submission(client, builder.household(), "followup", day)
        sub["_id"] = first_id + n
        subs.append(sub)
    path = Path(out_dir) / f"{asset_uid}__day_{day.isoformat()}.json"
    if subs:
        path.write_text(json.dumps(subs, indent=1), encoding="utf-8")
    return {"file": path.name if subs else None, "submissions": len(subs)}


def main(argv: list[str] | None = None) -> int:

    parser = argparse.ArgumentParser(description="Write demo Kobo submissions for the demo MIS.")
    parser.add_argument("--mis-url", required=True, help="postgresql:// URL of the demo Fineract database")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=int(settings.get("SPM_DEMO_SEED")))
    parser.add_argument("--as-of", type=date.fromisoformat, default=date.fromisoformat(settings.get("SPM_DEMO_AS_OF")))
    args = parser.parse_args(argv)
    with psycopg.connect(args.mis_url) as conn:
        result = generate_surveys(conn, args.out, args.seed, args.as_of)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
