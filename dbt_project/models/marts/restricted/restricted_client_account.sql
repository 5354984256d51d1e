{{ config(alias='client_account') }}
-- Real client account numbers, for follow-up lists: restricted schema only
-- (analytics_restricted), readable by branch roles under row-level security and
-- never by bi_reader. Joins to analytics.dim_client on client_id or on the
-- pseudonym analytics publishes (account_no_pseudonym = dim_client.account_no).
select
    d.client_id,
    d.branch_id,
    c.account_no,
    d.account_no as account_no_pseudonym
from {{ ref('dim_client') }} d
join {{ ref('int_client__current') }} c on c.client_id = d.client_id
where d.is_current and d.client_id <> -1
