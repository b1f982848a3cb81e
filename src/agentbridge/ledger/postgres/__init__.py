"""The PostgreSQL ledger backend (``ledger = "postgresql://…"``), for several supervisors on
one database: ``core.PostgresLedger``. Only this package imports psycopg, and nothing imports
it until a PostgreSQL URL is opened, so the SQLite default needs neither psycopg nor a server.
"""
