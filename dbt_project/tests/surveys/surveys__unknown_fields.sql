{{ config(severity='warn') }}
{#-
    Form version drift: fields in raw submissions the warehouse does not read.
    A warning, not an error - the data is kept in raw_kobo. Add the field to
    the form and the models, or map it in seeds/survey_field_map.csv.
-#}

select asset_uid, form_version, field_name, submissions,
       format('form %s version %s has field %s in %s submissions that no model reads',
              asset_uid, form_version, field_name, submissions) as problem
from {{ ref('int_surveys__unknown_fields') }}
