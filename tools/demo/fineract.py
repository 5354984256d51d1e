"""A demo Apache Fineract database: realistic, deterministic, streamed.

Why: the warehouse must be developed and tested against Fineract's *real*
schema (table and column names, enum values, derived balance columns) and at
a realistic size, without anybody's real client data. This module writes such
a database into PostgreSQL (and can copy it into MariaDB, Fineract's other
home) for `make demo`, the tests and the extraction benchmark.

Shape of the data (all dates <= as_of, everything reproducible from the seed):
- offices: head office -> regions -> branches (Fineract `hierarchy` '.', '.2.', '.2.5.');
  loan officers and a branch manager per branch;
- codes: Gender, ClientClosureReason, LoanPurpose, ClientClassification, ClientType, ...;
- clients in every status (100 pending, 300 active, 600 closed, 700 rejected,
  800 withdrawn), ~2/3 women, some without gender, closed-then-reactivated
  clients and clients transferred between branches;
- several loan cycles per client (loan_counter), weekly group (JLG) and monthly
  individual products, equal-principal schedules, repayments on time, late,
  partial, missed; repayments at disbursement (type 5), reversed repayments
  followed by the correcting one, write-offs (type 6 + status 601),
  approved-not-disbursed (200), pending (100), rejected (500), withdrawn (400)
  and closed (600) loans, loans without a loan officer;
- m_loan and schedule derived columns exactly consistent with the
  non-reversed transactions as of `as_of`;
- groups/centers, savings products and accounts, officer assignment history;
- fake personal data (names, phones, e-mails, national ids) in the columns a
  real Fineract has, so tests can prove the extraction leaves them behind;
- a seeded portfolio-at-risk breach (`seed_par_breach`): the branch with the
  highest office id had a bad quarter - a few individual monthly loans
  disbursed about 80 days before the as-of date were never repaid, so at the
  as-of date (and not a month earlier) they are more than 30 days late and the
  branch's PAR30 is above the 5% target of the early warning (kpi_alerts);
  drawn from a random stream of its own, after all other rows.

Speed: one pass over the clients with `random.Random(seed)`; each client's
rows go into per-table text buffers that are flushed with COPY when they fill
up, so memory stays bounded whatever the number of clients. Keys and indexes
are added after the load.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import queue
import random
import tempfile
import threading
import time
from dataclasses import dataclass

import psycopg

from . import fineract_schema as S

log = logging.getLogger(__name__)

NULL = "\\N"
SYSTEM_USER = 1  # m_appuser id of the "mifos" admin that Fineract installs

# Code tables: (code id, code_name, is_system_defined, values). Ids of the codes
# follow Fineract's install order where we know it; values get consecutive ids.
_CODE_DEFS: list[tuple[int, str, bool, list[str]]] = [
    (1, "Customer Identifier", True, ["Passport", "National ID", "Voter Card"]),
    (2, "LoanCollateral", True, ["Livestock", "Household goods", "Land title"]),
    (3, "LoanPurpose", True, ["Agriculture", "Livestock", "Trade / retail", "Handicrafts", "Services",
                              "Education", "Housing improvement", "Consumption"]),
    (4, "Gender", True, ["Female", "Male"]),
    (5, "YesNo", True, ["Yes", "No"]),
    (6, "GuarantorRelationship", True, ["Spouse", "Parent", "Sibling", "Neighbour"]),
    (14, "ClientClosureReason", False, ["Moved away", "Business failure", "Deceased", "Took loan elsewhere",
                                         "Dissatisfied with service", "Graduated"]),
    (16, "ClientType", True, ["Individual", "Micro-entrepreneur", "Smallholder farmer"]),
    (17, "ClientClassification", True, ["Rural", "Urban"]),
    (18, "WriteOffReasons", True, ["Bad debt", "Deceased borrower"]),
]


def _code_value_ids() -> dict[str, dict[str, int]]:
    ids: dict[str, dict[str, int]] = {}
    next_id = 1
    for _cid, name, _sys, values in _CODE_DEFS:
        ids[name] = {}
        for v in values:
            ids[name][v] = next_id
            next_id += 1
    return ids


CODE_VALUE_IDS = _code_value_ids()
GENDER_FEMALE = CODE_VALUE_IDS["Gender"]["Female"]
GENDER_MALE = CODE_VALUE_IDS["Gender"]["Male"]

# Fineract enums
CLIENT_PENDING, CLIENT_ACTIVE, CLIENT_CLOSED, CLIENT_REJECTED, CLIENT_WITHDRAWN = 100, 300, 600, 700, 800
LOAN_SUBMITTED, LOAN_APPROVED, LOAN_ACTIVE, LOAN_WITHDRAWN, LOAN_REJECTED = 100, 200, 300, 400, 500
LOAN_CLOSED, LOAN_WRITTEN_OFF = 600, 601
TX_DISBURSEMENT, TX_REPAYMENT, TX_REPAYMENT_AT_DISBURSEMENT, TX_WRITEOFF = 1, 2, 5, 6
LOAN_INDIVIDUAL, LOAN_JLG = 1, 3
FREQ_WEEKS, FREQ_MONTHS = 1, 2

CURRENCY = "KES"


@dataclass(frozen=True)
class LoanProduct:
    id: int
    short_name: str
    name: str
    frequency: int          # repayment_period_frequency_enum: 1 weeks, 2 months
    repayments: int
    rate_bp: int            # nominal interest per period, hundredths of a percent (flat)
    principal: int          # default principal, cents
    min_principal: int
    max_principal: int
    group: bool             # JLG product
    closes_after_years: int | None = None  # product withdrawn from sale

    @property
    def annual_rate_bp(self) -> int:
        return self.rate_bp * (52 if self.frequency == FREQ_WEEKS else 12)


PRODUCTS: tuple[LoanProduct, ...] = (
    LoanProduct(1, "GW16", "Group Weekly 16", FREQ_WEEKS, 16, 50, 15_000_00, 5_000_00, 60_000_00, True),
    LoanProduct(2, "BW24", "Business Weekly 24", FREQ_WEEKS, 24, 45, 40_000_00, 10_000_00, 150_000_00, False),
    LoanProduct(3, "IM12", "Individual Monthly 12", FREQ_MONTHS, 12, 200, 60_000_00, 10_000_00, 300_000_00, False),
    LoanProduct(4, "AG06", "Agriculture Monthly 6", FREQ_MONTHS, 6, 180, 30_000_00, 5_000_00, 120_000_00, False),
    LoanProduct(5, "GW12", "Group Weekly 12 (old)", FREQ_WEEKS, 12, 60, 10_000_00, 3_000_00, 30_000_00, True, 2),
)

SAVINGS_PRODUCTS = (
    (1, "Voluntary Savings", "VSAV", "3.000000"),
    (2, "Compulsory Group Savings", "CSAV", "2.000000"),
)

_FIRST_F = ["Amina", "Grace", "Mary", "Wanjiru", "Fatuma", "Akinyi", "Esther", "Joyce", "Halima", "Njeri",
            "Rose", "Agnes", "Mercy", "Zawadi", "Achieng", "Lucy", "Faith", "Neema", "Rehema", "Irene"]
_FIRST_M = ["John", "Peter", "Otieno", "Kamau", "Juma", "Musa", "David", "Hassan", "Kipchoge", "Samuel",
            "Joseph", "Ali", "Daniel", "Omondi", "Baraka", "James", "Paul", "Said", "Moses", "Kiprono"]
_LAST = ["Mwangi", "Otieno", "Kariuki", "Wambui", "Njoroge", "Ochieng", "Mutua", "Kiptoo", "Chebet", "Abdi",
         "Odhiambo", "Wafula", "Mohamed", "Nyambura", "Kimani", "Were", "Barasa", "Cheruiyot", "Omari", "Muthoni"]
_TOWNS = ["Kisumu", "Nakuru", "Eldoret", "Thika", "Machakos", "Nyeri", "Meru", "Embu", "Kitale", "Bungoma",
          "Kakamega", "Kericho", "Naivasha", "Garissa", "Malindi", "Voi", "Narok", "Busia", "Homa Bay", "Migori"]
_REGIONS = ["Western", "Rift Valley", "Central", "Eastern", "Coast", "Nyanza", "North", "Nairobi"]

_DIM = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

# Columns each COPY stream writes (the rest take their defaults / NULL).
GEN_COLUMNS: dict[str, list[str]] = {
    "m_office": ["id", "parent_id", "hierarchy", "external_id", "name", "opening_date"],
    "m_staff": ["id", "is_loan_officer", "office_id", "firstname", "lastname", "display_name", "mobile_no",
                "external_id", "organisational_role_enum", "is_active", "joining_date", "email_address"],
    "m_code": ["id", "code_name", "is_system_defined"],
    "m_code_value": ["id", "code_id", "code_value", "code_description", "order_position", "is_active"],
    "m_product_loan": ["id", "short_name", "currency_code", "currency_digits", "currency_multiplesof",
                       "principal_amount", "min_principal_amount", "max_principal_amount", "name", "description",
                       "nominal_interest_rate_per_period", "interest_period_frequency_enum",
                       "annual_nominal_interest_rate", "interest_method_enum", "repay_every",
                       "repayment_period_frequency_enum", "number_of_repayments", "amortization_method_enum",
                       "accounting_type", "include_in_borrower_cycle", "start_date", "close_date",
                       "loan_transaction_strategy_code"],
    "m_client": ["id", "account_no", "external_id", "status_enum", "activation_date", "office_joining_date",
                 "office_id", "staff_id", "firstname", "lastname", "display_name", "mobile_no", "gender_cv_id",
                 "date_of_birth", "closure_reason_cv_id", "closedon_date", "submittedon_date", "client_type_cv_id",
                 "client_classification_cv_id", "rejectedon_date", "withdrawn_on_date", "reactivated_on_date",
                 "legal_form_enum", "email_address", "created_on_utc", "created_by", "last_modified_by",
                 "last_modified_on_utc"],
    "m_loan": ["id", "account_no", "client_id", "group_id", "product_id", "loan_officer_id", "loanpurpose_cv_id",
               "loan_status_id", "loan_type_enum", "currency_code", "currency_digits", "principal_amount_proposed",
               "principal_amount", "approved_principal", "net_disbursal_amount", "nominal_interest_rate_per_period",
               "interest_period_frequency_enum", "annual_nominal_interest_rate", "interest_method_enum",
               "term_frequency", "term_period_frequency_enum", "repay_every", "repayment_period_frequency_enum",
               "number_of_repayments", "amortization_method_enum", "submittedon_date", "approvedon_date",
               "expected_disbursedon_date", "expected_firstrepaymenton_date", "disbursedon_date",
               "expected_maturedon_date", "maturedon_date", "closedon_date", "principal_disbursed_derived",
               "principal_repaid_derived", "principal_writtenoff_derived", "principal_outstanding_derived",
               "interest_charged_derived", "interest_repaid_derived", "interest_writtenoff_derived",
               "interest_outstanding_derived", "total_expected_repayment_derived", "total_repayment_derived",
               "total_writtenoff_derived", "total_outstanding_derived", "rejectedon_date", "withdrawnon_date",
               "writtenoffon_date", "loan_counter", "loan_product_counter", "version", "created_on_utc",
               "created_by", "last_modified_by", "last_modified_on_utc"],
    "m_loan_repayment_schedule": ["id", "loan_id", "fromdate", "duedate", "installment", "principal_amount",
                                  "principal_completed_derived", "principal_writtenoff_derived", "interest_amount",
                                  "interest_completed_derived", "interest_writtenoff_derived", "completed_derived",
                                  "obligations_met_on_date", "created_on_utc", "created_by", "last_modified_by",
                                  "last_modified_on_utc"],
    "m_loan_transaction": ["id", "loan_id", "office_id", "is_reversed", "transaction_type_enum", "transaction_date",
                           "amount", "principal_portion_derived", "interest_portion_derived",
                           "outstanding_loan_balance_derived", "submitted_on_date", "manually_adjusted_or_reversed",
                           "created_by", "last_modified_by", "created_on_utc", "last_modified_on_utc",
                           "reversed_on_date"],
    "m_loan_officer_assignment_history": ["id", "loan_id", "loan_officer_id", "start_date", "end_date",
                                          "createdby_id", "created_date", "lastmodified_date", "lastmodifiedby_id"],
    "m_group": ["id", "status_enum", "activation_date", "office_id", "staff_id", "parent_id", "level_id",
                "display_name", "hierarchy", "submittedon_date", "account_no"],
    "m_group_client": ["group_id", "client_id"],
    "m_savings_product": ["id", "name", "short_name", "description", "currency_code", "currency_digits",
                          "nominal_annual_interest_rate", "interest_compounding_period_enum",
                          "interest_calculation_type_enum", "interest_calculation_days_in_year_type_enum",
                          "accounting_type"],
    "m_savings_account": ["id", "account_no", "client_id", "group_id", "product_id", "field_officer_id",
                          "status_enum", "submittedon_date", "approvedon_date", "activatedon_date", "closedon_date",
                          "currency_code", "currency_digits", "nominal_annual_interest_rate",
                          "account_balance_derived", "total_deposits_derived", "total_withdrawals_derived",
                          "created_on_utc", "created_by", "last_modified_by", "last_modified_on_utc"],
}


class _MoneyText(dict):
    """cents -> '123.45'. Exact: cents/100 is the nearest double and '.2f' rounds it back to the
    same two decimals for any amount below 10^13 cents. Cached because installment amounts repeat."""

    def __missing__(self, cents: int) -> str:
        if len(self) > 300_000:
            self.clear()
        text = f"{cents / 100:.2f}"
        self[cents] = text
        return text


money = _MoneyText().__getitem__


def _money_or_null(cents: int) -> str:
    # Fineract stores zero portions/completed amounts as NULL (defaultToNullIfZero).
    return money(cents) if cents else NULL


def _rate(bp: int) -> str:
    return f"{bp // 100}.{bp % 100:02d}"


def add_months(ordinal: int, months: int) -> int:
    d = dt.date.fromordinal(ordinal)
    m0 = d.month - 1 + months
    y, m = d.year + m0 // 12, m0 % 12 + 1
    last = _DIM[m - 1] + (1 if m == 2 and (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 0)
    return dt.date(y, m, min(d.day, last)).toordinal()


def due_dates(product: LoanProduct, disbursed: int) -> list[int]:
    if product.frequency == FREQ_WEEKS:
        return [disbursed + 7 * k for k in range(1, product.repayments + 1)]
    return [add_months(disbursed, k) for k in range(1, product.repayments + 1)]


def schedule_amounts(product: LoanProduct, principal: int) -> tuple[list[int], list[int]]:
    """Equal principal per installment (remainder in the last), flat interest on the original principal."""
    n = product.repayments
    each = principal // n
    prin = [each] * n
    prin[-1] += principal - each * n
    interest = (principal * product.rate_bp + 5000) // 10000
    return prin, [interest] * n


# --------------------------------------------------------------------------------------------
# COPY buffering


class _CopySink:
    """Per-table text buffers flushed with one COPY each when they fill up.

    A writer thread runs the COPYs while the main thread generates the next rows (libpq releases
    the GIL while the server works), through a short queue: memory stays bounded to a few
    buffers whatever the size of the demo.
    """

    def __init__(self, conn: psycopg.Connection, flush_rows: int = 20000):
        self.conn = conn
        self.flush_rows = flush_rows
        self.buffers: dict[str, list[str]] = {t: [] for t in GEN_COLUMNS}
        self.counts: dict[str, int] = {t: 0 for t in GEN_COLUMNS}
        self._queue: queue.Queue = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._writer, name="demo-copy-writer", daemon=True)
        self._thread.start()

    def _writer(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None:
                continue  # drain after a failure; the main thread re-raises it
            table, text = item
            try:
                cols = ", ".join(GEN_COLUMNS[table])
                with self.conn.cursor() as cur:
                    with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as cp:
                        cp.write(text)
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                self._error = exc

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def flush(self, table: str) -> None:
        buf = self.buffers[table]
        if not buf:
            return
        self._check()
        self._queue.put((table, "".join(buf)))
        self.counts[table] += len(buf)
        buf.clear()

    def close(self) -> None:
        """Flush everything and wait for the writer: the connection is the caller's again."""
        self.flush_all()
        self._queue.put(None)
        self._thread.join()
        self._check()

    def maybe_flush(self) -> None:
        limit = self.flush_rows
        for table, buf in self.buffers.items():
            if len(buf) >= limit:
                self.flush(table)

    def flush_all(self) -> None:
        for table in self.buffers:
            self.flush(table)


