"""Stand-ins for the project's dbt macros, for sqlfluff's jinja templater only.

sqlfluff lints the models without a database (templater jinja, not dbt): the
project's macros need dbt's runtime (return(), run_query, adapter, execute), so
.sqlfluff loads this package (library_path) instead of macros/. Each function
has the macro's name and arguments and returns SQL of the same shape as the
real macro's output (a date literal, an expression, a select), which is all a
linter needs. dbt never reads this folder. Add a stand-in here when a model
calls a new macro (sqlfluff reports it as an undefined variable).
"""

AS_OF = "date '2024-06-30'"
CUTOFF = "(timestamp '2024-07-01 00:00:00' at time zone 'UTC')"

# macros/incremental/core_as_of.sql
def core_as_of_string():
    return "2024-06-30"


def core_as_of_date():
    return AS_OF


def core_as_of_month():
    return f"(date_trunc('month', {AS_OF})::date)"


def core_knowledge_cutoff():
    return CUTOFF


def core_known_at_cutoff(created_col):
    return f"({created_col} is null or {created_col} < {CUTOFF})"


def core_period_month(date_col):
    return f"(date_trunc('month', {date_col})::date)"


def core_period_end(month_col):
    return f"least(({month_col} + interval '1 month' - interval '1 day')::date, {AS_OF})"


def core_date_key(date_col):
    return f"coalesce(to_char({date_col}, 'YYYYMMDD')::int, -1)"


# macros/incremental/core_session.sql (hooks: never part of the linted SQL)
def core_session_settings(nested_loops=True, merge_joins=True):
    return (["set local jit = off", "set local work_mem = '64MB'"] + ([] if nested_loops else ["set local enable_nestloop = off"])
            + ([] if merge_joins else ["set local enable_mergejoin = off"]))


def core_analyze_stale(schema_name):
    return "select 1"


def core_index(columns, unique=False):
    return "select 1"


# macros/incremental/core_incremental_state.sql and core_incremental_marts.sql:
# no state (a first build), so models render their full-build branch.
def core_existing_relation(relation):
    return None


def core_incremental_state(relation):
    return None


def core_relation_lacks_column(relation, column):
    return False


def core_balance_month_full_build(relation):
    return True


def core_loan_chunk_bounds():
    return []


def core_loan_balance_select(balances_sql):
    return f"select balances.*, current_date as _as_of_date from ({balances_sql}) balances"


def core_loan_transaction_rows(loans_sql=None):
    where = f" where loan_id = any(array({loans_sql}))" if loans_sql else ""
    return f"select transaction_id, loan_id from known_transactions{where}"


def core_loan_transaction_unchanged(loans_sql):
    return "true"


def core_loan_chunk_scope(lo=None, hi=None):
    return "select loan_id, date '1900-01-01' as from_month from known_loans"


def core_ppi_basis_hash(alias):
    return f"sum(hashtextextended({alias}::text, 0)::numeric)"


def core_is_backfill(state):
    return False


def core_source_watermark(tables):
    return "(select max(extracted_at) from raw_watermark)"


def core_mart_state(relation):
    return None


def core_mart_mode(state):
    return "full"


def core_mart_state_columns(state, watermark_tables):
    return (f"{AS_OF} as _as_of_date, {CUTOFF} as _cutoff_ts, "
            "(select max(extracted_at) from raw_watermark) as _watermark, false as _backfill")


def core_mart_changed_loans(state, with_schedule=False):
    return "select loan_id from changed_loans"


def core_mart_moving_month(state):
    return "date '2024-06-01'"


def core_mart_upgrade(added_columns, dropped_columns=()):
    return None


def core_mart_prepare(date_column=None, with_schedule=False, keep=None):
    return "select 1"


# macros/incremental/core_kpi_loan_month.sql
SLICINGS = {"branch": ["branch_id"], "loan_officer": ["branch_id", "loan_officer_id"],
            "product": ["branch_id", "product_id"], "segment": ["branch_id", "segment_key"]}
LOAN_MONTH_VALUES = ["client_id", "branch_id", "loan_officer_id", "product_id", "segment_key", "gender",
                     "serving_officer_id", "outstanding_principal", "days_in_arrears", "disbursed_amount"]


def core_kpi_slicings():
    return SLICINGS


def core_kpi_loan_month_values():
    return LOAN_MONTH_VALUES


def core_kpi_loan_month_state():
    return None


def core_kpi_sibling(name):
    return f"intermediate.{name}"


def core_kpi_loan_month_scope(state):
    return "select loan_id from changed_loans"


def core_kpi_loan_month_rows(where_p=None, where_d=None):
    return "select 'p' as kind, " + ", ".join(["loan_id", "period_month"] + LOAN_MONTH_VALUES) + " from loan_month_rows"


def core_kpi_loan_month_base(slice_columns):
    return "select " + ", ".join(slice_columns) + ", period_month from loan_month_base"


def core_kpi_changes_prepare():
    return "select 1"


def core_kpi_loan_month_prepare():
    return "select 1"


