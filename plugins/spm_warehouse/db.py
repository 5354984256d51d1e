"""connect(conn_id): the one way the runtime opens a PostgreSQL connection by its role.

Why one way: every stage, the CLI and the gate open the warehouse the same way
(the `warehouse` Airflow connection or AIRFLOW_CONN_WAREHOUSE, one
application_name so a DBA can see who is connected). The caller owns the
transaction: a connection is returned without autocommit unless asked, and
nothing here commits.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import psycopg

from spm_warehouse import settings

APPLICATION_NAME = "spm_warehouse"


@contextmanager
def connect(conn_id: str = "warehouse", *, autocommit: bool = False,
            application_name: str = APPLICATION_NAME) -> Iterator[psycopg.Connection]:
    """A psycopg connection for an Airflow connection id (PostgreSQL only); closed on exit.

    On exit psycopg commits a transaction still open when the block ended without
    an error and rolls it back otherwise: the `with` block is the unit of work.
    """
    info = settings.connection(conn_id)
    if info.dialect != "postgresql":
        raise ValueError(f"connection {conn_id}: {info.conn_type} is not PostgreSQL")
    with psycopg.connect(info.libpq_url(), autocommit=autocommit, application_name=application_name) as conn:
        yield conn
