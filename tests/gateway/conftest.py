"""A two-organization network in process: the ledger, each organization's storage and gateway.

The ledger and storage are ``grpc.aio`` servers on background threads (``tests.support``); each
gateway is the real application under uvicorn on a free port, so the real ``substra`` SDK talks
HTTP to it. Storage is ``services.storage`` once it has a working ``Upload``, else the in-memory
:class:`~tests.gateway.fake_storage.FakeStorage` (``TESSERA_TEST_FAKE_STORAGE=1`` forces it). The
event service registers its organization and follows the ledger for the news feed (without NATS: it
publishes no work). Compute is not started: the workers' steps are simulated on the ledger by the tests.
"""

from __future__ import annotations

import importlib
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import uvicorn
from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import asset_service_pb2_grpc as api_grpc
from tessera.storage.v1 import storage_service_pb2_grpc

from gateway.bootstrap import build as build_gateway
from gateway.settings import GatewaySettings
from services.asset.bootstrap import build as build_ledger
from services.asset.settings import AssetSettings
from services.kit.client import sync_channel
from services.kit.db import ensure_database
from services.kit.identity import OrgCredentials
from services.kit.server import GrpcServer, authenticator_from
from services.kit.settings import CommonSettings
from tests.gateway.fake_storage import FakeStorage
from tests.support import ServerThread
from tools.devnet.credentials import CredentialFiles, new_secret, write_org_credentials
from tools.devnet.embedded import free_port

ORGS = ("MyOrg1MSP", "MyOrg2MSP")
SECRETS = {org: new_secret() for org in ORGS}
CHANNEL = "mychannel"
# The web frontend's origin, allowed by every test gateway (same host, another port, as the contract wants).
FRONTEND_ORIGIN = "http://127.0.0.1:3000"
# Parallel refreshes within this many seconds of a rotation get siblings; later, a replay revokes.
REFRESH_GRACE = 1.0
STORAGE_SERVICE = "tessera.storage.v1.StorageService"


def real_storage():
    """The storage bootstrap's ``build`` when services/storage has a working Upload, else None."""
    if os.environ.get("TESSERA_TEST_FAKE_STORAGE"):
        return None
    try:
        module = importlib.import_module("services.storage.server")
    except ImportError:
        return None
    servicer = getattr(module, "StorageService", None)
    if servicer is None or servicer.Upload is storage_service_pb2_grpc.StorageServiceServicer.Upload:
        return None
    return importlib.import_module("services.storage.bootstrap").build


