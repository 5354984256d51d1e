-- Group membership of clients.
select
    group_id::bigint    as group_id,
    client_id::bigint   as client_id,
    _extracted_at       as extracted_at
from {{ source('fineract', 'm_group_client') }}
where not _deleted
