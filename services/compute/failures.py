"""Failure reports: a failed build's or task's logs stored in this organization's storage, then the
report registered in the ledger."""

from __future__ import annotations

from pathlib import Path

from tessera.asset.v1 import asset_service_pb2 as api
from tessera.storage.v1 import storage_pb2

from services.compute.domain.outputs import logs_address
from services.compute.files import Files
from services.compute.ledger import Ledger


class FailureReports:
    """Reports failures of this organization's builds and tasks."""

    def __init__(self, ledger: Ledger, files: Files, public_url: str) -> None:
        self._ledger = ledger
        self._files = files
        self._public_url = public_url

    async def report(self, channel: str, request: api.RegisterFailureReportRequest, logs: Path | None) -> None:
        """Register ``request``, with ``logs`` stored first when there are any."""
        if logs is not None and logs.exists():
            stored = await self._files.upload(
                channel, logs, storage_pb2.FILE_KIND_LOGS, request.asset_key, filename="logs.txt"
            )
            request.logs_address.CopyFrom(logs_address(self._public_url, request.asset_key, stored.checksum))
        await self._ledger.report_failure(channel, request)
