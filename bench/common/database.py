"""A bench's own database, created empty on the server of a DSN."""

from __future__ import annotations

import psycopg


def fresh_database(dsn: str, name: str) -> None:
    """Drop and create database `name` on the server `dsn` points at."""
    maintenance = psycopg.conninfo.make_conninfo(dsn, dbname="postgres")
    with psycopg.connect(maintenance, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
