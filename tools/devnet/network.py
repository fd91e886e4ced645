"""Plan and run a Tessera network: one ledger and, per organization, storage, compute, event and gateway.

:class:`Network` is used both by ``make run`` (``python -m tools.devnet``) and by the test suite,
so the tests start exactly what a developer starts. Every service is a child process started
from its own composition root with its settings in environment variables.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.kit.identity import DEFAULT_CHANNEL, OrgCredentials
from tools.devnet.credentials import CredentialFiles, keep_or_create
from tools.devnet.embedded import EmbeddedNats, EmbeddedPostgres, _die_with_parent, free_port_block, stop_process

REPO = Path(__file__).resolve().parents[2]
CHANNEL = DEFAULT_CHANNEL
ORG_SERVICES = ("storage", "compute", "event", "gateway")


def org_name(index: int) -> str:
    """Organization ids in the style of Substra's dev networks: MyOrg1MSP, MyOrg2MSP..."""
    return f"MyOrg{index}MSP"


@dataclass
class ServiceSpec:
    """One process of the network."""

    name: str  # asset, storage, compute, event or gateway
    org: str  # "" for the network-wide ledger
    module: str  # what `python -m` runs
    addr: str  # 127.0.0.1:port
    env: dict[str, str]
    http: bool = False
    process: subprocess.Popen | None = None

    @property
    def label(self) -> str:
        """``asset`` or ``MyOrg1MSP/storage``."""
        return f"{self.org}/{self.name}" if self.org else self.name


@dataclass(frozen=True)
class KubernetesTarget:
    """Where one organization's compute runs its tasks as pods (``TESSERA_EXECUTOR=kubernetes``, ADR 0010).

    Its work folder is shared with the task pods as a hostPath of itself: right for a cluster whose one node
    is this machine (the tests' control plane, with a stand-in playing the containers), not for a real one.
    """

    kubeconfig: str  # whom compute authenticates as (e.g. a token of the compute chart's ServiceAccount)
    namespace: str
    registry: str = "registry.test:5000"  # where function images are named (nothing is pushed in tests)
    env: dict[str, str] = field(default_factory=dict)  # more TESSERA_K8S_* settings

    def compute_env(self, work_dir: str) -> dict[str, str]:
        """Compute's environment for this target."""
        return {
            "TESSERA_EXECUTOR": "kubernetes",
            "TESSERA_K8S_KUBECONFIG": self.kubeconfig,
            "TESSERA_K8S_NAMESPACE": self.namespace,
            "TESSERA_K8S_WORK_HOST_PATH": work_dir,
            "TESSERA_K8S_REGISTRY": self.registry,
            **self.env,
        }


@dataclass
class Organization:
    """An organization's endpoints and login, as written to network.json."""

    id: str
    gateway: str
    username: str
    password: str
    storage: str
    compute: str
    event: str
    servermedias: str  # folders under it may be registered as data samples by path (the SDK's local=False)


