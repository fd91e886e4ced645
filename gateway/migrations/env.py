"""Alembic environment of the gateway (schema ``gateway``)."""

from gateway.store.tables import Base
from services.kit.db import run_alembic_env

run_alembic_env(Base.metadata)
