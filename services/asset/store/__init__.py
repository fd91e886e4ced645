"""SQLAlchemy 2.0 tables and repositories of the ledger (schema ``asset``)."""
