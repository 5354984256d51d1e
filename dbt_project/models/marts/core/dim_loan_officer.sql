{{ config(post_hook=["{{ core_index('loan_officer_id') }}"]) }}
-- Loan officers (Fineract staff). Staff display names are kept: they are not
-- client data and BI needs them. Every staff member that a client or a loan
-- names is here; ids the source no longer has are inferred members; -1 is
-- the unknown member ("no officer").
with staff as (
    select * from {{ ref('stg_fineract__m_staff') }}
)

, referenced as (
    select loan_officer_id from {{ ref('int_client__current') }}
    union
    select loan_officer_id from {{ ref('int_loan__known_loans') }}
)

select
    s.staff_id                          as loan_officer_id,
    s.staff_name                        as loan_officer_name,
    s.office_id                         as branch_id,
    o.office_name                       as branch_name,
    s.is_loan_officer,
    s.is_active,
    s.joining_date,
    false                               as is_inferred
from staff s
left join {{ ref('stg_fineract__m_office') }} o on o.office_id = s.office_id

union all

select r.loan_officer_id, 'Unknown officer ' || r.loan_officer_id, null, null, null, null, null, true
from referenced r
where r.loan_officer_id is not null
  and r.loan_officer_id <> -1
  and not exists (select 1 from staff s where s.staff_id = r.loan_officer_id)

union all

select -1, 'No loan officer', null, null, null, null, null, true
