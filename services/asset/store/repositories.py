"""Repositories implementing the domain's persistence protocols on a SQLAlchemy session."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.asset.domain.organizations import Organization
from services.asset.store.tables import OrganizationRow


class SqlOrganizations:
    """:class:`~services.asset.domain.organizations.OrganizationRepository` on PostgreSQL."""

    def __init__(self, session: Session) -> None:
        self._session = session

    @staticmethod
    def _to_domain(row: OrganizationRow) -> Organization:
        return Organization(id=row.id, channel=row.channel, address=row.address, creation_date=row.creation_date)

    def get(self, channel: str, org_id: str) -> Organization | None:
        row = self._session.get(OrganizationRow, (channel, org_id))
        return None if row is None else self._to_domain(row)

    def add(self, organization: Organization) -> None:
        self._session.add(
            OrganizationRow(
                channel=organization.channel,
                id=organization.id,
                address=organization.address,
                creation_date=organization.creation_date,
            )
        )
        self._session.flush()

    def list(self, channel: str) -> list[Organization]:
        rows = self._session.scalars(
            sa.select(OrganizationRow)
            .where(OrganizationRow.channel == channel)
            .order_by(OrganizationRow.creation_date, OrganizationRow.id)
        )
        return [self._to_domain(row) for row in rows]
