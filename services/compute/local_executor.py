"""The local executor (:mod:`services.compute.executor`'s interface): warm runners in bubblewrap jails.

One runner (:mod:`services.compute.runner`) lives in one jail per (compute plan, function)
and runs that plan's tasks of that function one after another, as Substra keeps one pod per plan
and function. A runner's view of the organization is its own folder::

    <work>/runners/<id>/work/        a copy of the function's code                     (rw: /tessera/work)
    <work>/runners/<id>/in/<task>/   the task's inputs, hard links into the cache      (ro: /tessera/in)
                                     (input i at i/<cache name>: a data sample's folder is its key)
    <work>/runners/<id>/out/<task>/  the task's outputs and log                        (rw: /tessera/out)

Inputs are staged for a task just before it runs and removed just after (moved at once into
``<work>/trash/``, which no jail sees, and deleted there in the background), so a runner never sees
another task's inputs than the one it runs; the cache itself is never mounted. Outputs are copied
out of the jail's reach (regular files only, links refused) before anyone reads them. The runner
starts in the Dockerfile's last ``WORKDIR`` (a folder of ``work/``) with its ``ENV`` set.

A task whose plan and function already have a runner, busy with another task, waits for it rather than
starting a second one, but no longer than a runner takes to start and load (as measured here): short
tasks queue on their warm runner, a long one does not hold the next back by more than a cold start.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import posixpath
import shutil
import signal
import stat
import time
import uuid
from pathlib import Path

from services.compute import isolation
from services.compute.domain import layout
from services.compute.domain.execution import ExecutionResult, TaskSpec
from services.compute.isolation import Jail, Limits, Mount, UidPool
from services.compute.runner import SIGNAL_HINTS
from services.kit import background, trees

log = logging.getLogger("tessera.compute.executor")
COLD_START_GUESS = 0.5  # seconds to start and load a runner, until one is measured
COLD_START_CAP = 2.0  # the longest a task waits for its group's busy runner
SWEEP_WAIT = 2.0  # seconds a task's killed leftovers are given to end (one stuck in the kernel may not)


def safe_copy(folder_fd: int, name: str, dest: Path, max_bytes: int) -> bool:
    """Copy the regular file ``name`` of an open folder to ``dest``; False when it is missing, a link,
    a folder or anything but a regular file (the folder is the jail's: nothing in it is trusted)."""
    if not name or "/" in name or name.startswith(".") or "\0" in name:
        return False  # one plain name inside the folder: never a path through links the jail made
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder_fd)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.EACCES, errno.ENOTDIR):
            return False
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        copied = 0
        # A fresh file in compute's own folder: never an existing file, never through a link.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        # Readable by others: a model may be staged (hard-linked) as a later task's input in another jail.
        with open(os.open(dest, flags, 0o644), "wb") as out:
            while chunk := os.read(fd, 1 << 20):
                copied += len(chunk)
                if copied > max_bytes:
                    raise OSError(errno.EFBIG, f"{name} is larger than {max_bytes} bytes")
                out.write(chunk)
        return True
    finally:
        os.close(fd)


def open_folder(parent: Path, name: str) -> int | None:
    """An fd on ``parent/name`` when it is a real folder (not a link), else None."""
    try:
        parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
    except OSError:
        return None
    finally:
        os.close(parent_fd)


def link_tree(source: Path, dest: Path) -> None:
    """``dest`` mirrors ``source`` with hard links (copies across file systems); links are skipped."""
    if source.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, dest)
        except OSError:
            shutil.copyfile(source, dest)
        return
    dest.mkdir(parents=True, exist_ok=True)
    for entry in os.scandir(source):
        if entry.is_symlink():
            continue
        if entry.is_dir(follow_symlinks=False) or entry.is_file(follow_symlinks=False):
            link_tree(Path(entry.path), dest / entry.name)


