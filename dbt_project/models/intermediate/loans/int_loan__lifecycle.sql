{{
  config(
    materialized='incremental',
    unique_key='loan_id',
    incremental_strategy='delete+insert',
    on_schema_change='append_new_columns',
    pre_hook=core_session_settings() + ["{{ core_lifecycle_prepare() }}"],
    post_hook=[
      "{{ core_index('loan_id', unique=true) }}",
      "{{ core_index('client_id') }}",
      "{{ core_index('next_event_on') }}",
      "analyze {{ this }}"
    ]
  )
}}
-- The change feeds that the incremental scope reads (macros/incremental/):
-- depends_on: {{ ref('stg_fineract__m_loan_with_deleted') }}
-- depends_on: {{ ref('stg_fineract__m_loan_transaction_with_deleted') }}
-- depends_on: {{ ref('stg_fineract__m_client_with_deleted') }}
-- depends_on: {{ ref('stg_fineract__m_group_with_deleted') }}
-- One row per known loan: what happened to it up to as_of_date, from its
-- (non-reversed, known) transactions and its dated source fields.
--   loan_cycle: rank of the loan among the client's disbursed loans (first
--     disbursement date, then id); Fineract's own loan_counter is kept beside it.
--   written_off_on: writtenoffon_date or the first write-off (type 6) transaction;
--   written_off_principal: the outstanding principal the write-off removed
--     (disbursed - repaid by that date, as fct_portfolio_month would have shown it).
--   status_as_of: the loan's status at as_of_date, from its dates (a backfill
--     does not show a later closure).
--   next_event_on: the earliest of the loan's source dates after as_of_date
--     (approval, disbursement, maturity, closure, rejection, withdrawal, write-off):
--     the night on which the row changes although no source row did.
-- Incremental (macros/incremental/core_lifecycle.sql): a night rewrites the loans
-- changed in raw since the state (core_mart_changed_loans), those whose
-- next_event_on has come, and every other loan of their clients (loan_cycle
-- ranks a client's loans).
{#- a table of an older version (not incremental yet) is rebuilt in full, see core_relation_lacks_column -#}
{%- set upgrade = is_incremental() and core_relation_lacks_column(this, 'next_event_on') %}
{%- set state = core_mart_state(this) if is_incremental() and not upgrade else none %}
{%- set mode = core_mart_mode(state) %}
{#- the output columns but loan_cycle (ranked over the computed and the kept rows together) and the state -#}
{%- set columns = [
    'loan_id', 'loan_account_no', 'client_id', 'group_id', 'branch_id', 'product_id',
    'loan_officer_id', 'loan_purpose', 'loan_type', 'currency_code', 'source_loan_status_code',
    'source_loan_status', 'status_as_of', 'loan_counter', 'loan_product_counter', 'principal_proposed',
    'principal_approved', 'principal_amount', 'principal_disbursed', 'principal_repaid',
    'interest_repaid', 'recovered_amount', 'repayment_count', 'annual_nominal_interest_rate',
    'term_frequency', 'term_period_frequency', 'repay_every', 'repayment_frequency',
    'number_of_repayments', 'submitted_on_date', 'approved_on_date', 'expected_disbursed_on_date',
    'disbursed_on', 'last_disbursed_on', 'expected_matured_on_date', 'matured_on_date',
    'closed_on_date', 'rejected_on_date', 'withdrawn_on_date', 'written_off_on',
    'written_off_principal', 'last_repayment_on', 'next_event_on'
] %}
with
{%- if mode == 'nightly' %}
changed as (
    {{ core_lifecycle_changed(state) }}
),
scope as (
    {{ core_lifecycle_scope('changed') }}
),
recompute as (
    -- computed from their transactions: the changed loans, and a loan in scope without a stored row;
    -- the other loans of the scope keep their stored row (kept, below) with their cycle ranked anew
    select c.loan_id from changed c
    union
    select s.loan_id from scope s
    where not exists (select 1 from {{ this }} t where t.loan_id = s.loan_id)
),
{%- endif %}
txn as (
    select
        loan_id,
        min(transaction_date) filter (where transaction_type_code = 1)                 as first_disbursed_on,
        max(transaction_date) filter (where transaction_type_code = 1)                 as last_disbursed_on,
        min(transaction_date) filter (where transaction_type_code = 6)                 as first_write_off_txn_on,
        max(transaction_date) filter (where transaction_type_code in (2, 5, 8))        as last_repayment_on,
        coalesce(sum(amount) filter (where transaction_type_code = 1), 0)              as principal_disbursed,
        coalesce(sum(principal_portion) filter (where transaction_type_code in (2, 5)), 0) as principal_repaid,
        coalesce(sum(interest_portion) filter (where transaction_type_code in (2, 5, 8)), 0) as interest_repaid,
        coalesce(sum(amount) filter (where transaction_type_code = 8), 0)              as recovered_amount,
        count(*) filter (where transaction_type_code in (2, 5))                        as repayment_count
    from {{ ref('int_loan__known_transactions') }}
    {%- if mode == 'nightly' %}
    where loan_id in (select r.loan_id from recompute r)
    {%- endif %}
    group by loan_id
)

, loans as (
    select
        k.*,
        t.first_disbursed_on,
        t.last_disbursed_on,
        least(k.written_off_on_date, t.first_write_off_txn_on)                         as written_off_on,
        t.last_repayment_on,
        coalesce(t.principal_disbursed, 0)                                             as principal_disbursed,
        coalesce(t.principal_repaid, 0)                                                as principal_repaid,
        coalesce(t.interest_repaid, 0)                                                 as interest_repaid,
        coalesce(t.recovered_amount, 0)                                                as recovered_amount,
        coalesce(t.repayment_count, 0)                                                 as repayment_count
    from {{ ref('int_loan__known_loans') }} k
    left join txn t on t.loan_id = k.loan_id
    {%- if mode == 'nightly' %}
    where k.loan_id in (select r.loan_id from recompute r)
    {%- endif %}
)

, source_dates as (
    select
        s.loan_id,
        least(
            case when s.approved_on_date > {{ core_as_of_date() }} then s.approved_on_date end,
            case when s.disbursed_on_date > {{ core_as_of_date() }} then s.disbursed_on_date end,
            case when s.matured_on_date > {{ core_as_of_date() }} then s.matured_on_date end,
            case when s.closed_on_date > {{ core_as_of_date() }} then s.closed_on_date end,
            case when s.rejected_on_date > {{ core_as_of_date() }} then s.rejected_on_date end,
            case when s.withdrawn_on_date > {{ core_as_of_date() }} then s.withdrawn_on_date end,
            case when s.written_off_on_date > {{ core_as_of_date() }} then s.written_off_on_date end
        )                                                                              as next_event_on
    from {{ ref('stg_fineract__m_loan') }} s
    join loans l on l.loan_id = s.loan_id
    {%- if mode == 'nightly' %}
    where s.loan_id in (select r.loan_id from recompute r)
    {%- endif %}
)

, write_off_base as (
    select
        l.loan_id,
        coalesce(sum(t.amount) filter (where t.transaction_type_code = 1), 0)
          - coalesce(sum(t.principal_portion) filter (where t.transaction_type_code in (2, 5)), 0) as balance_at_write_off
    from loans l
    join {{ ref('int_loan__known_transactions') }} t
        on t.loan_id = l.loan_id and t.transaction_date <= l.written_off_on
    where l.written_off_on is not null
    {%- if mode == 'nightly' %}
      -- (the loans CTE holds those loans only; said again so the planner reads their transactions by loan_id)
      and t.loan_id in (select r.loan_id from recompute r)
    {%- endif %}
    group by l.loan_id
)

, computed as (
    select
        l.loan_id,
        l.loan_account_no,
        l.client_id,
        l.group_id,
        l.branch_id,
        l.product_id,
        l.loan_officer_id,
        l.loan_purpose,
        l.loan_type,
        l.currency_code,
        l.loan_status_code                                                                 as source_loan_status_code,
        l.loan_status                                                                      as source_loan_status,
        case
            when l.written_off_on is not null then 'closed_written_off'
            when l.closed_on_date is not null and l.loan_status_code = 602 then 'closed_rescheduled'
            when l.closed_on_date is not null and l.loan_status_code = 700 then 'overpaid'
            when l.closed_on_date is not null then 'closed_obligations_met'
            when l.rejected_on_date is not null then 'rejected'
            when l.withdrawn_on_date is not null then 'withdrawn_by_client'
            when l.first_disbursed_on is not null or l.disbursed_on_date is not null then 'active'
            when l.approved_on_date is not null then 'approved'
            else 'submitted_and_pending_approval'
        end                                                                                as status_as_of,
        l.loan_counter,
        l.loan_product_counter,
        l.principal_proposed,
        l.principal_approved,
        l.principal_amount,
        l.principal_disbursed,
        l.principal_repaid,
        l.interest_repaid,
        l.recovered_amount,
        l.repayment_count,
        l.annual_nominal_interest_rate,
        l.term_frequency,
        l.term_period_frequency,
        l.repay_every,
        l.repayment_frequency,
        l.number_of_repayments,
        l.submitted_on_date,
        l.approved_on_date,
        l.expected_disbursed_on_date,
        coalesce(l.first_disbursed_on, l.disbursed_on_date)                                as disbursed_on,
        l.last_disbursed_on,
        l.expected_matured_on_date,
        l.matured_on_date,
        l.closed_on_date,
        l.rejected_on_date,
        l.withdrawn_on_date,
        l.written_off_on,
        case when l.written_off_on is not null
             then greatest(0, coalesce(w.balance_at_write_off, 0)) end::numeric(19, 6)     as written_off_principal,
        l.last_repayment_on,
        sd.next_event_on
    from loans l
    left join write_off_base w on w.loan_id = l.loan_id
    left join source_dates sd on sd.loan_id = l.loan_id
)

{% if mode == 'nightly' -%}
, kept as (
    select {% for c in columns %}t.{{ c }}{{ ', ' if not loop.last }}{% endfor %}
    from {{ this }} t
    where t.loan_id in (select s.loan_id from scope s)
      and not exists (select 1 from recompute r where r.loan_id = t.loan_id)
)

{% endif -%}
, all_rows as (
    select * from computed
    {%- if mode == 'nightly' %}
    union all
    select * from kept
    {%- endif %}
)

select
    {%- for c in columns %}
    {%- if c == 'loan_product_counter' %}
    r.loan_product_counter,
    case when r.disbursed_on is not null then
        row_number() over (
            partition by r.client_id, r.disbursed_on is not null
            order by r.disbursed_on, r.loan_id
        )
    end::int                                                                           as loan_cycle,
    {%- else %}
    r.{{ c }},
    {%- endif %}
    {%- endfor %}
    {{ core_mart_state_columns(state, ['m_loan', 'm_loan_transaction', 'm_client', 'm_group']) }}
from all_rows r
