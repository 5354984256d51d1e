"""Maintenance DAGs: hard-delete detection, rollback, docs after publication.

- spm_key_reconciliation: compares source keys with raw_mis on a schedule
  (weekly by default) and marks rows deleted in the source.
- spm_rollback: manual; restores the previous publication of analytics.
- spm_docs: runs whenever spm_nightly publishes analytics (asset-triggered)
  and refreshes the dbt docs site for analysts.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from spm_warehouse import pipeline
from spm_warehouse.dag_defaults import ANALYTICS, DEFAULT_ARGS, RAW_MIS, as_of_date

START = pendulum.datetime(2024, 1, 1, tz="UTC")


@dag(dag_id="spm_key_reconciliation", schedule="0 3 * * 0", start_date=START, catchup=False,
     max_active_runs=1, default_args=DEFAULT_ARGS, tags=["spm", "maintenance"], doc_md=__doc__)
def spm_key_reconciliation():
    @task(outlets=[RAW_MIS])
    def reconcile(**context) -> dict:
        return pipeline.reconcile_keys(context["run_id"])

    reconcile()


@dag(dag_id="spm_rollback", schedule=None, start_date=START, catchup=False, max_active_runs=1,
     default_args={**DEFAULT_ARGS, "retries": 0}, tags=["spm", "maintenance"], doc_md=__doc__)
def spm_rollback():
    @task(outlets=[ANALYTICS])
    def rollback() -> dict:
        return pipeline.rollback()

    rollback()


@dag(dag_id="spm_docs", schedule=[ANALYTICS], start_date=START, catchup=False, max_active_runs=1,
     default_args=DEFAULT_ARGS, tags=["spm", "docs"], doc_md=__doc__)
def spm_docs():
    @task
    def dbt_docs(**context) -> dict:
        return pipeline.docs(context["run_id"], as_of_date(context))

    dbt_docs()


spm_key_reconciliation()
spm_rollback()
spm_docs()
