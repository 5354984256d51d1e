{#-
    The order of a client's surveys across both channels (contract: "latest
    survey"): by interview date; on the same interview date a submission kept
    in the MIS counts as later than a Kobo one; among Kobo submissions the
    later submission time (none first), then the higher _id; among MIS
    submissions the later created_on, then the higher survey_id.

    surveys_order('a')             -> ascending sort keys, for "order by" (first = earliest)
    surveys_order('a', desc=true)  -> the same order reversed (first = latest)
    The relation needs interview_date, channel ('kobo'/'mis'), submission_time,
    kobo_id, mis_created_on and mis_survey_id.
-#}
{% macro surveys_order(alias, desc=false) -%}
    {%- set p = alias ~ '.' if alias else '' -%}
    {%- if desc -%}
    {{ p }}interview_date desc, ({{ p }}channel = 'mis') desc, {{ p }}submission_time desc nulls last,
    {{ p }}kobo_id desc nulls first, {{ p }}mis_created_on desc nulls last, {{ p }}mis_survey_id desc nulls first
    {%- else -%}
    {{ p }}interview_date, ({{ p }}channel = 'mis'), {{ p }}submission_time nulls first,
    {{ p }}kobo_id, {{ p }}mis_created_on nulls first, {{ p }}mis_survey_id
    {%- endif -%}
{%- endmacro %}

{#- True when `relation` (e.g. a source()) exists in the warehouse; false at parse time. For raw
    tables that an extraction creates only when it has something to land (raw_mis.datatable_values). -#}
{% macro core_relation_exists(relation) -%}
    {%- if not execute -%}{{ return(false) }}{%- endif -%}
    {{ return(adapter.get_relation(database=relation.database, schema=relation.schema,
                                   identifier=relation.identifier) is not none) }}
{%- endmacro %}
