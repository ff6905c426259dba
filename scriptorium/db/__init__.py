"""Postgres schema and session handling; Postgres is the source of truth."""
