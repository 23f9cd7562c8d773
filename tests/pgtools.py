"""Databases of their own on the suite's real PostgreSQL server (``postgres_server``)."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg


def new_database(server: Any, name: str | None = None) -> str:
    """Create a database on ``server``; its URL (the server's Unix socket in the query)."""
    name = name or f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.get_uri(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    base, _, query = server.get_uri().partition("?")
    return f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")


def drop_database(server: Any, url: str) -> None:
    name = url.partition("?")[0].rsplit("/", 1)[-1]
    with psycopg.connect(server.get_uri(), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
