"""Alembic environment of the asset service (schema ``asset``)."""

from services.asset.store.tables import Base
from services.kit.db import run_alembic_env

run_alembic_env(Base.metadata)
