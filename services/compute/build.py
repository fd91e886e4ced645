"""Preparing a function's code for the local executor (the local stand-in for an image build).

The archive is fetched, checked against the ledger's checksum, unpacked safely, and its
Dockerfile read for the exec-form ENTRYPOINT. By default the task runs on the compute service's
own interpreter, which has substratools. When the Dockerfile pip-installs packages that this
interpreter does not already provide, a virtualenv (with the service's site packages visible) is
made once per set of requirements and those packages are installed into it from wheels only: no
Dockerfile command and no package build script ever runs. Unpacking happens in compute (checked,
bounded, no links out); making the virtualenv and pip run in a jail of their own (ADR 0007), whose
only writable folder is the virtualenv and which has the network to reach the package index.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shlex
import shutil
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from services.compute.domain.builds import BuildError, FunctionCode
from services.compute.isolation import Mount, OneShot
from services.kit import archives
from services.kit.errors import InvalidArgument, ResourceExhausted

TOOLING = {"pip", "setuptools", "wheel"}
OPTIONS_WITH_VALUE = {"-i", "--index-url", "--extra-index-url", "-f", "--find-links", "-c", "--constraint"}


def _pip_arguments(command: str) -> list[str] | None:
    """The arguments after ``pip install`` in one shell command, or None if it installs nothing."""
    try:
        tokens = shlex.split(command)
    except ValueError:
        return None
    for i in range(len(tokens) - 1):
        is_pip = Path(tokens[i]).name in ("pip", "pip3") or (tokens[i] == "pip" and i > 0 and tokens[i - 1] == "-m")
        if is_pip and tokens[i + 1] == "install":
            return tokens[i + 2 :]
    return None


def _requirements_file(path: Path, code: Path) -> list[str]:
    """The requirements of a pip requirements file inside the archive (``file:`` wheels resolved)."""
    target = (code / path).resolve()
    if not target.is_relative_to(code.resolve()) or not target.is_file():
        raise BuildError(f"requirements file {path} is not in the archive")
    text = target.read_text(errors="replace").replace("\\\n", " ")
    requirements = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-r ") or line.startswith("--requirement"):
            requirements += _requirements_file(Path(line.split(None, 1)[1].strip()), code)
            continue
        if line.startswith("-"):
            continue  # an option line (index, hashes...)
        line = " ".join(t for t in line.split() if not t.startswith("--hash"))
        if line.startswith("file:"):
            wheel = (code / line.removeprefix("file:")).resolve()
            if not wheel.is_relative_to(code.resolve()) or wheel.suffix != ".whl":
                raise BuildError(f"unsupported requirement {line!r}: only wheels inside the archive")
            requirements.append(str(wheel))
        else:
            requirements.append(line)
    return requirements


def pip_requirements(dockerfile: str, code: Path) -> list[str]:
    """Every requirement the Dockerfile's ``RUN pip install`` commands name, requirement files
    included; installing pip, setuptools or wheel themselves is left out (build tooling)."""
    requirements = []
    for line in dockerfile.replace("\\\n", " ").splitlines():
        stripped = line.strip()
        if not stripped.upper().startswith("RUN "):
            continue
        for command in re.split(r"&&|;|\|\|", stripped[4:]):
            arguments = _pip_arguments(command)
            if arguments is None:
                continue
            skip = False
            for i, token in enumerate(arguments):
                if skip:
                    skip = False
                    continue
                if token in ("-r", "--requirement") and i + 1 < len(arguments):
                    requirements += _requirements_file(Path(arguments[i + 1]), code)
                    skip = True
                elif token in OPTIONS_WITH_VALUE:
                    skip = True
                elif not token.startswith("-"):
                    requirements.append(token)
    for requirement in requirements:
        _check_requirement(requirement)
    return [r for r in requirements if _name(r) not in TOOLING]


def _check_requirement(text: str) -> None:
    """A package name with a version, or a wheel inside the archive: a build reaches the package
    index and nothing else (no URL, no VCS, no path outside the archive)."""
    if text.endswith(".whl") and Path(text).is_absolute():
        return  # resolved inside the archive by _requirements_file
    try:
        requirement = Requirement(text)
    except InvalidRequirement as exc:
        raise BuildError(f"unsupported requirement {text!r}: name a package and its version") from exc
    if requirement.url:
        raise BuildError(f"unsupported requirement {text!r}: packages come from the index, not from a URL")


def _name(requirement: str) -> str:
    if requirement.endswith(".whl"):
        return Path(requirement).name.split("-")[0].lower().replace("_", "-")
    try:
        return Requirement(requirement).name.lower()
    except InvalidRequirement:
        return requirement.lower()


def missing(requirements: list[str]) -> list[str]:
    """The requirements the service's own interpreter does not already satisfy."""
    wanted = []
    for text in requirements:
        if text.endswith(".whl"):  # name-version-...whl: installed at that version already?
            name, version = Path(text).name.split("-")[:2]
            try:
                if metadata.version(name.replace("_", "-")) == version:
                    continue
            except metadata.PackageNotFoundError:
                pass
            wanted.append(text)
            continue
        try:
            requirement = Requirement(text)
            installed = metadata.version(requirement.name)
        except (InvalidRequirement, metadata.PackageNotFoundError):
            wanted.append(text)
            continue
        if requirement.specifier and not requirement.specifier.contains(installed, prereleases=True):
            wanted.append(text)
    return wanted


