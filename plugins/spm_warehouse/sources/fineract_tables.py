"""The raw_mis contract: which Fineract tables and columns the warehouse reads, and their types.

Why a module of its own: it is the one source of truth for raw_mis. The
extraction (fineract.py) and the loader (load.py) read it, and dbt's sources
YAML (models/staging/fineract/_fineract__sources.yml) is checked against it by
the tests, so a column is added in one place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CURSOR = "last_modified_on_utc"


@dataclass(frozen=True)
class TableSpec:
    """One Fineract table as the warehouse reads it."""

    name: str
    key: tuple[str, ...]
    columns: tuple[tuple[str, str], ...]  # (column, raw_mis PostgreSQL type), contract order
    cursor: str | None = None             # incremental cursor column, None = copied whole
    required: bool = True                 # False: "where present" tables, skipped when absent

    @property
    def column_names(self) -> list[str]:
        return [c for c, _ in self.columns]


def _cols(text: str) -> tuple[tuple[str, str], ...]:
    """'id bigint, name varchar, ...' -> ((id, bigint), (name, varchar), ...) (contract notation)."""
    out = []
    for part in re.split(r",(?![^(]*\))", text):  # commas outside numeric(19,6)
        part = part.strip()
        if not part:
            continue
        name, typ = part.split(None, 1)
        typ = typ.strip()
        out.append((name, "integer" if typ == "int" else typ))
    return tuple(out)


# The raw_mis contract: real Fineract column names, raw PostgreSQL types (dbt's sources YAML is
# checked against it by tests/unit/sources/test_fineract_tables.py).
# Client names, middle names, display names, phone numbers, e-mails and external (national) ids are
# deliberately absent: no indicator needs them.
TABLES: tuple[TableSpec, ...] = (
    TableSpec("m_office", ("id",), _cols(
        "id bigint, parent_id bigint, hierarchy varchar, name varchar, opening_date date, external_id varchar")),
    TableSpec("m_staff", ("id",), _cols(
        "id bigint, office_id bigint, display_name varchar, is_loan_officer boolean, is_active boolean, "
        "joining_date date")),
    TableSpec("m_code", ("id",), _cols("id bigint, code_name varchar, is_system_defined boolean")),
    TableSpec("m_code_value", ("id",), _cols(
        "id bigint, code_id bigint, code_value varchar, code_description varchar, order_position int, "
        "is_active boolean")),
    TableSpec("m_client", ("id",), _cols(
        "id bigint, account_no varchar, status_enum int, sub_status bigint, office_id bigint, staff_id bigint, "
        "gender_cv_id bigint, date_of_birth date, client_type_cv_id bigint, client_classification_cv_id bigint, "
        "legal_form_enum int, submittedon_date date, activation_date date, office_joining_date date, "
        "closedon_date date, closure_reason_cv_id bigint, rejectedon_date date, withdrawn_on_date date, "
        "reactivated_on_date date, created_on_utc timestamptz, last_modified_on_utc timestamptz"), CURSOR),
    TableSpec("m_product_loan", ("id",), _cols(
        "id bigint, short_name varchar, name varchar, currency_code varchar, principal_amount numeric(19,6), "
        "nominal_interest_rate_per_period numeric(19,6), annual_nominal_interest_rate numeric(19,6), "
        "repay_every int, repayment_period_frequency_enum int, number_of_repayments int, start_date date, "
        "close_date date")),
    TableSpec("m_loan", ("id",), _cols(
        "id bigint, account_no varchar, client_id bigint, group_id bigint, product_id bigint, "
        "loan_officer_id bigint, loanpurpose_cv_id bigint, loan_status_id int, loan_type_enum int, "
        "currency_code varchar, principal_amount_proposed numeric(19,6), principal_amount numeric(19,6), "
        "approved_principal numeric(19,6), annual_nominal_interest_rate numeric(19,6), term_frequency int, "
        "term_period_frequency_enum int, repay_every int, repayment_period_frequency_enum int, "
        "number_of_repayments int, submittedon_date date, approvedon_date date, expected_disbursedon_date date, "
        "disbursedon_date date, expected_maturedon_date date, maturedon_date date, closedon_date date, "
        "rejectedon_date date, withdrawnon_date date, writtenoffon_date date, loan_counter int, "
        "loan_product_counter int, principal_disbursed_derived numeric(19,6), "
        "principal_repaid_derived numeric(19,6), principal_writtenoff_derived numeric(19,6), "
        "principal_outstanding_derived numeric(19,6), interest_charged_derived numeric(19,6), "
        "interest_repaid_derived numeric(19,6), interest_outstanding_derived numeric(19,6), "
        "total_outstanding_derived numeric(19,6), created_on_utc timestamptz, "
        "last_modified_on_utc timestamptz"), CURSOR),
    TableSpec("m_loan_repayment_schedule", ("id",), _cols(
        "id bigint, loan_id bigint, fromdate date, duedate date, installment int, principal_amount numeric(19,6), "
        "principal_completed_derived numeric(19,6), principal_writtenoff_derived numeric(19,6), "
        "interest_amount numeric(19,6), interest_completed_derived numeric(19,6), completed_derived boolean, "
        "obligations_met_on_date date, created_on_utc timestamptz, last_modified_on_utc timestamptz"), CURSOR),
    TableSpec("m_loan_transaction", ("id",), _cols(
        "id bigint, loan_id bigint, office_id bigint, is_reversed boolean, transaction_type_enum int, "
        "transaction_date date, amount numeric(19,6), principal_portion_derived numeric(19,6), "
        "interest_portion_derived numeric(19,6), fee_charges_portion_derived numeric(19,6), "
        "penalty_charges_portion_derived numeric(19,6), overpayment_portion_derived numeric(19,6), "
        "outstanding_loan_balance_derived numeric(19,6), submitted_on_date date, reversed_on_date date, "
        "created_on_utc timestamptz, last_modified_on_utc timestamptz"), CURSOR),
    TableSpec("m_loan_officer_assignment_history", ("id",), _cols(
        "id bigint, loan_id bigint, loan_officer_id bigint, start_date date, end_date date"), required=False),
    TableSpec("m_group", ("id",), _cols(
        "id bigint, office_id bigint, staff_id bigint, parent_id bigint, level_id int, status_enum int, "
        "activation_date date, closedon_date date, display_name varchar"), required=False),
    TableSpec("m_group_client", ("group_id", "client_id"), _cols("group_id bigint, client_id bigint"),
              required=False),
    TableSpec("m_savings_product", ("id",), _cols(
        "id bigint, name varchar, short_name varchar, currency_code varchar, "
        "nominal_annual_interest_rate numeric(19,6)"), required=False),
    TableSpec("m_savings_account", ("id",), _cols(
        "id bigint, account_no varchar, client_id bigint, group_id bigint, product_id bigint, "
        "field_officer_id bigint, status_enum int, activatedon_date date, closedon_date date, "
        "account_balance_derived numeric(19,6), created_on_utc timestamptz, last_modified_on_utc timestamptz"),
              CURSOR, required=False),
    # ---- Fineract's SPM survey module (a client's "Surveys" in the Mifos X web app), issue 14 part 4.
    # Columns and types as Fineract's Liquibase changelogs create them (tenant/parts/0001_initial_schema,
    # 0023: m_surveys.valid_from/valid_to are dates; 0117: created_on is datetime(6)). Optional: many
    # MFIs never use the module. None has an audit cursor and the module only adds rows, so each is read
    # whole every night. Left out: free-text descriptions and m_survey_scorecards.user_id (app user).
    TableSpec("m_surveys", ("id",), _cols(
        "id bigint, a_key varchar, a_name varchar, country_code varchar, valid_from date, valid_to date"),
              required=False),
    TableSpec("m_survey_components", ("id",), _cols(
        "id bigint, survey_id bigint, a_key varchar, a_text varchar, sequence_no int"), required=False),
    TableSpec("m_survey_questions", ("id",), _cols(
        "id bigint, survey_id bigint, component_key varchar, a_key varchar, a_text varchar, sequence_no int"),
              required=False),
    TableSpec("m_survey_responses", ("id",), _cols(
        "id bigint, question_id bigint, a_text varchar, a_value int, sequence_no int"), required=False),
    TableSpec("m_survey_lookup_tables", ("id",), _cols(
        "id bigint, survey_id bigint, a_key varchar, description int, value_from int, value_to int, "
        "score numeric(5,2)"), required=False),
    TableSpec("m_survey_scorecards", ("id",), _cols(
        "id bigint, survey_id bigint, question_id bigint, response_id bigint, client_id bigint, "
        "created_on timestamp, a_value int"), required=False),
)

TABLES_BY_NAME = {t.name: t for t in TABLES}

# Personal data a Fineract database holds that must never reach the warehouse (asserted by the tests).
PII_COLUMNS = {
    "m_client": ("firstname", "middlename", "lastname", "fullname", "display_name", "mobile_no",
                 "email_address", "external_id"),
    "m_staff": ("firstname", "lastname", "mobile_no", "email_address", "external_id"),
}
