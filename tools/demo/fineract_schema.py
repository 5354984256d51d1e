"""DDL of the demo Fineract database, for PostgreSQL and MySQL/MariaDB.

Why our own DDL: the extraction must be tested against Apache Fineract's real
table and column names and types (checked against Fineract's public pg_dump,
apache/fineract-business-intelligence warehouse/seed/schema_fineract_source.sql),
but a full Fineract schema has hundreds of tables and columns we never read.
We declare the tables the warehouse reads, with the columns the warehouse needs
plus the personal-data columns a real Fineract has (names, phone, e-mail,
external ids) so that tests can prove the extraction does not copy them, and a
few operational columns (created_by, version, ...) so the source is not
suspiciously tidy.

Column types are written once in PostgreSQL form and translated for MySQL the
way Fineract's own MySQL schema does it: boolean -> tinyint(1) (BIT in some
versions; tinyint is what MariaDB installs use), timestamptz -> datetime(6)
holding UTC, numeric -> decimal.
"""

from __future__ import annotations

# table -> list of (column, PostgreSQL type, constraint/default clause)
COLUMNS: dict[str, list[tuple[str, str, str]]] = {
    "m_office": [
        ("id", "bigint", "NOT NULL"),
        ("parent_id", "bigint", ""),
        ("hierarchy", "varchar(100)", ""),
        ("external_id", "varchar(100)", ""),
        ("name", "varchar(50)", "NOT NULL"),
        ("opening_date", "date", "NOT NULL"),
    ],
    "m_staff": [
        ("id", "bigint", "NOT NULL"),
        ("is_loan_officer", "boolean", "NOT NULL DEFAULT false"),
        ("office_id", "bigint", ""),
        ("firstname", "varchar(50)", ""),
        ("lastname", "varchar(50)", ""),
        ("display_name", "varchar(102)", "NOT NULL"),
        ("mobile_no", "varchar(50)", ""),
        ("external_id", "varchar(100)", ""),
        ("organisational_role_enum", "smallint", ""),
        ("organisational_role_parent_staff_id", "bigint", ""),
        ("is_active", "boolean", "NOT NULL DEFAULT true"),
        ("joining_date", "date", ""),
        ("image_id", "bigint", ""),
        ("email_address", "varchar(150)", ""),
    ],
    "m_code": [
        ("id", "bigint", "NOT NULL"),
        ("code_name", "varchar(100)", ""),
        ("is_system_defined", "boolean", "NOT NULL DEFAULT false"),
    ],
    "m_code_value": [
        ("id", "bigint", "NOT NULL"),
        ("code_id", "integer", "NOT NULL"),
        ("code_value", "varchar(100)", ""),
        ("code_description", "varchar(500)", ""),
        ("order_position", "integer", "NOT NULL DEFAULT 0"),
        ("code_score", "integer", ""),
        ("is_active", "boolean", "NOT NULL DEFAULT true"),
        ("is_mandatory", "boolean", "DEFAULT false"),
    ],
    "m_client": [
        ("id", "bigint", "NOT NULL"),
        ("account_no", "varchar(20)", "NOT NULL"),
        ("external_id", "varchar(100)", ""),
        ("status_enum", "integer", "NOT NULL DEFAULT 300"),
        ("sub_status", "integer", ""),
        ("activation_date", "date", ""),
        ("office_joining_date", "date", ""),
        ("office_id", "bigint", "NOT NULL"),
        ("transfer_to_office_id", "bigint", ""),
        ("staff_id", "bigint", ""),
        ("firstname", "varchar(50)", ""),
        ("middlename", "varchar(50)", ""),
        ("lastname", "varchar(50)", ""),
        ("fullname", "varchar(160)", ""),
        ("display_name", "varchar(160)", "NOT NULL"),
        ("mobile_no", "varchar(50)", ""),
        ("is_staff", "boolean", "NOT NULL DEFAULT false"),
        ("gender_cv_id", "integer", ""),
        ("date_of_birth", "date", ""),
        ("image_id", "bigint", ""),
        ("closure_reason_cv_id", "integer", ""),
        ("closedon_date", "date", ""),
        ("submittedon_date", "date", ""),
        ("client_type_cv_id", "integer", ""),
        ("client_classification_cv_id", "integer", ""),
        ("reject_reason_cv_id", "integer", ""),
        ("rejectedon_date", "date", ""),
        ("withdraw_reason_cv_id", "integer", ""),
        ("withdrawn_on_date", "date", ""),
        ("reactivated_on_date", "date", ""),
        ("legal_form_enum", "integer", ""),
        ("email_address", "varchar(150)", ""),
        ("created_on_utc", "timestamptz", "NOT NULL"),
        ("created_by", "bigint", "NOT NULL"),
        ("last_modified_by", "bigint", "NOT NULL"),
        ("last_modified_on_utc", "timestamptz", "NOT NULL"),
    ],
    "m_product_loan": [
        ("id", "bigint", "NOT NULL"),
        ("short_name", "varchar(4)", "NOT NULL"),
        ("currency_code", "varchar(3)", "NOT NULL"),
        ("currency_digits", "smallint", "NOT NULL"),
        ("currency_multiplesof", "smallint", ""),
        ("principal_amount", "numeric(19,6)", ""),
        ("min_principal_amount", "numeric(19,6)", ""),
        ("max_principal_amount", "numeric(19,6)", ""),
        ("name", "varchar(100)", "NOT NULL"),
        ("description", "varchar(500)", ""),
        ("nominal_interest_rate_per_period", "numeric(19,6)", ""),
        ("interest_period_frequency_enum", "smallint", ""),
        ("annual_nominal_interest_rate", "numeric(19,6)", ""),
        ("interest_method_enum", "smallint", "NOT NULL"),
        ("repay_every", "smallint", "NOT NULL"),
        ("repayment_period_frequency_enum", "smallint", "NOT NULL"),
        ("number_of_repayments", "smallint", "NOT NULL"),
        ("amortization_method_enum", "smallint", "NOT NULL"),
        ("accounting_type", "smallint", "NOT NULL"),
        ("include_in_borrower_cycle", "boolean", "NOT NULL DEFAULT false"),
        ("start_date", "date", ""),
        ("close_date", "date", ""),
        ("loan_transaction_strategy_code", "varchar(100)", "NOT NULL DEFAULT '-'"),
        ("external_id", "varchar(100)", ""),
    ],
    "m_loan": [
        ("id", "bigint", "NOT NULL"),
        ("account_no", "varchar(20)", "NOT NULL"),
        ("external_id", "varchar(100)", ""),
        ("client_id", "bigint", ""),
        ("group_id", "bigint", ""),
        ("glim_id", "bigint", ""),
        ("product_id", "bigint", ""),
        ("fund_id", "bigint", ""),
        ("loan_officer_id", "bigint", ""),
        ("loanpurpose_cv_id", "integer", ""),
        ("loan_status_id", "smallint", "NOT NULL"),
        ("loan_type_enum", "smallint", "NOT NULL"),
        ("currency_code", "varchar(3)", "NOT NULL"),
        ("currency_digits", "smallint", "NOT NULL"),
        ("principal_amount_proposed", "numeric(19,6)", "NOT NULL"),
        ("principal_amount", "numeric(19,6)", "NOT NULL"),
        ("approved_principal", "numeric(19,6)", "NOT NULL"),
        ("net_disbursal_amount", "numeric(19,6)", "NOT NULL"),
        ("nominal_interest_rate_per_period", "numeric(19,6)", ""),
        ("interest_period_frequency_enum", "smallint", ""),
        ("annual_nominal_interest_rate", "numeric(19,6)", ""),
        ("interest_method_enum", "smallint", "NOT NULL"),
        ("term_frequency", "smallint", "NOT NULL DEFAULT 0"),
        ("term_period_frequency_enum", "smallint", "NOT NULL DEFAULT 2"),
        ("repay_every", "smallint", "NOT NULL"),
        ("repayment_period_frequency_enum", "smallint", "NOT NULL"),
        ("number_of_repayments", "smallint", "NOT NULL"),
        ("amortization_method_enum", "smallint", "NOT NULL"),
        ("submittedon_date", "date", ""),
        ("approvedon_date", "date", ""),
        ("expected_disbursedon_date", "date", ""),
        ("expected_firstrepaymenton_date", "date", ""),
        ("disbursedon_date", "date", ""),
        ("expected_maturedon_date", "date", ""),
        ("maturedon_date", "date", ""),
        ("closedon_date", "date", ""),
        ("principal_disbursed_derived", "numeric(19,6)", "NOT NULL DEFAULT 0"),
        ("principal_repaid_derived", "numeric(19,6)", "NOT NULL DEFAULT 0"),
        ("principal_writtenoff_derived", "numeric(19,6)", "NOT NULL DEFAULT 0"),
        ("principal_outstanding_derived", "numeric(19,6)", "NOT NULL DEFAULT 0"),
        ("interest_charged_derived", "numeric(19,6)", "NOT NULL DEFAULT 0"),
        ("interest_repaid_derived", "numeric(19,6)", "NOT NULL DEFAULT 0"),
        ("interest_waived_derived", "numeric(19,6)", "NOT NULL DEFAULT 0"),
        ("interest_writtenoff_derived", "numeric(19,6)", "NOT NULL DEFAULT 0"),
        ("interest_outstanding_derived", "numeric(19,6)", "NOT NULL DEFAULT 0"),
        ("fee_charges_charged_derived", "numeric(19,6)", "NOT NULL DEFAULT 0"),
        ("fee_charges_repaid_derived", "numeric(19,6)", "NOT NULL DEFAULT 0"),
        ("fee_charges_outstanding_derived", "numeric(19,6)", "NOT NULL DEFAULT 0"),
        ("penalty_charges_charged_derived", "numeric(19,6)", "NOT NULL DEFAULT 0"),
        ("penalty_charges_outstanding_derived", "numeric(19,6)", "NOT NULL DEFAULT 0"),
        ("total_expected_repayment_derived", "numeric(19,6)", "NOT NULL DEFAULT 0"),
        ("total_repayment_derived", "numeric(19,6)", "NOT NULL DEFAULT 0"),
        ("total_writtenoff_derived", "numeric(19,6)", "NOT NULL DEFAULT 0"),
        ("total_outstanding_derived", "numeric(19,6)", "NOT NULL DEFAULT 0"),
        ("rejectedon_date", "date", ""),
        ("withdrawnon_date", "date", ""),
        ("writtenoffon_date", "date", ""),
        ("loan_counter", "smallint", ""),
        ("loan_product_counter", "smallint", ""),
        ("is_npa", "boolean", "NOT NULL DEFAULT false"),
        ("version", "integer", "NOT NULL DEFAULT 1"),
        ("created_on_utc", "timestamptz", "NOT NULL"),
        ("created_by", "bigint", "NOT NULL"),
        ("last_modified_by", "bigint", "NOT NULL"),
        ("last_modified_on_utc", "timestamptz", "NOT NULL"),
    ],
    "m_loan_repayment_schedule": [
        ("id", "bigint", "NOT NULL"),
        ("loan_id", "bigint", "NOT NULL"),
        ("fromdate", "date", ""),
        ("duedate", "date", "NOT NULL"),
        ("installment", "smallint", "NOT NULL"),
        ("principal_amount", "numeric(19,6)", ""),
        ("principal_completed_derived", "numeric(19,6)", ""),
        ("principal_writtenoff_derived", "numeric(19,6)", ""),
        ("interest_amount", "numeric(19,6)", ""),
        ("interest_completed_derived", "numeric(19,6)", ""),
        ("interest_writtenoff_derived", "numeric(19,6)", ""),
        ("interest_waived_derived", "numeric(19,6)", ""),
        ("fee_charges_amount", "numeric(19,6)", ""),
        ("penalty_charges_amount", "numeric(19,6)", ""),
        ("completed_derived", "boolean", "NOT NULL DEFAULT false"),
        ("obligations_met_on_date", "date", ""),
        ("is_re_aged", "boolean", "NOT NULL DEFAULT false"),
        ("created_on_utc", "timestamptz", "NOT NULL"),
        ("created_by", "bigint", "NOT NULL"),
        ("last_modified_by", "bigint", "NOT NULL"),
        ("last_modified_on_utc", "timestamptz", "NOT NULL"),
    ],
    "m_loan_transaction": [
        ("id", "bigint", "NOT NULL"),
        ("loan_id", "bigint", "NOT NULL"),
        ("office_id", "bigint", "NOT NULL"),
        ("payment_detail_id", "bigint", ""),
        ("is_reversed", "boolean", "NOT NULL"),
        ("external_id", "varchar(100)", ""),
        ("transaction_type_enum", "smallint", "NOT NULL"),
        ("transaction_date", "date", "NOT NULL"),
        ("amount", "numeric(19,6)", "NOT NULL"),
        ("principal_portion_derived", "numeric(19,6)", ""),
        ("interest_portion_derived", "numeric(19,6)", ""),
        ("fee_charges_portion_derived", "numeric(19,6)", ""),
        ("penalty_charges_portion_derived", "numeric(19,6)", ""),
        ("overpayment_portion_derived", "numeric(19,6)", ""),
        ("outstanding_loan_balance_derived", "numeric(19,6)", ""),
        ("submitted_on_date", "date", "NOT NULL"),
        ("manually_adjusted_or_reversed", "boolean", "DEFAULT false"),
        ("created_by", "bigint", "NOT NULL"),
        ("last_modified_by", "bigint", "NOT NULL"),
        ("created_on_utc", "timestamptz", "NOT NULL"),
        ("last_modified_on_utc", "timestamptz", "NOT NULL"),
        ("reversed_on_date", "date", ""),
        ("version", "bigint", "NOT NULL DEFAULT 1"),
    ],
    "m_loan_officer_assignment_history": [
        ("id", "bigint", "NOT NULL"),
        ("loan_id", "bigint", "NOT NULL"),
        ("loan_officer_id", "bigint", ""),
        ("start_date", "date", "NOT NULL"),
        ("end_date", "date", ""),
        ("createdby_id", "bigint", ""),
        ("created_date", "timestamp", ""),
        ("lastmodified_date", "timestamp", ""),
        ("lastmodifiedby_id", "bigint", ""),
    ],
    "m_group": [
        ("id", "bigint", "NOT NULL"),
        ("external_id", "varchar(100)", ""),
        ("status_enum", "integer", "NOT NULL DEFAULT 300"),
        ("activation_date", "date", ""),
        ("office_id", "bigint", "NOT NULL"),
        ("staff_id", "bigint", ""),
        ("parent_id", "bigint", ""),
        ("level_id", "integer", "NOT NULL"),
        ("display_name", "varchar(100)", "NOT NULL"),
        ("hierarchy", "varchar(100)", ""),
        ("closure_reason_cv_id", "integer", ""),
        ("closedon_date", "date", ""),
        ("submittedon_date", "date", ""),
        ("account_no", "varchar(20)", "NOT NULL"),
    ],
    "m_group_client": [
        ("group_id", "bigint", "NOT NULL"),
        ("client_id", "bigint", "NOT NULL"),
    ],
    "m_savings_product": [
        ("id", "bigint", "NOT NULL"),
        ("name", "varchar(100)", "NOT NULL"),
        ("short_name", "varchar(4)", "NOT NULL"),
        ("description", "varchar(500)", ""),
        ("deposit_type_enum", "smallint", "NOT NULL DEFAULT 100"),
        ("currency_code", "varchar(3)", "NOT NULL"),
        ("currency_digits", "smallint", "NOT NULL"),
        ("nominal_annual_interest_rate", "numeric(19,6)", "NOT NULL"),
        ("interest_compounding_period_enum", "smallint", "NOT NULL"),
        ("interest_posting_period_enum", "smallint", "NOT NULL DEFAULT 4"),
        ("interest_calculation_type_enum", "smallint", "NOT NULL"),
        ("interest_calculation_days_in_year_type_enum", "smallint", "NOT NULL"),
        ("accounting_type", "smallint", "NOT NULL"),
    ],
    "m_savings_account": [
        ("id", "bigint", "NOT NULL"),
        ("account_no", "varchar(20)", "NOT NULL"),
        ("external_id", "varchar(100)", ""),
        ("client_id", "bigint", ""),
        ("group_id", "bigint", ""),
        ("product_id", "bigint", ""),
        ("field_officer_id", "bigint", ""),
        ("status_enum", "smallint", "NOT NULL DEFAULT 300"),
        ("account_type_enum", "smallint", "NOT NULL DEFAULT 1"),
        ("deposit_type_enum", "smallint", "NOT NULL DEFAULT 100"),
        ("submittedon_date", "date", "NOT NULL"),
        ("approvedon_date", "date", ""),
        ("activatedon_date", "date", ""),
        ("closedon_date", "date", ""),
        ("currency_code", "varchar(3)", "NOT NULL"),
        ("currency_digits", "smallint", "NOT NULL"),
        ("nominal_annual_interest_rate", "numeric(19,6)", "NOT NULL"),
        ("account_balance_derived", "numeric(19,6)", "NOT NULL DEFAULT 0"),
        ("total_deposits_derived", "numeric(19,6)", ""),
        ("total_withdrawals_derived", "numeric(19,6)", ""),
        ("created_on_utc", "timestamptz", ""),
        ("created_by", "bigint", ""),
        ("last_modified_by", "bigint", ""),
        ("last_modified_on_utc", "timestamptz", ""),
    ],
}

