"""Maintenance DAGs: hard-delete detection, rollback, docs after publication.

- spm_key_reconciliation: compares source keys with raw_mis on a schedule
  (weekly by default) and marks rows deleted in the source.
- spm_rollback: manual; restores the previous publication of analytics.
- spm_docs: runs whenever analytics changes (publish or rollback, asset-
  triggered) and points reports/published at the live build's run report,
  dbt docs and GX Data Docs, so analysts keep one bookmark.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from spm_warehouse.dag_defaults import ANALYTICS, DEFAULT_ARGS, RAW_MIS

START = pendulum.datetime(2024, 1, 1, tz="UTC")


@dag(dag_id="spm_key_reconciliation", schedule="0 3 * * 0", start_date=START, catchup=False,
     max_active_runs=1, default_args=DEFAULT_ARGS, tags=["spm", "maintenance"], doc_md=__doc__)
def spm_key_reconciliation():
    @task(outlets=[RAW_MIS])
    def reconcile(**context) -> dict:
        from spm_warehouse import pipeline  # in the task: the DAG file stays cheap to parse

        return pipeline.reconcile_keys(context["run_id"])

    reconcile()


@dag(dag_id="spm_rollback", schedule=None, start_date=START, catchup=False, max_active_runs=1,
     default_args={**DEFAULT_ARGS, "retries": 0}, tags=["spm", "maintenance"], doc_md=__doc__)
def spm_rollback():
    @task(outlets=[ANALYTICS])
    def rollback() -> dict:
        from spm_warehouse import pipeline  # in the task: the DAG file stays cheap to parse

        return pipeline.rollback()

    rollback()


@dag(dag_id="spm_docs", schedule=[ANALYTICS], start_date=START, catchup=False, max_active_runs=1,
     default_args=DEFAULT_ARGS, tags=["spm", "docs"], doc_md=__doc__)
def spm_docs():
    @task
    def refresh_published_docs() -> dict:
        from spm_warehouse import pipeline  # in the task: the DAG file stays cheap to parse

        return pipeline.refresh_published_docs()

    refresh_published_docs()


spm_key_reconciliation()
spm_rollback()
spm_docs()
