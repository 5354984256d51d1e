{{ config(pre_hook=core_session_settings(), post_hook=["{{ core_index('loan_id', unique=true) }}"]) }}
-- One row per known loan: what happened to it up to as_of_date, from its
-- (non-reversed, known) transactions and its dated source fields.
--   loan_cycle: rank of the loan among the client's disbursed loans (first
--     disbursement date, then id); Fineract's own loan_counter is kept beside it.
--   written_off_on: writtenoffon_date or the first write-off (type 6) transaction;
--   written_off_principal: the outstanding principal the write-off removed
--     (disbursed - repaid by that date, as fct_portfolio_month would have shown it).
--   status_as_of: the loan's status at as_of_date, from its dates (a backfill
--     does not show a later closure).
with txn as (
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
    group by l.loan_id
)

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
    case when coalesce(l.first_disbursed_on, l.disbursed_on_date) is not null then
        row_number() over (
            partition by l.client_id, coalesce(l.first_disbursed_on, l.disbursed_on_date) is not null
            order by coalesce(l.first_disbursed_on, l.disbursed_on_date), l.loan_id
        )
    end::int                                                                           as loan_cycle,
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
    l.last_repayment_on
from loans l
left join write_off_base w on w.loan_id = l.loan_id
