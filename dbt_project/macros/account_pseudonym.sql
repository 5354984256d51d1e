{#-
  A keyed pseudonym of an account number: 'P' and the first 16 hex digits of
  HMAC-SHA256(key, account number). What analytics publishes in place of
  dim_client.account_no and fct_loan.loan_account_no (account numbers identify
  a person in the MIS); the real numbers are only in the restricted schema.

  The key is SPM_PSEUDONYM_KEY (generated once into .local/secrets.env), which
  the runner hands to dbt as SPM_DBT_PSEUDONYM_KEY. It is read only while
  executing, like the as-of date (core_as_of.sql): an env_var() read at parse
  time would be recorded in dbt's partial-parse file. Without a key the model
  fails: a pseudonym with a known or empty key is no pseudonym.

  HMAC is computed with PostgreSQL's built-in sha256() (no extension needed):
  H((K xor opad) || H((K xor ipad) || message)), K padded to 64 bytes (hashed
  first when longer); the pads are uncorrelated subqueries, computed once.
-#}
{% macro account_pseudonym(column) -%}
    {%- set key = pseudonym_key() -%}
    case when {{ column }} is null then null else
        'P' || left(encode(sha256(
            ({{ hmac_pad(key, 92) }})
            || sha256(({{ hmac_pad(key, 54) }}) || convert_to({{ column }}::text, 'UTF8'))
        ), 'hex'), 16)
    end
{%- endmacro %}

{% macro pseudonym_key() -%}
    {%- if not execute -%}
        {{ return('') }}
    {%- endif -%}
    {%- set key = env_var('SPM_DBT_PSEUDONYM_KEY', '') -%}
    {%- if key | length < 32 -%}
        {{ exceptions.raise_compiler_error(
            "SPM_DBT_PSEUDONYM_KEY is not set (or shorter than 32 characters): the nightly runner passes "
            ~ "SPM_PSEUDONYM_KEY from .local/secrets.env; run by hand, export SPM_DBT_PSEUDONYM_KEY"
        ) }}
    {%- endif -%}
    {{ return(key) }}
{%- endmacro %}

{#- One HMAC pad: the 64-byte key, each byte xor `byte` (54 = ipad 0x36, 92 = opad 0x5c). -#}
{% macro hmac_pad(key, byte) -%}
    select decode(string_agg(lpad(to_hex(get_byte(padded.k, i) # {{ byte }}), 2, '0'), '' order by i), 'hex')
    from (
        select sized.k || decode(repeat('00', 64 - length(sized.k)), 'hex') as k
        from (
            select case when length(raw.k) > 64 then sha256(raw.k) else raw.k end as k
            from (select convert_to('{{ key | replace("'", "''") }}', 'UTF8') as k) as raw
        ) as sized
    ) as padded, generate_series(0, 63) as i
{%- endmacro %}
