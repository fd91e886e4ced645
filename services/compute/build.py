"""Building a function for the local executor (its stand-in for an image build).

The archive is fetched, checked against the ledger's checksum and unpacked safely (in compute:
checked, bounded, no links out) twice: the archive as uploaded (COPY's sources, read-only to the
steps) and the function's directory, where the tasks will run. By default tasks run on the compute
service's own interpreter, which has substratools. When the Dockerfile pip-installs packages that
this interpreter does not already provide, a virtualenv (with the service's site packages visible)
is made once per set of requirements and those packages are installed into it from wheels only, in
a jail whose only writable folder is the virtualenv and which has the network to reach the package
index. Then the Dockerfile's instructions are honoured in order (:mod:`services.compute.domain.dockerfile`
says how): each RUN, COPY and WORKDIR in a jail of its own without network, whose only writable
folder is the function's directory; an instruction that cannot be honoured fails the build, naming
it. The build's log reads like ``docker build``'s. Tasks then run with the Dockerfile's ``ENV`` and
start in its last ``WORKDIR``.
"""

from __future__ import annotations

import asyncio
import glob
import hashlib
import json
import os
import re
import shlex
import shutil
import stat
import sys
import sysconfig
import time
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from services.compute.domain import dockerfile
from services.compute.domain.builds import BuildError, FunctionCode
from services.compute.isolation import BASE_ENV, Mount, OneShot
from services.kit import archives, trees
from services.kit.errors import InvalidArgument, ResourceExhausted

TOOLING = {"pip", "setuptools", "wheel"}
BUILT = "build.json"  # a finished build's record: its entrypoint and interpreter
OPTIONS_WITH_VALUE = {"-i", "--index-url", "--extra-index-url", "-f", "--find-links", "-c", "--constraint"}
# A wheel's file name: name-version[-build]-python-abi-platform.whl
WHEEL_NAME = re.compile(r"[^-/]+-[^-/]+(-[0-9][^-/]*)?-[^-/]+-[^-/]+-[^-/]+\.whl")
MAX_REQUIREMENT_FILES = 64


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


def _requirements_file(path: Path, code: Path, read: set[Path], including: tuple[Path, ...] = ()) -> list[str]:
    """The requirements of a pip requirements file inside the archive (``file:`` wheels resolved). Each file
    is read once however often it is included (``read``: those read so far, at most
    ``MAX_REQUIREMENT_FILES``); ``including``: the files whose ``-r`` lines led here."""
    target = (code / path).resolve()
    if not target.is_relative_to(code.resolve()) or not target.is_file():
        raise BuildError(f"requirements file {path} is not in the archive")
    if target in including:
        raise BuildError(f"requirements file {path} includes itself")
    if target in read:
        return []
    read.add(target)
    if len(read) > MAX_REQUIREMENT_FILES:
        raise BuildError(f"requirements file {path}: more than {MAX_REQUIREMENT_FILES} requirements files")
    text = target.read_text(errors="replace").replace("\\\n", " ")
    requirements = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-r ") or line.startswith("--requirement"):
            include = Path(line.split(None, 1)[1].strip())
            requirements += _requirements_file(include, code, read, (*including, target))
            continue
        if line.startswith("-"):
            continue  # an option line (index, hashes...)
        line = " ".join(t for t in line.split() if not t.startswith("--hash"))
        if line.startswith("file:"):
            wheel = (code / line.removeprefix("file:")).resolve()
            if not wheel.is_relative_to(code.resolve()) or not WHEEL_NAME.fullmatch(wheel.name):
                raise BuildError(f"unsupported requirement {line!r}: only wheels inside the archive")
            requirements.append(str(wheel))
        else:
            requirements.append(line)
    return requirements


def pip_requirements(dockerfile: str, code: Path) -> list[str]:
    """Every requirement the Dockerfile's ``RUN pip install`` commands name, requirement files
    included; installing pip, setuptools or wheel themselves is left out (build tooling)."""
    requirements, read = [], set()
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
                    requirements += _requirements_file(Path(arguments[i + 1]), code, read)
                    skip = True
                elif token in OPTIONS_WITH_VALUE:
                    skip = True
                elif not token.startswith("-"):
                    requirements.append(token)
    for requirement in requirements:
        _check_requirement(requirement, code)
    return [r for r in requirements if _name(r) not in TOOLING]


