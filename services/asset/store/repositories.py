"""What one unit of work of the ledger is given: the composition root passes :class:`Repositories`
to ``UnitOfWork``, which builds it on the transaction's session; handlers never see the session."""

from __future__ import annotations

from sqlalchemy.orm import Session

from services.asset.store.outbox import Outbox
from services.asset.store.queries import Queries
from services.asset.store.sql import SqlStore


class Repositories:
    """Per channel, the rules' store and the list queries; across channels, the relay's outbox."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def store(self, channel: str) -> SqlStore:
        """The ``Store`` of the rules, scoped to ``channel``."""
        return SqlStore(self._session, channel)

    def queries(self, channel: str) -> Queries:
        """The filtered, paginated lists of ``channel``."""
        return Queries(self._session, channel)

    def outbox(self) -> Outbox:
        """The event log as the relay reads it."""
        return Outbox(self._session)