class GatewayThread:
    """The gateway application served by uvicorn on a daemon thread."""

    def __init__(self, settings: GatewaySettings) -> None:
        host, _, port = settings.http_addr.rpartition(":")
        config = uvicorn.Config(
            build_gateway(settings),
            host=host,
            port=int(port),
            log_config=None,
            access_log=False,
            lifespan="on",
            proxy_headers=False,  # as gateway.__main__: forwarded headers are the application's business
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://{settings.http_addr}"

    def __enter__(self) -> GatewayThread:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@dataclass
class User:
    """A gateway login."""

    username: str
    password: str


@dataclass
class Org:
    """One organization of the test network."""

    id: str
    url: str
    admin: User
    user: User
    settings: GatewaySettings
    ledger: api_grpc.AssetServiceStub
    storage_addr: str
    users_file: Path
    database_url: str
    extra: dict = field(default_factory=dict)


@dataclass
class Net:
    """The running network."""

    asset_addr: str
    orgs: list[Org]
    credentials: CredentialFiles
    real_storage: bool

    @property
    def org1(self) -> Org:
        return self.orgs[0]

    @property
    def org2(self) -> Org:
        return self.orgs[1]


def gateway_settings(
    org: str,
    port: int,
    folder: Path,
    credentials: CredentialFiles,
    database_url: str,
    asset_addr: str,
    peers: str,
    **kw,
):
    """Settings of one test gateway; each organization signs its web sessions with its own key."""
    key_file = folder / f"jwt-{org}.key"
    if not key_file.exists():
        key_file.write_text(os.urandom(32).hex())
    return GatewaySettings(
        service_name=f"gateway-{org}",
        http_addr=f"127.0.0.1:{port}",
        asset_addr=asset_addr,
        storage_addr=kw.pop("storage_addr", ""),
        peers=peers,
        users_file=str(folder / f"users-{org}.json"),
        database_url=database_url,
        org_id=org,
        **credentials.settings(org),
        channels=f"{CHANNEL}={','.join(ORGS)}",
        model_export_channels=(CHANNEL,),
        cors_origins=(FRONTEND_ORIGIN,),
        jwt_secret_file=str(key_file),
        refresh_reuse_grace_seconds=REFRESH_GRACE,
        # Every test logs in from 127.0.0.1: the throttle's own tests use gateways with small rates.
        login_rate=kw.pop("login_rate", 10_000),
        **kw,
    )


def servermedias_root(folder: Path) -> Path:
    """The folder MyOrg1MSP's gateway serves server-side data samples from."""
    root = folder / "servermedias"
    root.mkdir(exist_ok=True)
    return root


def write_users(path: Path, org_index: int) -> tuple[User, User]:
    """The users file of an organization: an admin, a user, and a user without channel."""
    admin = User(f"org{org_index}-admin", f"admin-password-{org_index}")
    user = User(f"org{org_index}-user", f"user-password-{org_index}")
    path.write_text(
        json.dumps(
            {
                "users": [
                    {"username": admin.username, "password": admin.password, "role": "ADMIN", "channel": CHANNEL},
                    {"username": user.username, "password": user.password, "role": "USER", "channel": CHANNEL},
                    {"username": f"org{org_index}-lost", "password": "lost-password", "role": "USER", "channel": ""},
                ]
            }
        )
    )
    return admin, user


@pytest.fixture(scope="package")
def net(postgres, tmp_path_factory):
    """Ledger, storage and gateway of two organizations, registered on one channel."""
    folder = tmp_path_factory.mktemp("gateway-net")
    credentials = write_org_credentials(folder / "credentials", SECRETS)
    suffix = uuid.uuid4().hex[:6]
    ledger_url = postgres.url(f"gw_ledger_{suffix}")
    ensure_database(ledger_url)
    ledger_settings = AssetSettings(
        grpc_addr="127.0.0.1:0",
        database_url=ledger_url,
        **credentials.settings(),
        channels=f"{CHANNEL}={','.join(ORGS)}",
        relay_enabled=False,
    )
    storage_build = real_storage()
    threads = []
    with ServerThread(lambda: build_ledger(ledger_settings)) as ledger:
        try:
            storages, events, ports = [], [], {org: free_port() for org in ORGS}
            for org in ORGS:
                database_url = postgres.url(f"gw_{org.lower()}_{suffix}")
                ensure_database(database_url)
                storages.append(
                    _start_storage(org, folder, credentials, database_url, ledger.addr, storage_build, ports[org])
                )
                threads.append(storages[-1])
                events.append(_start_events(org, credentials, database_url, ledger.addr, ports[org]))
                threads.append(events[-1])
            peers = ",".join(f"{org}={s.addr}" for org, s in zip(ORGS, storages, strict=True))
            orgs = []
            for index, (org, storage, event) in enumerate(zip(ORGS, storages, events, strict=True), 1):
                admin, user = write_users(folder / f"users-{org}.json", index)
                database_url = postgres.url(f"gw_{org.lower()}_{suffix}")
                # Only the first organization lets users register server-side folders (local=False).
                media = {"servermedias_root": str(servermedias_root(folder))} if index == 1 else {}
                settings = gateway_settings(
                    org, ports[org], folder, credentials, database_url, ledger.addr, peers, storage_addr=storage.addr,
                    event_addr=event.addr, **media,
                )  # fmt: skip
                gateway = GatewayThread(settings).__enter__()
                threads.append(gateway)
                stub = api_grpc.AssetServiceStub(sync_channel(ledger.addr, OrgCredentials(org, SECRETS[org])))
                orgs.append(
                    Org(
                        org,
                        gateway.url,
                        admin,
                        user,
                        settings,
                        stub,
                        storage.addr,
                        folder / f"users-{org}.json",
                        database_url,
                    )
                )
            _wait_registered(orgs[0].ledger)
            yield Net(ledger.addr, orgs, credentials, storage_build is not None)
        finally:
            for thread in reversed(threads):
                thread.__exit__(None, None, None)


def _start_events(org: str, credentials: CredentialFiles, url: str, asset_addr: str, gateway_port: int) -> ServerThread:
    from services.event.bootstrap import build
    from services.event.settings import EventSettings

    settings = EventSettings(
        grpc_addr="127.0.0.1:0",
        database_url=url,
        org_id=org,
        **credentials.settings(org),
        channels=f"{CHANNEL}={','.join(ORGS)}",
        asset_addr=asset_addr,
        public_url=f"http://127.0.0.1:{gateway_port}",
        retry_seconds=0.2,
    )
    return ServerThread(lambda: build(settings)).__enter__()


def _start_storage(
    org: str, folder: Path, credentials: CredentialFiles, url: str, asset_addr: str, storage_build, gateway_port: int
) -> ServerThread:
    if storage_build is not None:
        from services.storage.settings import StorageSettings

        settings = StorageSettings(
            grpc_addr="127.0.0.1:0",
            database_url=url,
            org_id=org,
            **credentials.settings(org),
            channels=f"{CHANNEL}={','.join(ORGS)}",
            storage_root=str(folder / "storage" / org),
            asset_addr=asset_addr,
            public_url=f"http://127.0.0.1:{gateway_port}",
            **(
                {"model_export_channels": (CHANNEL,)}
                if "model_export_channels" in StorageSettings.__annotations__
                else {}
            ),
        )
        thread = ServerThread(lambda: storage_build(settings))
    else:
        settings = CommonSettings(
            service_name=f"storage-{org}",
            grpc_addr="127.0.0.1:0",
            **credentials.settings(),
            channels=f"{CHANNEL}={','.join(ORGS)}",
        )

        async def build() -> GrpcServer:
            server = GrpcServer(settings, authenticator_from(settings))
            server.add(storage_service_pb2_grpc.add_StorageServiceServicer_to_server, FakeStorage(org), STORAGE_SERVICE)
            return server

        thread = ServerThread(build)
    return thread.__enter__()


def _wait_registered(stub: api_grpc.AssetServiceStub, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            listed = stub.ListOrganizations(api.ListOrganizationsRequest()).organizations
            if {o.id for o in listed} >= set(ORGS):
                return
        except grpc.RpcError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the event services did not register their organizations")
        time.sleep(0.1)
