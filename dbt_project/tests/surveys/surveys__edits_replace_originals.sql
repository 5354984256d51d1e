{#- Contract: an edit replaces its original, even when the edit itself is quarantined. -#}

select a.instance_id,
       format('submission %s is accepted although an edit (%s) replaced it', a.instance_id, s.instance_id) as problem
from {{ ref('int_surveys__accepted') }} as a
inner join {{ ref('stg_kobo__spm_client_monitoring') }} as s
    on s.deprecated_id = a.instance_id
   and s.instance_id is distinct from a.instance_id
