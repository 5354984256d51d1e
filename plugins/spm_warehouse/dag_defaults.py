"""Defaults shared by every DAG: retries, alerts, assets, the as-of date.

Why one module: retries and failure alerts are set once here, so a new DAG
gets the same operational behaviour by using DEFAULT_ARGS, and producer and
consumer DAGs name the same Asset objects.
"""

from __future__ import annotations

from datetime import date, timedelta

from airflow.sdk import Asset

from spm_warehouse.failure_notifier import failure_notifier

DEFAULT_ARGS = {
    "owner": "spm-data",
    "retries": 2,
    "retry_delay": timedelta(minutes=5),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=30),
    "execution_timeout": timedelta(hours=4),
    "on_failure_callback": failure_notifier(),
}

# Assets link the DAG that produces data with the DAGs that consume it.
RAW_MIS = Asset(name="spm_raw_mis", uri="spm://warehouse/raw_mis")
RAW_KOBO = Asset(name="spm_raw_kobo", uri="spm://warehouse/raw_kobo")
ANALYTICS = Asset(name="spm_analytics", uri="spm://warehouse/analytics")


def as_of_date(context) -> date:
    """The run's as-of date: the `as_of_date` param, else the logical date.

    Manual runs in Airflow 3 may have no logical date: they then report on
    the last complete day before the run.
    """
    param = (context.get("params") or {}).get("as_of_date")
    if param:
        return date.fromisoformat(str(param))
    logical = context.get("logical_date")
    if logical is not None:
        return logical.date()
    return (context["dag_run"].run_after - timedelta(days=1)).date()
