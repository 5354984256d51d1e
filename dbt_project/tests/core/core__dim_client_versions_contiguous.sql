-- dim_client versions of a client follow each other day after day, without gap
-- or overlap, and exactly the last one is current.
select client_id, valid_from, valid_to, is_current, next_from
from (
    select client_id, valid_from, valid_to, is_current,
           lead(valid_from) over (partition by client_id order by valid_from) as next_from
    from {{ ref('dim_client') }}
    where client_sk <> -1
) v
where (next_from is not null and (next_from <> valid_to + 1 or is_current))
   or (next_from is null and (valid_to <> date '9999-12-31' or not is_current))
   or valid_to < valid_from