class _DateText(dict):
    """ordinal -> 'YYYY-MM-DD', computed once per date (formatting dominates the cost otherwise)."""

    def __missing__(self, ordinal: int) -> str:
        text = dt.date.fromordinal(ordinal).isoformat()
        self[ordinal] = text
        return text


def _line(*values: object) -> str:
    return "\t".join(NULL if v is None else str(v) for v in values) + "\n"


# --------------------------------------------------------------------------------------------
# DDL


def create_source_schema(conn: psycopg.Connection) -> None:
    """Drop and recreate the demo Fineract tables (without keys: added after the load)."""
    with conn.cursor() as cur:
        for table in reversed(S.TABLE_ORDER):
            cur.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
        for table in S.TABLE_ORDER:
            cur.execute(S.pg_create_table(table))


def _add_constraints(conn: psycopg.Connection) -> None:
    with conn.cursor() as cur:
        for table in S.TABLE_ORDER:
            for stmt in S.pg_constraints(table):
                cur.execute(stmt)
            cur.execute(f"ANALYZE {table}")


# --------------------------------------------------------------------------------------------
# the generator


@dataclass
class _Branch:
    id: int
    region_id: int
    opening: int
    officers: list[int]
    manager: int
    center_id: int = 0
    center_groups: int = 0
    group_id: int = 0
    group_members: int = 0
    group_capacity: int = 0


