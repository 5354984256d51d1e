# Image for the full stack (docker-compose.yml): Airflow 3 + dbt + GX + our code,
# installed from the same lock file as `make demo`.
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-client make git \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 50000 airflow
WORKDIR /opt/spm
COPY requirements.lock ./
RUN pip install --no-cache-dir uv==0.13.9 && uv pip sync --system requirements.lock
COPY --chown=airflow:airflow . .
ENV PYTHONPATH=/opt/spm/plugins:/opt/spm \
    AIRFLOW_HOME=/opt/airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/spm/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/spm/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    SPM_LOCAL_DIR=/opt/airflow/spm
RUN mkdir -p /opt/airflow/spm && chown -R airflow:airflow /opt/airflow
USER airflow