def _check_requirement(text: str, code: Path) -> None:
    """A package name with a version, or a wheel inside the archive: a build reaches the package
    index and nothing else (no URL, no VCS, no path outside the archive)."""
    if _is_wheel(text):
        wheel = Path(text)
        if wheel.is_relative_to(code.resolve()) and WHEEL_NAME.fullmatch(wheel.name):
            return  # resolved inside the archive by _requirements_file
        raise BuildError(f"unsupported requirement {text!r}: a wheel is named by a file: line inside the archive")
    try:
        requirement = Requirement(text)
    except InvalidRequirement as exc:
        raise BuildError(f"unsupported requirement {text!r}: name a package and its version") from exc
    if requirement.url:
        raise BuildError(f"unsupported requirement {text!r}: packages come from the index, not from a URL")


def _is_wheel(requirement: str) -> bool:
    """A wheel's path (:func:`_check_requirement` lets through only those of the archive, with a wheel's name)."""
    return requirement.endswith(".whl") and Path(requirement).is_absolute()


def _name(requirement: str) -> str:
    if _is_wheel(requirement):
        return Path(requirement).name.split("-")[0].lower().replace("_", "-")
    try:
        return Requirement(requirement).name.lower()
    except InvalidRequirement:
        return requirement.lower()


def missing(requirements: list[str]) -> list[str]:
    """The requirements the service's own interpreter does not already satisfy."""
    wanted = []
    for text in requirements:
        if _is_wheel(text):  # name-version-...whl: installed at that version already?
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
    """Build ``archive`` once per checksum: unpacked, its environment made, its Dockerfile's steps run
    (:mod:`services.compute.domain.dockerfile`); BuildError on user mistakes, naming the instruction."""
    target = functions_dir / checksum
    built = target / BUILT
    if built.is_file():  # compute's own record: never a file of the function's, which its steps may change
        recorded = json.loads(built.read_text())
        text = (target / "context" / "Dockerfile").read_text(errors="replace")
        return _code(target / "code", recorded["entrypoint"], recorded["python"], text)
    if target.exists():
        await asyncio.to_thread(trees.remove_tree, target)  # what an interrupted or failed build left
    target.mkdir(parents=True)
    try:
        code = await _build(archive, target, functions_dir, log, timeout, jails)
    except BaseException:
        await asyncio.to_thread(trees.remove_tree, target)
        raise
    built.write_text(json.dumps({"entrypoint": code.entrypoint, "python": code.python}))
    return code


async def _build(archive: Path, target: Path, functions_dir: Path, log: Path, timeout: float, jails: OneShot):
    deadline = time.monotonic() + timeout
    context, code = target / "context", target / "code"
    try:
        archives.inspect_function_archive(archive)
        archives.extract(archive, context)
    except (InvalidArgument, ResourceExhausted) as exc:
        raise BuildError(str(exc)) from exc
    # The archive as uploaded stays apart, read-only to the steps (COPY's sources); the function's
    # directory starts as a copy of it (links inside the archive copied as links).
    try:
        shutil.copytree(context, code, symlinks=True)
    except RecursionError as exc:
        raise BuildError("the archive's folders are nested too deep to be copied") from exc
    text = (context / "Dockerfile").read_text(errors="replace")
    try:
        entrypoint = archives.parse_entrypoint(text)
    except InvalidArgument as exc:
        raise BuildError(str(exc)) from exc
    packages = missing(pip_requirements(text, context))
    python, venv = sys.executable, None
    if packages:
        # One virtualenv per set of requirements: functions that need the same packages share it.
        digest = hashlib.sha256("\n".join(sorted(packages)).encode()).hexdigest()[:24]
        venv = functions_dir / "venvs" / digest
        python = await _virtualenv(venv, packages, context, log, _left(deadline), jails)
    path = [dockerfile.SHIMS, *([str(venv / "bin")] if venv else []), "/usr/local/bin", "/usr/bin", "/bin"]
    env = {"PATH": ":".join(path), "HOME": "/tmp"}
    steps = dockerfile.plan(text, env, lambda source: _expand(context, source))
    shims = target / "shims"
    shims.mkdir()
    for name, script in dockerfile.shims(python).items():
        (shims / name).write_text(script)
        (shims / name).chmod(0o755)
    mounts = [
        Mount(code, dockerfile.WORK, writable=True),
        Mount(context, dockerfile.CONTEXT),
        Mount(shims, dockerfile.SHIMS),
        *([Mount(venv, str(venv))] if venv else []),
    ]
    for number, step in enumerate(steps, start=1):
        _note(log, f"Step {number}/{len(steps)} : {step.instruction.text}")
        if not step.argv:
            _note(log, f" ---> {step.note}")
            continue
        started = time.monotonic()
        try:
            status = await jails.run(step.argv, log=log, timeout=_left(deadline), mounts=mounts)
        except trees.TooDeep as exc:  # what the step wrote could not be given back to compute
            raise step.instruction.refused(f"left {exc.strerror}") from exc
        if status == -1:
            raise step.instruction.refused(f"the build timed out after {timeout:g} s")
        if status != 0:
            raise step.instruction.refused(f"returned a non-zero code: {status}")
        _note(log, f" ---> done in {time.monotonic() - started:.1f} s")
    try:
        await asyncio.to_thread(_tidy, code)
    except trees.TooDeep as exc:
        raise BuildError(f"the build's steps left {exc.strerror}") from exc
    return _code(code, entrypoint, python, text)