class _Generator:
    def __init__(self, conn: psycopg.Connection, clients: int, seed: int, as_of: dt.date):
        self.conn = conn
        self.n_clients = clients
        self.rng = random.Random(seed)
        self.as_of = as_of.toordinal()
        self.span = 6 * 365
        self.start = self.as_of - self.span
        self.sink = _CopySink(conn)
        # date and time text caches: formatting dominates the cost otherwise
        self.ds = _DateText()
        trng = random.Random(seed ^ 0x5EED)
        self.times = [f" {h:02d}:{trng.randrange(60):02d}:{trng.randrange(60):02d}+00"
                      for h in (trng.randrange(5, 17) for _ in range(997))]
        self.next_loan = 1
        self.next_sched = 1
        self.next_tx = 1
        self.next_hist = 1
        self.next_savings = 1
        self.next_group = 1
        self.groups: dict[int, list] = {}  # group id -> row values (small: ~1 per 20 clients)
        # the seeded PAR breach (seed_par_breach): its own random stream, so that every other row
        # is what the seed alone makes; candidates are the stressed branch's active clients
        self.stress_rng = random.Random(seed ^ 0xBAD0)
        self.stress_candidates: list[tuple[int, int]] = []  # (client id, activation)
        self.loan_cycles: dict[int, tuple[int, dict[int, int], bool]] = {}  # cid -> (cycles, per product, open loan)

    # time stamp text for a date ordinal, plausible business hour in UTC
    def ts(self, o: int) -> str:
        return self.ds[o] + self.times[int(self.rng.random() * 997)]

    # ---------------- reference data
    def build_reference(self) -> None:
        rng, sink, ds = self.rng, self.sink, self.ds
        n_branches = max(3, min(400, self.n_clients // 2500))
        n_regions = max(2, min(len(_REGIONS), (n_branches + 5) // 6))
        office = sink.buffers["m_office"]
        head_open = self.start - 700
        office.append(_line(1, None, ".", "HO", "Head Office", ds[head_open]))
        office_id = 2
        region_ids = []
        for r in range(n_regions):
            region_ids.append(office_id)
            office.append(_line(office_id, 1, f".{office_id}.", f"R{r + 1:02d}", f"{_REGIONS[r]} Region",
                                ds[head_open + 30 + r * 20]))
            office_id += 1
        self.branches: list[_Branch] = []
        staff = sink.buffers["m_staff"]
        staff_id = 1
        per_branch = self.n_clients / n_branches
        n_officers = max(2, min(30, round(per_branch / 250)))
        for b in range(n_branches):
            region = region_ids[b % n_regions]
            # most branches predate the data window; the last fifth open during it
            if b < n_branches - max(1, n_branches // 5):
                opening = self.start - rng.randrange(30, 600)
            else:
                opening = self.start + rng.randrange(self.span // 4, self.span // 2)
            town = _TOWNS[b % len(_TOWNS)] + ("" if b < len(_TOWNS) else f" {b // len(_TOWNS) + 1}")
            office.append(_line(office_id, region, f".{region}.{office_id}.", f"BR{b + 1:03d}",
                                f"{town} Branch", ds[opening]))
            officers = []
            manager = staff_id
            for k in range(n_officers + 2):
                first = rng.choice(_FIRST_F if rng.random() < 0.5 else _FIRST_M)
                last = rng.choice(_LAST)
                is_officer = k > 0
                active = not (k == n_officers + 1)  # one officer per branch has left
                joined = opening + rng.randrange(0, 200)
                staff.append(_line(staff_id, "t" if is_officer else "f", office_id, first, last,
                                   f"{last}, {first}", f"+2547{rng.randrange(10**7, 10**8)}",
                                   f"EMP{staff_id:05d}", 100 if is_officer else 200, "t" if active else "f",
                                   ds[min(joined, self.as_of)], f"{first.lower()}.{last.lower()}@mfi.example"))
                if is_officer and active:
                    officers.append(staff_id)
                staff_id += 1
            self.branches.append(_Branch(office_id, region, opening, officers, manager))
            office_id += 1
        self.stressed_branch = max(self.branches, key=lambda br: br.id)
        self.branches.sort(key=lambda br: br.opening)
        self.open_branches: list[_Branch] = []
        self._branch_ptr = 0

        code = sink.buffers["m_code"]
        cv = sink.buffers["m_code_value"]
        for cid, name, system, values in _CODE_DEFS:
            code.append(_line(cid, name, "t" if system else "f"))
            for pos, value in enumerate(values):
                cv.append(_line(CODE_VALUE_IDS[name][value], cid, value, None, pos, "t"))
        self.purposes = list(CODE_VALUE_IDS["LoanPurpose"].values())
        self.closure_reasons = list(CODE_VALUE_IDS["ClientClosureReason"].values())
        self.client_types = list(CODE_VALUE_IDS["ClientType"].values())
        self.rural, self.urban = (CODE_VALUE_IDS["ClientClassification"][v] for v in ("Rural", "Urban"))

        prod = sink.buffers["m_product_loan"]
        for p in PRODUCTS:
            close = self.start + 365 * p.closes_after_years if p.closes_after_years else None
            prod.append(_line(p.id, p.short_name, CURRENCY, 2, 1, money(p.principal), money(p.min_principal),
                              money(p.max_principal), p.name, f"{p.name} loan product",
                              _rate(p.rate_bp) + "0000", p.frequency, _rate(p.annual_rate_bp) + "0000", 1, 1,
                              p.frequency, p.repayments, 0, 1, "t", ds[self.start - 400],
                              ds[close] if close else None, "mifos-standard-strategy"))
        self.product_close = {p.id: (self.start + 365 * p.closes_after_years if p.closes_after_years else None)
                              for p in PRODUCTS}
        sp = sink.buffers["m_savings_product"]
        for sid, name, short, rate in SAVINGS_PRODUCTS:
            sp.append(_line(sid, name, short, name, CURRENCY, 2, rate, 1, 1, 365, 1))

    def _branch_for(self, submitted: int) -> _Branch:
        while self._branch_ptr < len(self.branches) and self.branches[self._branch_ptr].opening <= submitted:
            self.open_branches.append(self.branches[self._branch_ptr])
            self._branch_ptr += 1
        return self.open_branches[int(self.rng.random() * len(self.open_branches))]

    def _join_group(self, br: _Branch, activated: int, officer: int | None) -> int:
        """Group lending: members fill a group of 10-25 at their branch; 3-5 groups per center."""
        rng = self.rng
        if br.group_id == 0 or br.group_members >= br.group_capacity:
            if br.center_id == 0 or br.center_groups >= 4:
                br.center_id = self.next_group
                self.next_group += 1
                br.center_groups = 0
                self.groups[br.center_id] = [br.center_id, 300, activated, br.id, officer, None, 1,
                                             f"Center {br.center_id}", activated]
            br.group_id = self.next_group
            self.next_group += 1
            br.center_groups += 1
            br.group_members = 0
            br.group_capacity = rng.randrange(10, 26)
            self.groups[br.group_id] = [br.group_id, 300, activated, br.id, officer, br.center_id, 2,
                                        f"Group {br.group_id}", activated]
        br.group_members += 1
        return br.group_id

    # ---------------- clients
    def build_clients(self) -> None:
        rng, ds, as_of, n = self.rng, self.ds, self.as_of, self.n_clients
        bufs = self.sink.buffers
        clients = bufs["m_client"]
        group_client = bufs["m_group_client"]
        savings = bufs["m_savings_account"]
        rnd = rng.random
        randrange = rng.randrange
        for i in range(n):
            cid = i + 1
            # more clients join recently (growth); ids increase with submission date
            submitted = self.start + int(self.span * ((i + rnd()) / n) ** 0.6)
            submitted = min(submitted, as_of)
            br = self._branch_for(submitted)
            female_draw = rnd()
            gender = GENDER_FEMALE if female_draw < 0.66 else (GENDER_MALE if female_draw < 0.97 else None)
            first = (_FIRST_F if gender == GENDER_FEMALE else _FIRST_M)[int(rnd() * 20)]
            last = _LAST[int(rnd() * 20)]
            officer = br.officers[int(rnd() * len(br.officers))] if rnd() > 0.02 else None
            dob = submitted - 365 * randrange(18, 66) - randrange(365)
            ctype = self.client_types[0 if rnd() < 0.6 else (1 if rnd() < 0.6 else 2)]
            cclass = self.rural if rnd() < 0.6 else self.urban
            status = CLIENT_ACTIVE
            activation = closed = rejected = withdrawn = reactivated = closure_reason = None
            office_joining = None
            office_id = br.id
            sub_ts = self.ts(submitted)
            last_mod = sub_ts
            r = rnd()
            age = as_of - submitted
            if r < 0.02:
                status, rejected = CLIENT_REJECTED, min(as_of, submitted + randrange(1, 15))
                last_mod = self.ts(rejected)
            elif r < 0.04:
                status, withdrawn = CLIENT_WITHDRAWN, min(as_of, submitted + randrange(1, 20))
                last_mod = self.ts(withdrawn)
            elif r < 0.045 or (age < 30 and r < 0.35):
                status = CLIENT_PENDING
            else:
                activation = min(as_of, submitted + randrange(0, 15))
                office_joining = activation
                last_mod = self.ts(activation)
            if activation is not None:
                in_group = rnd() < 0.55
                group_id = self._join_group(br, activation, officer) if in_group else None
                if group_id:
                    group_client.append(f"{group_id}\t{cid}\n")
                # a few individual clients move to another branch
                transfer = None
                new_br = br
                if not in_group and rnd() < 0.03 and as_of - activation > 120 and len(self.open_branches) > 1:
                    transfer = activation + randrange(60, as_of - activation)
                    new_br = self.open_branches[int(rnd() * len(self.open_branches))]
                    if new_br is br:
                        transfer = None
                new_officer = (new_br.officers[int(rnd() * len(new_br.officers))] if officer else None)
                status, activation, closed, closure_reason, reactivated, cl_last = self._client_loans(
                    cid, br, new_br, transfer, officer, new_officer, group_id, activation)
                if cl_last > last_mod:
                    last_mod = cl_last
                if transfer is not None and (closed is None or transfer <= closed):
                    office_id, office_joining, officer = new_br.id, transfer, new_officer
                    t_ts = self.ts(transfer)
                    if t_ts > last_mod:
                        last_mod = t_ts
                elif reactivated:
                    office_joining = activation
                if status == CLIENT_ACTIVE and office_id == self.stressed_branch.id:
                    self.stress_candidates.append((cid, activation))
                # savings: some clients, compulsory savings for some group members
                for prod_id, prob in ((1, 0.3), (2, 0.5 if group_id else 0.0)):
                    if rnd() < prob:
                        sid = self.next_savings
                        self.next_savings += 1
                        bal = randrange(0, 5_000_000)
                        dep = bal + randrange(0, 2_000_000)
                        if closed is not None:
                            s_status, s_closed, bal, wd = 600, closed, 0, dep
                        else:
                            s_status, s_closed, wd = 300, None, dep - bal
                        s_lm = self.ts(s_closed if s_closed else activation + int(rnd() * (as_of - activation)))
                        savings.append(
                            f"{sid}\t{sid:09d}\t{cid}\t{group_id if prod_id == 2 else NULL}\t{prod_id}\t"
                            f"{officer if officer else NULL}\t{s_status}\t{ds[activation]}\t{ds[activation]}\t"
                            f"{ds[activation]}\t{ds[s_closed] if s_closed else NULL}\t{CURRENCY}\t2\t"
                            f"{SAVINGS_PRODUCTS[prod_id - 1][3]}\t{money(bal)}\t{money(dep)}\t{money(wd)}\t"
                            f"{self.ts(activation)}\t1\t1\t{s_lm}\n")
            email = f"{first.lower()}.{last.lower()}{cid}@mail.example" if rnd() < 0.1 else NULL
            clients.append(
                f"{cid}\t{cid:09d}\t{randrange(10**7, 10**8)}\t{status}\t"
                f"{ds[activation] if activation else NULL}\t{ds[office_joining] if office_joining else NULL}\t"
                f"{office_id}\t{officer if officer else NULL}\t{first}\t{last}\t{first} {last}\t"
                f"+2547{randrange(10**7, 10**8)}\t{gender if gender else NULL}\t{ds[dob]}\t"
                f"{closure_reason if closure_reason else NULL}\t{ds[closed] if closed else NULL}\t"
                f"{ds[submitted]}\t{ctype}\t{cclass}\t{ds[rejected] if rejected else NULL}\t"
                f"{ds[withdrawn] if withdrawn else NULL}\t{ds[reactivated] if reactivated else NULL}\t1\t"
                f"{email}\t{sub_ts}\t1\t1\t{last_mod}\n")
            if (cid & 255) == 0:
                self.sink.maybe_flush()

    def _client_loans(self, cid, br, new_br, transfer, officer, new_officer, group_id, activation):
        """Loan cycles of one active client; returns the client's final status fields.

        last_mod is the time of the client's own last change (closure, reactivation): in Fineract
        loan activity does not touch m_client.
        """
        rng, as_of = self.rng, self.as_of
        rnd = rng.random
        randrange = rng.randrange
        status = CLIENT_ACTIVE
        closed = closure_reason = reactivated = None
        last_mod = ""
        t = activation + randrange(0, 30)
        cycle = 0
        product_cycles: dict[int, int] = {}
        base = 0.8 + 0.6 * rnd()  # client's scale of borrowing
        risk = rnd()              # client's repayment discipline, drives behaviour per loan
        open_loan = False
        while t <= as_of:
            if group_id:
                prod = PRODUCTS[1] if rnd() < 0.15 else PRODUCTS[0]
                if self.product_close[5] and t < self.product_close[5] and rnd() < 0.4:
                    prod = PRODUCTS[4]
            else:
                x = rnd()
                prod = PRODUCTS[2] if x < 0.65 else (PRODUCTS[3] if x < 0.85 else PRODUCTS[1])
            cycle += 1
            product_cycles[prod.id] = product_cycles.get(prod.id, 0) + 1
            principal = int(prod.principal * base * (1 + 0.25 * min(cycle - 1, 6)) / 50_00) * 50_00
            principal = max(prod.min_principal, min(prod.max_principal, principal))
            after_transfer = transfer is not None and t >= transfer
            loan_officer = (new_officer if after_transfer else officer) if rnd() > 0.02 else None
            outcome, end = self._loan(cid, prod, principal, t, cycle, product_cycles[prod.id],
                                      br.id, new_br.id, transfer, loan_officer,
                                      new_officer if not after_transfer else None, group_id, risk,
                                      new_br.officers if after_transfer else br.officers)
            if outcome in ("pending", "active"):
                open_loan = True
                break
            if outcome == "not_disbursed":
                t = end + randrange(20, 120)
                continue
            # the loan ended (closed or written off): next cycle, or the client leaves
            if rnd() < (0.6 if outcome == "written_off" else 0.12):
                if rnd() < 0.65:
                    closure = end + randrange(15, 180)
                    if closure <= as_of:
                        status, closed = CLIENT_CLOSED, closure
                        closure_reason = self.closure_reasons[int(rnd() * len(self.closure_reasons))]
                        c_ts = self.ts(closure)
                        if c_ts > last_mod:
                            last_mod = c_ts
                        # closed clients sometimes come back: Fineract clears the closure on reactivation
                        # and the client is activated again
                        if rnd() < 0.15:
                            react = closure + randrange(60, 500)
                            if react <= as_of:
                                status, closed, closure_reason = CLIENT_ACTIVE, None, None
                                reactivated = activation = react
                                last_mod = self.ts(react)
                                t = react + randrange(0, 30)
                                continue
                break
            gap = randrange(0, 8) if rnd() < 0.5 else (randrange(8, 60) if rnd() < 0.8 else randrange(60, 365))
            t = end + gap
        self.loan_cycles[cid] = (cycle, product_cycles, open_loan)
        return status, activation, closed, closure_reason, reactivated, last_mod

    def _loan(self, cid, prod, principal, submitted, cycle, product_cycle, office_old, office_new, transfer,
              officer, officer_after_transfer, group_id, risk, branch_officers, behaviour_forced=None):
        """One loan with its schedule, transactions and officer history; returns (outcome, end date).

        behaviour_forced: 'stopped' = never repaid (the seeded PAR breach); None = drawn from risk.
        """
        rng, ds, as_of = self.rng, self.ds, self.as_of
        rnd = rng.random
        randrange = rng.randrange
        bufs = self.sink.buffers
        tx_buf = bufs["m_loan_transaction"]
        lid = self.next_loan
        self.next_loan += 1
        approved = submitted + randrange(0, 8)
        disbursed = approved + (randrange(0, 11) if rnd() < 0.9 else randrange(11, 60))
        sub_ts = self.ts(submitted)
        last_mod = sub_ts
        status = LOAN_ACTIVE
        rejected = withdrawn = None
        approved_d = disbursed_d = None
        r = rnd()
        if r < 0.03 and submitted + 10 <= as_of:
            status, rejected = LOAN_REJECTED, submitted + randrange(1, 11)
        elif r < 0.05 and submitted + 10 <= as_of:
            status, withdrawn = LOAN_WITHDRAWN, submitted + randrange(1, 11)
        elif approved > as_of:
            status = LOAN_SUBMITTED
        elif disbursed > as_of:
            status, approved_d = LOAN_APPROVED, approved
        else:
            approved_d, disbursed_d = approved, disbursed
        expected_disb = disbursed if disbursed_d else approved + randrange(0, 11)
        first_date = disbursed_d if disbursed_d else expected_disb
        dues = due_dates(prod, first_date)
        prin, intr = schedule_amounts(prod, principal)
        n = len(dues)
        pp = [0] * n
        ip = [0] * n
        met = [0] * n
        touched = [""] * n
        p_wo = [0] * n
        i_wo = [0] * n
        closed_d = wo_d = None
        ts_created = sub_ts
        p_repaid = i_repaid = 0
        if status in (LOAN_REJECTED, LOAN_WITHDRAWN):
            last_mod = self.ts(rejected or withdrawn)
        elif status == LOAN_APPROVED:
            last_mod = self.ts(approved)
        if disbursed_d is not None:
            disb_ts = self.ts(disbursed_d)
            ts_created = disb_ts
            last_mod = disb_ts
            office_at = office_old if transfer is None or disbursed_d < transfer else office_new
            tid = self.next_tx
            self.next_tx += 1
            pm = money(principal)
            tx_buf.append(f"{tid}\t{lid}\t{office_at}\tf\t1\t{ds[disbursed_d]}\t{pm}\t{pm}\t\\N\t{pm}\t"
                          f"{ds[disbursed_d]}\tf\t1\t1\t{disb_ts}\t{disb_ts}\t\\N\n")
            total_due = [prin[k] + intr[k] for k in range(n)]
            cum_due = []
            acc = 0
            for x in total_due:
                acc += x
                cum_due.append(acc)
            grand_total = acc
            cur = 0

            def post(amount: int, day: int, tx_type: int, submitted_on: int, lm_ts: str) -> None:
                """Allocate a repayment: interest then principal, oldest installment first."""
                nonlocal cur, p_repaid, i_repaid, last_mod
                p_por = i_por = 0
                while amount > 0 and cur < n:
                    need = intr[cur] - ip[cur]
                    if need:
                        x = need if need < amount else amount
                        ip[cur] += x
                        i_por += x
                        amount -= x
                    need = prin[cur] - pp[cur]
                    if need and amount:
                        x = need if need < amount else amount
                        pp[cur] += x
                        p_por += x
                        amount -= x
                    touched[cur] = lm_ts
                    if ip[cur] == intr[cur] and pp[cur] == prin[cur]:
                        met[cur] = day
                        cur += 1
                p_repaid += p_por
                i_repaid += i_por
                office = office_old if transfer is None or day < transfer else office_new
                tid = self.next_tx
                self.next_tx += 1
                tx_buf.append(f"{tid}\t{lid}\t{office}\tf\t{tx_type}\t{ds[day]}\t{money(p_por + i_por)}\t"
                              f"{_money_or_null(p_por)}\t{_money_or_null(i_por)}\t{money(principal - p_repaid)}\t"
                              f"{ds[submitted_on]}\tf\t1\t1\t{lm_ts}\t{lm_ts}\t\\N\n")
                if lm_ts > last_mod:
                    last_mod = lm_ts

            def outstanding() -> int:
                return grand_total - p_repaid - i_repaid

            def repay(amount: int, day: int) -> None:
                """A repayment as the branch enters it: sometimes days later, sometimes wrong and reversed."""
                amount = min(amount, outstanding())
                if amount <= 0:
                    return
                entered = day
                x = rnd()
                if x < 0.04:
                    entered = min(as_of, day + randrange(1, 11))  # back-dated entry
                elif x < 0.05:
                    # a wrong amount is entered, reversed, then the right one entered
                    wrong = amount * 10 if rnd() < 0.5 else max(1_00, amount - 100_00)
                    if wrong == amount:
                        wrong += 50_00
                    rev_on = min(as_of, day + randrange(0, 4))
                    w_ts = self.ts(day)
                    r_ts = self.ts(rev_on)
                    if r_ts < w_ts:
                        w_ts, r_ts = r_ts, w_ts
                    need_i = intr[cur] - ip[cur] if cur < n else 0
                    wi = min(wrong, need_i)
                    tid = self.next_tx
                    self.next_tx += 1
                    office = office_old if transfer is None or day < transfer else office_new
                    tx_buf.append(f"{tid}\t{lid}\t{office}\tt\t2\t{ds[day]}\t{money(wrong)}\t"
                                  f"{_money_or_null(wrong - wi)}\t{_money_or_null(wi)}\t"
                                  f"{money(max(0, principal - p_repaid - (wrong - wi)))}\t{ds[day]}\tt\t1\t1\t"
                                  f"{w_ts}\t{r_ts}\t{ds[rev_on]}\n")
                    post(amount, day, TX_REPAYMENT, rev_on, r_ts)
                    return
                post(amount, day, TX_REPAYMENT, entered, self.ts(entered))

            if behaviour_forced is None and rnd() < 0.03:
                post(total_due[0], disbursed_d, TX_REPAYMENT_AT_DISBURSEMENT, disbursed_d, disb_ts)
            # repayment behaviour of this loan, driven by the client's discipline
            b = rnd() * 0.6 + risk * 0.4
            behaviour = behaviour_forced or ("good" if b < 0.62 else "late" if b < 0.76 else "partial" if b < 0.84
                                             else "missed" if b < 0.92 else "default")
            stop_at = randrange(0, n - 1) if behaviour == "default" else (0 if behaviour == "stopped" else n)
            last_pay = disbursed_d
            for k in range(n):
                if k >= stop_at:
                    break
                due = dues[k]
                if behaviour == "good":
                    day = due - (randrange(1, 4) if rnd() < 0.1 else 0)
                elif behaviour == "late":
                    day = due + randrange(1, 21)
                elif behaviour == "missed" and rnd() < 0.25:
                    continue
                else:
                    day = due
                if day < last_pay:
                    day = last_pay
                if day > as_of:
                    break
                last_pay = day
                arrears = cum_due[k] - p_repaid - i_repaid
                if behaviour == "partial" and rnd() < 0.6:
                    amount = int(total_due[k] * (0.4 + 0.5 * rnd()) / 10_00) * 10_00
                else:
                    amount = arrears
                repay(amount, day)
            # catch-up payment after maturity for partial / missed payers
            if behaviour in ("partial", "missed", "late") and outstanding() > 0:
                day = max(last_pay, dues[-1]) + randrange(5, 90)
                if day <= as_of and rnd() < 0.8:
                    repay(outstanding(), day)
                    last_pay = day
            remaining = outstanding()
            if remaining > 0 and behaviour == "default":
                wo = dues[-1] + randrange(120, 240)
                if wo <= as_of:
                    wo_d = wo
                    wo_ts = self.ts(wo)
                    p_out = principal - p_repaid
                    i_out = sum(intr) - i_repaid
                    for k in range(cur, n):
                        p_wo[k] = prin[k] - pp[k]
                        i_wo[k] = intr[k] - ip[k]
                        met[k] = wo
                        touched[k] = wo_ts
                    tid = self.next_tx
                    self.next_tx += 1
                    office = office_old if transfer is None or wo < transfer else office_new
                    tx_buf.append(f"{tid}\t{lid}\t{office}\tf\t6\t{ds[wo]}\t{money(p_out + i_out)}\t"
                                  f"{_money_or_null(p_out)}\t{_money_or_null(i_out)}\t0.00\t{ds[wo]}\tf\t1\t1\t"
                                  f"{wo_ts}\t{wo_ts}\t\\N\n")
                    status = LOAN_WRITTEN_OFF
                    last_mod = max(last_mod, wo_ts)
            elif remaining == 0:
                status = LOAN_CLOSED
                closed_d = last_pay if met[n - 1] == 0 else met[n - 1]
        # ---- officer assignment history (Fineract starts it at the application)
        hist = bufs["m_loan_officer_assignment_history"]
        end_of_life = wo_d or closed_d or rejected or withdrawn
        if officer is not None:
            reassign = None
            new_off = None
            if (officer_after_transfer is not None and disbursed_d is not None and transfer is not None
                    and transfer > disbursed_d and (end_of_life is None or transfer < end_of_life)
                    and transfer <= as_of):
                reassign, new_off = transfer, officer_after_transfer
            elif disbursed_d is not None and rnd() < 0.03:
                hi = min(end_of_life or as_of, as_of)
                if hi > disbursed_d + 1:
                    reassign = disbursed_d + randrange(1, hi - disbursed_d)
                    new_off = branch_officers[int(rnd() * len(branch_officers))]
            hid = self.next_hist
            sub_naive = sub_ts[:-3]
            if reassign is not None:
                r_ts = self.ts(reassign)
                hist.append(f"{hid}\t{lid}\t{officer}\t{ds[submitted]}\t{ds[reassign]}\t1\t{sub_naive}\t"
                            f"{r_ts[:-3]}\t1\n")
                hist.append(f"{hid + 1}\t{lid}\t{new_off}\t{ds[reassign]}\t\\N\t1\t{r_ts[:-3]}\t{r_ts[:-3]}\t1\n")
                self.next_hist += 2
                officer = new_off
                last_mod = max(last_mod, r_ts)
            else:
                hist.append(f"{hid}\t{lid}\t{officer}\t{ds[submitted]}\t\\N\t1\t{sub_naive}\t{sub_naive}\t1\n")
                self.next_hist += 1
        # ---- schedule
        sched = bufs["m_loan_repayment_schedule"]
        sid = self.next_sched
        self.next_sched += n
        prev = first_date
        for k in range(n):
            due = dues[k]
            lm = touched[k] or ts_created
            sched.append(f"{sid + k}\t{lid}\t{ds[prev]}\t"
                         f"{ds[due]}\t{k + 1}\t{money(prin[k])}\t"
                         f"{_money_or_null(pp[k])}\t{_money_or_null(p_wo[k])}\t{money(intr[k])}\t"
                         f"{_money_or_null(ip[k])}\t{_money_or_null(i_wo[k])}\t{'t' if met[k] else 'f'}\t"
                         f"{ds[met[k]] if met[k] else NULL}\t{ts_created}\t1\t1\t{lm}\n")
            prev = due
        # ---- the loan row, derived columns consistent with the transactions
        disb_amt = principal if disbursed_d else 0
        charged = sum(intr) if disbursed_d else 0
        p_wo_t, i_wo_t = sum(p_wo), sum(i_wo)
        p_out = disb_amt - p_repaid - p_wo_t
        i_out = charged - i_repaid - i_wo_t
        purpose = self.purposes[int(rnd() * len(self.purposes))]
        matured = dues[-1] if disbursed_d else None
        closed_on = closed_d or wo_d
        exp_total = principal + charged
        m = money
        bufs["m_loan"].append(
            f"{lid}\t{lid:09d}\t{cid}\t{group_id if group_id else NULL}\t{prod.id}\t"
            f"{officer if officer else NULL}\t{purpose}\t{status}\t{LOAN_JLG if group_id else LOAN_INDIVIDUAL}\t"
            f"{CURRENCY}\t2\t{m(principal)}\t{m(principal)}\t{m(principal)}\t{m(principal)}\t"
            f"{_rate(prod.rate_bp)}\t{prod.frequency}\t{_rate(prod.annual_rate_bp)}\t1\t{n}\t{prod.frequency}\t1\t"
            f"{prod.frequency}\t{n}\t0\t{ds[submitted]}\t{ds[approved_d] if approved_d else NULL}\t"
            f"{ds[expected_disb]}\t"
            f"{ds[dues[0]]}\t"
            f"{ds[disbursed_d] if disbursed_d else NULL}\t"
            f"{ds[dues[-1]]}\t"
            f"{ds[matured] if matured else NULL}\t"
            f"{ds[closed_on] if closed_on else NULL}\t{m(disb_amt)}\t{m(p_repaid)}\t{m(p_wo_t)}\t{m(p_out)}\t"
            f"{m(charged)}\t{m(i_repaid)}\t{m(i_wo_t)}\t{m(i_out)}\t{m(exp_total) if disbursed_d else m(0)}\t"
            f"{m(p_repaid + i_repaid)}\t{m(p_wo_t + i_wo_t)}\t{m(p_out + i_out)}\t"
            f"{ds[rejected] if rejected else NULL}\t{ds[withdrawn] if withdrawn else NULL}\t"
            f"{ds[wo_d] if wo_d else NULL}\t{cycle}\t{product_cycle}\t1\t{sub_ts}\t1\t1\t{last_mod}\n")
        if status in (LOAN_SUBMITTED, LOAN_APPROVED, LOAN_ACTIVE):
            return ("pending" if status != LOAN_ACTIVE else "active"), None
        if status in (LOAN_REJECTED, LOAN_WITHDRAWN):
            return "not_disbursed", (rejected or withdrawn)
        if status == LOAN_WRITTEN_OFF:
            return "written_off", wo_d
        return "closed", closed_d

    def seed_par_breach(self) -> int:
        """A bad quarter at the stressed branch: a few never-repaid loans; returns how many.

        One individual monthly loan (IM12) for 5% of the branch's active clients (at least 2,
        clients between two loans first), all with the branch's first officer, applied about
        80 days before the as-of date: disbursed in the month two months before it, first
        installment due in the month before it, so that at the as-of date - and not at the end of
        the month before - they are more than 30 days in arrears. The demo's early warning
        (kpi_alerts) then has a new PAR30 breach at its latest period.
        """
        br, rng = self.stressed_branch, self.stress_rng
        candidates = sorted(self.stress_candidates, key=lambda c: (self.loan_cycles.get(c[0], (0, {}, False))[2], c[0]))
        if not candidates or not br.officers:
            return 0
        wanted = min(len(candidates), max(2, -(-len(candidates) * 5 // 100)))
        between_loans = [c for c in candidates if not self.loan_cycles.get(c[0], (0, {}, False))[2]]
        pool = between_loans if len(between_loans) >= wanted else candidates
        chosen = sorted(rng.sample(pool, wanted))
        prod = PRODUCTS[2]
        saved = self.rng
        self.rng = rng  # _loan and ts draw from self.rng: the main stream stays untouched
        try:
            for cid, activation in chosen:
                cycles, per_product, _open = self.loan_cycles.get(cid, (0, {}, False))
                submitted = max(activation, self.as_of - 80)
                self._loan(cid, prod, prod.principal, submitted, cycles + 1, per_product.get(prod.id, 0) + 1,
                           br.id, br.id, None, br.officers[0], None, None, 1.0, br.officers,
                           behaviour_forced="stopped")
        finally:
            self.rng = saved
        return wanted

    def finish(self) -> None:
        groups = self.sink.buffers["m_group"]
        for gid, (g_id, status, act, office, staff, parent, level, name, sub) in sorted(self.groups.items()):
            hierarchy = f".{parent}.{gid}." if parent else f".{gid}."
            groups.append(_line(g_id, status, self.ds[act], office, staff, parent, level, name,
                                hierarchy, self.ds[sub], f"{gid:09d}"))
        self.sink.close()


def build_demo_mis(conn: psycopg.Connection, clients: int, seed: int, as_of: dt.date) -> dict[str, int]:
    """(Re)build the demo Fineract tables in the connected database; returns row counts per table.

    Deterministic for a given (clients, seed, as_of). Commits when done.
    """
    if clients < 1:
        raise ValueError("clients must be at least 1")
    started = time.perf_counter()
    create_source_schema(conn)
    gen = _Generator(conn, clients, seed, as_of)
    try:
        gen.build_reference()
        gen.build_clients()
        gen.seed_par_breach()
    finally:
        gen.finish()
    generated = time.perf_counter()
    _add_constraints(conn)
    conn.commit()
    counts = dict(gen.sink.counts)
    log.info("demo MIS: %d clients in %.1fs (+%.1fs keys/indexes): %s", clients, generated - started,
             time.perf_counter() - generated, counts)
    return counts


# --------------------------------------------------------------------------------------------
# simulation of the next days of activity


class _Simulator:
    """Day-by-day activity on an existing demo database, the way Fineract records it.

    Every changed row gets last_modified_on_utc = a time on the simulated day, so that
    incremental extraction can be exercised by as-of date. Derived columns stay exactly
    consistent: each touched loan is reprocessed from its non-reversed transactions.
    """

    def __init__(self, conn: psycopg.Connection, seed: int, day_loans: int | None = None):
        self.conn = conn
        self.rng = random.Random(seed)
        self.seed = seed
        # a day of a fixed size (benchmarks): exactly this many loans touched, whatever the size of the book
        self.day_loans = day_loans
        self.touched: set[int] = set()
        self.ds = _DateText()
        self.stats: dict[str, int] = {k: 0 for k in (
            "new_clients", "activated_clients", "closed_clients", "client_edits", "new_loans",
            "approved_loans", "disbursed_loans", "repayments", "backdated_repayments", "reversals",
            "closed_loans")}
        with conn.cursor() as cur:
            self.next_id = {}
            for table in ("m_client", "m_loan", "m_loan_repayment_schedule", "m_loan_transaction",
                          "m_loan_officer_assignment_history"):
                cur.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table}")
                self.next_id[table] = cur.fetchone()[0]
            cur.execute("SELECT id FROM m_office o WHERE parent_id IS NOT NULL AND NOT EXISTS "
                        "(SELECT 1 FROM m_office c WHERE c.parent_id = o.id) ORDER BY id")
            self.branches = [r[0] for r in cur.fetchall()]
            cur.execute("SELECT office_id, id FROM m_staff WHERE is_loan_officer AND is_active ORDER BY id")
            self.officers: dict[int, list[int]] = {}
            for office, sid in cur.fetchall():
                self.officers.setdefault(office, []).append(sid)

    def ts(self, day: int) -> str:
        r = self.rng
        return f"{self.ds[day]} {r.randrange(6, 18):02d}:{r.randrange(60):02d}:{r.randrange(60):02d}+00"

    def take_id(self, table: str, n: int = 1) -> int:
        first = self.next_id[table]
        self.next_id[table] += n
        return first

    def pick(self, cur, sql: str, day: int, limit: int, params: tuple = ()) -> list[tuple]:
        """Deterministic 'random' sample: ordered by a hash of the key, the seed and the day."""
        cur.execute(f"{sql} ORDER BY md5(id::text || %s) LIMIT %s", (*params, f"{self.seed}:{day}", limit))
        return cur.fetchall()

    # ---------------------------------------------------------------- one day
    def day(self, day: int) -> None:
        if self.day_loans is not None:
            self.fixed_day(day, self.day_loans)
            return
        with self.conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM m_client")
            n_clients = cur.fetchone()[0]
            scale = max(1, n_clients // 400)
            self.new_clients(cur, day, scale)
            self.activate_pending(cur, day, max(1, scale // 2))
            self.loan_pipeline(cur, day, max(1, scale // 2))
            self.new_loans(cur, day, max(1, scale // 2))
            self.repayments(cur, day, max(3, n_clients // 60))
            self.reversal(cur, day)
            self.close_clients(cur, day, max(1, scale // 3))
            self.edits(cur, day, max(1, scale // 2))

    def fixed_day(self, day: int, loans: int) -> None:
        """A day that touches `loans` loans (fewer only if the book has not that many to touch).

        Why: a benchmark must tell growth with history from growth with the day's work, so the day
        must not grow with the number of clients. The mix of a real day: a few approvals,
        disbursements and repeat loans, one reversal of a recent repayment (a backdated
        correction), repayments for the rest (some with an earlier value date), a few new,
        activated, closed and edited clients.
        """
        self.touched = set()
        few = max(1, loans // 100)

        def left(cap: int) -> int:
            return max(0, min(cap, loans - len(self.touched)))

        with self.conn.cursor() as cur:
            self.new_clients(cur, day, few)
            self.activate_pending(cur, day, few)
            self.loan_pipeline(cur, day, left(few), disburse_count=None)
            self.new_loans(cur, day, left(few))
            if left(1):
                self.reversal(cur, day)
            self.repayments(cur, day, left(loans))
            if left(loans):  # not enough instalments falling due: any loan with an unpaid one
                self.repayments(cur, day, left(loans), due_within_days=None)
            self.close_clients(cur, day, few)
            self.edits(cur, day, few)

    def new_clients(self, cur, day: int, count: int) -> None:
        rng = self.rng
        for _ in range(count):
            cid = self.take_id("m_client")
            office = self.branches[rng.randrange(len(self.branches))]
            officers = self.officers.get(office) or [None]
            officer = officers[rng.randrange(len(officers))]
            female = rng.random() < 0.66
            first = rng.choice(_FIRST_F if female else _FIRST_M)
            last = rng.choice(_LAST)
            active = rng.random() < 0.7
            ts = self.ts(day)
            cur.execute(
                "INSERT INTO m_client (id, account_no, external_id, status_enum, activation_date, "
                "office_joining_date, office_id, staff_id, firstname, lastname, display_name, mobile_no, "
                "gender_cv_id, date_of_birth, submittedon_date, client_type_cv_id, client_classification_cv_id, "
                "legal_form_enum, created_on_utc, created_by, last_modified_by, last_modified_on_utc) "
                "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,1,%s,1,1,%s)",
                (cid, f"{cid:09d}", str(rng.randrange(10**7, 10**8)), CLIENT_ACTIVE if active else CLIENT_PENDING,
                 dt.date.fromordinal(day) if active else None, dt.date.fromordinal(day) if active else None,
                 office, officer, first, last, f"{first} {last}", f"+2547{rng.randrange(10**7, 10**8)}",
                 GENDER_FEMALE if female else GENDER_MALE,
                 dt.date.fromordinal(day - 365 * rng.randrange(18, 60)), dt.date.fromordinal(day),
                 CODE_VALUE_IDS["ClientType"]["Individual"],
                 CODE_VALUE_IDS["ClientClassification"]["Rural" if rng.random() < 0.6 else "Urban"], ts, ts))
            self.stats["new_clients"] += 1

    def activate_pending(self, cur, day: int, count: int) -> None:
        rows = self.pick(cur, "SELECT id FROM m_client WHERE status_enum = 100 AND submittedon_date <= %s",
                         day, count, (dt.date.fromordinal(day),))
        for (cid,) in rows:
            d = dt.date.fromordinal(day)
            cur.execute("UPDATE m_client SET status_enum = 300, activation_date = %s, office_joining_date = %s, "
                        "last_modified_on_utc = %s WHERE id = %s", (d, d, self.ts(day), cid))
            self.stats["activated_clients"] += 1

    def loan_pipeline(self, cur, day: int, count: int, disburse_count: int | None = -1) -> None:
        """Approve submitted loans; disburse approved ones (Fineract regenerates the schedule then).

        disburse_count: -1 = as many as approved (`count`); None = what `count` leaves after the
        approvals (a fixed-size day counts every loan it touches).
        """
        d = dt.date.fromordinal(day)
        approvals = count if disburse_count is not None else max(1, count // 2)
        for (lid,) in self.pick(cur, "SELECT id FROM m_loan WHERE loan_status_id = 100 AND submittedon_date <= %s",
                                day, approvals, (d,)):
            cur.execute("UPDATE m_loan SET loan_status_id = 200, approvedon_date = %s, last_modified_on_utc = %s "
                        "WHERE id = %s", (d, self.ts(day), lid))
            self.touched.add(lid)
            self.stats["approved_loans"] += 1
        if disburse_count is None:
            disburse_count = count - len(self.touched)
        elif disburse_count < 0:
            disburse_count = count
        if disburse_count <= 0:
            return
        for lid, client_id, product_id, principal in self.pick(
                cur, "SELECT id, client_id, product_id, principal_amount FROM m_loan "
                     "WHERE loan_status_id = 200 AND approvedon_date <= %s AND NOT (id = ANY(%s))", day, disburse_count,
                (d, list(self.touched))):
            self.disburse(cur, lid, client_id, PRODUCTS[product_id - 1], int(principal * 100), day)
            self.stats["disbursed_loans"] += 1

    def disburse(self, cur, lid: int, client_id: int, prod: LoanProduct, principal: int, day: int) -> None:
        ts = self.ts(day)
        d = dt.date.fromordinal(day)
        cur.execute("SELECT office_id FROM m_client WHERE id = %s", (client_id,))
        office = cur.fetchone()[0]
        cur.execute("DELETE FROM m_loan_repayment_schedule WHERE loan_id = %s", (lid,))
        dues = due_dates(prod, day)
        prin, intr = schedule_amounts(prod, principal)
        first = self.take_id("m_loan_repayment_schedule", len(dues))
        prev = day
        rows = []
        for k, due in enumerate(dues):
            rows.append((first + k, lid, dt.date.fromordinal(prev), dt.date.fromordinal(due), k + 1,
                         prin[k] / 100, intr[k] / 100, ts, ts))
            prev = due
        cur.executemany(
            "INSERT INTO m_loan_repayment_schedule (id, loan_id, fromdate, duedate, installment, principal_amount, "
            "interest_amount, completed_derived, created_on_utc, created_by, last_modified_by, last_modified_on_utc) "
            "VALUES (%s,%s,%s,%s,%s,round(%s::numeric, 2),round(%s::numeric, 2),false,%s,1,1,%s)", rows)
        tid = self.take_id("m_loan_transaction")
        amount = money(principal)
        cur.execute(
            "INSERT INTO m_loan_transaction (id, loan_id, office_id, is_reversed, transaction_type_enum, "
            "transaction_date, amount, principal_portion_derived, outstanding_loan_balance_derived, "
            "submitted_on_date, manually_adjusted_or_reversed, created_by, last_modified_by, created_on_utc, "
            "last_modified_on_utc) VALUES (%s,%s,%s,false,1,%s,%s,%s,%s,%s,false,1,1,%s,%s)",
            (tid, lid, office, d, amount, amount, amount, d, ts, ts))
        cur.execute(
            "UPDATE m_loan SET loan_status_id = 300, disbursedon_date = %s, expected_disbursedon_date = %s, "
            "expected_firstrepaymenton_date = %s, expected_maturedon_date = %s, maturedon_date = %s, "
            "last_modified_on_utc = %s WHERE id = %s",
            (d, d, dt.date.fromordinal(dues[0]), dt.date.fromordinal(dues[-1]), dt.date.fromordinal(dues[-1]),
             ts, lid))
        self.reprocess(cur, lid, ts)
        self.touched.add(lid)

    def new_loans(self, cur, day: int, count: int) -> None:
        """Repeat borrowers: a new cycle for active clients without an open loan, disbursed today."""
        d = dt.date.fromordinal(day)
        rows = self.pick(
            cur, "SELECT id, staff_id FROM m_client c WHERE status_enum = 300 AND activation_date <= %s AND "
                 "NOT EXISTS (SELECT 1 FROM m_loan l WHERE l.client_id = c.id AND l.loan_status_id IN (100,200,300))",
            day, count, (d,))
        for cid, staff in rows:
            cur.execute("SELECT coalesce(max(loan_counter), 0), max(group_id) FROM m_loan WHERE client_id = %s",
                        (cid,))
            counter, group_id = cur.fetchone()
            prod = PRODUCTS[0] if group_id else PRODUCTS[2]
            cur.execute("SELECT count(*) FROM m_loan WHERE client_id = %s AND product_id = %s", (cid, prod.id))
            product_counter = cur.fetchone()[0] + 1
            principal = max(prod.min_principal, min(prod.max_principal,
                                                    int(prod.principal * (1 + 0.25 * min(counter, 6)) / 50_00) * 50_00))
            lid = self.take_id("m_loan")
            ts = self.ts(day)
            p = principal / 100
            cur.execute(
                "INSERT INTO m_loan (id, account_no, client_id, group_id, product_id, loan_officer_id, "
                "loanpurpose_cv_id, loan_status_id, loan_type_enum, currency_code, currency_digits, "
                "principal_amount_proposed, principal_amount, approved_principal, net_disbursal_amount, "
                "nominal_interest_rate_per_period, interest_period_frequency_enum, annual_nominal_interest_rate, "
                "interest_method_enum, term_frequency, term_period_frequency_enum, repay_every, "
                "repayment_period_frequency_enum, number_of_repayments, amortization_method_enum, submittedon_date, "
                "approvedon_date, expected_disbursedon_date, loan_counter, loan_product_counter, created_on_utc, "
                "created_by, last_modified_by, last_modified_on_utc) VALUES (%s,%s,%s,%s,%s,%s,%s,200,%s,%s,2,"
                "%s,%s,%s,%s,%s,%s,%s,1,%s,%s,1,%s,%s,0,%s,%s,%s,%s,%s,%s,1,1,%s)",
                (lid, f"{lid:09d}", cid, group_id, prod.id, staff,
                 self.rng.choice(list(CODE_VALUE_IDS["LoanPurpose"].values())),
                 LOAN_JLG if group_id else LOAN_INDIVIDUAL, CURRENCY, p, p, p, p, _rate(prod.rate_bp), prod.frequency,
                 _rate(prod.annual_rate_bp), prod.repayments, prod.frequency, prod.frequency, prod.repayments,
                 d, d, d, counter + 1, product_counter, ts, ts))
            if staff is not None:
                hid = self.take_id("m_loan_officer_assignment_history")
                cur.execute("INSERT INTO m_loan_officer_assignment_history (id, loan_id, loan_officer_id, start_date, "
                            "createdby_id, created_date, lastmodified_date, lastmodifiedby_id) "
                            "VALUES (%s,%s,%s,%s,1,%s,%s,1)", (hid, lid, staff, d, ts[:-3], ts[:-3]))
            self.disburse(cur, lid, cid, prod, principal, day)
            self.stats["new_loans"] += 1

    def repayments(self, cur, day: int, count: int, due_within_days: int | None = 3) -> None:
        """Repayments of the oldest due installment; some entered with an earlier (back-dated) value date.

        Loans due within `due_within_days` (None: any loan with an unpaid installment, paid early);
        never a loan already touched today.
        """
        if count <= 0:
            return
        rng = self.rng
        d = dt.date.fromordinal(day)
        due = "AND s.duedate <= %s" if due_within_days is not None else ""
        params = ((d + dt.timedelta(days=due_within_days),) if due_within_days is not None else ()) + (
            list(self.touched),)
        rows = self.pick(
            cur, "SELECT id FROM m_loan l WHERE loan_status_id = 300 AND EXISTS (SELECT 1 FROM "
                 f"m_loan_repayment_schedule s WHERE s.loan_id = l.id AND NOT s.completed_derived {due}) "
                 "AND NOT (id = ANY(%s))",
            day, count, params)
        for (lid,) in rows:
            self.touched.add(lid)
            cur.execute(
                "SELECT principal_amount + interest_amount - coalesce(principal_completed_derived, 0) "
                "- coalesce(interest_completed_derived, 0) FROM m_loan_repayment_schedule "
                "WHERE loan_id = %s AND NOT completed_derived ORDER BY installment LIMIT 1", (lid,))
            due = cur.fetchone()[0]
            cur.execute("SELECT max(transaction_date), (SELECT office_id FROM m_client c JOIN m_loan l "
                        "ON l.client_id = c.id WHERE l.id = %s) FROM m_loan_transaction "
                        "WHERE loan_id = %s AND NOT is_reversed", (lid, lid))
            last_tx, office = cur.fetchone()
            value_day = day
            if rng.random() < 0.3:
                value_day = max(last_tx.toordinal(), day - rng.randrange(1, 6))
                if value_day < day:
                    self.stats["backdated_repayments"] += 1
            amount = int(round(due * 100))
            if rng.random() < 0.15:
                amount = max(1_00, int(amount * 0.6))
            ts = self.ts(day)
            tid = self.take_id("m_loan_transaction")
            cur.execute(
                "INSERT INTO m_loan_transaction (id, loan_id, office_id, is_reversed, transaction_type_enum, "
                "transaction_date, amount, submitted_on_date, manually_adjusted_or_reversed, created_by, "
                "last_modified_by, created_on_utc, last_modified_on_utc) "
                "VALUES (%s,%s,%s,false,2,%s,%s,%s,false,1,1,%s,%s)",
                (tid, lid, office, dt.date.fromordinal(value_day), money(amount), d, ts, ts))
            self.reprocess(cur, lid, ts)
            self.stats["repayments"] += 1

    def reversal(self, cur, day: int) -> None:
        """Reverse the latest repayment of one loan (a teller's mistake found the next day)."""
        d = dt.date.fromordinal(day)
        rows = self.pick(cur, "SELECT id, loan_id FROM m_loan_transaction t WHERE transaction_type_enum = 2 AND "
                              "NOT is_reversed AND transaction_date >= %s AND transaction_date <= %s AND "
                              "EXISTS (SELECT 1 FROM m_loan l WHERE l.id = t.loan_id AND l.loan_status_id IN (300, 600))",
                         day, 1, (d - dt.timedelta(days=10), d))
        for tid, lid in rows:
            self.touched.add(lid)
            ts = self.ts(day)
            cur.execute("UPDATE m_loan_transaction SET is_reversed = true, reversed_on_date = %s, "
                        "manually_adjusted_or_reversed = true, last_modified_on_utc = %s WHERE id = %s",
                        (d, ts, tid))
            self.reprocess(cur, lid, ts)
            self.stats["reversals"] += 1

    def close_clients(self, cur, day: int, count: int) -> None:
        d = dt.date.fromordinal(day)
        rows = self.pick(
            cur, "SELECT id FROM m_client c WHERE status_enum = 300 AND activation_date < %s AND NOT EXISTS "
                 "(SELECT 1 FROM m_loan l WHERE l.client_id = c.id AND l.loan_status_id IN (100, 200, 300))",
            day, count, (d,))
        reasons = list(CODE_VALUE_IDS["ClientClosureReason"].values())
        for (cid,) in rows:
            cur.execute("UPDATE m_client SET status_enum = 600, closedon_date = %s, closure_reason_cv_id = %s, "
                        "last_modified_on_utc = %s WHERE id = %s",
                        (d, reasons[self.rng.randrange(len(reasons))], self.ts(day), cid))
            self.stats["closed_clients"] += 1

    def edits(self, cur, day: int, count: int) -> None:
        """Data corrections: classification fixed, a client moved to another loan officer."""
        rows = self.pick(cur, "SELECT id, office_id FROM m_client WHERE status_enum = 300", day, count)
        for cid, office in rows:
            if self.rng.random() < 0.5:
                cur.execute("UPDATE m_client SET client_classification_cv_id = CASE client_classification_cv_id "
                            "WHEN %s THEN %s ELSE %s END, last_modified_on_utc = %s WHERE id = %s",
                            (CODE_VALUE_IDS["ClientClassification"]["Rural"],
                             CODE_VALUE_IDS["ClientClassification"]["Urban"],
                             CODE_VALUE_IDS["ClientClassification"]["Rural"], self.ts(day), cid))
            else:
                officers = self.officers.get(office) or [None]
                cur.execute("UPDATE m_client SET staff_id = %s, last_modified_on_utc = %s WHERE id = %s",
                            (officers[self.rng.randrange(len(officers))], self.ts(day), cid))
            self.stats["client_edits"] += 1

    # ---------------------------------------------------------------- consistency
    def reprocess(self, cur, lid: int, ts: str) -> None:
        """Re-allocate all non-reversed repayments of a loan (Fineract's reprocessing after a back-dated
        entry or a reversal) and rewrite only the rows whose derived values changed."""
        cur.execute("SELECT id, principal_amount, interest_amount, coalesce(principal_completed_derived, 0), "
                    "coalesce(interest_completed_derived, 0), completed_derived, obligations_met_on_date "
                    "FROM m_loan_repayment_schedule WHERE loan_id = %s ORDER BY installment", (lid,))
        sched = cur.fetchall()
        cur.execute("SELECT id, transaction_type_enum, transaction_date, amount, coalesce(principal_portion_derived, 0), "
                    "coalesce(interest_portion_derived, 0), outstanding_loan_balance_derived FROM m_loan_transaction "
                    "WHERE loan_id = %s AND NOT is_reversed ORDER BY transaction_date, id", (lid,))
        txs = cur.fetchall()
        cents = lambda v: int(round(v * 100))  # noqa: E731 - numeric(19,6) with 2-digit currency
        prin = [cents(r[1]) for r in sched]
        intr = [cents(r[2]) for r in sched]
        n = len(sched)
        pp, ip, met = [0] * n, [0] * n, [None] * n
        disbursed = sum(cents(t[3]) for t in txs if t[1] == 1)
        p_repaid = i_repaid = 0
        cur_k = 0
        tx_updates = []
        for tid, ttype, tdate, amount, old_p, old_i, old_bal in txs:
            if ttype not in (2, 5):
                continue
            amt = cents(amount)
            p_por = i_por = 0
            while amt > 0 and cur_k < n:
                x = min(intr[cur_k] - ip[cur_k], amt)
                ip[cur_k] += x
                i_por += x
                amt -= x
                x = min(prin[cur_k] - pp[cur_k], amt)
                pp[cur_k] += x
                p_por += x
                amt -= x
                if ip[cur_k] == intr[cur_k] and pp[cur_k] == prin[cur_k]:
                    met[cur_k] = tdate
                    cur_k += 1
            # anything beyond the schedule is an overpayment: the demo caps it into principal
            p_por += amt
            p_repaid += p_por
            i_repaid += i_por
            balance = disbursed - p_repaid
            if (p_por, i_por, balance) != (cents(old_p), cents(old_i), cents(old_bal or 0)):
                tx_updates.append((money(p_por) if p_por else None, money(i_por) if i_por else None,
                                   money(balance), ts, tid))
        if tx_updates:
            cur.executemany("UPDATE m_loan_transaction SET principal_portion_derived = %s, interest_portion_derived = %s, "
                            "outstanding_loan_balance_derived = %s, last_modified_on_utc = %s WHERE id = %s", tx_updates)
        s_updates = []
        for k, (sid, _pa, _ia, old_pp, old_ip, old_done, old_met) in enumerate(sched):
            done = ip[k] == intr[k] and pp[k] == prin[k]
            if (pp[k], ip[k], done, met[k]) != (cents(old_pp), cents(old_ip), old_done, old_met):
                s_updates.append((money(pp[k]) if pp[k] else None, money(ip[k]) if ip[k] else None, done, met[k],
                                  ts, sid))
        if s_updates:
            cur.executemany("UPDATE m_loan_repayment_schedule SET principal_completed_derived = %s, "
                            "interest_completed_derived = %s, completed_derived = %s, obligations_met_on_date = %s, "
                            "last_modified_on_utc = %s WHERE id = %s", s_updates)
        charged = sum(intr) if disbursed else 0
        p_out = disbursed - p_repaid
        i_out = charged - i_repaid
        paid_off = disbursed > 0 and p_out <= 0 and i_out <= 0
        closed_on = met[-1] if paid_off and n else None
        cur.execute(
            "UPDATE m_loan SET principal_disbursed_derived = %s, principal_repaid_derived = %s, "
            "principal_outstanding_derived = %s, interest_charged_derived = %s, interest_repaid_derived = %s, "
            "interest_outstanding_derived = %s, total_expected_repayment_derived = %s, total_repayment_derived = %s, "
            "total_outstanding_derived = %s, "
            "loan_status_id = CASE WHEN %s THEN 600 WHEN loan_status_id = 600 THEN 300 ELSE loan_status_id END, "
            "closedon_date = CASE WHEN %s THEN %s::date ELSE NULL END, last_modified_on_utc = %s WHERE id = %s",
            (money(disbursed), money(p_repaid), money(p_out), money(charged), money(i_repaid), money(i_out),
             money(disbursed + charged), money(p_repaid + i_repaid), money(p_out + i_out), paid_off, paid_off,
             closed_on, ts, lid))
        if paid_off:
            self.stats["closed_loans"] += 1


def simulate_days(conn: psycopg.Connection, start: dt.date, days: int, seed: int,
                  day_loans: int | None = None) -> dict[str, int]:
    """Simulate `days` days of activity from `start` (inclusive) on a demo database; returns counts.

    Deterministic for a given database state and seed. Commits after each day (as Fineract would).
    day_loans: each day touches exactly that many loans (benchmarks), instead of an activity that
    grows with the number of clients.
    """
    if day_loans is not None and day_loans < 1:
        raise ValueError(f"day_loans must be at least 1, got {day_loans}")
    sim = _Simulator(conn, seed, day_loans)
    first = start.toordinal()
    for day in range(first, first + days):
        sim.day(day)
        conn.commit()
    log.info("simulated %d day(s) from %s: %s", days, start, sim.stats)
    stats = dict(sim.stats)
    if day_loans is not None:
        stats["touched_loans_last_day"] = len(sim.touched)
    return stats


# --------------------------------------------------------------------------------------------
# MariaDB / MySQL copy of a demo database


def _pg_export_expr(column: str, pg_type: str) -> str:
    """How a PostgreSQL value is written for MySQL: booleans as 0/1, timestamps as naive UTC."""
    if pg_type == "boolean":
        return f"{column}::int"
    if pg_type == "timestamptz":
        return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
    if pg_type == "timestamp":
        return f"to_char({column}, 'YYYY-MM-DD HH24:MI:SS.US')"
    return column


def copy_to_mysql(pg_conn: psycopg.Connection, mysql_conn, batch_rows: int = 5000) -> dict[str, int]:
    """Copy the demo Fineract tables of `pg_conn` into the current database of a PyMySQL connection.

    The MySQL tables get Fineract's MySQL types (tinyint(1) booleans, datetime(6) UTC timestamps,
    decimal(19,6)). Uses LOAD DATA LOCAL INFILE when the connection allows it (PyMySQL
    `local_infile=True` and server local_infile=ON), else batched INSERTs. Returns rows per table.
    """
    counts: dict[str, int] = {}
    with mysql_conn.cursor() as mcur:
        mcur.execute("SET FOREIGN_KEY_CHECKS = 0")
        for table in reversed(S.TABLE_ORDER):
            mcur.execute(f"DROP TABLE IF EXISTS `{table}`")
        for table in S.TABLE_ORDER:
            mcur.execute(S.mysql_create_table(table))
            counts[table] = _copy_table_to_mysql(pg_conn, mcur, table, batch_rows)
        mcur.execute("SET FOREIGN_KEY_CHECKS = 1")
    mysql_conn.commit()
    pg_conn.commit()
    log.info("copied demo MIS to MySQL: %s", counts)
    return counts


def _copy_table_to_mysql(pg_conn: psycopg.Connection, mcur, table: str, batch_rows: int) -> int:
    cols = S.COLUMNS[table]
    names = [c[0] for c in cols]
    select = ", ".join(_pg_export_expr(name, pg_type) for name, pg_type, _ in cols)
    col_list = ", ".join(f"`{n}`" for n in names)
    with tempfile.NamedTemporaryFile("wb", suffix=f"_{table}.tsv", delete=False) as tmp:
        path = tmp.name
        with pg_conn.cursor() as cur:
            # PostgreSQL's text COPY format (tab, \N, backslash escapes) is LOAD DATA's default format
            with cur.copy(f"COPY (SELECT {select} FROM {table} ORDER BY 1) TO STDOUT") as cp:
                for chunk in cp:
                    tmp.write(chunk)
    try:
        try:
            rows = mcur.execute(
                f"LOAD DATA LOCAL INFILE %s INTO TABLE `{table}` CHARACTER SET utf8mb4 "
                f"FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({col_list})", (path,))
            return rows
        except Exception as exc:  # noqa: BLE001 - local_infile disabled: fall back to INSERT batches
            log.info("LOAD DATA LOCAL not available (%s); using batched INSERTs for %s", exc, table)
        placeholders = ", ".join(["%s"] * len(names))
        sql = f"INSERT INTO `{table}` ({col_list}) VALUES ({placeholders})"
        total = 0
        with pg_conn.cursor(name=f"export_{table}") as cur:
            cur.itersize = batch_rows
            cur.execute(f"SELECT {select} FROM {table} ORDER BY 1")
            while True:
                batch = cur.fetchmany(batch_rows)
                if not batch:
                    break
                mcur.executemany(sql, batch)
                total += len(batch)
        return total
    finally:
        os.unlink(path)
