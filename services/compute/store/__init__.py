"""What compute persists: no table. Its schema (``compute``) holds only Alembic's version table.

Everything compute must remember across a restart is in the ledger (a task's status, its registered
outputs) or in NATS (unacknowledged work is redelivered); on disk it keeps only a cache under
``TESSERA_WORK_DIR`` (:mod:`services.compute.domain.places`), which it can always fetch again. The
``executions`` table of migration 0001 was never read or written; migration 0002 drops it.
"""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

SCHEMA = "compute"


class Base(DeclarativeBase):
    """Base of compute's tables (there are none: see above)."""