def _code(directory: Path, entrypoint: list[str], python: str, text: str) -> FunctionCode:
    """A built function, its tasks given the Dockerfile's ENV (resolved against the jails' base environment)
    and started in its last WORKDIR."""
    runtime = dockerfile.runtime(text, BASE_ENV)
    return FunctionCode(directory, entrypoint, python, env=runtime.env, workdir=runtime.workdir)


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise BuildError("the build timed out")
    return left


def _note(log: Path, line: str) -> None:
    with open(log, "a") as out:
        out.write(line + "\n")


def _expand(context: Path, source: str) -> list[tuple[str, bool]]:
    """The archive's entries a COPY source names (a path or a glob), relative, and whether each is a folder."""
    root = context.resolve()
    matches = sorted(glob.glob(source, root_dir=root)) if re.search(r"[*?[]", source) else [source]
    found = []
    for relative in matches:
        path = root / relative
        if (path.exists() or path.is_symlink()) and path.resolve().is_relative_to(root):
            found.append((relative, path.is_dir() and not path.is_symlink()))
    return found


def _tidy(root: Path) -> None:
    """Make what the steps left safe to copy and to remove: anything but a file, a folder or a link (a
    FIFO or a socket would block or mislead whoever copies it for a task) removed; folders and files
    readable and writable by their owner, without setuid, setgid or sticky bits (a step may have
    locked a folder with ``chmod 000``). Folders are opened to walk them only once opened up."""
    if not root.is_dir() or root.is_symlink():
        return
    os.chmod(root, 0o755)
    for folder_fd, entries in trees.walk(root):
        for name, mode in entries:
            if stat.S_ISDIR(mode):
                os.chmod(name, (mode & 0o777) | 0o755, dir_fd=folder_fd)
            elif stat.S_ISREG(mode):
                os.chmod(name, (mode & 0o777) | 0o644, dir_fd=folder_fd)
            elif not stat.S_ISLNK(mode):
                os.unlink(name, dir_fd=folder_fd)


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
    trees.remove_tree(venv)  # what an interrupted attempt left
    venv.mkdir(parents=True)
    try:
        await _fill_virtualenv(venv, python, packages, code, log, timeout, jails)
    except trees.TooDeep as exc:
        trees.remove_tree(venv)
        raise BuildError(f"making the function's virtualenv left {exc.strerror}") from exc
    (venv / ".ready").touch()
    return str(python)


async def _fill_virtualenv(
    venv: Path, python: Path, packages: list[str], code: Path, log: Path, timeout: float, jails: OneShot
):
    """Create the virtualenv and install ``packages`` in it, each in a jail of its own."""
    # The archive's own wheels (file: requirements) are read from its unpacked code, read-only.
    mounts = [Mount(venv, str(venv), writable=True), Mount(code, str(code))]
    create = [sys.executable, "-m", "venv", "--system-site-packages", str(venv)]
    if await jails.run(create, log=log, timeout=timeout, mounts=mounts):
        trees.remove_tree(venv)
        raise BuildError("could not create the function's virtualenv")
    # The service's own packages (substratools and what it brings) stay visible behind the function's.
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    service = sysconfig.get_paths()["purelib"]
    (venv / "lib" / version / "site-packages" / "_tessera_service.pth").write_text(service + "\n")
    install = [str(python), "-m", "pip", "install", "--only-binary=:all:", "--no-input", "--disable-pip-version-check"]
    install += ["--no-cache-dir", *packages]
    if await jails.run(install, log=log, timeout=timeout, mounts=mounts, network=True):
        trees.remove_tree(venv)
        raise BuildError(f"pip could not install {' '.join(packages)} (see the build logs)")
