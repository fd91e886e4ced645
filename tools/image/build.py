"""Build the Tessera image with podman, with no network inside the build.

- :func:`download_wheels`: the wheels of ``requirements.lock`` for CPython 3.11 on glibc 2.36 (Debian
  bookworm), downloaded on the host into a cache folder named after the lock file's hash.
- :func:`debian_base`: a base image made from Debian's packages (``debootstrap`` then ``podman import``),
  for machines that cannot pull a registry image; cached by its package list.
- :func:`build_image`: ``podman build`` of the repository's Dockerfile with those wheels as the build context
  ``wheels``, tagged ``tessera:<version>``.

Podman runs with the flags of :func:`podman` (runc, cgroupfs, events in a file: what works inside the
containers these machines are); ``TESSERA_PODMAN_FLAGS`` replaces them.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
IMAGE = "tessera"
RUNC = "/usr/sbin/runc"
# The wheels must suit the base: CPython 3.11 and Debian bookworm's glibc (2.36) at most.
PYTHON_VERSION = "3.11"
GLIBC_MINOR = 36
# The Debian base of the tests and of `make image` without BASE_IMAGE: the interpreter with its whole standard
# library, venv and ensurepip (compute makes virtualenvs for functions), and CA certificates (build steps that
# reach a package index).
DEBIAN_SUITE = "bookworm"
DEBIAN_PACKAGES = ("python3", "python3-venv", "ca-certificates")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# What the base leaves out: documentation, manual pages, translations, apt's package lists and downloads.
BASE_PRUNE = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "var/lib/apt/lists",
    "var/cache/apt/archives",
)
ULIMITS = ("--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096")

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cache_dir() -> Path:
    """``$TESSERA_CACHE/image`` (default ``~/.cache/tessera/image``)."""
    root = os.environ.get("TESSERA_CACHE") or str(Path.home() / ".cache" / "tessera")
    return Path(root) / "image"


def podman() -> list[str]:
    """The podman command with its global flags."""
    flags = os.environ.get("TESSERA_PODMAN_FLAGS")
    if flags is not None:
        return ["podman", *shlex.split(flags)]
    command = ["podman", "--cgroup-manager=cgroupfs", "--events-backend=file"]
    if Path(RUNC).exists():
        command += ["--runtime", RUNC]
    return command


def lock_hash() -> str:
    """The first 16 hex digits of the sha256 of ``requirements.lock``."""
    return hashlib.sha256(LOCK.read_bytes()).hexdigest()[:16]


def version() -> str:
    """``git describe`` of the work tree (``-dirty`` when it has changes), else ``lock-<hash>``."""
    try:
        described = subprocess.run(
            ["git", "describe", "--tags", "--always", "--dirty"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        described = ""
    # A tag is [A-Za-z0-9_.-], at most 128 characters, not starting with '.' or '-'.
    cleaned = "".join(c if c.isalnum() or c in "_.-" else "-" for c in described).lstrip(".-")[:128]
    return cleaned or f"lock-{lock_hash()}"


def _arch() -> str:
    machine = platform.machine()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def run(command: list[str], log: Log, **kwargs) -> subprocess.CompletedProcess:
    """Run ``command`` (logged first), failing with its output when it fails."""
    if shutil.which(command[0]) is None:
        package = {"podman": "podman runc"}.get(command[0], command[0])
        raise RuntimeError(f"{command[0]} is not installed (Debian: apt-get install {package})")
    log("$ " + shlex.join(command))
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(
            f"{shlex.join(command[:4])}... exited with {result.returncode}:\n{result.stdout[-3000:]}\n"
            f"{result.stderr[-3000:]}"
        )
    return result


def download_wheels(log: Log = _stderr) -> Path:
    """The folder of the lock file's wheels for the image's platform, downloaded once per lock file."""
    arch = _arch()
    folder = cache_dir() / "wheels" / f"{lock_hash()}-cp311-{arch}"
    if (folder / ".complete").exists():
        return folder
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    platforms = [f"manylinux_2_{minor}_{arch}" for minor in range(GLIBC_MINOR, 16, -1)]
    platforms += [f"manylinux2014_{arch}"]
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"]
    command += ["-r", str(LOCK), "-d", str(partial), "--only-binary=:all:"]
    command += ["--python-version", PYTHON_VERSION, "--implementation", "cp"]
    command += ["--abi", "cp311", "--abi", "abi3", "--abi", "none"]
    for tag in platforms:
        command += ["--platform", tag]
    run(command, log)
    (partial / ".complete").touch()
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder


def image_exists(name: str) -> bool:
    """Whether podman's local storage has the image ``name``."""
    return subprocess.run([*podman(), "image", "exists", name], capture_output=True).returncode == 0


def debian_mirror() -> str:
    """``TESSERA_DEBIAN_MIRROR``, else the Debian mirror apt uses on this machine, else deb.debian.org."""
    if os.environ.get("TESSERA_DEBIAN_MIRROR"):
        return os.environ["TESSERA_DEBIAN_MIRROR"]
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in sources:
        try:
            text = source.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if not line.startswith(("URIs:", "deb ")):
                continue
            for word in line.split():
                if word.startswith(("http://", "https://")) and word.rstrip("/").endswith("/debian"):
                    return word.rstrip("/")
    return DEFAULT_MIRROR


def base_key() -> str:
    """What names a Debian base: its suite, architecture and package list."""
    spec = "\n".join([DEBIAN_SUITE, _arch(), *sorted(DEBIAN_PACKAGES), *BASE_PRUNE])
    return hashlib.sha256(spec.encode()).hexdigest()[:12]


def debian_base(log: Log = _stderr) -> str:
    """A base image of Debian's packages (made with debootstrap, ~30 s to 90 s), imported into podman as
    ``localhost/tessera-base:<key>``; the root filesystem's tarball is cached by :func:`base_key`."""
    name = f"localhost/tessera-base:{base_key()}"
    if image_exists(name):
        return name
    tarball = cache_dir() / "base" / f"{DEBIAN_SUITE}-{base_key()}.tar"
    if not tarball.exists():
        if os.geteuid() != 0:
            raise RuntimeError("debootstrap needs root; give BASE_IMAGE (a Python 3.11 image) instead")
        tarball.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=tarball.parent) as scratch:
            rootfs = Path(scratch) / "rootfs"
            command = ["debootstrap", "--variant=minbase", "--include=" + ",".join(DEBIAN_PACKAGES)]
            run([*command, DEBIAN_SUITE, str(rootfs), debian_mirror()], log)
            for path in BASE_PRUNE:
                shutil.rmtree(rootfs / path, ignore_errors=True)
            partial = Path(scratch) / "rootfs.tar"
            run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."], log)
            partial.rename(tarball)
    run([*podman(), "import", "--change", 'CMD ["/bin/bash"]', str(tarball), name], log)
    return name


def build_image(base: str | None = None, tag: str | None = None, log: Log = _stderr) -> str:
    """Build the image (on ``base``, else the Dockerfile's default BASE_IMAGE); returns its name."""
    name = f"{IMAGE}:{tag or version()}"
    wheels = download_wheels(log)
    command = [*podman(), "build", "--network=none", *ULIMITS, "--build-context", f"wheels={wheels}"]
    if base:
        command += ["--build-arg", f"BASE_IMAGE={base}"]
    command += ["--tag", name, "--file", str(ROOT / "Dockerfile"), str(ROOT)]
    run(command, log)
    return name