PRIMARY_KEYS: dict[str, tuple[str, ...]] = {t: ("id",) for t in COLUMNS}
PRIMARY_KEYS["m_group_client"] = ("group_id", "client_id")

# Secondary indexes a real Fineract has on the columns we filter or join on.
INDEXES: dict[str, list[tuple[str, ...]]] = {
    "m_client": [("office_id",), ("last_modified_on_utc",)],
    "m_loan": [("client_id",), ("product_id",), ("loan_status_id",), ("last_modified_on_utc",)],
    "m_loan_repayment_schedule": [("loan_id",), ("last_modified_on_utc",)],
    "m_loan_transaction": [("loan_id",), ("office_id",), ("last_modified_on_utc",)],
    "m_loan_officer_assignment_history": [("loan_id",)],
    "m_savings_account": [("client_id",), ("last_modified_on_utc",)],
}

UNIQUE: dict[str, list[tuple[str, ...]]] = {
    "m_client": [("account_no",)],
    "m_loan": [("account_no",)],
    "m_office": [("name",)],
    "m_product_loan": [("short_name",)],
}

TABLE_ORDER = list(COLUMNS)


def column_names(table: str) -> list[str]:
    return [c[0] for c in COLUMNS[table]]


def pg_create_table(table: str) -> str:
    """CREATE TABLE without keys: keys and indexes are added after the bulk load (much faster)."""
    cols = ",\n    ".join(f"{n} {t} {extra}".rstrip() for n, t, extra in COLUMNS[table])
    return f"CREATE TABLE {table} (\n    {cols}\n)"


