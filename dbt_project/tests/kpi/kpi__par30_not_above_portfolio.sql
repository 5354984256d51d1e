-- PAR30 never exceeds the portfolio, in any KPI mart, any slice, any period.
select 'kpi_branch_month' as model, period_end, par30_principal, gross_loan_portfolio
from {{ ref('kpi_branch_month') }} where par30_principal > gross_loan_portfolio or par30_principal < 0
union all
select 'kpi_loan_officer_month', period_end, par30_principal, gross_loan_portfolio
from {{ ref('kpi_loan_officer_month') }} where par30_principal > gross_loan_portfolio or par30_principal < 0
union all
select 'kpi_product_month', period_end, par30_principal, gross_loan_portfolio
from {{ ref('kpi_product_month') }} where par30_principal > gross_loan_portfolio or par30_principal < 0
union all
select 'kpi_segment_month', period_end, par30_principal, gross_loan_portfolio
from {{ ref('kpi_segment_month') }} where par30_principal > gross_loan_portfolio or par30_principal < 0