@dataclass
class Network:
    """Embedded servers plus service processes, started and stopped together."""

    state_dir: Path
    orgs: int = 2
    base_port: int | None = None  # None: a free block chosen at random when the network is planned (tests)
    durable: bool = True
    log: Callable[[str], None] = print
    services: list[ServiceSpec] = field(default_factory=list)
    organizations: list[Organization] = field(default_factory=list)
    # Servers already running (the test session shares one pair); None: the network starts its own.
    postgres: EmbeddedPostgres | None = None
    nats: EmbeddedNats | None = None
    _owns_servers: bool = True
    # Prefix of the databases, so that several networks can share one PostgreSQL server.
    database_prefix: str = ""
    # Extra environment by service name ("compute", "event"...), e.g. short timeouts in tests.
    extra_env: dict[str, dict[str, str]] = field(default_factory=dict)
    # Organizations (by id) whose compute runs tasks as pods of a cluster; the others use the local executor.
    kubernetes: dict[str, KubernetesTarget] = field(default_factory=dict)
    # Written by plan(): each organization's secret file and the verifiers (ADR 0014).
    credentials: CredentialFiles | None = None

    def _port(self, offset: int) -> int:
        """The port at ``offset`` of the network's block: ``base_port``'s, or else a free block below the kernel's
        ephemeral range. A port picked in that range can be taken by any outgoing connection before its service
        binds it (a 10-organization network failed to start that way, about once in six)."""
        if self.base_port is None:
            self.base_port = free_port_block(span=10 * (self.orgs + 1) + 10)
        return self.base_port + offset

    def database(self, name: str) -> str:
        """The name of a database of this network on its PostgreSQL (the ledger's, or an organization's lower-cased)."""
        return f"{self.database_prefix}{name}"

    # ----------------------------------------------------------------- plan
    def _credentials(self) -> tuple[CredentialFiles, dict[str, dict[str, str]]]:
        """Organization secrets and gateway logins, made once and kept in the state directory.

        Each organization's secret is only in its own file under ``credentials/``; the logins in
        ``credentials.json`` (an older network's every-secret files are removed; new secrets replace them).
        """
        path = self.state_dir / "credentials.json"
        stored = json.loads(path.read_text()) if path.exists() else {"users": {}}
        folder = self.state_dir / "credentials"
        orgs = [org_name(i) for i in range(1, self.orgs + 1)]
        stored.pop("secrets", None)
        (self.state_dir / "org-secrets.json").unlink(missing_ok=True)
        for index, org in enumerate(orgs, start=1):
            stored["users"].setdefault(org, {"username": f"org{index}-admin", "password": secrets.token_urlsafe(12)})
        path.write_text(json.dumps(stored, indent=2))
        path.chmod(0o600)
        return keep_or_create(folder, orgs), stored["users"]

    def plan(self) -> None:
        """Choose ports and write the configuration files every service reads."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.credentials, users = self._credentials()
        if self.postgres is None or self.nats is None:
            self.postgres = EmbeddedPostgres(self.state_dir / "postgres", self._port(0), durable=self.durable)
            self.nats = EmbeddedNats(self.state_dir / "nats", self._port(1))
        else:
            self._owns_servers = False
        members = ",".join(org_name(i) for i in range(1, self.orgs + 1))
        unknown = set(self.kubernetes) - {org_name(i) for i in range(1, self.orgs + 1)}
        if unknown:
            raise ValueError(f"kubernetes targets for organizations not in the network: {sorted(unknown)}")
        common = {
            "TESSERA_NATS_URL": self.nats.url,
            "TESSERA_AUTH_MODE": "secret",
            "TESSERA_CHANNELS": f"{CHANNEL}={members}",
            "TESSERA_LOG_LEVEL": os.environ.get("TESSERA_LOG_LEVEL", "INFO"),
        }
        asset_addr = f"127.0.0.1:{self._port(2)}"
        self.services = [
            ServiceSpec(
                "asset",
                "",
                "services.asset",
                asset_addr,
                {
                    **common,
                    **self.credentials.env(),
                    "TESSERA_SERVICE_NAME": "asset",
                    "TESSERA_GRPC_ADDR": asset_addr,
                    "TESSERA_DATABASE_URL": self.postgres.url(self.database("ledger")),
                    **self.extra_env.get("asset", {}),
                },
            )
        ]
        self.organizations = []
        all_addrs = {
            org_name(i): {name: f"127.0.0.1:{self._port(10 * i + k)}" for k, name in enumerate(ORG_SERVICES)}
            for i in range(1, self.orgs + 1)
        }
        peers = ",".join(f"{org}={addrs['storage']}" for org, addrs in all_addrs.items())
        for index in range(1, self.orgs + 1):
            org = org_name(index)
            addrs = all_addrs[org]
            users_file = self.state_dir / f"users-{org}.json"
            users_file.write_text(json.dumps({"users": [{**users[org], "role": "ADMIN", "channel": CHANNEL}]}))
            users_file.chmod(0o600)
            org_env = {
                **common,
                **self.credentials.env(org),
                "TESSERA_ORG_ID": org,
                "TESSERA_DATABASE_URL": self.postgres.url(self.database(org.lower())),
                "ASSET_ADDR": asset_addr,
                "STORAGE_ADDR": addrs["storage"],
                "COMPUTE_ADDR": addrs["compute"],
                "EVENT_ADDR": addrs["event"],
                "TESSERA_STORAGE_ROOT": str(self.state_dir / "storage" / org),
                "TESSERA_WORK_DIR": str(self.state_dir / "compute" / org),
                "TESSERA_PEERS": peers,
                "TESSERA_PUBLIC_URL": f"http://{addrs['gateway']}",
                # Users of the dev network may download (export) models, Substra's model_export_enabled.
                "TESSERA_MODEL_EXPORT_CHANNELS": CHANNEL,
                # Each organization's jails run as uids of its own (when the network runs as root).
                "TESSERA_SANDBOX_UID_BASE": str(200000 + 1000 * index),
            }
            media = self.state_dir / "servermedias" / org
            for name in ORG_SERVICES:
                env = {**org_env, "TESSERA_SERVICE_NAME": f"{name}-{org}", **self.extra_env.get(name, {})}
                if name == "compute" and org in self.kubernetes:
                    env.update(self.kubernetes[org].compute_env(org_env["TESSERA_WORK_DIR"]))
                if name == "gateway":
                    media.mkdir(parents=True, exist_ok=True)
                    jwt_key = self.state_dir / f"jwt-{org}.key"
                    if not jwt_key.exists():  # kept across restarts: the web frontend's sessions survive them
                        jwt_key.write_text(secrets.token_urlsafe(48))
                        jwt_key.chmod(0o600)
                    env.update(
                        {
                            "TESSERA_JWT_SECRET_FILE": str(jwt_key),
                            # The Substra web frontend's development server, unless the caller says otherwise.
                            "TESSERA_CORS_ORIGINS": os.environ.get(
                                "TESSERA_CORS_ORIGINS", "http://localhost:3000,http://127.0.0.1:3000"
                            ),
                            "TESSERA_HTTP_ADDR": addrs[name],
                            "TESSERA_USERS_FILE": str(users_file),
                            "TESSERA_SERVERMEDIAS_ROOT": str(media),
                        }
                    )
                    module = "gateway"
                else:
                    env["TESSERA_GRPC_ADDR"] = addrs[name]
                    module = f"services.{name}"
                self.services.append(ServiceSpec(name, org, module, addrs[name], env, http=name == "gateway"))
            self.organizations.append(
                Organization(
                    id=org,
                    gateway=f"http://{addrs['gateway']}",
                    username=users[org]["username"],
                    password=users[org]["password"],
                    storage=addrs["storage"],
                    compute=addrs["compute"],
                    event=addrs["event"],
                    servermedias=str(media),
                )
            )

    # ------------------------------------------------------------------ run
    def start(self, timeout: float = 120.0) -> None:
        """Start PostgreSQL, NATS and every service; return once all report healthy."""
        if not self.services:
            self.plan()
        assert self.postgres is not None and self.nats is not None
        started = time.monotonic()
        if self._owns_servers:
            self.log(f"starting PostgreSQL on 127.0.0.1:{self.postgres.port}")
            self.postgres.start()
            self.log(f"starting NATS (JetStream) on 127.0.0.1:{self.nats.port}")
            self.nats.start()
        from services.kit.db import ensure_database

        for database in ["ledger", *(org_name(i).lower() for i in range(1, self.orgs + 1))]:
            ensure_database(self.postgres.url(self.database(database)))
        for spec in self.services:
            self.launch(spec)
        self._wait_healthy(started + timeout)
        self._wait_registered(started + timeout)
        self.log(f"all {len(self.services)} services healthy in {time.monotonic() - started:.1f}s")

    def log_path(self, spec: ServiceSpec) -> Path:
        """Where a service's output goes."""
        return self.state_dir / "logs" / f"{spec.label.replace('/', '-')}.log"

    def launch(self, spec: ServiceSpec) -> None:
        """Start one service process (it dies with this one)."""
        path = self.log_path(spec)
        path.parent.mkdir(exist_ok=True)
        with open(path, "ab") as out:
            spec.process = subprocess.Popen(
                [sys.executable, "-m", spec.module],
                cwd=REPO,
                env={**os.environ, **spec.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )

    def org_credentials(self, org: str, channel: str = "") -> OrgCredentials:
        """The gRPC credential of organization ``org`` (as its own services hold it)."""
        assert self.credentials is not None, "plan() writes the credentials"
        return OrgCredentials(org, self.credentials.secret(org), channel=channel)

    def service(self, name: str, org: str = "") -> ServiceSpec:
        """The spec of one service."""
        return next(s for s in self.services if s.name == name and s.org == org)

    def restart(self, spec: ServiceSpec, *, kill: bool = False, timeout: float = 60.0) -> None:
        """Stop a service (SIGKILL with ``kill``: a crash) and start it again; return once healthy."""
        if kill and spec.process is not None:
            spec.process.kill()
            spec.process.wait()
        else:
            stop_process(spec.process)
        self.launch(spec)
        self._wait_healthy(time.monotonic() + timeout, [spec])

    def _wait_healthy(self, deadline: float, specs: list[ServiceSpec] | None = None) -> None:
        specs = list(specs or self.services)
        pending = list(specs)
        last_report = ""
        while pending:
            for spec in list(pending):
                if spec.process is not None and spec.process.poll() is not None:
                    raise RuntimeError(
                        f"{spec.label} exited with status {spec.process.returncode}; see {self.log_path(spec)}"
                    )
                if check_health(spec):
                    pending.remove(spec)
            report = f"[{len(specs) - len(pending)}/{len(specs)} healthy]" + (
                f" waiting for {', '.join(s.label for s in pending)}" if pending else ""
            )
            if report != last_report:
                self.log(report)
                last_report = report
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"not healthy in time: {', '.join(s.label for s in pending)}")
            if pending:
                time.sleep(0.2)

    def _wait_registered(self, deadline: float) -> None:
        """Wait until the ledger lists every organization. Each event service registers its organization
        once it runs, which can be after the service answers its health checks; whoever uses the
        network next (a user's first listing, a test) expects them all."""
        from tessera.asset.v1 import asset_service_pb2 as api
        from tessera.asset.v1 import asset_service_pb2_grpc as api_grpc

        from services.kit.client import sync_channel

        wanted = {org.id for org in self.organizations}
        first = self.organizations[0].id
        with sync_channel(self.service("asset").addr, self.org_credentials(first)) as channel:
            stub = api_grpc.AssetServiceStub(channel)
            while True:
                try:
                    reply = stub.ListOrganizations(api.ListOrganizationsRequest(), timeout=5)
                    listed = {o.id for o in reply.organizations}
                except grpc.RpcError:
                    listed = set()
                if listed >= wanted:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"organizations not registered in time: {', '.join(sorted(wanted - listed))}")
                time.sleep(0.1)

    def dead_services(self) -> list[ServiceSpec]:
        """Services whose process has exited."""
        return [s for s in self.services if s.process is not None and s.process.poll() is not None]

    def stop(self) -> None:
        """Stop the services (gateways first, the ledger last), then NATS and PostgreSQL."""
        for spec in reversed(self.services):
            if spec.process is not None and spec.process.poll() is None:
                spec.process.terminate()
        for spec in reversed(self.services):
            stop_process(spec.process)
        if self._owns_servers and self.nats and self.postgres:
            self.nats.stop()
            self.postgres.stop()

    def description(self) -> dict:
        """The content of network.json."""
        assert self.nats is not None
        return {
            "asset": self.services[0].addr,
            "nats": self.nats.url,
            "postgres": self.postgres.url() if self.postgres else None,
            "channel": CHANNEL,
            "organizations": [vars(org) for org in self.organizations],
        }

    def table(self) -> str:
        """A human-readable table of endpoints and logins."""
        rows = [("ledger (asset)", self.services[0].addr, "", "")]
        rows += [
            (
                org.id,
                org.gateway,
                f"{org.username} / {org.password}",
                f"storage {org.storage}  compute {org.compute}  event {org.event}",
            )
            for org in self.organizations
        ]
        header = ("organization", "gateway (Substra API)", "login", "gRPC")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)


def check_health(spec: ServiceSpec, timeout: float = 1.0) -> bool:
    """True when the service answers SERVING (gRPC) or 200 on /healthz (gateway)."""
    if spec.http:
        try:
            with urllib.request.urlopen(f"http://{spec.addr}/healthz", timeout=timeout) as response:
                return response.status == 200
        except OSError:
            return False
    with grpc.insecure_channel(spec.addr) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.RpcError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING
