"""Fixtures of the image tests: podman and its tools (installed from Debian's packages when missing), the
image built on a base made from Debian's packages, and a one-organization network of containers."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tools.devnet.credentials import new_secret, write_org_credentials
from tools.devnet.embedded import free_port
from tools.image import build, containers

ORG = "MyOrg1MSP"
CHANNEL = "mychannel"
SERVICES = ("asset", "storage", "compute", "event", "gateway")


def skip_or_fail(reason: str) -> None:
    """Skip the image tests, except under CI, where a skipped tier is a failure."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"image tests cannot run under CI: {reason}")
    pytest.skip(reason)


FIGURES: list[str] = []


def pytest_terminal_summary(terminalreporter):
    """The image's build and start times, after the test summary."""
    for line in FIGURES:
        terminalreporter.write_line(line)


def timed(report: dict[str, float], label: str, action):
    started = time.monotonic()
    result = action()
    report[label] = time.monotonic() - started
    return result


@pytest.fixture(scope="session")
def image() -> str:
    """``tessera:<version>`` built with podman on a Debian base made here (both cached between runs)."""
    missing = containers.missing_tools()
    if missing:
        reason = containers.install_tools(missing)
        if reason:
            skip_or_fail(reason)
    report: dict[str, float] = {}
    try:
        base = timed(report, "base", build.debian_base)
        name = timed(report, "build", lambda: build.build_image(base))
    except RuntimeError as exc:
        pytest.fail(f"the image did not build: {exc}")
    figures = ", ".join(f"{label} {seconds:.1f}s" for label, seconds in report.items())
    FIGURES.append(f"image {name}: {figures}")
    return name


@dataclass
class Service:
    """One service container of the network."""

    name: str
    module: str
    addr: str
    container: str
    env: dict[str, str]
    volumes: dict[Path, str] = field(default_factory=dict)
    options: tuple[str, ...] = ()

    @property
    def http(self) -> bool:
        return self.name == "gateway"

    def healthy(self, timeout: float = 1.0) -> bool:
        """SERVING from grpc.health.v1 (the gRPC services), 200 from /healthz (the gateway)."""
        if self.http:
            import urllib.error
            import urllib.request

            try:
                with urllib.request.urlopen(f"http://{self.addr}/healthz", timeout=timeout) as response:
                    return response.status == 200
            except (OSError, urllib.error.URLError):
                return False
        with grpc.insecure_channel(self.addr) as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
            except grpc.RpcError:
                return False
            return reply.status == health_pb2.HealthCheckResponse.SERVING


def _owned_by_service(path: Path, mode: int = 0o700) -> Path:
    """A host folder or file the container's user (uid 10001) owns, as an emptyDir or a Secret would be."""
    os.chown(path, 10001, 10001)
    path.chmod(mode)
    return path


