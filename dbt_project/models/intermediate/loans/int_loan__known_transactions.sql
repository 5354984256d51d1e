{{ config(materialized='view') }}
-- Loan transactions that exist for every purpose: not reversed, dated on or before
-- as_of_date, entered by the end of that day (created_on_utc), of a known loan.
-- A view: callers filter it by loan, so only the loans they need are read.
select t.*
from {{ ref('stg_fineract__m_loan_transaction') }} t
where not t.is_reversed
  and t.transaction_date <= {{ core_as_of_date() }}
  and {{ core_known_at_cutoff('t.created_on_utc') }}
  and exists (select 1 from {{ ref('int_loan__known_loans') }} k where k.loan_id = t.loan_id)
