{{ config(pre_hook=core_session_settings(nested_loops=false, merge_joins=false)) }}
-- kpi_product_month by month, quarter and year (macros/core_kpi_period.sql): stocks
-- at the period end, flows summed, retention over the grain, year-ago columns.
{{ core_kpi_period(ref('kpi_product_month'), ['branch_id', 'product_id'],
    ['branch_id', 'branch_name', 'region_id', 'region_name', 'product_id', 'product_name', 'product_short_name']) }}
