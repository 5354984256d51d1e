{%- set slice_columns = core_kpi_slicings()['branch'] %}
{{
  config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook=core_session_settings() + ["{{ core_kpi_base_prepare(core_kpi_slicings()['branch']) }}"],
    post_hook=[
      "{{ core_index(core_kpi_slicings()['branch'] | join(', ') ~ ', period_month', unique=true) }}",
      "analyze {{ this }}"
    ]
  )
}}
-- The loan measures of kpi_branch_month per (slice, month), from int_kpi__loan_month;
-- a night recomputes the pairs its unconsumed change batches name
-- (macros/incremental/core_kpi_loan_month.sql).
{{ core_kpi_loan_month_base(slice_columns) }}
