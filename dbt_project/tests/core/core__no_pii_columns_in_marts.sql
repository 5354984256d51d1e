-- The published schema carries no personal data: no client names, phones,
-- e-mails, national/external ids or birth dates, under any table.
select table_name, column_name
from information_schema.columns
where table_schema = '{{ ref("dim_client").schema }}'
  and (column_name in ('firstname', 'middlename', 'lastname', 'fullname', 'display_name', 'mobile_no',
                       'email_address', 'external_id', 'national_id', 'date_of_birth')
       or column_name like '%birth%'
       or column_name like '%phone%'
       or column_name like '%mobile%'
       or column_name like '%email%'
       or column_name like '%first%name%'
       or column_name like '%last%name%'
       or column_name like '%national%id%')
