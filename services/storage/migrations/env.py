"""Alembic environment of the storage service (schema ``storage``)."""

from services.kit.db import run_alembic_env
from services.storage.store.tables import Base

run_alembic_env(Base.metadata)
