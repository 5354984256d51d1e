-- The published portfolio is exactly the sum of the loan snapshots: per period,
-- fct_portfolio_month holds every loan-month of int_loan__balances_as_of with
-- outstanding > 0, and kpi_branch_month's gross_loan_portfolio adds up to it.
with snapshots as (
    select period_end, sum(outstanding_principal) as total, count(*) as loans
    from {{ ref('int_loan__balances_as_of') }}
    where outstanding_principal > 0
    group by period_end
)

, fact as (
    select period_end, sum(outstanding_principal) as total, count(*) as loans
    from {{ ref('fct_portfolio_month') }}
    group by period_end
)

, kpi as (
    select period_end, sum(gross_loan_portfolio) as total, sum(loans_outstanding) as loans
    from {{ ref('kpi_branch_month') }}
    group by period_end
)

select coalesce(s.period_end, f.period_end, k.period_end) as period_end,
       s.total as snapshot_total, f.total as fact_total, k.total as kpi_total,
       s.loans as snapshot_loans, f.loans as fact_loans, k.loans as kpi_loans
from snapshots s
full join fact f on f.period_end = s.period_end
full join kpi k on k.period_end = coalesce(s.period_end, f.period_end)
where coalesce(s.total, 0) <> coalesce(f.total, 0)
   or coalesce(f.total, 0) <> coalesce(k.total, 0)
   or coalesce(s.loans, 0) <> coalesce(f.loans, 0)
   or coalesce(f.loans, 0) <> coalesce(k.loans, 0)
