"""Running the image with podman, for the image tests: the tools, and a container's command line.

Containers run the way the charts run the services: read-only root filesystem with a tmpfs ``/tmp``, every
capability dropped, no privilege escalation, explicit ulimits, on runc with cgroupfs (crun cannot set
rlimits in the containers these machines are). They share the host's network (``--network=host``), which
is how they reach the test session's PostgreSQL and NATS on 127.0.0.1 and how the test reaches them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tools.image import build

TOOLS = {"podman": "podman", "runc": "runc", "debootstrap": "debootstrap"}  # command -> Debian package
# What bubblewrap needs to create a jail inside the container (the compute service's local executor): a
# seccomp profile that lets it unshare namespaces and set the jail's hostname, no AppArmor confinement,
# and an unmasked /proc (the kernel refuses a new proc mount while parts of the container's are masked).
# Kubernetes: seccompProfile Unconfined, appArmorProfile Unconfined, procMount Unmasked.
JAIL_OPTIONS = (
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "apparmor=unconfined",
    "--security-opt",
    "unmask=/proc/*",
)


def missing_tools() -> list[str]:
    """The commands of :data:`TOOLS` this machine lacks (runc counts when not at its Debian path either)."""
    missing = [c for c in TOOLS if shutil.which(c) is None]
    if "runc" not in missing and not Path(build.RUNC).exists():
        missing.append("runc")
    return missing


def install_tools(missing: list[str]) -> str:
    """Install ``missing`` from Debian's packages; returns why that is impossible here ('' on success)."""
    if os.geteuid() != 0:
        return f"{', '.join(missing)} missing and not root (apt-get install {' '.join(TOOLS[c] for c in missing)})"
    if shutil.which("apt-get") is None:
        return f"{', '.join(missing)} missing and no apt-get on this machine"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    packages = [TOOLS[c] for c in missing]
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    if subprocess.run(install, capture_output=True, env=env).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, check=False)
        result = subprocess.run(install, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            return f"apt-get install {' '.join(packages)} failed: {result.stderr[-500:]}"
    still = missing_tools()
    return f"{', '.join(still)} still missing after apt-get install" if still else ""


def run_command(
    image: str,
    args: list[str],
    *,
    name: str | None = None,
    env: dict[str, str] | None = None,
    volumes: dict[Path, str] | None = None,
    entrypoint: str | None = None,
    user: str | None = None,
    network: str = "none",
    options: tuple[str, ...] = (),
    detach: bool = False,
) -> list[str]:
    """``podman run`` of ``image`` with the charts' container hardening; ``volumes`` maps host paths to
    ``<target>[:ro]``."""
    command = [*build.podman(), "run", "--network", network, *build.ULIMITS]
    command += ["--read-only", "--cap-drop=ALL", "--security-opt", "no-new-privileges", *options]
    command += ["--detach"] if detach else ["--rm"]
    if name:
        command += ["--name", name]
    for key, value in sorted((env or {}).items()):
        command += ["--env", f"{key}={value}"]
    for source, target in sorted((volumes or {}).items()):
        command += ["--volume", f"{source}:{target}"]
    if entrypoint is not None:
        command += ["--entrypoint", entrypoint]
    if user is not None:
        command += ["--user", user]
    return [*command, image, *args]


def logs(name: str) -> str:
    """The output of container ``name`` so far (its last 4000 characters)."""
    result = subprocess.run([*build.podman(), "logs", name], capture_output=True, text=True)
    return (result.stdout + result.stderr)[-4000:]


def running(name: str) -> bool:
    """Whether container ``name`` is running."""
    result = subprocess.run(
        [*build.podman(), "inspect", "--format", "{{.State.Running}}", name], capture_output=True, text=True
    )
    return result.stdout.strip() == "true"


def remove(name: str) -> None:
    """Stop (SIGTERM, then SIGKILL after 5 s) and remove container ``name``, if it exists."""
    subprocess.run([*build.podman(), "rm", "--force", "--time", "5", name], capture_output=True)
