"""Alembic environment of the compute service (schema ``compute``)."""

from services.compute.store import Base
from services.kit.db import run_alembic_env

run_alembic_env(Base.metadata)