def pg_constraints(table: str) -> list[str]:
    stmts = [f"ALTER TABLE {table} ADD PRIMARY KEY ({', '.join(PRIMARY_KEYS[table])})"]
    for cols in UNIQUE.get(table, []):
        stmts.append(f"ALTER TABLE {table} ADD UNIQUE ({', '.join(cols)})")
    for cols in INDEXES.get(table, []):
        stmts.append(f"CREATE INDEX ON {table} ({', '.join(cols)})")
    return stmts


def mysql_type(pg_type: str) -> str:
    """Fineract's MySQL spelling of a PostgreSQL type."""
    if pg_type == "boolean":
        return "tinyint(1)"
    if pg_type in ("timestamptz", "timestamp"):
        return "datetime(6)"
    if pg_type.startswith("numeric"):
        return "decimal" + pg_type[len("numeric"):]
    if pg_type == "integer":
        return "int"
    return pg_type  # bigint, smallint, date, varchar(n), text


def mysql_create_table(table: str) -> str:
    parts = []
    for name, pg_type, extra in COLUMNS[table]:
        clause = extra.replace("DEFAULT false", "DEFAULT 0").replace("DEFAULT true", "DEFAULT 1")
        parts.append(f"`{name}` {mysql_type(pg_type)} {clause}".rstrip())
    parts.append(f"PRIMARY KEY ({', '.join('`' + c + '`' for c in PRIMARY_KEYS[table])})")
    for cols in UNIQUE.get(table, []):
        parts.append(f"UNIQUE KEY ({', '.join('`' + c + '`' for c in cols)})")
    for cols in INDEXES.get(table, []):
        parts.append(f"KEY ({', '.join('`' + c + '`' for c in cols)})")
    body = ",\n    ".join(parts)
    return f"CREATE TABLE `{table}` (\n    {body}\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
