{#-
  fct_loan_transaction__versions: the fact's rows, and the nightly pre-hook that closes only the
  rows whose values changed.

  Why: a night used to close and write again every transaction of each changed loan. A day that
  adds one repayment to a loan with ten transactions wrote eleven versions: at 100k clients, 109,164
  rows for 9,951 new or changed transactions. The history schema grew by them every night, and each
  close is an UPDATE that adds an entry to every index. Every column of a transaction row is fixed by
  its loan's inputs. So a night can compare tonight's rows of the changed loans with the current
  ones, close only the rows that differ or are gone, and write only the rows that are new or differ.

  How (nightly mode only; a full build closes and writes every row as before):
  - the pre-hook (core_mart_prepare(keep=core_loan_transaction_unchanged)) closes the current rows of the changed loans that
    have no identical row tonight (same transaction_id and the same values of every column of
    core_loan_transaction_columns);
  - the model writes tonight's rows of the changed loans whose transaction_id has no current row
    left, i.e. the new ones and the ones the pre-hook closed.
  Both evaluate core_loan_transaction_rows for the same changed loans. The state columns
  (_as_of_date, _cutoff_ts, _watermark) are those of the night that wrote a row. A night that
  changed no row writes none, and the next night looks for changes since the older state: a
  larger set of loans, the same rows.
-#}

{#- The columns of a transaction row that are compared (all but the state and version columns). -#}
{% macro core_loan_transaction_columns() %}
    {{ return(['transaction_id', 'loan_id', 'client_id', 'branch_id', 'product_id', 'loan_officer_id',
               'transaction_date', 'transaction_date_key', 'period_month', 'transaction_type_code',
               'transaction_type', 'amount', 'principal_portion', 'interest_portion', 'fee_charges_portion',
               'penalty_charges_portion', 'overpayment_portion', 'submitted_on_date']) }}
{% endmacro %}


{#- The rows of the fact (core_loan_transaction_columns), of the loans in `loans_sql` (a select of
    loan_id), or of every loan when none. -#}
{% macro core_loan_transaction_rows(loans_sql=none) -%}
with scoped as (
    {%- if loans_sql is not none %}
    -- the changed loans (found from the raw deltas), read through the index on loan_id (one array:
    -- a join to the set can be planned as a hash join over every transaction)
    select t.*
    from {{ ref('int_loan__known_transactions') }} t
    where t.loan_id = any(array({{ loans_sql }}))
    {%- else %}
    select t.*
    from {{ ref('int_loan__known_transactions') }} t
    {%- endif %}
)

select
    t.transaction_id,
    t.loan_id,
    coalesce(l.client_id, -1)                                       as client_id,
    coalesce(l.branch_id, -1)                                       as branch_id,
    coalesce(l.product_id, -1)                                      as product_id,
    coalesce(l.loan_officer_id, -1)                                 as loan_officer_id,
    t.transaction_date,
    {{ core_date_key('t.transaction_date') }}                      as transaction_date_key,
    {{ core_period_month('t.transaction_date') }}                  as period_month,
    t.transaction_type_code,
    t.transaction_type,
    t.amount,
    t.principal_portion,
    t.interest_portion,
    t.fee_charges_portion,
    t.penalty_charges_portion,
    t.overpayment_portion,
    t.submitted_on_date
from scoped t
join {{ ref('int_loan__known_loans') }} l on l.loan_id = t.loan_id
{%- endmacro %}


{#- The condition (on alias t, the current rows) of the rows of the changed loans in `loans_sql`
    whose row tonight is identical: core_mart_prepare(keep=...) leaves them open. -#}
{% macro core_loan_transaction_unchanged(loans_sql) %}
    {%- set columns = core_loan_transaction_columns() -%}
    {%- set sql -%}
        exists (
            select 1
            from ({{ core_loan_transaction_rows(loans_sql) }}) n
            where n.transaction_id = t.transaction_id
              and (n.{{ columns | join(', n.') }}) is not distinct from (t.{{ columns | join(', t.') }})
        )
    {%- endset -%}
    {{ return(sql) }}
{% endmacro %}
