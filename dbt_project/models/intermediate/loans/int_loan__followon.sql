{{ config(pre_hook=core_session_settings()) }}
{#-
  Drop-out after a repaid loan (the "follow-on" retention alternative, see
  var retention_method): one row per loan repaid in full (closed, obligations
  met or overpaid) on or before as_of_date.
  followed_on: the client got another loan, disbursed after this one's
    disbursement and no later than dropout_followon_days after its closure.
  is_decided: the follow-on window has ended by as_of_date, or a follow-on
    already happened; undecided loans count in no rate yet.
  Attributed to the period of the closure.
-#}
with repaid as (
    select loan_id, client_id, branch_id, product_id, loan_officer_id, disbursed_on, closed_on_date
    from {{ ref('int_loan__lifecycle') }}
    where status_as_of in ('closed_obligations_met', 'overpaid')
      and client_id is not null
      and closed_on_date is not null
)

, followed as (
    select r.loan_id
    from repaid r
    where exists (
        select 1
        from {{ ref('int_loan__lifecycle') }} n
        where n.client_id = r.client_id
          and n.loan_id <> r.loan_id
          and n.disbursed_on is not null
          and (n.disbursed_on > r.disbursed_on or (n.disbursed_on = r.disbursed_on and n.loan_id > r.loan_id))
          and n.disbursed_on <= r.closed_on_date + {{ var('dropout_followon_days') | int }}
    )
)

select
    r.loan_id,
    r.client_id,
    r.branch_id,
    r.product_id,
    r.loan_officer_id,
    r.closed_on_date,
    {{ core_period_month('r.closed_on_date') }}                              as period_month,
    f.loan_id is not null                                                    as followed_on,
    (f.loan_id is not null
        or r.closed_on_date + {{ var('dropout_followon_days') | int }} <= {{ core_as_of_date() }}) as is_decided
from repaid r
left join followed f on f.loan_id = r.loan_id
