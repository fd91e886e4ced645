"""Alembic environment of the event service (schema ``event``)."""

from services.event.store.tables import Base
from services.kit.db import run_alembic_env

run_alembic_env(Base.metadata)