def core_kpi_base_prepare(slice_columns):
    return "select 1"


# macros/incremental/core_loan_balances.sql
def core_loan_balance_rows(scope_sql, stored_relation=None):
    return "select * from loan_balance_rows"


def core_schedule_cumulative(loans_relation, by_index=False):
    return "select * from schedule_cumulative"


def core_schedule_prefix(rows_relation, schedule_relation):
    return "select * from schedule_prefix"


# macros/core_kpi_month.sql (the column lists are the real ones)
KPI_COLUMNS = [
    "period_end", "period_month", "is_latest_period",
    "active_clients", "new_clients", "exited_clients", "active_clients_previous",
    "retention_rate", "retention_rate_12m", "retention_rate_contract", "retention_rate_iris",
    "retention_rate_iris_12m", "retention_rate_followon", "repaid_loans_decided", "dropouts",
    "active_borrowers", "women_borrowers", "women_borrowers_share", "loans_outstanding",
    "loan_officers", "borrowers_per_officer",
    "gross_loan_portfolio", "par30_principal", "par30_ratio", "par1_principal", "par1_ratio",
    "par90_principal", "par90_ratio",
    "write_off_amount", "loans_written_off", "write_off_ratio_12m", "disbursed_amount", "loans_disbursed",
    "ppi_assessed_clients", "avg_poverty_likelihood", "ppi_coverage",
]
CONTRACT_COLUMNS = [
    "period_end", "active_clients", "new_clients", "exited_clients", "retention_rate", "retention_rate_12m",
    "active_borrowers", "women_borrowers", "gross_loan_portfolio", "par30_principal", "par30_ratio",
    "ppi_assessed_clients", "avg_poverty_likelihood",
]


def core_kpi_month(slicing, slices_sql):
    return "select * from kpi_month"


# macros/core_kpi_period.sql
def core_kpi_period(month_model, slice_columns, carry_columns):
    return "select * from kpi_period"


def core_kpi_contract_columns():
    return list(CONTRACT_COLUMNS)


def core_kpi_month_columns(alias="k", only=None, **kwargs):
    excluded = kwargs.get("except", [])
    names = only if only is not None else KPI_COLUMNS
    return ",\n    ".join(f"{alias}.{c}" for c in names if c not in excluded)


# macros/surveys/kobo_fields.sql
def kobo_text(fields, key):
    return f"nullif(btrim({fields} ->> '{key}'), '')"


def kobo_int(fields, key):
    return f"({fields} ->> '{key}')::int"


def kobo_numeric(fields, key):
    return f"({fields} ->> '{key}')::numeric"


def kobo_date_prefix(text_expr):
    return f"(left({text_expr}, 10))::date"


# macros/incremental/surveys_incremental.sql: no state (a first build).
def surveys_fingerprint():
    return ""


def surveys_state(relation):
    return None


def surveys_mode(state):
    return "full"


def surveys_affected_keys(state):
    return "select submission_key from affected_keys"


def surveys_state_columns():
    return "(select max(loaded_at) from raw_submissions) as _loaded_until, ''::text as _inputs_fingerprint"


def surveys_submissions_prepare():
    return "select 1"


# macros/surveys/surveys_latest.sql
def surveys_order(alias, desc=False):
    p = f"{alias}." if alias else ""
    if desc:
        return (f"{p}interview_date desc, ({p}channel = 'mis') desc, {p}submission_time desc nulls last, "
                f"{p}kobo_id desc nulls first, {p}mis_created_on desc nulls last, {p}mis_survey_id desc nulls first")
    return (f"{p}interview_date, ({p}channel = 'mis'), {p}submission_time nulls first, {p}kobo_id, "
            f"{p}mis_created_on nulls first, {p}mis_survey_id")


def core_relation_exists(relation):
    return True


# macros/account_pseudonym.sql
def account_pseudonym(column):
    return (f"case when {column} is null then null else "
            f"'P' || left(encode(sha256(convert_to({column}::text, 'UTF8')), 'hex'), 16) end")


# macros/labels/display_label.sql
def display_label(domain, column):
    return (f"coalesce((select dl.label from reference.display_labels as dl "
            f"where dl.domain = '{domain}' and dl.code = ({column})::text), ({column})::text)")


def client_sk(alias):
    return f"({alias}.client_id * 1000 + {alias}.version_number)::bigint"


def surveys_indicator_state(relation):
    return None


def surveys_indicator_changed_clients(state):
    return "select client_id from changed_clients"


def surveys_indicator_prepare():
    return "select 1"


def surveys_indicator_inputs_prepare():
    return "select 1"


# macros/history.sql
OPEN_VERSION = "9223372036854775807"


def history_next_version():
    return 1


def history_version_columns(version):
    return f"{version}::bigint as _valid_from, {OPEN_VERSION}::bigint as _valid_to"


def history_current_view(versions):
    return f"select * from {versions} where _valid_to = {OPEN_VERSION}"


def history_index(columns, unique=False):
    return "select 1"


def history_closed_index():
    return "select 1"
