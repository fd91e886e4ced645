"""The ledger's and storage's clients close every channel they opened (no call is made: channels connect lazily)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from grpc.aio import UsageError
from tessera.asset.v1 import asset_service_pb2 as api
from tessera.storage.v1 import storage_pb2, storage_service_pb2

from services.compute.domain.places import Places
from services.compute.files import Files
from services.compute.ledger import Ledger
from services.kit.identity import OrgCredentials

CREDS = OrgCredentials("org1", "secret")
NOWHERE = "127.0.0.1:1"


def test_the_ledger_client_closes_the_channel_of_every_channel_it_acted_in():
    async def scenario():
        ledger = Ledger(NOWHERE, CREDS)
        stubs = [ledger._stub("one"), ledger._stub("two")]
        assert ledger._stub("one") is stubs[0]  # one channel per ledger channel
        await ledger.close()
        for stub in stubs:
            with pytest.raises(UsageError, match="closed"):
                await stub.GetTask(api.GetTaskRequest(key="k"))

    asyncio.run(scenario())


def test_the_storage_client_closes_every_peer_s_channel(tmp_path: Path):
    async def scenario():
        files = Files(CREDS, {"org1": NOWHERE, "org2": NOWHERE}, Places(tmp_path))
        stubs = [files._stub("org1", "one"), files._stub("org2", "one"), files._stub("org2", "two")]
        await files.close()
        request = storage_service_pb2.StatFileRequest(ref=storage_pb2.FileRef(kind=1, asset_key="k"))
        for stub in stubs:
            with pytest.raises(UsageError, match="closed"):
                await stub.StatFile(request)

    asyncio.run(scenario())
