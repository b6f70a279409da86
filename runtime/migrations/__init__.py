"""Alembic migrations of the kernel's database (run by ``arcana migrate``; see ``arcana.database``)."""
