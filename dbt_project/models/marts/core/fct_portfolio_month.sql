{{ config(materialized='view') }}
{#-
    fct_portfolio_month as tonight's build wrote it: the current rows of fct_portfolio_month__versions
    (models/marts/history), where the logic and the incremental rules are. The
    rows are kept once, in versions, for every copy of the marts; publish pins
    this view to the version of its night (macros/history.sql).
-#}
{{ history_current_view(ref('fct_portfolio_month__versions')) }}
