-- Nothing published is dated after as_of_date: transactions, snapshots, loan
-- events, client versions and KPI periods.
select 'fct_loan_transaction' as model, max(transaction_date) as latest from {{ ref('fct_loan_transaction') }}
having max(transaction_date) > {{ core_as_of_date() }}
union all
select 'fct_portfolio_month', max(period_end) from {{ ref('fct_portfolio_month') }}
having max(period_end) > {{ core_as_of_date() }}
union all
select 'fct_loan', max(greatest(submitted_on_date, approved_on_date, disbursed_on, matured_on_date, closed_on_date, written_off_on))
from {{ ref('fct_loan') }}
having max(greatest(submitted_on_date, approved_on_date, disbursed_on, matured_on_date, closed_on_date, written_off_on)) > {{ core_as_of_date() }}
union all
select 'dim_client', max(greatest(valid_from, submitted_on_date, activation_date, closed_on_date, reactivated_on_date))
from {{ ref('dim_client') }}
having max(greatest(valid_from, submitted_on_date, activation_date, closed_on_date, reactivated_on_date)) > {{ core_as_of_date() }}
union all
select 'kpi_branch_month', max(period_end) from {{ ref('kpi_branch_month') }}
having max(period_end) > {{ core_as_of_date() }}