def _plan(tmp: Path, postgres, nats_server) -> list[Service]:
    from services.kit.db import ensure_database

    suffix = uuid.uuid4().hex[:6]
    ledger_db, org_db = f"img_{suffix}_ledger", f"img_{suffix}_org1"
    for database in (ledger_db, org_db):
        ensure_database(postgres.url(database))
    files = write_org_credentials(tmp / "credentials", {ORG: new_secret()})
    users = tmp / "users.json"
    admin = {"username": "org1-admin", "password": uuid.uuid4().hex, "role": "ADMIN", "channel": CHANNEL}
    users.write_text(json.dumps({"users": [admin]}))
    addrs = {name: f"127.0.0.1:{free_port()}" for name in SERVICES}
    common = {
        "TESSERA_NATS_URL": nats_server.url,
        "TESSERA_AUTH_MODE": "secret",
        "TESSERA_ORG_VERIFIERS_FILE": "/etc/tessera/credentials/verifiers.json",
        "TESSERA_CHANNELS": f"{CHANNEL}={ORG}",
    }
    org = {
        **common,
        "TESSERA_ORG_ID": ORG,
        "TESSERA_ORG_SECRET_FILE": "/etc/tessera/credentials/secret",
        "TESSERA_DATABASE_URL": postgres.url(org_db),
        "ASSET_ADDR": addrs["asset"],
        "STORAGE_ADDR": addrs["storage"],
        "COMPUTE_ADDR": addrs["compute"],
        "EVENT_ADDR": addrs["event"],
        "TESSERA_PEERS": f"{ORG}={addrs['storage']}",
        "TESSERA_PUBLIC_URL": f"http://{addrs['gateway']}",
    }
    # As the chart mounts them: the ledger gets the verifiers only, an organization's services its secret too.
    verifiers = {_owned_by_service(files.verifiers, 0o400): "/etc/tessera/credentials/verifiers.json:ro"}
    secret = {_owned_by_service(files.secret_files[ORG], 0o400): "/etc/tessera/credentials/secret:ro"}
    services = []
    for name in SERVICES:
        env = {**(common if name == "asset" else org), "TESSERA_SERVICE_NAME": f"{name}-image-test"}
        volumes = dict(verifiers) if name == "asset" else {**verifiers, **secret}
        options: tuple[str, ...] = ()
        if name == "asset":
            env["TESSERA_DATABASE_URL"] = postgres.url(ledger_db)
        if name == "gateway":
            env["TESSERA_HTTP_ADDR"] = addrs[name]
            env["TESSERA_USERS_FILE"] = "/etc/tessera/users/users.json"
            volumes[_owned_by_service(users, 0o400)] = "/etc/tessera/users/users.json:ro"
            media = tmp / "servermedias"
            media.mkdir()
            volumes[_owned_by_service(media)] = "/var/lib/tessera/servermedias"
            env["TESSERA_SERVERMEDIAS_ROOT"] = "/var/lib/tessera/servermedias"
        else:
            env["TESSERA_GRPC_ADDR"] = addrs[name]
        if name == "storage":
            (tmp / "storage").mkdir()
            volumes[_owned_by_service(tmp / "storage")] = "/var/lib/tessera/storage"
        if name == "compute":
            (tmp / "work").mkdir()
            volumes[_owned_by_service(tmp / "work")] = "/var/lib/tessera/compute"
            options = containers.JAIL_OPTIONS
        module = "gateway" if name == "gateway" else f"services.{name}"
        container = f"tessera-image-test-{suffix}-{name}"
        services.append(Service(name, module, addrs[name], container, env, volumes, options))
    return services


def _start(image: str, service: Service) -> None:
    command = containers.run_command(
        image,
        [service.module],
        name=service.container,
        env=service.env,
        volumes=service.volumes,
        network="host",
        options=service.options,
        detach=True,
    )
    subprocess.run(command, check=True, capture_output=True)


def _wait_healthy(services: list[Service], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    pending = list(services)
    while pending:
        for service in list(pending):
            if service.healthy():
                pending.remove(service)
            elif not containers.running(service.container):
                pytest.fail(f"{service.name} exited in its container:\n{containers.logs(service.container)}")
        if pending and time.monotonic() > deadline:
            report = "\n".join(f"--- {s.name}\n{containers.logs(s.container)}" for s in pending)
            pytest.fail(f"not healthy after {timeout:.0f}s: {', '.join(s.name for s in pending)}\n{report}")
        time.sleep(0.25)


@pytest.fixture(scope="module")
def network(image, postgres, nats_server, tmp_path_factory) -> dict[str, Service]:
    """The five services in containers of the image, on the session's PostgreSQL and NATS: the four gRPC
    services at once, then the gateway (whose health is that of all four)."""
    tmp = tmp_path_factory.mktemp("image-network")
    tmp.chmod(0o755)
    services = _plan(tmp, postgres, nats_server)
    grpc_services, gateway = services[:-1], services[-1]
    started = time.monotonic()
    try:
        for service in grpc_services:
            _start(image, service)
        _wait_healthy(grpc_services)
        _start(image, gateway)
        _wait_healthy([gateway])
        FIGURES.append(f"image network: five containers healthy in {time.monotonic() - started:.1f}s")
        yield {service.name: service for service in services}
    finally:
        for service in reversed(services):
            containers.remove(service.container)
