"""Alembic environment: always run by ``arcana.database.migrate`` on its own connection.

The caller opens the transaction (``BEGIN IMMEDIATE`` on SQLite, an advisory
lock on PostgreSQL), so concurrent migrations queue instead of colliding.
"""

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `arcana migrate`, not the alembic command")
# render_as_batch: SQLite cannot ALTER most things; batch mode copies the table.
context.configure(connection=connection, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
