"""Build Letta 0.16.8's database schema from its ORM, for ``letta_lab.py``.

The 0.16.8 wheel ships no alembic migrations, so the lab cannot ``alembic upgrade``.
This script, run with the 0.16.8 virtualenv's interpreter, creates the database and
everything ``create_all`` can, plus the two things it cannot:

* ``messages.sequence_id`` is declared ``server_default=FetchedValue()``: the database
  must fill it, so a sequence (named ``message_seq_id`` as the migrations name it)
  becomes the column default;
* ``alembic_version`` holds the 0.16.8 head, since agent export reports it.

Idempotent (``IF NOT EXISTS`` and ``checkfirst``); it drops nothing. The default
organisation and user are created by the server on start, not here.

Usage: ``LETTA_PG_URI=postgresql://letta:letta@127.0.0.1:PORT/letta?sslmode=disable
<0.16.8 venv>/bin/python scripts/letta016_schema.py``
"""

from __future__ import annotations

import os
import sys

ALEMBIC_HEAD = "1c28e167b74f"  # alembic head at the 0.16.8 tag


def sync_uri(uri: str, database: str | None = None) -> str:
    """The URI for a synchronous psycopg2 engine.

    psycopg2, unlike pg8000 (Letta's sync driver), accepts ``?sslmode=disable``,
    which the server itself needs (asyncpg would ask for TLS otherwise).
    """
    rest = uri.split("://", 1)[1]
    if database is not None:
        location, _, query = rest.partition("?")
        rest = location.rsplit("/", 1)[0] + f"/{database}" + (f"?{query}" if query else "")
    return "postgresql+psycopg2://" + rest


def main() -> int:
    """Create the database (if missing) and the schema."""
    uri = os.environ.get("LETTA_PG_URI")
    if not uri:
        sys.stderr.write("LETTA_PG_URI is not set\n")
        return 2
    # Imported only now: Letta reads LETTA_PG_URI at import time, and without it
    # letta.orm.passage would pick SQLite's column type instead of pgvector's.
    import letta.orm  # noqa: F401  (registers every model on Base.metadata)
    from letta.orm.base import Base
    from sqlalchemy import create_engine, text

    database = uri.split("://", 1)[1].split("?", 1)[0].rsplit("/", 1)[1]
    admin = create_engine(sync_uri(uri, "postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        exists = connection.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": database}
        ).scalar()
        if not exists:
            connection.execute(text(f'CREATE DATABASE "{database}"'))
    admin.dispose()

    engine = create_engine(sync_uri(uri))
    with engine.begin() as connection:
        connection.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
        connection.execute(text("CREATE SEQUENCE IF NOT EXISTS message_seq_id START 1"))
    Base.metadata.create_all(engine, checkfirst=True)
    with engine.begin() as connection:
        connection.execute(
            text(
                "ALTER TABLE messages ALTER COLUMN sequence_id "
                "SET DEFAULT nextval('message_seq_id'::regclass)"
            )
        )
        connection.execute(text("ALTER SEQUENCE message_seq_id OWNED BY messages.sequence_id"))
        connection.execute(
            text(
                "CREATE TABLE IF NOT EXISTS alembic_version "
                "(version_num VARCHAR(32) NOT NULL PRIMARY KEY)"
            )
        )
        connection.execute(text("DELETE FROM alembic_version"))
        connection.execute(
            text("INSERT INTO alembic_version (version_num) VALUES (:head)"), {"head": ALEMBIC_HEAD}
        )
    engine.dispose()
    sys.stderr.write(f"schema ready: {len(Base.metadata.tables)} ORM tables\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
