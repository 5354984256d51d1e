{{ config(pre_hook=core_session_settings(),
          post_hook=["{{ core_index('client_id, valid_from') }}", "{{ core_index('client_sk') }}"]) }}
-- The index on client_sk: the relationships tests of fct_loan and fct_client_indicator look it up. A
-- night's test of fct_client_indicator reads only that night's rows, which the planner may estimate at
-- one row and join in a nested loop: without the index each of them scanned the whole dimension (at
-- 500k clients a 2-second test ran for more than ten minutes on the second night).
-- Clients, type 2: one row per period during which branch, loan officer,
-- classification, status and poverty band stayed the same. No names, phones,
-- ids or birth date: the age band (at as_of_date) stands in for the birth date.
-- account_no is a keyed pseudonym (account_pseudonym): the real account number is
-- only in the restricted schema (analytics_restricted.client_account).
-- client_sk = client_id * 1000 + version number; -1 is the unknown member.
-- The KPI contract tables do not use this history: they attribute by the
-- current values (the is_current row).
select
    {{ client_sk('h') }}                                                   as client_sk,
    h.client_id,
    {{ account_pseudonym('c.account_no') }}                          as account_no,
    h.version_number,
    h.valid_from,
    h.valid_to,
    h.is_current,
    coalesce(h.branch_id, -1)                                           as branch_id,
    coalesce(h.loan_officer_id, -1)                                     as loan_officer_id,
    coalesce(cls.code_value, 'unknown')                                 as client_classification,
    case lower(btrim(cls.code_value)) when 'rural' then 'rural' when 'urban' then 'urban' else 'unknown' end as area,
    h.status,
    h.poverty_band,
    -- attributes that are not tracked over time (type 1)
    c.gender,
    c.age_band,
    c.client_type,
    c.legal_form,
    c.poverty_band_at_entry,
    c.entry_assessment_date,
    c.segment_key,
    c.submitted_on_date,
    c.activation_date,
    c.closed_on_date,
    c.closure_reason,
    c.reactivated_on_date
from {{ ref('int_client__history') }} h
join {{ ref('int_client__current') }} c on c.client_id = h.client_id
left join {{ ref('int_fineract__code_values') }} cls on cls.code_value_id = h.classification_cv_id

union all

select
    -1, -1, null, 0, date '1900-01-01', date '9999-12-31', true, -1, -1, 'unknown', 'unknown', 'unknown', 'unknown',
    'unknown', 'unknown', null, null, 'unknown', null, 'unknown|unknown|unknown', null, null, null, null, null
