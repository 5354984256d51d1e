"""Management dashboards in Apache Superset, kept as code.

`assets/` holds the dashboards in Superset's export layout; this package
installs Superset in its own venv, imports them with the read-only bi_reader
connection, applies branch-manager row-level security and serves Superset.
Entry point: `python -m dashboards` (see __main__.py).
"""