async def prepare(
    archive: Path, functions_dir: Path, checksum: str, log: Path, timeout: float, jails: OneShot
) -> FunctionCode:
    """Unpack ``archive`` (once per checksum) and make its environment; BuildError on user mistakes."""
    target = functions_dir / checksum
    code = target / "code"
    marker = target / ".ready"
    if not marker.exists():
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        try:
            archives.inspect_function_archive(archive)
            archives.extract(archive, code)
        except (InvalidArgument, ResourceExhausted) as exc:
            shutil.rmtree(target, ignore_errors=True)
            raise BuildError(str(exc)) from exc
    dockerfile = (code / "Dockerfile").read_text(errors="replace")
    try:
        entrypoint = archives.parse_entrypoint(dockerfile)
    except InvalidArgument as exc:
        raise BuildError(str(exc)) from exc
    packages = missing(pip_requirements(dockerfile, code))
    python = sys.executable
    if packages:
        # One virtualenv per set of requirements: functions that need the same packages share it.
        digest = hashlib.sha256("\n".join(sorted(packages)).encode()).hexdigest()[:24]
        python = await _virtualenv(functions_dir / "venvs" / digest, packages, code, log, timeout, jails)
    marker.touch()
    return FunctionCode(directory=code, entrypoint=entrypoint, python=python)


_VENV_LOCKS: dict[Path, asyncio.Lock] = {}


async def _virtualenv(venv: Path, packages: list[str], code: Path, log: Path, timeout: float, jails: OneShot) -> str:
    async with _VENV_LOCKS.setdefault(venv, asyncio.Lock()):  # functions sharing requirements share it
        return await _make_virtualenv(venv, packages, code, log, timeout, jails)


async def _make_virtualenv(
    venv: Path, packages: list[str], code: Path, log: Path, timeout: float, jails: OneShot
) -> str:
    python = venv / "bin" / "python"
    if (venv / ".ready").exists():
        return str(python)
    shutil.rmtree(venv, ignore_errors=True)  # what an interrupted attempt left
    venv.mkdir(parents=True)
    # The archive's own wheels (file: requirements) are read from its unpacked code, read-only.
    mounts = [Mount(venv, str(venv), writable=True), Mount(code, str(code))]
    create = [sys.executable, "-m", "venv", "--system-site-packages", str(venv)]
    if await jails.run(create, log=log, timeout=timeout, mounts=mounts):
        shutil.rmtree(venv, ignore_errors=True)
        raise BuildError("could not create the function's virtualenv")
    # The service's own packages (substratools and what it brings) stay visible behind the function's.
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    service = sysconfig.get_paths()["purelib"]
    (venv / "lib" / version / "site-packages" / "_tessera_service.pth").write_text(service + "\n")
    install = [str(python), "-m", "pip", "install", "--only-binary=:all:", "--no-input", "--disable-pip-version-check"]
    install += ["--no-cache-dir", *packages]
    if await jails.run(install, log=log, timeout=timeout, mounts=mounts, network=True):
        shutil.rmtree(venv, ignore_errors=True)
        raise BuildError(f"pip could not install {' '.join(packages)} (see the build logs)")
    (venv / ".ready").touch()
    return str(python)
