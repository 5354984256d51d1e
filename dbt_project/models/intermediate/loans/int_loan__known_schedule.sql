{{ config(materialized='view') }}
-- Repayment schedule rows known at the as-of date (entered by the end of that day)
-- of known loans. A view without window functions, so that a caller joining a
-- handful of loans reads only those loans' installments; the cumulative principal
-- due C_k of the contract's days-in-arrears rule is computed by the caller.
select
    s.loan_id,
    s.installment_id,
    s.installment_number,
    s.from_date,
    s.due_date,
    s.principal_due
from {{ ref('stg_fineract__m_loan_repayment_schedule') }} s
where {{ core_known_at_cutoff('s.created_on_utc') }}
  and exists (select 1 from {{ ref('int_loan__known_loans') }} k where k.loan_id = s.loan_id)
