"""spm_nightly: extract the MIS and surveys, build, check, publish.

One run = one as-of date (the logical date). Stages, each a task group:

    preflight -> prepare -> extract_mis -> build -> gate -> publish -> kpi_alerts -> report
                         -> extract_surveys ->

preflight checks the configuration (dbt vars, branch-access file, AIRFLOW_CONN_*)
before anything is extracted. kpi_alerts sends the published build's new KPI
alerts (analytics.kpi_alerts) once to the alert targets. Every task goes through pipeline.run_stage: a
failure becomes a StageFailed whose message (also the alert's text) names what
failed, with its numbers, the run report and what to do next.

The business rules live in dbt (dbt_project/) and the stage logic in
plugins/spm_warehouse/pipeline.py; this file is wiring only.
Params: full_refresh (re-extract and rebuild everything), reconcile_keys
(detect hard deletes in the source), as_of_date (override the logical date).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, TriggerRule, dag, task, task_group

from spm_warehouse.dag_defaults import ANALYTICS, DEFAULT_ARGS, RAW_KOBO, RAW_MIS, as_of_date


@dag(
    dag_id="spm_nightly",
    schedule=CronDataIntervalTimetable("0 2 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params={
        "full_refresh": Param(False, type="boolean", description="Re-extract every table and rebuild incremental models."),
        "reconcile_keys": Param(False, type="boolean", description="Compare source keys to find hard deletes."),
        "as_of_date": Param(None, type=["null", "string"], format="date", description="Override the as-of date (YYYY-MM-DD)."),
    },
    tags=["spm", "nightly"],
    doc_md=__doc__,
)
def spm_nightly():
    def stage(name: str, context, func: str, *args, **kwargs):
        # imported in the task, not when the DAG file is parsed: the stages pull in the database driver and
        # every stage's module, and the DAG processor re-parses this file all day
        from spm_warehouse import pipeline

        return pipeline.run_stage(name, context["run_id"], as_of_date(context), getattr(pipeline, func),
                                  *args, **kwargs)

    @task(retries=0)
    def preflight(**context) -> dict:
        return stage("preflight", context, "preflight")

    @task
    def prepare(**context) -> dict:
        return stage("prepare", context, "prepare_warehouse", context["run_id"], as_of_date(context))

    @task_group(group_id="extract_mis")
    def extract_mis():
        @task(outlets=[RAW_MIS])
        def extract_fineract(**context) -> dict:
            params = context["params"]
            return stage("extract_mis", context, "extract_mis", context["run_id"], as_of_date(context),
                         full_refresh=bool(params["full_refresh"]), reconcile=bool(params["reconcile_keys"]))

        return extract_fineract()

    @task_group(group_id="extract_surveys")
    def extract_surveys():
        @task(outlets=[RAW_KOBO])
        def extract_kobo(**context) -> dict:
            return stage("extract_surveys", context, "extract_surveys", context["run_id"], as_of_date(context),
                         full_refresh=bool(context["params"]["full_refresh"]))

        return extract_kobo()

    @task_group(group_id="build")
    def build():
        # retried like the extractions: build raises only when dbt could not run or lost the warehouse
        # (failing models and tests are judged by the gate, not retried)
        @task
        def dbt_build(**context) -> dict:
            return stage("build", context, "build", context["run_id"], as_of_date(context),
                         full_refresh=bool(context["params"]["full_refresh"]))

        return dbt_build()

    @task_group(group_id="gate")
    def gate(dbt_summary):
        @task(retries=0)
        def quality_gate(dbt_summary: dict, **context) -> dict:
            return stage("gate", context, "gate", context["run_id"], as_of_date(context), dbt_summary)

        return quality_gate(dbt_summary)

    @task_group(group_id="publish")
    def publish(verdict):
        @task(retries=0, outlets=[ANALYTICS])
        def publish_analytics(verdict: dict, **context) -> dict:
            return stage("publish", context, "publish", context["run_id"], as_of_date(context), verdict)

        return publish_analytics(verdict)

    @task
    def kpi_alerts(published: dict, **context) -> dict:
        # retried like the extractions: it fails only when no alert target took the message
        return stage("kpi_alerts", context, "send_kpi_alerts", context["run_id"], as_of_date(context))

    @task(trigger_rule=TriggerRule.ALL_DONE, retries=0)
    def report(**context) -> dict:
        from spm_warehouse import pipeline

        return pipeline.report(context["run_id"], as_of_date(context))

    ready = prepare()
    preflight() >> ready
    extracted = [extract_mis(), extract_surveys()]
    ready >> extracted
    built = build()
    extracted >> built
    published = publish(gate(built))
    [published, kpi_alerts(published)] >> report()

    @task(retries=0)
    def published_ok(result: dict) -> dict:
        """A leaf that succeeds only when publish did: a blocked night fails the DAG run
        (Airflow judges a run by its leaves, and `report` always runs)."""
        return result

    published_ok(published)


spm_nightly()