def open_jail_proc(bwrap_pid: int) -> int | None:
    """An fd on the ``/proc`` of the jail whose outer bwrap is ``bwrap_pid``, or None when its init is gone.

    The jail's init is found as the one child of bwrap (compute's own child, not reaped while the
    jail lives, so its pid is not reused) and opened by a ``/proc/<pid>`` folder, which stays that
    process's: had the pid been reused, the parent check fails; had init died since, opening its root
    fails. The jail cannot change what its ``/proc`` is: a mount point cannot be renamed, and nothing
    in the jail may mount or unmount. The fd is refused when it shows compute's own pid namespace.
    """
    try:
        children = Path(f"/proc/{bwrap_pid}/task/{bwrap_pid}/children").read_text().split()
        init = os.open(f"/proc/{children[0]}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) if children else None
    except OSError:
        return None
    if init is None:
        return None
    try:
        if _stat(init)[1] != str(bwrap_pid):
            return None
        proc = os.open("root/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=init)
    except (OSError, IndexError):
        return None
    finally:
        os.close(init)
    try:
        if os.readlink("1/ns/pid", dir_fd=proc) != os.readlink("/proc/self/ns/pid"):
            return proc
    except OSError:
        pass
    os.close(proc)
    return None


def _stat(process: int) -> list[str]:
    """The fields of a process's ``stat`` (from its ``/proc/<pid>`` folder fd) after its name: state,
    parent pid... (the name, in parentheses, may hold anything)."""
    with open(os.open("stat", os.O_RDONLY | os.O_CLOEXEC, dir_fd=process)) as stat_file:
        return stat_file.read().rsplit(")", 1)[1].split()


def _ended(process: int) -> bool:
    """Whether the process of a ``/proc/<pid>`` folder fd has ended (a zombie, or reaped)."""
    try:
        return _stat(process)[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


def runner_group(spec: TaskSpec) -> tuple:
    """What tasks must share to run in one runner: their plan, their function and how it runs."""
    env = tuple(sorted(spec.env.items()))
    return (spec.plan_key, spec.function_key, str(spec.code), spec.python, tuple(spec.entrypoint), env, spec.workdir)


class WarmRunner:
    """One runner process in its jail, serving one (compute plan, function)."""

    def __init__(self, executor: LocalExecutor, spec: TaskSpec) -> None:
        self.executor = executor
        self.group = runner_group(spec)
        self.plan_key = spec.plan_key
        self.id = uuid.uuid4().hex[:12]
        self.root = executor.work_dir / "runners" / self.id
        self.uid = executor.uids.acquire()
        self.process: asyncio.subprocess.Process | None = None
        self.results: asyncio.StreamReader | None = None
        self.idle_since = time.monotonic()
        self.dead = False

    @property
    def inbox(self) -> Path:
        return self.root / "in"

    @property
    def outbox(self) -> Path:
        return self.root / "out"

    def _chown(self, path: Path) -> None:
        if isolation.privileged():
            os.chown(path, self.uid, self.uid)

    async def start(self, spec: TaskSpec) -> None:
        """Lay out the runner's folders and start its jail."""
        await asyncio.to_thread(self._lay_out, spec)
        limits = self.executor.limits
        mounts = [
            *isolation.runtime_mounts(),
            *self._environment_mounts(spec.python),
            Mount(self.root / "work", "/tessera/work", writable=True),
            Mount(self.inbox, "/tessera/in"),
            Mount(self.outbox, "/tessera/out", writable=True),
        ]
        cwd = posixpath.normpath(posixpath.join("/tessera/work", spec.workdir))
        jail = Jail(mounts=mounts, limits=limits, uid=self.uid, cwd=cwd)
        read_fd, write_fd = os.pipe()
        serve = isolation.serve_command(spec.python, write_fd, spec.entrypoint)
        command = isolation.runner_command(self.uid, *serve, env={**self.executor.task_env, **spec.env})
        try:
            with open(self.root / "runner.log", "ab") as runner_log:
                self.process = await asyncio.create_subprocess_exec(
                    *isolation.argv(jail, command),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=runner_log,
                    stderr=asyncio.subprocess.STDOUT,
                    pass_fds=(write_fd,),
                    env=isolation.BWRAP_ENV,
                    preexec_fn=isolation.child_setup(jail),
                )
        finally:
            os.close(write_fd)
        loop = asyncio.get_running_loop()
        self.results = asyncio.StreamReader(limit=1 << 20)
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(self.results), os.fdopen(read_fd, "rb", buffering=0)
        )

    def _environment_mounts(self, python: str) -> list[Mount]:
        """A function's own virtualenv (made by the build) is visible read-only, where it was made."""
        venv = Path(python).parent.parent
        functions = self.executor.work_dir / "functions"
        if venv.is_relative_to(functions):
            return [Mount(venv, str(venv))]
        return []

    def _lay_out(self, spec: TaskSpec) -> None:
        self.root.mkdir(parents=True)
        self.root.chmod(0o755)
        # Links are copied as links (they stay inside the code by construction): following them could
        # multiply a small archive whose links point at their own folders.
        shutil.copytree(spec.code, self.root / "work", symlinks=True)
        (self.root / "work" / spec.workdir).mkdir(parents=True, exist_ok=True)  # where the runner starts
        if isolation.privileged():
            isolation.chown_tree(self.root / "work", self.uid)
        self.inbox.mkdir(mode=0o755)
        self.outbox.mkdir(mode=0o755)  # only compute creates entries here: the jail cannot swap a task's folder

    def stage(self, spec: TaskSpec) -> list[str]:
        """Put ``spec``'s inputs in the inbox, make its outbox, write its arguments; returns the
        runner's arguments for the task."""
        inbox, outbox = self.inbox / spec.key, self.outbox / spec.key
        trees.remove_tree(inbox)
        trees.remove_tree(outbox)
        inbox.mkdir(mode=0o755)
        outbox.mkdir(mode=0o700)
        self._chown(outbox)
        inputs = []
        names = layout.staged_names([item.path.name for item in spec.inputs])
        for item, name in zip(spec.inputs, names, strict=True):
            link_tree(item.path, inbox / name)
            inputs.append(layout.input_entry(item.identifier, f"/tessera/in/{spec.key}/{name}", item.multiple))
        outputs = [
            layout.input_entry(identifier, f"/tessera/out/{spec.key}/{filename}", False)
            for identifier, filename in sorted(spec.outputs.items())
        ]
        (inbox / layout.ARGUMENTS).write_text(layout.arguments(spec.rank, inputs, outputs))
        return [f"@/tessera/in/{spec.key}/{layout.ARGUMENTS}"]

    def collect(self, spec: TaskSpec, dest: Path) -> tuple[dict[str, Path], Path]:
        """Copy the task's outputs and log out of the jail's reach, into ``dest``; the log is always
        there (empty when the task wrote none), for compute to append why a task failed."""
        dest.mkdir(parents=True, exist_ok=True)
        outputs: dict[str, Path] = {}
        log_path = dest / layout.TASK_LOG
        folder = open_folder(self.outbox, spec.key)
        if folder is None:
            log_path.touch()
            return outputs, log_path
        try:
            limit = self.executor.limits.file_bytes
            for index, (identifier, filename) in enumerate(sorted(spec.outputs.items())):
                target = dest / f"output-{index}"  # compute's name, not the function's (nor the log's)
                if safe_copy(folder, filename, target, limit):
                    outputs[identifier] = target
            if not safe_copy(folder, layout.TASK_LOG, log_path, limit):
                log_path.touch()
        finally:
            os.close(folder)
        return outputs, log_path

    def sweep(self) -> int | None:
        """Kill every process left in the jail but its init and the runner; how many were killed (None
        when the jail's processes cannot be seen: the runner must not serve again).

        A task's leftovers (a double-forked, setsid, SIGTERM-ignoring child) must not outlive it
        while its runner waits for the next task. They are found from outside, in the jail's own
        ``/proc`` (the kernel's list of its pid namespace and any below it: a task that tampered with
        its runner's memory cannot hide them), where init is 1 and the runner 2, and signalled by
        ``/proc/<pid>`` folder, which names that process and never one that reuses its number."""
        proc = open_jail_proc(self.process.pid)
        if proc is None:
            return None
        killed = []
        try:
            for name in os.listdir(proc):
                if not name.isdigit() or name in ("1", "2"):
                    continue
                try:
                    process = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=proc)
                except OSError:
                    continue  # gone meanwhile
                killed.append(process)
                with contextlib.suppress(OSError):
                    signal.pidfd_send_signal(process, signal.SIGKILL)
            # Ended, not only signalled: none of them writes the outputs while they are read.
            deadline = time.monotonic() + SWEEP_WAIT
            while not all(map(_ended, killed)) and time.monotonic() < deadline:
                time.sleep(0.001)
        finally:
            for process in killed:
                os.close(process)
            os.close(proc)
        return len(killed)

    def finish(self, spec: TaskSpec, dest: Path) -> tuple[int | None, dict[str, Path], Path]:
        """After a task, in one trip to a thread: kill its leftovers (before its outputs are read:
        nothing writes them meanwhile), copy its outputs and log out (:meth:`collect`), and remove its
        folders from the runner's view; (processes killed as :meth:`sweep` says, outputs, log)."""
        try:
            killed = self.sweep() if self.process.returncode is None else 0
            return (killed, *self.collect(spec, dest))
        finally:
            self.unstage(spec.key)

    def unstage(self, key: str) -> None:
        """Take a task's inputs and outputs out of the runner's view, at once (into the trash)."""
        self.executor.throw_away(self.inbox / key)
        self.executor.throw_away(self.outbox / key)

    async def run(self, args: list[str], key: str, timeout: float) -> dict:
        """Hand one task to the runner and wait for its answer (TimeoutError after ``timeout``, which
        nothing written on the answer pipe extends)."""
        return await self._ask({"task": key, "args": args, "log": f"/tessera/out/{key}/{layout.TASK_LOG}"}, timeout)

    async def load(self, timeout: float) -> dict:
        """Have the runner load its function before any task (a prepared runner): the script's top level
        runs, its ``__main__`` part does not; its output goes to the runner's own log."""
        return await self._ask({"task": "", "load": True}, timeout)

    async def _ask(self, command: dict, timeout: float) -> dict:
        key = command["task"]
        self.process.stdin.write((json.dumps(command) + "\n").encode())
        await self.process.stdin.drain()
        try:  # one answer: nothing extends the wait
            line = await asyncio.wait_for(self.results.readline(), timeout)
        except ValueError:  # longer than the reader's limit, which the runner's answers never are
            return await self._tampered(key)
        if not line:
            code = await self.process.wait()
            return {"task": key, "ok": False, "error": self._death(code), "retire": True}
        try:
            answer = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: nested too deep
            answer = None
        if not isinstance(answer, dict) or answer.get("task") != key:
            return await self._tampered(key)
        return answer

    async def _tampered(self, key: str) -> dict:
        """Only the runner answers, once per task: anything else on the pipe is the task tampering with it."""
        await self.kill()
        return {"task": key, "ok": False, "error": "the task wrote on its runner's answer pipe", "retire": True}

    @staticmethod
    def _death(code: int | None) -> str:
        """Why a runner died, in words (bwrap reports a death by signal N as 128 + N)."""
        signum = -code if code is not None and code < 0 else (code - 128 if code and code > 128 else 0)
        if signum in signal.Signals._value2member_map_:
            name = signal.Signals(signum).name
            return f"the task's process was killed by {name}{SIGNAL_HINTS.get(name, '')}"
        return f"the task's runner exited with status {code}"

    async def kill(self) -> None:
        """Kill the jail (every process in it); its folders stay until :meth:`stop`."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await self.process.wait()

    async def stop(self) -> None:
        """Kill the jail and free the runner's uid and folders."""
        if self.dead:
            return
        self.dead = True
        await self.kill()
        if self.process is not None and self.process.stdin is not None:
            self.process.stdin.close()
        try:
            if not await asyncio.to_thread(trees.remove_tree, self.root):
                log.warning("runner folder %s could not be removed", self.root)
        finally:
            self.executor.uids.release(self.uid)


class LocalExecution:
    """A task handed to a warm runner."""

    def __init__(self, executor: LocalExecutor, spec: TaskSpec) -> None:
        self._executor = executor
        self._spec = spec
        self._runner: WarmRunner | None = None
        self._canceled = False
        self._task = asyncio.create_task(self._execute())

    async def wait(self) -> ExecutionResult:
        return await asyncio.shield(self._task)

    async def cancel(self) -> None:
        self._canceled = True
        if self._runner is not None:
            await self._runner.stop()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await self._task

    async def _execute(self) -> ExecutionResult:
        spec, executor = self._spec, self._executor
        runner = await executor.runner_for(spec)
        self._runner = runner
        dest = executor.results_dir(spec.key)
        trees.remove_tree(dest)
        timed_out = unstaged = False
        try:
            args = await asyncio.to_thread(runner.stage, spec)
            if self._canceled:
                raise asyncio.CancelledError
            try:
                answer = await runner.run(args, spec.key, spec.timeout)
            except TimeoutError:
                timed_out = True
                answer = {"ok": False, "error": f"timed out after {spec.timeout:g} s", "retire": True}
                await runner.kill()  # the log written so far is still collected below
            except (BrokenPipeError, ConnectionResetError):
                code = await runner.process.wait()
                answer = {"ok": False, "error": runner._death(code), "retire": True}
            killed, outputs, log_path = await asyncio.to_thread(runner.finish, spec, dest)
            unstaged = True
            if killed:
                log.info("task %s left processes behind in its jail; they were killed", spec.key)
            elif killed is None:
                log.warning("the jail of task %s could not be swept; its runner is stopped", spec.key)
                answer = {**answer, "retire": True}
        except asyncio.CancelledError:
            await runner.stop()
            return ExecutionResult(None, canceled=True)
        except BaseException:
            await runner.stop()
            raise
        finally:
            if not runner.dead and not unstaged:
                await asyncio.to_thread(runner.unstage, spec.key)
            executor.empty_trash_soon()
        # From here the runner may serve the plan's next task: a late cancel must not stop it.
        self._runner = None
        await executor.give_back(runner, retire=bool(answer.get("retire")) or self._canceled)
        return ExecutionResult(
            0 if answer.get("ok") else 1,
            timed_out=timed_out,
            canceled=self._canceled,
            error=answer.get("error", ""),
            outputs=outputs,
            log_path=log_path,
        )


class LocalExecutor:
    """Runs tasks in warm runners, one jail per (compute plan, function), kept while they serve."""

    def __init__(
        self,
        work_dir: Path,
        limits: Limits,
        uids: UidPool,
        *,
        idle_seconds: float = 60.0,
        max_idle: int = 8,
        load_timeout: float = 60.0,
        task_env: dict[str, str] | None = None,
    ) -> None:
        self.work_dir = work_dir
        self.task_env = dict(task_env or {})  # every runner's environment, under its function's ENV
        self.limits = limits
        self.uids = uids
        self.idle_seconds = idle_seconds
        self.max_idle = max_idle
        self._idle: list[WarmRunner] = []
        self._busy: set[WarmRunner] = set()
        self._loading: dict[tuple, asyncio.Future] = {}  # runner group → done once its prepared runner loaded
        self._waiting: dict[tuple, list[asyncio.Future]] = {}  # runner group → tasks waiting for its busy runner
        self.cold_start = COLD_START_GUESS  # seconds to start and load a runner, as measured lately
        self.load_timeout = load_timeout
        self._reaper: asyncio.Task | None = None
        self._emptying: asyncio.Future | None = None
        self.runners_started = 0
        self.trash = work_dir / "trash"  # what is deleted off a task's path (in no jail's view)
        for folder in ("runners", "results", "trash"):  # what a previous process left
            trees.remove_tree(work_dir / folder)
        self.trash.mkdir(parents=True)

    def results_dir(self, task_key: str) -> Path:
        return self.work_dir / "results" / task_key

    async def start(self, task: TaskSpec) -> LocalExecution:
        self._ensure_reaper()
        return LocalExecution(self, task)

    def _ensure_reaper(self) -> None:
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap_forever(), name="runner-reaper")

    async def prepare(self, spec: TaskSpec) -> None:
        """Start a runner for ``spec``'s plan and function and have it load the function, unless one is there:
        it then waits idle for the plan's first task of that function. A task that comes while it loads waits
        for it rather than starting a second one."""
        group = runner_group(spec)
        if group in self._loading or any(r.group == group for r in (*self._idle, *self._busy)):
            return
        self._ensure_reaper()
        loaded = asyncio.get_running_loop().create_future()
        self._loading[group] = loaded
        runner = WarmRunner(self, spec)
        answer: dict = {}
        try:
            started = time.monotonic()
            await runner.start(spec)
            self.runners_started += 1
            answer = await runner.load(self.load_timeout)
            if answer.get("ok"):
                self._measured_cold_start(time.monotonic() - started)
        except (OSError, TimeoutError, BrokenPipeError, ConnectionResetError) as exc:
            answer = {"ok": False, "error": str(exc) or type(exc).__name__}
        finally:
            del self._loading[group]
            loaded.set_result(None)
            if not answer.get("ok"):
                await runner.stop()
        if answer.get("ok"):
            log.info("runner of function %s prepared for plan %s", spec.function_key, spec.plan_key)
            await self.give_back(runner, retire=False)
        else:
            log.info("runner of function %s not prepared: %s", spec.function_key, answer.get("error", ""))

    def _measured_cold_start(self, seconds: float) -> None:
        self.cold_start = min(COLD_START_CAP, 0.7 * self.cold_start + 0.3 * seconds)

    async def runner_for(self, spec: TaskSpec) -> WarmRunner:
        """An idle runner of the task's plan and function (one being prepared is waited for; one busy, for as long
        as starting another would take), or a new one."""
        group = runner_group(spec)
        loading = self._loading.get(group)
        if loading is not None:
            await asyncio.shield(loading)
        for runner in self._idle:
            if runner.group == group and runner.process is not None and runner.process.returncode is None:
                self._idle.remove(runner)
                self._busy.add(runner)
                return runner
        if any(r.group == group for r in self._busy):
            handed = await self._handed_over(group)
            if handed is not None:
                return handed
        runner = WarmRunner(self, spec)
        self._busy.add(runner)
        try:
            await runner.start(spec)
        except BaseException:
            self._busy.discard(runner)
            await runner.stop()
            raise
        self.runners_started += 1
        return runner

    async def _handed_over(self, group: tuple) -> WarmRunner | None:
        """The group's runner, handed over by :meth:`give_back` within the cold-start time; else None."""
        handover = asyncio.get_running_loop().create_future()
        waiting = self._waiting.setdefault(group, [])
        waiting.append(handover)
        try:
            return await asyncio.wait_for(asyncio.shield(handover), self.cold_start)
        except TimeoutError:
            if handover.done() and not handover.cancelled():  # handed over just as the wait ended
                return handover.result()
            handover.cancel()
            return None
        except BaseException:
            if handover.done() and not handover.cancelled():  # canceled itself: the runner goes back
                await self.give_back(handover.result(), retire=False)
            handover.cancel()
            raise
        finally:
            if handover in waiting:
                waiting.remove(handover)
            if not waiting:
                self._waiting.pop(group, None)

    async def give_back(self, runner: WarmRunner, *, retire: bool) -> None:
        """A runner's task is over: hand it to a task of its group waiting for it, keep it warm for its plan's next
        task, or stop it."""
        self._busy.discard(runner)
        if retire or runner.dead or runner.process.returncode is not None:
            await runner.stop()
            return
        for handover in self._waiting.get(runner.group, []):
            if not handover.done():
                self._busy.add(runner)
                handover.set_result(runner)
                return
        runner.idle_since = time.monotonic()
        self._idle.append(runner)
        while len(self._idle) > self.max_idle:
            await self._idle.pop(0).stop()

    async def release(self, plan_key: str) -> None:
        for runner in [r for r in self._idle if r.plan_key == plan_key]:
            self._idle.remove(runner)
            await runner.stop()

    def forget(self, task_key: str) -> None:
        self.throw_away(self.results_dir(task_key))
        self.empty_trash_soon()

    def throw_away(self, path: Path) -> None:
        """Move ``path`` into the trash, at once; deleted there when it cannot be moved."""
        try:
            os.rename(path, self.trash / uuid.uuid4().hex)
        except FileNotFoundError:
            pass
        except OSError:
            trees.remove_tree(path)

    def empty_trash(self) -> None:
        """Delete what the trash holds (in a thread: a task's files, many maybe)."""
        with contextlib.suppress(OSError):
            for name in os.listdir(self.trash):
                trees.remove_tree(self.trash / name)

    def empty_trash_soon(self) -> None:
        """Have the trash emptied in the background, unless that is under way already."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.empty_trash()
            return
        if self._emptying is None or self._emptying.done():
            self._emptying = loop.run_in_executor(None, self.empty_trash)

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(max(0.5, min(5.0, self.idle_seconds / 2)))
            horizon = time.monotonic() - self.idle_seconds
            for runner in [r for r in self._idle if r.idle_since < horizon]:
                self._idle.remove(runner)
                await runner.stop()

    async def close(self) -> None:
        await background.cancel(self._reaper)
        for runner in [*self._idle, *self._busy]:
            await runner.stop()
        self._idle.clear()
        self._busy.clear()
        if self._emptying is not None:
            await self._emptying
        await asyncio.to_thread(self.empty_trash)
