{{ config(materialized='view') }}
{#-
    fct_client_indicator as tonight's build wrote it: the current rows of fct_client_indicator__versions
    (models/marts/history), where the logic and the incremental rules are. The
    rows are kept once, in versions, for every copy of the marts; publish pins
    this view to the version of its night (macros/history.sql).
-#}
{{ history_current_view(ref('fct_client_indicator__versions')) }}
